#pragma once
/// @file torch_file.hpp
/// Reading PyTorch `.pth` / `.pt` state dicts (the zip format `torch.save` writes since
/// PyTorch 1.6: `<name>/data.pkl` = a pickle, `<name>/data/<key>` = the raw bytes of each
/// storage, all members stored uncompressed) without running any code.
///
/// A pickle is a program for a small stack machine whose GLOBAL opcode can name any Python
/// callable (`os.system`). This reader is not Python: it interprets the opcodes itself, builds
/// only plain values (dicts, lists, tuples, ints, floats, strings, bools, None) and tensors, and
/// accepts exactly the globals a state dict needs:
///   - `collections.OrderedDict`
///   - `torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`
///   - the storage types `torch.{Float,Double,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage`
/// Any other global is refused with `sdk::Error(ValidationError)` naming it ("refused global
/// 'posix.system'"), before anything else happens. Everything else that is wrong (truncated
/// archive, compressed member, storage missing or shorter than its element count, a tensor view
/// reaching past its storage, unknown opcode, ...) is `sdk::Error(ModelLoadError)` naming the file.
///
/// The state dict returned is the top-level dict, or the dict under `params_ema`, `params` or
/// `state_dict` when the top level is such a wrapper (BasicSR / Real-ESRGAN releases). Entries
/// that are not tensors (e.g. `_metadata`, an `iter` counter) are skipped. Tensors are CPU
/// tensors holding a copy of the file's bytes (views of one storage share it).
///
/// Thread-safety: pure functions.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Parses a whole `torch.save` zip archive held in [bytes, bytes + size); `source` names it in
/// errors. Never reads outside the buffer and never executes anything; fuzz-friendly.
SDXLHOST_API TensorMap parse_torch_file(const std::uint8_t* bytes, std::size_t size, const std::string& source);

/// Reads `path` and parses it with parse_torch_file. Throws sdk::Error(ModelLoadError) when the
/// file cannot be read, plus the errors of parse_torch_file.
SDXLHOST_API TensorMap load_torch_file(const std::filesystem::path& path);

/// True when `path` ends in `.pth`, `.pt` or `.ckpt` (case-insensitive): a file for load_torch_file.
SDXLHOST_API bool is_torch_file_name(const std::filesystem::path& path);

}  // namespace sdxlhost::nn
