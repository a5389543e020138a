#!/usr/bin/env bash
# End to end through the host's socket (label `lora`): serve with the real sdxl, schedulers and
# lora plugins, the goldens' tiny_sdxl as checkpoints/tiny and the golden LoRA files under
# loras/, and compare the images the host writes with ../shared/goldens/lora (<= 1/255):
# one kohya LoRA (diffusers and SGM module names), one diffusers LoRA, two at once, a prompt
# tag; a plain job after LoRA jobs gives the plain golden exactly; bad LoRAs are refused with
# their field and leave the model as it was; plugins.enabled.lora=false gives FEATURE_DISABLED.
set -euo pipefail
HOST=$1 PLUGINS=$2 SHARED=$3 COMPARE=$4
G="$SHARED/goldens/lora"
DIR=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$DIR/serve.log" ] && tail -5 "$DIR/serve.log" >&2; exit 1; }

mkdir -p "$DIR/models/checkpoints" "$DIR/models/loras"
cp -r --no-preserve=mode "$SHARED/goldens/models/tiny_sdxl" "$DIR/models/checkpoints/tiny"
for f in kohya_lora kohya_lora_sgm_names diffusers_lora diffusers_lora_peft_keys; do
  cp --no-preserve=mode "$G/$f.safetensors" "$DIR/models/loras/"
done
# A LoRA made for another base model: kohya names of this UNet, a 768-wide cross-attention (SD 1.5).
python3 - "$DIR/models/loras/sd15_shaped.safetensors" "$DIR/models/loras/not_a_lora.safetensors" <<'PY'
import json, struct, sys
def write(path, tensors):
    header, offset, blobs = {}, 0, b""
    for name, shape in tensors.items():
        n = 4
        for d in shape: n *= d
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + n]}
        blobs += b"\0" * n; offset += n
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    open(path, "wb").write(struct.pack("<Q", len(text)) + text + blobs)
m = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
write(sys.argv[1], {m + ".lora_down.weight": [4, 768], m + ".lora_up.weight": [64, 4], m + ".alpha": []})
write(sys.argv[2], {"model.diffusion_model.conv_in.weight": [4, 4, 3, 3]})
PY

start_host() {  # $1: the plugins.enabled object, $2: on_disabled_feature
  cat > "$DIR/host.json" <<JSON
{"pipe_name": "$DIR/host.sock", "models_root": "$DIR/models", "output_root": "$DIR/out",
 "plugins": {"dir": "$PLUGINS", "enabled": $1}, "on_disabled_feature": "$2",
 "limits": {"min_width": 8, "min_height": 8}, "queue": {"progress_interval_ms": 0}, "threads": 1,
 "log_level": "warn"}
JSON
  rm -f "$DIR/host.sock"
  "$HOST" serve --config "$DIR/host.json" 2> "$DIR/serve.log" &
  SERVER=$!
  for _ in $(seq 200); do [ -S "$DIR/host.sock" ] && break; sleep 0.05; done
  [ -S "$DIR/host.sock" ] || fail "the host did not start"
}
stop_host() {
  "$HOST" send --pipe "$DIR/host.sock" --message shutdown > /dev/null
  wait $SERVER || fail "serve exited non-zero"
  SERVER=
}

N=0
# send NAME PROMPT LORA_JSON -> the response line in $DIR/NAME.out (exit status of send kept)
send() {
  N=$((N + 1))
  cat > "$DIR/req.json" <<JSON
{"prompt": "$2", "models": {"base": "tiny"},
 "hyperparameters": {"num_inference_steps": 3, "guidance_scale": 5.0, "seed": 0},
 "dimensions": {"width": 64, "height": 64}, "scheduler": "EulerDiscreteScheduler",
 "lora": $3, "output": {"format": "png", "save_path": "$1.png"}}
JSON
  "$HOST" send --pipe "$DIR/host.sock" "$DIR/req.json" > "$DIR/$1.out" || true
  tail -1 "$DIR/$1.out" > "$DIR/$1.response"
}
field() {  # field FILE PYTHON-EXPR-ON-r
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print($2)" "$1"
}
expect_image() {  # expect_image NAME GOLDEN.png MAXDIFF
  [ "$(field "$DIR/$1.response" 'r["success"]')" = True ] || fail "$1: $(cat "$DIR/$1.response")"
  "$COMPARE" "$DIR/out/$1.png" "$G/$2" "$3" > "$DIR/$1.cmp" || fail "$1 differs from $2: $(cat "$DIR/$1.cmp")"
  echo "$1: $(cat "$DIR/$1.cmp")"
}
expect_error() {  # expect_error NAME CODE FIELD
  [ "$(field "$DIR/$1.response" 'r["success"]')" = False ] || fail "$1 should have failed"
  [ "$(field "$DIR/$1.response" 'r["error_code"]')" = "$2" ] || fail "$1: $(cat "$DIR/$1.response")"
  [ "$(field "$DIR/$1.response" 'r.get("field","")')" = "$3" ] || fail "$1: field: $(cat "$DIR/$1.response")"
  echo "$1: $2 on $3: $(field "$DIR/$1.response" 'r["error"]')"
}

start_host '{"sdxl": true, "schedulers": true, "lora": true}' error
CAT="a photo of a cat"
send plain "$CAT" null
expect_image plain pipeline_no_lora.png 1
send kohya "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.8}]}'
expect_image kohya pipeline_kohya_lora_w0.8.png 1
grep -q '"stages":\["encode_prompt","prepare_latents","denoise","vae_decode","lora_info"\]' "$DIR/kohya.response" \
  || fail "unexpected plan: $(cat "$DIR/kohya.response")"
hash=$(field "$DIR/kohya.response" 'r["data"]["generated_images"][0]["metadata"]["loras"][0]["hash"]')
[ ${#hash} = 12 ] || fail "no 12-digit LoRA hash in the metadata: $(cat "$DIR/kohya.response")"
grep -a -q "Lora hashes: \"kohya_lora: $hash\"" "$DIR/out/kohya.png" || fail "the PNG parameters chunk lacks Lora hashes"
send sgm "$CAT" '{"models": [{"name": "kohya_lora_sgm_names.safetensors", "weight": 0.8}]}'
expect_image sgm pipeline_kohya_lora_w0.8.png 1
send diffusers "$CAT" '{"models": [{"name": "diffusers_lora", "weight": 0.8}]}'
expect_image diffusers pipeline_diffusers_lora_w0.8.png 1
send peft "$CAT" '{"models": [{"name": "diffusers_lora_peft_keys", "weight": 0.8}]}'
expect_image peft pipeline_diffusers_lora_w0.8.png 1
send two "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.5}, {"name": "diffusers_lora", "weight": 1.0}]}'
expect_image two pipeline_two_loras_kohya0.5_diffusers1.0.png 1
send again "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.8}]}'   # a cached patched set
expect_image again pipeline_kohya_lora_w0.8.png 1
"$COMPARE" "$DIR/out/kohya.png" "$DIR/out/again.png" 0 > /dev/null || fail "the cached set gave another image"
send plain_after "$CAT" null
expect_image plain_after pipeline_no_lora.png 1
"$COMPARE" "$DIR/out/plain.png" "$DIR/out/plain_after.png" 0 > /dev/null || fail "a plain job after LoRA jobs differs from the first plain job"
send tag "$CAT <lora:kohya_lora:0.8>" null
expect_image tag pipeline_kohya_lora_w0.8.png 1
send zero "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0}]}'
"$COMPARE" "$DIR/out/plain.png" "$DIR/out/zero.png" 0 > /dev/null || fail "weight 0 changed the image"

send missing "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.8}, {"name": "nope", "weight": 1}]}'
expect_error missing MODEL_NOT_FOUND 'data.lora.models[1].name'
send wrong_base "$CAT" '{"models": [{"name": "diffusers_lora", "weight": 1}, {"name": "sd15_shaped", "weight": 1}]}'
expect_error wrong_base VALIDATION_ERROR 'data.lora.models[1].name'
field "$DIR/wrong_base.response" 'r["error"]' | grep -q "matched" || fail "the error does not say how many matched"
send not_lora "$CAT" '{"models": [{"name": "not_a_lora", "weight": 1}]}'
expect_error not_lora VALIDATION_ERROR 'data.lora.models[0].name'
send escape "$CAT" '{"models": [{"name": "../checkpoints/tiny", "weight": 1}]}'
expect_error escape VALIDATION_ERROR 'data.lora.models[0].name'
send plain_after_bad "$CAT" null
"$COMPARE" "$DIR/out/plain.png" "$DIR/out/plain_after_bad.png" 0 > /dev/null || fail "a failed LoRA left a trace"
echo "plain after failed LoRAs: identical to the first plain image"
stop_host

# The plugin off: LoRA requests are FEATURE_DISABLED (or run without it in warn mode).
start_host '{"sdxl": true, "schedulers": true, "lora": false}' error
send off "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.8}]}'
expect_error off FEATURE_DISABLED 'data.lora.enabled'
send off_plain "$CAT" null
expect_image off_plain pipeline_no_lora.png 1
stop_host
start_host '{"sdxl": true, "schedulers": true, "lora": false}' warn
send warn "$CAT" '{"models": [{"name": "kohya_lora", "weight": 0.8}]}'
expect_image warn pipeline_no_lora.png 1
field "$DIR/warn.response" 'r["warnings"]' | grep -q "lora" || fail "warn mode gave no warning"
stop_host
echo "test_lora_socket: ok"
