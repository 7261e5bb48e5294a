#!/usr/bin/env bash
# The peer: llama.cpp as vendored in llama-cpp-python (pinned in requirements.txt), compiled from
# source for this CPU (-DGGML_NATIVE=ON) into its own venv. Also builds llama-bench (an optional
# cross-check) and llama-quantize (bench/*/prepare.sh) from the very same build tree (same objects,
# same libllama/libggml).
# Takes ~20-30 min on 2 cores (a few more on an AMX host, see below). Idempotent. Holds /tmp/quanta-build.lock while compiling.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cache="${QUANTA_CACHE:-/root/.cache/quanta}"
venv="$cache/llamacpp-venv"
src="$cache/llamacpp-src"
version="$(sed -n 's/^llama-cpp-python==//p' "$here/requirements.txt")"
pkg="$src/llama_cpp_python-$version"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
fi

if ! "$venv/bin/python" -c "import llama_cpp, gguf, numpy; assert llama_cpp.__version__ == '$version'" 2>/dev/null; then
  mkdir -p "$src"
  if [ ! -d "$pkg" ]; then
    # The sdist (not a wheel): pip would build it anyway; unpacked here so that the build tree
    # (and llama-bench below) can be reused.
    "$venv/bin/pip" download -q --no-deps --no-binary :all: "llama-cpp-python==$version" -d "$src"
    tar -xzf "$src/llama_cpp_python-$version.tar.gz" -C "$src"
  fi
  flock /tmp/quanta-build.lock env CMAKE_ARGS="-DGGML_NATIVE=ON" \
    "$venv/bin/pip" install -v --no-cache-dir -C "build-dir=$src/build" "$pkg" \
      $(grep -v -e '^#' -e '^llama-cpp-python' "$here/requirements.txt") \
    > "$src/pip-install.log" 2>&1 || { tail -30 "$src/pip-install.log"; exit 1; }
fi

# llama-bench from the same build tree: reconfigure with the tools on (mtmd then comes from
# llama.cpp's own tools/ instead of llama-cpp-python's CMakeLists), build only that target.
if { [ ! -x "$src/build/bin/llama-bench" ] || [ ! -x "$src/build/bin/llama-quantize" ]; } && [ -d "$src/build" ]; then
  flock /tmp/quanta-build.lock bash -c "
    cmake -S '$pkg' -B '$src/build' -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_TOOLS_INSTALL=OFF > '$src/llama-bench-build.log' 2>&1 &&
    cmake --build '$src/build' --target llama-bench llama-quantize -j \$(nproc) >> '$src/llama-bench-build.log' 2>&1" \
    || echo "note: llama-bench / llama-quantize did not build (see $src/llama-bench-build.log); bench/quant/prepare.sh needs llama-quantize" >&2
fi
# On a CPU with AMX, ggml's AMX kernels built by Debian's GCC 12 die with SIGILL on the first
# quantized matmul (that compiler's _tile_loadconfig is declared as reading 8 bytes, so the stores
# that fill the 64-byte tile configuration are dropped). The CPU backend (libggml-cpu, the only
# library with AMX code) is rebuilt from the same sources with clang and replaces GCC's copy in the
# venv and next to llama-bench; the other libraries stay GCC's.
if grep -qw amx_int8 /proc/cpuinfo && command -v clang++ > /dev/null; then
  clang_build="$src/build-clang-cpu"
  lib="$clang_build/bin/libggml-cpu.so.0"
  if [ ! -f "$lib" ]; then
    flock /tmp/quanta-build.lock bash -c "
      CC=clang CXX=clang++ cmake -S '$pkg/vendor/llama.cpp' -B '$clang_build' -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_TESTS=OFF \
        -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF > '$src/clang-cpu-build.log' 2>&1 &&
      cmake --build '$clang_build' --target ggml-cpu -j \$(nproc) >> '$src/clang-cpu-build.log' 2>&1" \
      || { tail -20 "$src/clang-cpu-build.log"; exit 1; }
  fi
  for f in $(find "$venv" "$src/build/bin" -name 'libggml-cpu.so*' \( -type f -o -type l \)); do
    [ -L "$f" ] || cmp -s "$lib" "$f" || cp "$(readlink -f "$lib")" "$f"
  done
  echo "AMX host: libggml-cpu built with clang ($(clang++ --version | head -1))" >&2
fi
"$venv/bin/python" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
