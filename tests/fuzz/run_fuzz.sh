#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz/ (clang-14 + libfuzzer-14-dev, ASan+UBSan).
#
#   tests/fuzz/run_fuzz.sh build [BUILD_DIR]              configure + build every target
#   tests/fuzz/run_fuzz.sh run TARGET SECONDS [BUILD_DIR]  fuzz TARGET for SECONDS, starting from
#                                                          tests/fuzz/corpus/TARGET (never modified:
#                                                          new inputs go to BUILD_DIR/fuzz/corpus/TARGET)
#
# ctest label `fuzz` runs `build` once and every target for a short time (FUZZ_SECONDS, 10 by
# default). A long run, e.g. one hour of the envelope parser:
#
#   tests/fuzz/run_fuzz.sh run envelope 3600 build
#
# Exits 77 (ctest: skipped) when clang++-14 or libFuzzer is not installed; a crash or sanitizer
# report exits 3 (a hang 4), leaving the input in BUILD_DIR/fuzz/crash-TARGET-*.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cxx="${FUZZ_CXX:-clang++-14}"
fuzzer_lib=$(ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a 2>/dev/null | head -1 || true)
if ! command -v "$cxx" >/dev/null || [ -z "$fuzzer_lib" ]; then
  echo "fuzz: $cxx or libFuzzer (libfuzzer-14-dev) not installed; skipped (scripts/setup installs them)"
  exit 77
fi
mode="${1:-}"
case "$mode" in
  build)
    out="${2:-$root/build}/fuzz"
    export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
    launcher=()
    command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
    [ -f "$out/build.ninja" ] || cmake -S "$here/project" -B "$out" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_CXX_COMPILER="$cxx" -DSDXLHOST_ROOT="$root" "${launcher[@]}" >/dev/null
    cmake --build "$out" -j "${JOBS:-2}"
    ;;
  run)
    target="$2"
    seconds="$3"
    out="${4:-$root/build}/fuzz"
    binary="$out/fuzz_$target"
    if [ ! -x "$binary" ]; then
      echo "fuzz: $binary was not built (missing dependency?); skipped"
      exit 77
    fi
    work="$out/corpus/$target"
    mkdir -p "$work"
    # Binary seeds are not kept in the repository: real files of that format are taken from
    # ../shared/goldens (the same data the parity tests read) into the working corpus.
    shared="${SDXLHOST_SHARED_DIR:-$root/../shared}/goldens"
    case "$target" in
      image_decode) golden_seeds=("$shared"/canny/img0_gray_64x64.png "$shared"/refiner/img2img_input.png) ;;
      safetensors) golden_seeds=("$shared"/upscaler/rrdbnet_x2_tiny.safetensors) ;;
      torch_file) golden_seeds=("$shared"/upscaler/rrdbnet_x2_tiny.pth "$shared"/upscaler/rrdbnet_x2_tiny_params_ema.pth) ;;
      *) golden_seeds=() ;;
    esac
    for seed in "${golden_seeds[@]}"; do
      [ -f "$seed" ] || { echo "fuzz: seed $seed is missing (../shared/goldens)"; exit 1; }
      cp "$seed" "$work/seed-$(basename "$seed")"
    done
    seeds="$here/corpus/$target"
    [ -d "$seeds" ] || seeds="$work"  # no text seeds for this target: the working corpus alone
    # -rss_limit_mb bounds memory; -timeout flags an input that takes over 10 s.
    status=0
    ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}" \
    UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}" \
      "$binary" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -error_exitcode=3 -timeout_exitcode=4 -print_final_stats=1 \
      -artifact_prefix="$out/crash-$target-" "$work" "$seeds" > "$out/$target.log" 2>&1 || status=$?
    grep -E "^(stat::|==[0-9]+==ERROR|SUMMARY|Done [0-9]+ runs)" "$out/$target.log" || true
    [ "$status" = 0 ] || tail -40 "$out/$target.log"
    runs=$(grep -Eo "stat::number_of_executed_units: [0-9]+" "$out/$target.log" | grep -Eo "[0-9]+$" || echo "?")
    echo "fuzz_$target: $runs executions in ${seconds}s (exit $status)"
    exit "$status"
    ;;
  *)
    sed -n '2,14p' "$0"
    exit 2
    ;;
esac
