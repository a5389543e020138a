#include "host/common/client_text.hpp"

#include <c10/util/Exception.h>

namespace sdxlhost::host {

std::string client_message(const std::exception& error) {
  std::string text;
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&error)) text = torch_error->msg();
  else text = error.what();
  // c10's msg() still ends with the "Exception raised from <fn> at <file>:<line>" context line
  // on some paths; a client needs neither it nor any frame list after it.
  for (const char* marker : {"\nException raised from", "Exception raised from", "\nframe #"}) {
    const auto at = text.find(marker);
    if (at != std::string::npos) text.erase(at);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text.empty() ? std::string("internal error (details in the host log)") : text;
}

}  // namespace sdxlhost::host
