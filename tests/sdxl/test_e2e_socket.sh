#!/usr/bin/env bash
# End to end through the host's socket: serve with the real sdxl + schedulers plugins and the
# goldens' tiny_sdxl as models_root/checkpoints/tiny, send the pipeline_3steps request with
# `sdxl-host send`, and compare the PNG the host writes with the golden image (<= 1/255).
set -euo pipefail
HOST=$1 PLUGINS=$2 SHARED=$3 COMPARE=$4
DIR=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$DIR/serve.log" ] && tail -5 "$DIR/serve.log" >&2; exit 1; }

mkdir -p "$DIR/models/checkpoints"
cp -r --no-preserve=mode "$SHARED/goldens/models/tiny_sdxl" "$DIR/models/checkpoints/tiny"
cat > "$DIR/host.json" <<JSON
{"pipe_name": "$DIR/host.sock", "models_root": "$DIR/models", "output_root": "$DIR/out",
 "plugins": {"dir": "$PLUGINS", "enabled": {"sdxl": true, "schedulers": true}},
 "limits": {"min_width": 8, "min_height": 8}, "queue": {"progress_interval_ms": 0}, "threads": 1,
 "log_level": "warn"}
JSON
cat > "$DIR/request.json" <<JSON
{"prompt": "a photo of a cat", "models": {"base": "tiny"},
 "hyperparameters": {"num_inference_steps": 3, "guidance_scale": 5.0, "seed": 0},
 "dimensions": {"width": 64, "height": 64}, "scheduler": "EulerDiscreteScheduler",
 "output": {"format": "png", "save_path": "cat.png"}}
JSON

"$HOST" serve --config "$DIR/host.json" 2> "$DIR/serve.log" &
SERVER=$!
for _ in $(seq 200); do [ -S "$DIR/host.sock" ] && break; sleep 0.05; done
[ -S "$DIR/host.sock" ] || fail "the host did not start"
"$HOST" send --pipe "$DIR/host.sock" "$DIR/request.json" > "$DIR/send.out" || fail "send failed: $(tail -1 "$DIR/send.out")"
[ "$(grep -c '"message_type":"progress"' "$DIR/send.out")" -ge 3 ] || fail "fewer than 3 progress events"
grep -q '"stages":\["encode_prompt","prepare_latents","denoise","vae_decode"\]' "$DIR/send.out" \
  || fail "unexpected plan: $(tail -1 "$DIR/send.out")"
[ -f "$DIR/out/cat.png" ] || fail "no image written"
"$COMPARE" "$DIR/out/cat.png" "$SHARED/goldens/models/reference/pipeline_3steps.png" 1 \
  || fail "the host's image differs from the golden"
"$HOST" send --pipe "$DIR/host.sock" --message shutdown > /dev/null
wait $SERVER || fail "serve exited non-zero"
SERVER=
echo "test_sdxl_e2e_socket: ok"
