#!/usr/bin/env bash
# The sdxl-host command line end to end: plugins, generate, serve in the background, send
# (progress + response, exit codes), SIGHUP reload, graceful stop, socket removed.
set -euo pipefail
HOST=$1
PLUGINS=$2
DIR=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
SERVER=
fail() { echo "FAIL: $*" >&2; exit 1; }

cat > "$DIR/host.json" <<JSON
{"pipe_name": "$DIR/host.sock", "plugins": {"dir": "$PLUGINS"}, "output_root": "$DIR/out",
 "models_root": "$DIR/models", "limits": {"min_width": 8, "min_height": 8}, "log_level": "warn"}
JSON
cat > "$DIR/request.json" <<JSON
{"prompt": "cli", "dimensions": {"width": 16, "height": 16},
 "hyperparameters": {"num_inference_steps": 3, "seed": 5}, "output": {"save_path": "cli.png"}}
JSON

"$HOST" plugins --config "$DIR/host.json" --json > "$DIR/plugins.json" 2>/dev/null
grep -q '"test_generate"' "$DIR/plugins.json" || fail "plugins does not list test_generate"
grep -q '"failed"' "$DIR/plugins.json" || fail "plugins does not show failed plugins"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$DIR/plugins.json" || fail "plugins --json is not JSON alone"
# Without --json: a table on stdout (header, one row per plugin), nothing JSON.
"$HOST" plugins --config "$DIR/host.json" > "$DIR/plugins.txt" 2>/dev/null
head -1 "$DIR/plugins.txt" | grep -q '^NAME  *STATE  *VERSION  *FILE / REASON$' || fail "no table header: $(head -3 "$DIR/plugins.txt")"
grep -Eq '^test_generate +loaded ' "$DIR/plugins.txt" || fail "no loaded row for test_generate: $(cat "$DIR/plugins.txt")"
grep -Eq ' failed .*\(' "$DIR/plugins.txt" || fail "a failed plugin's row has no reason: $(cat "$DIR/plugins.txt")"
if grep -q '^[[{]' "$DIR/plugins.txt"; then fail "JSON on stdout without --json"; fi

# A device this build or machine cannot use is refused at start, naming the key (cuda:99: no
# machine has it, so this holds for CPU-only and CUDA builds alike).
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["device"]="cuda:99"; json.dump(c, open(sys.argv[2],"w"))' \
  "$DIR/host.json" "$DIR/cuda.json"
if "$HOST" serve --config "$DIR/cuda.json" > /dev/null 2> "$DIR/cuda.log"; then fail "device cuda:99 was accepted"; fi
grep -q "device 'cuda:99'" "$DIR/cuda.log" || fail "the device error does not say what: $(cat "$DIR/cuda.log")"
grep -q "(VALIDATION_ERROR)" "$DIR/cuda.log" || fail "the device error is not a validation error: $(cat "$DIR/cuda.log")"

"$HOST" generate --config "$DIR/host.json" "$DIR/request.json" > "$DIR/generate.json" 2>/dev/null \
  || fail "generate failed: $(cat "$DIR/generate.json")"
[ -f "$DIR/out/cli.png" ] || fail "generate wrote no image"
"$HOST" generate --config "$DIR/host.json" --prompt "x" --width 12 > /dev/null 2>&1 && fail "bad width accepted"

# --stdio: lines in on stdin, answers on stdout; closing stdin finishes the queued work, then exits.
{ echo '{"message_type":"ping","request_id":"s1"}'
  echo '{"message_type":"inference_request","request_id":"s2","data":{"prompt":"stdio","width":8,"height":8,"num_inference_steps":2}}'
} | "$HOST" serve --config "$DIR/host.json" --stdio > "$DIR/stdio.out" 2> "$DIR/stdio.log" || fail "serve --stdio failed"
grep -q '"request_id":"s1","success":true' "$DIR/stdio.out" || fail "no ping answer on stdout: $(cat "$DIR/stdio.out")"
grep -q '"request_id":"s2","success":true' "$DIR/stdio.out" || fail "queued job not finished at stdin end: $(cat "$DIR/stdio.out")"
grep -vq '^{' "$DIR/stdio.out" && fail "stdout has something other than protocol lines"
# --stdio shut down while more input keeps arriving: the reader is stopped and joined before the
# host goes away; exit 0, no crash, no hang.
set +e
{ echo '{"message_type":"shutdown","request_id":"s3"}'
  yes '{"message_type":"ping","request_id":"flood"}'
} | timeout -s KILL 20 "$HOST" serve --config "$DIR/host.json" --stdio > "$DIR/flood.out" 2> "$DIR/flood.log"
FLOOD_STATUS=("${PIPESTATUS[@]}")
set -e
[ "${FLOOD_STATUS[1]}" -eq 0 ] || fail "serve --stdio under input after shutdown exited ${FLOOD_STATUS[1]}: $(tail -5 "$DIR/flood.log")"
grep -q '"request_id":"s3","success":true' "$DIR/flood.out" || fail "no shutdown answer on stdout"

"$HOST" serve --config "$DIR/host.json" 2> "$DIR/serve.log" &
SERVER=$!
for _ in $(seq 100); do [ -S "$DIR/host.sock" ] && break; sleep 0.05; done
[ -S "$DIR/host.sock" ] || fail "serve did not create the socket: $(cat "$DIR/serve.log")"

"$HOST" send --pipe "$DIR/host.sock" "$DIR/request.json" > "$DIR/send.out" || fail "send failed"
grep -q '"message_type":"progress"' "$DIR/send.out" || fail "send printed no progress"
grep -q '"success":true' "$DIR/send.out" || fail "send printed no success"
[ -f "$DIR/out/cli_1.png" ] || [ "$(ls "$DIR/out" | wc -l)" -ge 2 ] || fail "second image not written beside the first"
if "$HOST" send --pipe "$DIR/host.sock" --message inference_request --data '{"prompt":1}' > /dev/null; then
  fail "send exits 0 on an error response"
fi
# SIGHUP reloads: switching test_generate off makes generation FEATURE_DISABLED.
sed -i 's|"plugins": {"dir": "\([^"]*\)"}|"plugins": {"dir": "\1", "enabled": {"test_generate": false}}|' "$DIR/host.json"
grep -q '"test_generate": false' "$DIR/host.json" || fail "could not edit the config"
kill -HUP $SERVER
for _ in $(seq 50); do
  "$HOST" send --pipe "$DIR/host.sock" "$DIR/request.json" > "$DIR/hup.out" || break
  sleep 0.1
done
grep -q '"error_code":"FEATURE_DISABLED"' "$DIR/hup.out" || fail "SIGHUP did not reload: $(cat "$DIR/hup.out")"
kill -TERM $SERVER
wait $SERVER || fail "serve exited non-zero on SIGTERM"
SERVER=
[ ! -e "$DIR/host.sock" ] || fail "socket left behind"
echo "test_cli: ok"
