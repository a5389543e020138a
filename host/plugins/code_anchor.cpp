// The thread's code anchor (see code_anchor.hpp).
#include "host/plugins/code_anchor.hpp"

#include <utility>

namespace sdxlhost::host {
namespace {

thread_local std::shared_ptr<const void> t_code_anchor;

}  // namespace

ScopedCodeAnchor::ScopedCodeAnchor(std::shared_ptr<const void> anchor)
    : previous_(std::exchange(t_code_anchor, std::move(anchor))) {}

ScopedCodeAnchor::~ScopedCodeAnchor() { t_code_anchor = std::move(previous_); }

std::shared_ptr<const void> current_code_anchor() { return t_code_anchor; }

}  // namespace sdxlhost::host
