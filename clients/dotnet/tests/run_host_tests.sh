#!/usr/bin/env bash
# The ctest entries of the C# client (label dotnet): starts a real sdxl-host with a temporary config
# (unique pipe name, plugins.dir = PLUGIN_DIR, models_root = $SDXLHOST_TEST_MODELS_ROOT or a
# temp folder, temp output_root, every progress step sent, one compute thread: the tiny models gain
# nothing from more, and on a loaded machine spinning threads made a 30-step job 25x slower), runs
# the NUnit tests against it,
# stops the host and removes the temp folder. $SDXLHOST_TEST_MODEL_COPIES ("DEST=SRC|DEST=SRC...", DEST
# relative to the temp models_root, e.g. "loras/test_lora.safetensors=/goldens/lora/kohya_lora.safetensors")
# copies models in first (copies, not links: the host refuses links that leave models_root).
# $SDXLHOST_TEST_CLUSTER_WORKERS=N serves the pipe with a cluster instead (docs/scale-out.md): a
# private rabbitmq-server (own node, ports, epmd, data folder), a gateway on the pipe and N workers
# sharing models_root and output_root.
#
# usage: run_host_tests.sh HOST_BINARY PLUGIN_DIR NUNIT_CONSOLE TEST_ASSEMBLY [nunit args...]
set -euo pipefail

host_bin=$1 plugin_dir=$2 nunit_console=$3 test_assembly=$4
shift 4

for needed in "$host_bin" "$test_assembly"; do
  [ -e "$needed" ] || { echo "run_host_tests: missing $needed (build the default target first)" >&2; exit 1; }
done
[ -d "$plugin_dir" ] || { echo "run_host_tests: missing plugin folder $plugin_dir" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sdxlhost-dotnet.XXXXXX")
pipe="sdxlhost-dotnet-$$-$RANDOM"
socket="${TMPDIR:-/tmp}/CoreFxPipe_$pipe"
host_pid=""
worker_pids=()
broker_pid=""
rabbit=/usr/lib/rabbitmq/bin

stop_cluster() {
  for pid in "${worker_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${worker_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  worker_pids=()
  if [ -n "$broker_pid" ]; then
    (broker_env; "$rabbit/rabbitmqctl" -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1) || kill -KILL "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
    (broker_env; epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1) || true
    broker_pid=""
  fi
}

stop_host() {
  if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then
    kill -TERM "$host_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$host_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$host_pid" 2>/dev/null || true
    wait "$host_pid" 2>/dev/null || true
  fi
  host_pid=""
}
cleanup() {
  stop_host
  stop_cluster
  rm -rf "$work"
  rm -f "$socket"  # left behind only if the host had to be killed
}
trap cleanup EXIT

models_root="${SDXLHOST_TEST_MODELS_ROOT:-$work/models}"
mkdir -p "$models_root" "$work/output"
if [ -n "${SDXLHOST_TEST_MODEL_COPIES:-}" ]; then
  IFS='|' read -r -a copies <<< "$SDXLHOST_TEST_MODEL_COPIES"
  for copy in "${copies[@]}"; do
    dest=${copy%%=*} src=${copy#*=}
    [ -e "$src" ] || { echo "run_host_tests: missing model $src (for $dest)" >&2; exit 1; }
    mkdir -p "$(dirname "$models_root/$dest")"
    cp -r --no-preserve=mode "$src" "$models_root/$dest"
  done
fi
cat > "$work/config.json" <<EOF
{
  "pipe_name": "$pipe",
  "models_root": "$models_root",
  "output_root": "$work/output",
  "plugins": { "dir": "$plugin_dir" },
  "queue": { "progress_interval_ms": 0 },
  "threads": 1
}
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
broker_env() {
  export HOME="$work/broker" RABBITMQ_NODENAME="sdxldotnet$$@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$amqp_port" RABBITMQ_DIST_PORT="$dist_port" ERL_EPMD_PORT="$epmd_port" \
    RABBITMQ_MNESIA_BASE="$work/broker/mnesia" RABBITMQ_LOG_BASE="$work/broker/log" \
    RABBITMQ_CONFIG_FILE="$work/broker/rabbitmq" RABBITMQ_CONF_ENV_FILE="$work/broker/env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$work/broker/enabled_plugins" RABBITMQ_PID_FILE="$work/broker/pid"
}
# Adds a cluster section to the config ($1: role, $2: node name) on stdout.
cluster_config() {
  python3 - "$work/config.json" "$1" "$2" "$amqp_port" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["cluster"] = {"role": sys.argv[2], "node_name": sys.argv[3], "heartbeat_s": 0.5, "worker_timeout_s": 2,
                     "broker": "amqp://guest:guest@127.0.0.1:%s/" % sys.argv[4]}
print(json.dumps(config))
PY
}

workers=${SDXLHOST_TEST_CLUSTER_WORKERS:-0}
config_file="$work/config.json"
if [ "$workers" -gt 0 ]; then
  amqp_port=$(free_port) dist_port=$(free_port) epmd_port=$(free_port)
  mkdir -p "$work/broker/mnesia" "$work/broker/log"
  echo "[]." > "$work/broker/enabled_plugins"
  : > "$work/broker/env.conf"
  echo "log.console = false" > "$work/broker/rabbitmq.conf"
  (broker_env; exec "$rabbit/rabbitmq-server") > "$work/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 600); do (echo > "/dev/tcp/127.0.0.1/$amqp_port") 2>/dev/null && break; sleep 0.1; done
  for i in $(seq "$workers"); do
    cluster_config worker "worker-$i" > "$work/worker-$i.json"
    "$host_bin" serve --config "$work/worker-$i.json" > "$work/worker-$i.log" 2>&1 &
    worker_pids+=($!)
  done
  cluster_config gateway gateway > "$work/gateway.json"
  config_file="$work/gateway.json"
fi

"$host_bin" serve --config "$config_file" > "$work/host.log" 2>&1 &
host_pid=$!

for _ in $(seq 300); do
  [ -S "$socket" ] && break
  if ! kill -0 "$host_pid" 2>/dev/null; then
    echo "run_host_tests: sdxl-host exited before serving; its log:" >&2
    cat "$work/host.log" >&2
    exit 1
  fi
  sleep 0.1
done
[ -S "$socket" ] || { echo "run_host_tests: no socket $socket after 30 s; host log:" >&2; cat "$work/host.log" >&2; exit 1; }
if [ "$workers" -gt 0 ]; then  # serving once every worker heartbeats (a live worker, models or not)
  live=0
  for _ in $(seq 60); do
    live=$("$host_bin" send --pipe "$socket" --message status 2>/dev/null | tail -1 |
      python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["cluster"]["workers"]))' 2>/dev/null || echo 0)
    [ "$live" = "$workers" ] && break
    sleep 0.5
  done
  [ "$live" = "$workers" ] || { echo "run_host_tests: $live of $workers workers live; gateway log:" >&2; tail -30 "$work/host.log" >&2; exit 1; }
fi

status=0
SDXLHOST_PIPE_NAME="$pipe" SDXLHOST_MODELS_ROOT="$models_root" SDXLHOST_BIN="$host_bin" SDXLHOST_TEST_PLUGIN_DIR="$plugin_dir" \
  "$nunit_console" -nologo -noshadow -labels -xml="$work/results.xml" "$test_assembly" "$@" || status=$?

if [ "$status" != 0 ]; then
  echo "---- sdxl-host log (last 60 lines) ----"
  tail -n 60 "$work/host.log"
  for i in $(seq "$workers"); do echo "---- worker-$i log (last 20 lines) ----"; tail -n 20 "$work/worker-$i.log"; done
fi
stop_host
exit "$status"
