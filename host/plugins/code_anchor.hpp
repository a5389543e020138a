#pragma once
/// @file code_anchor.hpp
/// Which plugin code an object created on this thread needs mapped. A stage runs under a
/// ScopedCodeAnchor holding its plugin snapshot; the model cache stores current_code_anchor()
/// with every object a stage loads, so a plugin library is unmapped only after the objects its
/// code made (and whose destructors live in it) are gone.
/// Thread-safety: the anchor is per thread.

#include <memory>

namespace sdxlhost::host {

/// Sets, for the current thread and this object's lifetime, the anchor that objects created
/// now (e.g. cached models loaded by a stage) must keep alive so their code stays mapped.
class ScopedCodeAnchor {
 public:
  explicit ScopedCodeAnchor(std::shared_ptr<const void> anchor);
  ~ScopedCodeAnchor();
  ScopedCodeAnchor(const ScopedCodeAnchor&) = delete;
  ScopedCodeAnchor& operator=(const ScopedCodeAnchor&) = delete;

 private:
  std::shared_ptr<const void> previous_;
};

/// The anchor set by the innermost ScopedCodeAnchor of this thread (null when none).
std::shared_ptr<const void> current_code_anchor();

}  // namespace sdxlhost::host
