#!/usr/bin/env bash
# A served host with metrics.listen on a free local port: /healthz and /readyz, real jobs (a tiny
# generation, a refused request, a ping), then /metrics holds what happened and passes
# `promtool check metrics`; the `metrics` message answers the same text over the pipe; unknown
# paths are 404, other methods 405; a host without checkpoints is not ready; a bad
# metrics.listen is refused at start naming the key.
set -euo pipefail
HOST=$1 PLUGINS=$2 MODELS=$3
DIR=$(mktemp -d)
SERVER=
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DIR"' EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$DIR/serve.log" ] && tail -20 "$DIR/serve.log" >&2; exit 1; }
command -v promtool > /dev/null || fail "promtool is missing (apt-get install prometheus; scripts/setup does)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# get PATH [METHOD] -> "<status>\n<body>"
get() {
  python3 - "$PORT" "$1" "${2:-GET}" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
c.request(sys.argv[3], sys.argv[2])
r = c.getresponse()
print(r.status); print(r.getheader("Content-Type")); sys.stdout.write(r.read().decode())
PY
}
start_host() {  # $1 models_root
  PORT=$(free_port)
  cat > "$DIR/host.json" <<JSON
{"pipe_name": "$DIR/host.sock", "models_root": "$1", "output_root": "$DIR/out",
 "plugins": {"dir": "$PLUGINS"}, "metrics": {"listen": "127.0.0.1:$PORT"}, "threads": 1,
 "limits": {"min_width": 8, "min_height": 8}}
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
send() { "$HOST" send --pipe "$DIR/host.sock" "$@" || true; }

start_host "$MODELS"
[ "$(get /healthz | head -1)" = 200 ] || fail "/healthz"
[ "$(get /readyz | head -1)" = 200 ] || fail "/readyz with the tiny model: $(get /readyz)"
[ "$(get /nope | head -1)" = 404 ] || fail "unknown path"
[ "$(get /metrics POST | head -1)" = 405 ] || fail "POST"

cat > "$DIR/gen.json" <<JSON
{"prompt": "a cat", "models": {"base": "tiny-sdxl"}, "dimensions": {"width": 64, "height": 64},
 "hyperparameters": {"num_inference_steps": 3, "seed": 1}, "output": {"return_base64": true}}
JSON
send "$DIR/gen.json" | tail -1 | grep -q '"success": *true' || fail "generation"
cat > "$DIR/bad.json" <<JSON
{"prompt": "a cat", "models": {"base": "tiny-sdxl"}, "dimensions": {"width": 12345, "height": 64}}
JSON
send "$DIR/bad.json" | tail -1 | grep -q VALIDATION_ERROR || fail "the bad request was not refused"
send --message ping > /dev/null

get /metrics > "$DIR/metrics.http"
[ "$(head -1 "$DIR/metrics.http")" = 200 ] || fail "/metrics status"
sed -n 2p "$DIR/metrics.http" | grep -q "text/plain; version=0.0.4" || fail "content type: $(sed -n 2p "$DIR/metrics.http")"
tail -n +3 "$DIR/metrics.http" > "$DIR/metrics.txt"
promtool check metrics < "$DIR/metrics.txt" || fail "promtool check metrics"
expect() {  # expect REGEX: a line of /metrics matches
  grep -Eq "$1" "$DIR/metrics.txt" || fail "no line matching '$1' in /metrics:
$(grep -v '^#' "$DIR/metrics.txt" | head -60)"
}
expect '^sdxlhost_responses_total\{kind="generation",code="OK"\} 1$'
expect '^sdxlhost_responses_total\{kind="inference_request",code="VALIDATION_ERROR"\} 1$'
expect '^sdxlhost_responses_total\{kind="ping",code="OK"\} 1$'
expect '^sdxlhost_job_duration_seconds_count\{kind="generation",outcome="ok"\} 1$'
expect '^sdxlhost_stage_duration_seconds_count\{stage="denoise"\} 1$'
expect '^sdxlhost_stage_duration_seconds_count\{stage="vae_decode"\} 1$'
expect '^sdxlhost_denoise_step_seconds_count [2-9]'
expect '^sdxlhost_plugin_state\{plugin="sdxl",state="loaded"\} 1$'
expect '^sdxlhost_model_cache_models 1$'
expect '^sdxlhost_model_cache_bytes [1-9]'
expect '^sdxlhost_resident_memory_bytes [1-9]'
expect '^sdxlhost_queue_depth 0$'
expect '^sdxlhost_ready 1$'

send --message metrics | tail -1 > "$DIR/message.json"
python3 - "$DIR/message.json" <<'PY' || fail "the metrics message"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["success"], r
assert r["data"]["content_type"].startswith("text/plain; version=0.0.4"), r["data"]
assert 'sdxlhost_responses_total{kind="generation",code="OK"} 1' in r["data"]["text"], r["data"]["text"][:500]
PY
stop_host

mkdir -p "$DIR/empty_models"
start_host "$DIR/empty_models"
[ "$(get /readyz | head -1)" = 503 ] || fail "/readyz without a checkpoint should be 503"
[ "$(get /healthz | head -1)" = 200 ] || fail "/healthz without a checkpoint is still healthy"
stop_host

cat > "$DIR/bad_listen.json" <<JSON
{"pipe_name": "$DIR/host2.sock", "metrics": {"listen": "localhost:99999"}}
JSON
if "$HOST" serve --config "$DIR/bad_listen.json" 2> "$DIR/bad.log"; then fail "a bad metrics.listen was accepted"; fi
grep -q "metrics.listen" "$DIR/bad.log" || fail "the error does not name metrics.listen: $(cat "$DIR/bad.log")"
echo "metrics: ok ($(grep -vc '^#' "$DIR/metrics.txt") samples)"
