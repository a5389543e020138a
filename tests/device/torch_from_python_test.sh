#!/usr/bin/env bash
# cmake/SdxlHostTorch.cmake's PyTorch-from-Python path, checked without a pip PyTorch: a stand-in
# "python" answers the three questions the configure step asks torch (cmake_prefix_path, the C++
# ABI, the version) with a prefix that leads to Debian's libtorch through a symbolic link. With
# ABI 1 the project configures against the Torch found there (and says so); with ABI 0 the
# configure stops with the ABI message.
#   torch_from_python_test.sh SOURCE_DIR
set -euo pipefail
SOURCE=$1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Debian's package files compute their prefix from their own place (the libraries three folders
# up, the headers four), so the stand-in prefix is a tree of links shaped like /usr: a Torch found
# there can only have come through the prefix the Python gave.
debian_config=$(find /usr/lib -path '*/cmake/Torch/TorchConfig.cmake' 2>/dev/null | head -1)
[ -n "$debian_config" ] || { echo "no Debian TorchConfig.cmake (libtorch-dev)"; exit 1; }
library_dir=$(dirname "$(dirname "$(dirname "$debian_config")")")  # /usr/lib/x86_64-linux-gnu
mkdir -p "$WORK/torch/lib"
ln -s "$library_dir" "$WORK/torch/lib/$(basename "$library_dir")"
ln -s /usr/include "$WORK/torch/include"
TORCH_CMAKE=$WORK/torch/lib/$(basename "$library_dir")/cmake

stand_in_python() {  # $1 = the ABI it reports
  printf '#!/bin/sh\nprintf "%%s\\n%%s\\n%%s\\n" "%s" "%s" "2.99.0+stand-in"\n' "$TORCH_CMAKE" "$1" \
    > "$WORK/python-abi$1"
  chmod +x "$WORK/python-abi$1"
}
configure() {
  cmake -S "$SOURCE" -B "$WORK/build-$1" -G Ninja -DSDXLHOST_TORCH_FROM_PYTHON=ON -DSDXLHOST_PYTHON="$WORK/python-abi$1" \
    -DSDXLHOST_BUILD_TESTS=OFF -DSDXLHOST_BUILD_BENCH=OFF -DSDXLHOST_BUILD_DOTNET=OFF > "$WORK/configure-$1.log" 2>&1
}
fail() { echo "FAIL: $*"; cat "$WORK"/configure-*.log; exit 1; }

stand_in_python 1
configure 1 || fail "configure with a C++11-ABI PyTorch failed"
grep -qF "PyTorch 2.99.0+stand-in from $WORK/python-abi1 ($TORCH_CMAKE), C++11 ABI" "$WORK/configure-1.log" ||
  fail "the configure log does not name the Python's PyTorch"
grep -qxF "Torch_DIR:PATH=$TORCH_CMAKE/Torch" "$WORK/build-1/CMakeCache.txt" ||
  fail "Torch was not found under the prefix the Python gave ($(grep ^Torch_DIR "$WORK/build-1/CMakeCache.txt"))"
grep -q "sdxl-host: libtorch .*, CUDA: OFF" "$WORK/configure-1.log" || fail "no CUDA line"
echo "ok: configured against the Python's PyTorch prefix"

stand_in_python 0
if configure 0; then fail "configure with an old-ABI PyTorch succeeded"; fi
grep -q "_GLIBCXX_USE_CXX11_ABI=0" "$WORK/configure-0.log" || fail "no ABI message"
echo "ok: an old-ABI PyTorch is refused"
