#!/usr/bin/env bash
# Two jobs with different LoRAs at the same time (label `lora`, issue 9 item 4): the real host
# with two executors runs a kohya-LoRA job and a diffusers-LoRA job on the tiny checkpoint at once.
# Their denoising loops must overlap in time (each job computes with its own patched copy of the
# UNet; the pipeline is never locked for a whole loop), and each image must be exactly the image
# the same request gives when it runs alone. A plain job run alongside a LoRA job equals the plain
# image run alone, and the pipeline's cache entry counts the patched copies it keeps.
set -euo pipefail
HOST=$1 PLUGINS=$2 SHARED=$3 COMPARE=$4
G="$SHARED/goldens/lora"
DIR=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$DIR/serve.log" ] && tail -5 "$DIR/serve.log" >&2; exit 1; }

mkdir -p "$DIR/models/checkpoints" "$DIR/models/loras"
cp -r --no-preserve=mode "$SHARED/goldens/models/tiny_sdxl" "$DIR/models/checkpoints/tiny"
cp --no-preserve=mode "$G/kohya_lora.safetensors" "$G/diffusers_lora.safetensors" "$DIR/models/loras/"

cat > "$DIR/host.json" <<JSON
{"pipe_name": "$DIR/host.sock", "models_root": "$DIR/models", "output_root": "$DIR/out",
 "plugins": {"dir": "$PLUGINS", "enabled": {"sdxl": true, "schedulers": true, "lora": true}},
 "limits": {"min_width": 8, "min_height": 8}, "queue": {"progress_interval_ms": 0, "executors": 2},
 "threads": 1, "log_level": "warn"}
JSON
"$HOST" serve --config "$DIR/host.json" 2> "$DIR/serve.log" &
SERVER=$!
for _ in $(seq 200); do [ -S "$DIR/host.sock" ] && break; sleep 0.05; done
[ -S "$DIR/host.sock" ] || fail "the host did not start"

# run.py SOCKET OUT_DIR NAME=LORA_JSON...: sends the requests at once on one connection each,
# records when every line arrives, checks every job succeeded, and prints the jobs' denoise
# windows; with two jobs it fails unless their denoising loops overlap.
cat > "$DIR/run.py" <<'PY'
import json, selectors, socket, sys, time
sock_path, out_dir, jobs = sys.argv[1], sys.argv[2], sys.argv[3:]
sel = selectors.DefaultSelector()
state = {}
for job in jobs:
    name, lora = job.split("=", 1)
    request = {"message_type": "inference_request", "request_id": name, "data": {
        "prompt": "a photo of a cat", "models": {"base": "tiny"},
        "hyperparameters": {"num_inference_steps": 12, "guidance_scale": 5.0, "seed": 0},
        "dimensions": {"width": 64, "height": 64}, "scheduler": "EulerDiscreteScheduler",
        "lora": json.loads(lora), "output": {"format": "png", "save_path": name + ".png"}}}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    state[s] = {"name": name, "buffer": b"", "denoise": [], "response": None}
    sel.register(s, selectors.EVENT_READ)
    s.sendall((json.dumps(request) + "\n").encode())
deadline = time.monotonic() + 240
while any(v["response"] is None for v in state.values()) and time.monotonic() < deadline:
    for key, _ in sel.select(timeout=1):
        job = state[key.fileobj]
        data = key.fileobj.recv(1 << 20)
        if not data:
            sys.exit(job["name"] + ": connection closed")
        job["buffer"] += data
        while b"\n" in job["buffer"]:
            line, job["buffer"] = job["buffer"].split(b"\n", 1)
            message, now = json.loads(line), time.monotonic()
            if message.get("message_type") == "progress" and message["data"].get("stage") == "denoise":
                job["denoise"].append(now)
            elif message.get("message_type") == "response":
                job["response"] = message
windows = []
for job in state.values():
    if job["response"] is None: sys.exit(job["name"] + ": no response")
    if not job["response"]["success"]: sys.exit(job["name"] + ": " + json.dumps(job["response"]))
    if len(job["denoise"]) < 2: sys.exit(job["name"] + ": too few denoise progress events")
    windows.append((job["name"], job["denoise"][0], job["denoise"][-1]))
t0 = min(w[1] for w in windows)
for name, start, end in windows:
    print("%s: denoise from %.3f s to %.3f s" % (name, start - t0, end - t0))
if len(windows) == 2:
    (_, a0, a1), (_, b0, b1) = windows
    overlap = min(a1, b1) - max(a0, b0)
    if overlap <= 0:
        sys.exit("the two jobs' denoising loops did not overlap (one waited %.3f s for the other)" % -overlap)
    print("denoising loops overlapped for %.3f s" % overlap)
PY
run() { python3 "$DIR/run.py" "$DIR/host.sock" "$DIR/out" "$@" || fail "run $*"; }
same() { "$COMPARE" "$DIR/out/$1.png" "$DIR/out/$2.png" 0 > /dev/null || fail "$1 differs from $2"; echo "$1 = $2"; }
differs() { ! "$COMPARE" "$DIR/out/$1.png" "$DIR/out/$2.png" 0 > /dev/null 2>&1 || fail "$1 equals $2"; }
cache_bytes() {  # what the model cache counts for the checkpoint (its patched copies included)
  "$HOST" send --pipe "$DIR/host.sock" --message status | tail -1 | python3 -c \
    'import json,sys; r=json.load(sys.stdin); print(sum(m["bytes"] for m in r["data"]["models"]["models"] if m["kind"] == "checkpoints"))'
}

KOHYA='{"models": [{"name": "kohya_lora", "weight": 0.8}]}'
DIFFUSERS='{"models": [{"name": "diffusers_lora", "weight": 0.8}]}'
run plain_alone=null
plain_bytes=$(cache_bytes)
run kohya_alone="$KOHYA"
run diffusers_alone="$DIFFUSERS"   # its UNet and text-encoder copies push kohya's out (patched_sets 2)
differs kohya_alone diffusers_alone
differs kohya_alone plain_alone
lora_bytes=$(cache_bytes)
[ "$lora_bytes" -gt "$plain_bytes" ] || fail "the cache does not count the patched copies ($plain_bytes -> $lora_bytes bytes)"
echo "cache bytes: $plain_bytes plain, $lora_bytes with two patched copies kept"

# Both at once: kohya's copies are built while the diffusers job runs with its cached ones.
run kohya_together="$KOHYA" diffusers_together="$DIFFUSERS"
same kohya_together kohya_alone
same diffusers_together diffusers_alone
# A plain job beside a LoRA job computes with the shared weights as loaded.
run plain_together=null kohya_beside="$KOHYA"
same plain_together plain_alone
same kohya_beside kohya_alone

"$HOST" send --pipe "$DIR/host.sock" --message shutdown > /dev/null
wait $SERVER || fail "serve exited non-zero"
SERVER=
echo "test_lora_concurrency: ok"
