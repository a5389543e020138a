#!/usr/bin/env bash
# The Debian packages end to end (label `packaging`), without root: build them with cpack, check
# names and dependencies, unpack them into a scratch root (dpkg -x: the files, not the maintainer
# scripts), serve from the installed layout (the binary finds the SDK and the plugins through its
# RPATH, not the build tree), generate with the tiny model, build the example scheduler plugin
# against the unpacked sdxl-host-dev only and load it, then remove the lora package's files and
# show LoRA requests refused after a reload while plain generation still works.
set -euo pipefail
BUILD=$1 SOURCE=$2 SHARED=$3
DIR=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$DIR/serve.log" ] && tail -20 "$DIR/serve.log" >&2; exit 1; }
step() { echo "-- $*"; }

step "cpack -G DEB"
(cd "$BUILD" && cpack -G DEB -B "$DIR/debs" > "$DIR/cpack.log" 2>&1) || { cat "$DIR/cpack.log"; fail "cpack"; }
ABI=$(sed -n 's/.*inline constexpr int kAbiVersion = \([0-9]*\);.*/\1/p' "$SOURCE/sdk/include/sdxlhost/sdk/abi.hpp")
deb() { ls "$DIR"/debs/"$1"_*.deb 2>/dev/null | head -1; }
for pkg in sdxl-host sdxl-host-dev sdxl-host-plugin-sdxl sdxl-host-plugin-schedulers sdxl-host-plugin-lora; do
  [ -n "$(deb $pkg)" ] || fail "no package $pkg in: $(ls "$DIR/debs")"
done
echo "packages: $(cd "$DIR/debs" && ls *.deb | tr '\n' ' ')"
[ "$(dpkg-deb -f "$(deb sdxl-host)" Provides)" = "sdxl-host-abi-$ABI" ] || fail "sdxl-host does not provide sdxl-host-abi-$ABI"
for plugin in "$DIR"/debs/sdxl-host-plugin-*.deb; do
  [[ "$(dpkg-deb -f "$plugin" Depends)" == *"sdxl-host-abi-$ABI"* ]] || fail "$(basename "$plugin") does not depend on sdxl-host-abi-$ABI"
  files=$(dpkg-deb -c "$plugin" | awk '{print $6}' | grep '\.so$')
  [ "$(echo "$files" | wc -l)" = 1 ] || fail "$(basename "$plugin") should hold one plugin: $files"
done
[[ "$(dpkg-deb -f "$(deb sdxl-host-plugin-lora)" Depends)" == *"sdxl-host-plugin-sdxl"* ]] || fail "lora does not depend on the sdxl plugin"
dpkg-deb -c "$(deb sdxl-host)" > "$DIR/host-files.txt"
grep -q "./etc/sdxl-host/host.json" "$DIR/host-files.txt" || fail "no /etc/sdxl-host/host.json"
grep -q "./lib/systemd/system/sdxl-host.service" "$DIR/host-files.txt" || fail "no systemd unit"
dpkg-deb -e "$(deb sdxl-host)" "$DIR/control"
grep -qx "/etc/sdxl-host/host.json" "$DIR/control/conffiles" || fail "host.json is not a conffile"
[ -x "$DIR/control/postinst" ] || fail "no postinst"
if grep -q "/include/" "$DIR/host-files.txt"; then fail "headers belong to sdxl-host-dev"; fi

step "unpack into a scratch root"
ROOT="$DIR/root"
for p in "$DIR"/debs/*.deb; do dpkg -x "$p" "$ROOT"; done
HOST="$ROOT/usr/bin/sdxl-host"
[ -x "$HOST" ] || fail "no $HOST"
resolved() {  # resolved BINARY LIBRARY -> the real path the loader picks for LIBRARY
  realpath "$(ldd "$1" | awk -v lib="$2" '$1 == lib {print $3}')"
}
[ "$(resolved "$HOST" libsdxlhost_sdk.so)" = "$(realpath "$ROOT/usr/lib/sdxl-host/libsdxlhost_sdk.so")" ] ||
  fail "the binary does not find the SDK in the installed layout: $(ldd "$HOST" | grep sdxlhost)"
[ "$(resolved "$ROOT/usr/lib/sdxl-host/plugins/sdxl.so" libsdxlhost_nn.so)" = "$(realpath "$ROOT/usr/lib/sdxl-host/libsdxlhost_nn.so")" ] ||
  fail "the sdxl plugin does not find the SDK in the installed layout"

# The packaged config with the scratch root's paths (the real one points at /usr, /var/lib, /run).
python3 - "$ROOT/etc/sdxl-host/host.json" "$DIR/host.json" "$ROOT" "$DIR" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
root, work = sys.argv[3], sys.argv[4]
assert config["plugins"]["dir"] == "/usr/lib/sdxl-host/plugins", config
config["plugins"]["dir"] = root + config["plugins"]["dir"]
config["pipe_name"] = work + "/host.sock"
config["models_root"] = work + "/models"
config["output_root"] = work + "/out"
config.update({"threads": 1, "limits": {"min_width": 8, "min_height": 8}})
json.dump(config, open(sys.argv[2], "w"))
PY
# The goldens' tiny SDXL and a golden LoRA made for it (the build's own tiny model has other
# text encoders, so a LoRA for one does not fit the other).
mkdir -p "$DIR/models/loras" "$DIR/models/checkpoints" "$DIR/out"
cp -r --no-preserve=mode "$SHARED/goldens/models/tiny_sdxl" "$DIR/models/checkpoints/tiny"
send() { "$HOST" send --pipe "$DIR/host.sock" "$@"; }
field() { python3 -c "import json,sys; r=json.loads(sys.stdin.read().strip().splitlines()[-1]); print($1)"; }

step "serve from the installed layout"
"$HOST" serve --config "$DIR/host.json" 2> "$DIR/serve.log" &
SERVER=$!
for _ in $(seq 200); do [ -S "$DIR/host.sock" ] && break; sleep 0.05; done
[ -S "$DIR/host.sock" ] || fail "the host did not start"
caps=$(send --message capabilities)
for plugin in sdxl schedulers lora; do
  state=$(echo "$caps" | field "[p['state'] for p in r['data']['plugins'] if p['name']=='$plugin'] or ['missing']")
  [ "$state" = "['loaded']" ] || fail "plugin $plugin: $state"
done
cat > "$DIR/plain.json" <<JSON
{"prompt": "a photo of a cat", "models": {"base": "tiny"}, "dimensions": {"width": 64, "height": 64},
 "hyperparameters": {"num_inference_steps": 2, "seed": 1}, "output": {"save_path": "plain.png"}}
JSON
[ "$(send "$DIR/plain.json" | field "r['success']")" = True ] || fail "generation from the installed layout"
[ -s "$DIR/out/plain.png" ] || fail "no image written"
cp --no-preserve=mode "$SHARED/goldens/lora/kohya_lora.safetensors" "$DIR/models/loras/style.safetensors"
python3 - "$DIR/plain.json" "$DIR/lora.json" <<'PY'
import json, sys
request = json.load(open(sys.argv[1]))
request["lora"] = {"enabled": True, "models": [{"name": "style", "weight": 0.5}]}
request["output"]["save_path"] = "lora.png"
json.dump(request, open(sys.argv[2], "w"))
PY

step "build the example scheduler against sdxl-host-dev alone"
cmake -S "$SOURCE/examples/example_scheduler" -B "$DIR/example" -DCMAKE_BUILD_TYPE=Release \
  "-DCMAKE_PREFIX_PATH=$ROOT/usr" > "$DIR/example.log" 2>&1 || { cat "$DIR/example.log"; fail "configure the example"; }
grep -q "$ROOT/usr/lib/cmake/SdxlHostSdk" "$DIR/example/CMakeCache.txt" || fail "the example did not use the unpacked SDK"
cmake --build "$DIR/example" >> "$DIR/example.log" 2>&1 || { cat "$DIR/example.log"; fail "build the example"; }
cp "$DIR/example/example_scheduler.so" "$ROOT/usr/lib/sdxl-host/plugins/"
[ "$(send --message reload_config | field "r['success']")" = True ] || fail "reload after adding the example"
state=$(send --message capabilities | field "[p['state'] for p in r['data']['plugins'] if p['name']=='example_scheduler'] or ['missing']")
[ "$state" = "['loaded']" ] || fail "the example plugin built against the package: $state"

step "remove sdxl-host-plugin-lora, reload: LoRA refused, the rest serves"
[ "$(send "$DIR/lora.json" | field "r['success']")" = True ] || fail "LoRA before the removal"
dpkg-deb -c "$(deb sdxl-host-plugin-lora)" | awk '{print $6}' | grep '\.so$' | while read -r f; do rm "$ROOT/${f#./}"; done
[ "$(send --message reload_config | field "r['success']")" = True ] || fail "reload after removing lora"
refused=$(send "$DIR/lora.json" || true)
[ "$(echo "$refused" | field "r.get('error_code')")" = FEATURE_DISABLED ] || fail "LoRA after removal: $refused"
echo "$refused" | field "r.get('field')"
sed -i 's/plain.png/plain2.png/' "$DIR/plain.json"
[ "$(send "$DIR/plain.json" | field "r['success']")" = True ] || fail "plain generation after removing lora"
send --message shutdown > /dev/null
wait $SERVER || fail "serve exited non-zero"
SERVER=
echo "packaging: ok"
