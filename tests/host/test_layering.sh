#!/usr/bin/env bash
# The layering rules of docs/architecture.md, checked on the source tree:
#   1. host/ names no feature of a plugin: the features come from declarations (the SDK's request
#      schema, PluginInfo::request_features, sdk::image_messages, image_metadata.hpp).
#      Checked with the names of the plugins under plugins/ that serve a request feature (every
#      plugin but the image generator "sdxl" and the "schedulers", which the request's core
#      fields name: models.base, scheduler) and the wire spellings of their fields.
#   2. A plugin includes SDK headers (sdxlhost/...) and its own files only: never host/ and never
#      another plugin's folder.
# Usage: test_layering.sh <source root>
set -euo pipefail
root=${1:?usage: test_layering.sh <source root>}
cd "$root"
failed=0

features=()
for dir in plugins/*/; do
  name=$(basename "$dir")
  case "$name" in sdxl|schedulers) continue ;; esac
  features+=("$name")
done
# The wire's spelling of a feature's field can differ from the plugin's name ("upscale").
features+=(upscale)
pattern=$(IFS='|'; echo "${features[*]}")
if hits=$(grep -rniE "$pattern" host/); then
  echo "host/ names a plugin's feature (one of: $pattern):"
  echo "$hits"
  failed=1
fi

for dir in plugins/*/; do
  name=$(basename "$dir")
  while IFS= read -r line; do
    file=${line%%:*}
    header=$(sed -E 's/.*#include *"([^"]+)".*/\1/' <<<"$line")
    case "$header" in
      sdxlhost/*) continue ;;                       # the SDK
      */*) echo "$file includes \"$header\" (a plugin includes the SDK and its own files only)"; failed=1 ;;
      *) [ -e "$dir$header" ] || { echo "$file includes \"$header\", which is not in $dir"; failed=1; } ;;
    esac
  done < <(grep -rHE '^#include *"' "$dir" --include='*.cpp' --include='*.hpp' || true)
done

[ "$failed" = 0 ] && echo "layering: host/ names no plugin feature (${features[*]}); plugins include the SDK and their own files"
exit "$failed"
