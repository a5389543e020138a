// PyTorch zip checkpoints read by a restricted unpickler: state-dict values only, no code.
#include "sdxlhost/nn/torch_file.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "stored_zip.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// The only callables a pickle may name.
enum class Global { OrderedDict, RebuildTensorV2, RebuildParameter, Storage };

/// One value built by the machine. Values live in an arena and refer to each other by index,
/// so hostile nesting or cycles cost no recursion and leak nothing.
struct Node {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor } kind = Kind::None;
  std::int64_t integer = 0;    // Bool, Int
  double real = 0.0;           // Float
  std::string text;            // String
  std::vector<int> items;      // Tuple, List; Dict as key, value, key, value, ...
  Global global{};             // Global
  at::ScalarType dtype{};      // Global (Storage): the element type
  int storage = -1;            // Storage: index into Unpickler::storages_
  at::Tensor tensor;           // Tensor
};

struct StorageType {
  const char* name;
  at::ScalarType dtype;
};

constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
    {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
    {"ShortStorage", at::kShort}, {"CharStorage", at::kChar}, {"ByteStorage", at::kByte},
    {"BoolStorage", at::kBool},
};

/// Largest number of elements in one tensor or storage we accept (2^40: far above any model,
/// far below what overflows byte arithmetic).
constexpr std::int64_t kMaxElements = std::int64_t{1} << 40;

/// Interprets the opcodes of `data.pkl` (protocols 2 to 5, the subset torch.save emits).
class Unpickler {
 public:
  Unpickler(const std::uint8_t* archive, const std::map<std::string, detail::ZipMember>& members,
            std::string prefix, const std::string& source)
      : archive_(archive), members_(members), prefix_(std::move(prefix)), source_(source) {}

  /// Runs the pickle in [begin, begin + size); returns the index of the value STOP returned.
  int run(const std::uint8_t* begin, std::size_t size);
  /// The arena.
  const Node& node(int index) const { return nodes_[static_cast<std::size_t>(index)]; }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::ModelLoadError,
                "PyTorch file '" + source_ + "': " + what + " (pickle byte " + std::to_string(position_) + ")");
  }
  // ---- reading the opcode stream ----
  const std::uint8_t* take(std::size_t n) {
    if (n > size_ - position_) fail("the pickle ends in the middle of an opcode (truncated)");
    const std::uint8_t* at = code_ + position_;
    position_ += n;
    return at;
  }
  std::uint64_t unsigned_le(std::size_t n) {
    const std::uint8_t* at = take(n);
    std::uint64_t value = 0;
    for (std::size_t i = n; i-- > 0;) value = (value << 8) | at[i];
    return value;
  }
  std::string text(std::size_t n) { return std::string(reinterpret_cast<const char*>(take(n)), n); }
  std::string line() {
    std::string out;
    for (;;) {
      char c = static_cast<char>(*take(1));
      if (c == '\n') return out;
      if (out.size() > 256) fail("a GLOBAL name is too long");
      out += c;
    }
  }
  // ---- the stack ----
  int push(Node node) {
    nodes_.push_back(std::move(node));
    stack_.push_back(static_cast<int>(nodes_.size() - 1));
    return stack_.back();
  }
  int pop() {
    if (stack_.size() <= floor()) fail("pop from an empty stack");
    int value = stack_.back();
    stack_.pop_back();
    return value;
  }
  int top() {
    if (stack_.size() <= floor()) fail("the stack is empty");
    return stack_.back();
  }
  std::size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<int> pop_to_mark() {
    if (marks_.empty()) fail("no MARK to pop to");
    std::vector<int> items(stack_.begin() + static_cast<std::ptrdiff_t>(marks_.back()), stack_.end());
    stack_.resize(marks_.back());
    marks_.pop_back();
    return items;
  }
  Node& at(int index) { return nodes_[static_cast<std::size_t>(index)]; }
  Node& container(int index, Node::Kind kind, const char* op) {
    Node& node = at(index);
    if (node.kind != kind) fail(std::string(op) + " on a value that is not a " + (kind == Node::Kind::Dict ? "dict" : "list"));
    return node;
  }
  // ---- values ----
  static Node integer(std::int64_t v) { Node n; n.kind = Node::Kind::Int; n.integer = v; return n; }
  static Node string(std::string s) { Node n; n.kind = Node::Kind::String; n.text = std::move(s); return n; }
  static Node tuple(std::vector<int> items) { Node n; n.kind = Node::Kind::Tuple; n.items = std::move(items); return n; }
  void memo_put(std::uint64_t key) { memo_[key] = top(); }
  void memo_get(std::uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail("memo key " + std::to_string(key) + " was never stored");
    stack_.push_back(it->second);
  }
  Node global(const std::string& module, const std::string& name);
  int persistent_load(int pid);
  int reduce(int callable, int args);
  int rebuild_tensor(const std::vector<int>& args);
  std::int64_t int_of(int index, const char* what) {
    const Node& n = node(index);
    if (n.kind != Node::Kind::Int && n.kind != Node::Kind::Bool) fail(std::string(what) + " is not an integer");
    return n.integer;
  }
  std::vector<std::int64_t> ints_of(int index, const char* what) {
    const Node& n = node(index);
    if (n.kind != Node::Kind::Tuple && n.kind != Node::Kind::List) fail(std::string(what) + " is not a tuple");
    std::vector<std::int64_t> out;
    for (int item : n.items) {
      std::int64_t v = int_of(item, what);
      if (v < 0 || v > kMaxElements) fail(std::string(what) + " has an entry out of range: " + std::to_string(v));
      out.push_back(v);
    }
    return out;
  }
  void step(std::uint8_t op);

  const std::uint8_t* archive_;
  const std::map<std::string, detail::ZipMember>& members_;
  std::string prefix_;
  const std::string& source_;
  const std::uint8_t* code_ = nullptr;
  std::size_t size_ = 0;
  std::size_t position_ = 0;
  bool stopped_ = false;
  std::vector<Node> nodes_;
  std::vector<int> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, int> memo_;
  std::vector<at::Tensor> storages_;            // flat tensors, one per storage key
  std::map<std::string, int> storage_by_key_;   // key -> index into storages_
};

Node Unpickler::global(const std::string& module, const std::string& name) {
  Node n;
  n.kind = Node::Kind::Global;
  if (module == "collections" && name == "OrderedDict") { n.global = Global::OrderedDict; return n; }
  if (module == "torch._utils" && name == "_rebuild_tensor_v2") { n.global = Global::RebuildTensorV2; return n; }
  if (module == "torch._utils" && name == "_rebuild_parameter") { n.global = Global::RebuildParameter; return n; }
  if (module == "torch")
    for (const auto& type : kStorageTypes)
      if (name == type.name) {
        n.global = Global::Storage;
        n.dtype = type.dtype;
        return n;
      }
  throw Error(ErrorCode::ValidationError,
              "PyTorch file '" + source_ + "': refused global '" + module + "." + name +
                  "': a state dict needs only OrderedDict, tensor rebuild functions and storage types, "
                  "and nothing in the file is ever executed");
}

/// BINPERSID: ('storage', <StorageType>, key, location, numel) -> the storage's flat tensor.
int Unpickler::persistent_load(int pid) {
  const Node& id = node(pid);
  if (id.kind != Node::Kind::Tuple || id.items.size() != 5) fail("a persistent id is not a 5-tuple ('storage', type, key, location, numel)");
  const Node& tag = node(id.items[0]);
  const Node& type = node(id.items[1]);
  const Node& key = node(id.items[2]);
  if (tag.kind != Node::Kind::String || tag.text != "storage") fail("a persistent id is not a storage");
  if (type.kind != Node::Kind::Global || type.global != Global::Storage) fail("a persistent id names no storage type");
  if (key.kind != Node::Kind::String) fail("a storage key is not a string");
  const std::int64_t numel = int_of(id.items[4], "a storage's element count");
  if (numel < 0 || numel > kMaxElements) fail("storage '" + key.text + "' has an invalid element count");
  Node out;
  out.kind = Node::Kind::Storage;
  if (auto it = storage_by_key_.find(key.text); it != storage_by_key_.end()) {
    const at::Tensor& known = storages_[static_cast<std::size_t>(it->second)];
    if (known.scalar_type() != type.dtype || known.numel() != numel)
      fail("storage '" + key.text + "' is referenced with two different types or sizes");
    out.storage = it->second;
    nodes_.push_back(std::move(out));
    return static_cast<int>(nodes_.size() - 1);
  }
  auto member = members_.find(prefix_ + "data/" + key.text);
  if (member == members_.end()) fail("storage '" + key.text + "' has no record data/" + key.text + " in the archive");
  const std::uint64_t need = static_cast<std::uint64_t>(numel) * at::elementSize(type.dtype);
  if (member->second.size < need)
    fail("storage '" + key.text + "' claims " + std::to_string(numel) + " elements (" + std::to_string(need) +
         " bytes) but its record holds " + std::to_string(member->second.size) + " bytes");
  at::Tensor flat = at::empty({numel}, at::TensorOptions().dtype(type.dtype));
  if (need) std::memcpy(flat.data_ptr(), archive_ + member->second.offset, need);
  storages_.push_back(flat);
  out.storage = static_cast<int>(storages_.size() - 1);
  storage_by_key_[key.text] = out.storage;
  nodes_.push_back(std::move(out));
  return static_cast<int>(nodes_.size() - 1);
}

/// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]).
int Unpickler::rebuild_tensor(const std::vector<int>& args) {
  if (args.size() < 4) fail("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
  const Node& storage = node(args[0]);
  if (storage.kind != Node::Kind::Storage) fail("_rebuild_tensor_v2's first argument is not a storage");
  const at::Tensor& flat = storages_[static_cast<std::size_t>(storage.storage)];
  const std::int64_t offset = int_of(args[1], "a tensor's storage offset");
  const auto sizes = ints_of(args[2], "a tensor's size");
  const auto strides = ints_of(args[3], "a tensor's stride");
  if (sizes.size() != strides.size()) fail("a tensor's size and stride have different lengths");
  if (offset < 0 || offset > kMaxElements) fail("a tensor's storage offset is out of range");
  // The last element the view touches must lie inside the storage (no view past the bytes).
  __int128 last = offset, count = 1;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    count *= sizes[i];
    if (count > kMaxElements) fail("a tensor has too many elements");
    if (sizes[i] > 0) last += static_cast<__int128>(sizes[i] - 1) * strides[i];
  }
  if (count > 0 && last >= flat.numel())
    fail("a tensor view (offset " + std::to_string(offset) + ", " + std::to_string(sizes.size()) +
         " dims) reaches element " + std::to_string(static_cast<long long>(last)) + " of a storage of " +
         std::to_string(flat.numel()) + " elements");
  Node out;
  out.kind = Node::Kind::Tensor;
  out.tensor = flat.as_strided(sizes, strides, offset);
  nodes_.push_back(std::move(out));
  return static_cast<int>(nodes_.size() - 1);
}

int Unpickler::reduce(int callable, int args) {
  const Node& fn = node(callable);
  const Node& arguments = node(args);
  if (arguments.kind != Node::Kind::Tuple) fail("REDUCE arguments are not a tuple");
  if (fn.kind != Node::Kind::Global) fail("REDUCE on a value that is not an allowed callable");
  switch (fn.global) {
    case Global::OrderedDict: {
      if (!arguments.items.empty()) fail("OrderedDict(...) with arguments is not supported");
      Node dict;
      dict.kind = Node::Kind::Dict;
      nodes_.push_back(std::move(dict));
      return static_cast<int>(nodes_.size() - 1);
    }
    case Global::RebuildTensorV2: return rebuild_tensor(arguments.items);
    case Global::RebuildParameter: {
      if (arguments.items.empty() || node(arguments.items[0]).kind != Node::Kind::Tensor)
        fail("_rebuild_parameter's first argument is not a tensor");
      return arguments.items[0];
    }
    case Global::Storage: break;
  }
  fail("a storage type cannot be called");
}

void Unpickler::step(std::uint8_t op) {
  switch (op) {
    case 0x80: take(1); break;                                  // PROTO
    case 0x95: take(8); break;                                  // FRAME (a length hint)
    case '.': stopped_ = true; break;                           // STOP
    case '(': marks_.push_back(stack_.size()); break;           // MARK
    case '0': pop(); break;                                     // POP
    case '1': pop_to_mark(); break;                             // POP_MARK
    case 'N': push(Node{}); break;                              // NONE
    case 0x88: case 0x89: {                                     // NEWTRUE / NEWFALSE
      Node b; b.kind = Node::Kind::Bool; b.integer = op == 0x88; push(std::move(b)); break;
    }
    case 'J': push(integer(static_cast<std::int32_t>(unsigned_le(4)))); break;  // BININT
    case 'K': push(integer(static_cast<std::int64_t>(unsigned_le(1)))); break;  // BININT1
    case 'M': push(integer(static_cast<std::int64_t>(unsigned_le(2)))); break;  // BININT2
    case 0x8a: {                                                // LONG1
      std::size_t n = *take(1);
      if (n > 8) fail("an integer wider than 64 bits");
      std::uint64_t v = n ? unsigned_le(n) : 0;
      if (n && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~std::uint64_t{0} << (8 * n);  // sign-extend
      push(integer(static_cast<std::int64_t>(v)));
      break;
    }
    case 'G': {                                                 // BINFLOAT (big-endian)
      const std::uint8_t* b = take(8);
      std::uint64_t bits = 0;
      for (int i = 0; i < 8; ++i) bits = (bits << 8) | b[i];
      Node f; f.kind = Node::Kind::Float; std::memcpy(&f.real, &bits, 8); push(std::move(f));
      break;
    }
    case 'X': push(string(text(unsigned_le(4)))); break;        // BINUNICODE
    case 0x8c: push(string(text(unsigned_le(1)))); break;       // SHORT_BINUNICODE
    case 0x8d: {                                                // BINUNICODE8
      std::uint64_t n = unsigned_le(8);
      if (n > size_) fail("a string longer than the pickle");
      push(string(text(n)));
      break;
    }
    case ')': push(tuple({})); break;                           // EMPTY_TUPLE
    case 't': push(tuple(pop_to_mark())); break;                // TUPLE
    case 0x85: case 0x86: case 0x87: {                          // TUPLE1..3
      std::vector<int> items(static_cast<std::size_t>(op - 0x84));
      for (std::size_t i = items.size(); i-- > 0;) items[i] = pop();
      push(tuple(std::move(items)));
      break;
    }
    case ']': { Node l; l.kind = Node::Kind::List; push(std::move(l)); break; }   // EMPTY_LIST
    case 'l': { Node l; l.kind = Node::Kind::List; l.items = pop_to_mark(); push(std::move(l)); break; }
    case '}': { Node d; d.kind = Node::Kind::Dict; push(std::move(d)); break; }   // EMPTY_DICT
    case 'd': {                                                 // DICT
      Node d; d.kind = Node::Kind::Dict; d.items = pop_to_mark();
      if (d.items.size() % 2) fail("DICT with an odd number of items");
      push(std::move(d));
      break;
    }
    case 'a': { int v = pop(); container(top(), Node::Kind::List, "APPEND").items.push_back(v); break; }
    case 'e': {                                                 // APPENDS
      auto items = pop_to_mark();
      auto& list = container(top(), Node::Kind::List, "APPENDS").items;
      list.insert(list.end(), items.begin(), items.end());
      break;
    }
    case 's': {                                                 // SETITEM
      int value = pop(), key = pop();
      auto& dict = container(top(), Node::Kind::Dict, "SETITEM").items;
      dict.push_back(key);
      dict.push_back(value);
      break;
    }
    case 'u': {                                                 // SETITEMS
      auto items = pop_to_mark();
      if (items.size() % 2) fail("SETITEMS with an odd number of items");
      auto& dict = container(top(), Node::Kind::Dict, "SETITEMS").items;
      dict.insert(dict.end(), items.begin(), items.end());
      break;
    }
    case 'q': memo_put(unsigned_le(1)); break;                  // BINPUT
    case 'r': memo_put(unsigned_le(4)); break;                  // LONG_BINPUT
    case 0x94: memo_put(memo_.size()); break;                   // MEMOIZE
    case 'h': memo_get(unsigned_le(1)); break;                  // BINGET
    case 'j': memo_get(unsigned_le(4)); break;                  // LONG_BINGET
    case 'c': {                                                 // GLOBAL "module\nname\n"
      std::string module = line();
      std::string name = line();
      push(global(module, name));
      break;
    }
    case 'i': {                                                 // INST "module\nname\n": names a global too
      std::string module = line();
      std::string name = line();
      global(module, name);  // refuses (naming it) anything outside the allow-list
      fail("INST opcode (not used by torch.save state dicts)");
    }
    case 0x93: {                                                // STACK_GLOBAL
      int name = pop(), module = pop();
      if (node(name).kind != Node::Kind::String || node(module).kind != Node::Kind::String)
        fail("STACK_GLOBAL needs two strings");
      push(global(node(module).text, node(name).text));
      break;
    }
    case 'Q': { int pid = pop(); stack_.push_back(persistent_load(pid)); break; }  // BINPERSID
    case 'R': { int args = pop(), fn = pop(); stack_.push_back(reduce(fn, args)); break; }  // REDUCE
    case 'b': {                                                 // BUILD: OrderedDict's __dict__ (_metadata)
      pop();
      if (node(top()).kind != Node::Kind::Dict) fail("BUILD on a value that is not a dict");
      break;
    }
    default: {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02x", op);
      fail(std::string("unsupported pickle opcode ") + hex + " (not used by torch.save state dicts)");
    }
  }
}

int Unpickler::run(const std::uint8_t* begin, std::size_t size) {
  code_ = begin;
  size_ = size;
  position_ = 0;
  while (!stopped_) {
    if (position_ >= size_) fail("the pickle has no STOP (truncated)");
    step(*take(1));
  }
  if (stack_.size() != 1 || !marks_.empty()) fail("the pickle does not end with exactly one value");
  return stack_.back();
}

/// The dict holding the tensors: the top level, or its params_ema / params / state_dict entry.
int state_dict_node(const Unpickler& u, int top, const std::string& source) {
  const Node& root = u.node(top);
  if (root.kind != Node::Kind::Dict)
    throw Error(ErrorCode::ModelLoadError, "PyTorch file '" + source + "': the top-level object is not a dict (not a state dict)");
  for (const char* wrapper : {"params_ema", "params", "state_dict"})
    for (std::size_t i = 0; i + 1 < root.items.size(); i += 2) {
      const Node& key = u.node(root.items[i]);
      if (key.kind == Node::Kind::String && key.text == wrapper && u.node(root.items[i + 1]).kind == Node::Kind::Dict)
        return root.items[i + 1];
    }
  return top;
}

std::string archive_prefix(const std::map<std::string, detail::ZipMember>& members, const std::string& source) {
  std::string prefix;
  int found = 0;
  for (const auto& [name, member] : members) {
    const std::string tail = "data.pkl";
    if (name.size() >= tail.size() && name.compare(name.size() - tail.size(), tail.size(), tail) == 0 &&
        (name.size() == tail.size() || name[name.size() - tail.size() - 1] == '/')) {
      prefix = name.substr(0, name.size() - tail.size());
      ++found;
    }
  }
  if (found != 1)
    throw Error(ErrorCode::ModelLoadError, "PyTorch file '" + source + "': expected one data.pkl in the archive, found " +
                                               std::to_string(found) + " (not a torch.save state dict)");
  return prefix;
}

void check_byte_order(const std::uint8_t* bytes, const std::map<std::string, detail::ZipMember>& members,
                      const std::string& prefix, const std::string& source) {
  auto order = members.find(prefix + "byteorder");
  if (order == members.end()) return;
  std::string text(reinterpret_cast<const char*>(bytes + order->second.offset),
                   std::min<std::uint64_t>(order->second.size, 16));
  if (text != "little")
    throw Error(ErrorCode::ModelLoadError, "PyTorch file '" + source + "': byte order '" + text + "' is not supported");
}

}  // namespace

TensorMap parse_torch_file(const std::uint8_t* bytes, std::size_t size, const std::string& source) {
  if (size >= 2 && bytes[0] == 0x80)
    throw Error(ErrorCode::ModelLoadError, "PyTorch file '" + source +
                                               "': legacy (pre-1.6, non-zip) torch serialization is not supported; "
                                               "re-save it with torch.save or convert it to .safetensors");
  const auto members = detail::read_stored_zip(bytes, size, source);
  const std::string prefix = archive_prefix(members, source);
  check_byte_order(bytes, members, prefix, source);
  const detail::ZipMember& pickle = members.at(prefix + "data.pkl");
  Unpickler unpickler(bytes, members, prefix, source);
  const int top = unpickler.run(bytes + pickle.offset, pickle.size);
  const Node& dict = unpickler.node(state_dict_node(unpickler, top, source));
  TensorMap out(source);
  for (std::size_t i = 0; i + 1 < dict.items.size(); i += 2) {
    const Node& key = unpickler.node(dict.items[i]);
    const Node& value = unpickler.node(dict.items[i + 1]);
    if (key.kind == Node::Kind::String && value.kind == Node::Kind::Tensor) out.set(key.text, value.tensor);
  }
  if (out.empty()) throw Error(ErrorCode::ModelLoadError, "PyTorch file '" + source + "': the state dict holds no tensors");
  return out;
}

TensorMap load_torch_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(ErrorCode::ModelLoadError, "cannot open PyTorch file '" + path.string() + "'");
  const std::streamsize size = in.tellg();
  if (size < 0) throw Error(ErrorCode::ModelLoadError, "cannot read PyTorch file '" + path.string() + "'");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    throw Error(ErrorCode::ModelLoadError, "cannot read PyTorch file '" + path.string() + "'");
  return parse_torch_file(bytes.data(), bytes.size(), path.filename().string());
}

bool is_torch_file_name(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".pth" || ext == ".pt" || ext == ".ckpt";
}

}  // namespace sdxlhost::nn
