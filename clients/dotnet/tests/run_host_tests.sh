#!/usr/bin/env bash
# The ctest entries of the C# client (label dotnet): starts a real sdxl-host with a temporary config
# (unique pipe name, plugins.dir = PLUGIN_DIR, models_root = $SDXLHOST_TEST_MODELS_ROOT or a
# temp folder, temp output_root, every progress step sent, one compute thread: the tiny models gain
# nothing from more, and on a loaded machine spinning threads made a 30-step job 25x slower), runs
# the NUnit tests against it,
# stops the host and removes the temp folder. $SDXLHOST_TEST_MODEL_COPIES ("DEST=SRC|DEST=SRC...", DEST
# relative to the temp models_root, e.g. "loras/test_lora.safetensors=/goldens/lora/kohya_lora.safetensors")
# copies models in first (copies, not links: the host refuses links that leave models_root).
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

"$host_bin" serve --config "$work/config.json" > "$work/host.log" 2>&1 &
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

status=0
SDXLHOST_PIPE_NAME="$pipe" SDXLHOST_MODELS_ROOT="$models_root" SDXLHOST_BIN="$host_bin" SDXLHOST_TEST_PLUGIN_DIR="$plugin_dir" \
  "$nunit_console" -nologo -noshadow -labels -xml="$work/results.xml" "$test_assembly" "$@" || status=$?

if [ "$status" != 0 ]; then
  echo "---- sdxl-host log (last 60 lines) ----"
  tail -n 60 "$work/host.log"
fi
stop_host
exit "$status"
