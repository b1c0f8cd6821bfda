#!/usr/bin/env bash
# Builds llama.cpp's llama-bench (CPU backend) from the source package llama-cpp-python on PyPI,
# which vendors llama.cpp, into Benchmarks/.llama.cpp (ignored by git; nothing of it is committed).
# Needs cmake and a C++ compiler (Debian: apt-get install cmake g++).
set -euo pipefail
cd "$(dirname "$0")"
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
OUT=.llama.cpp
BIN="$OUT/build/bin/llama-bench"
if [ -x "$BIN" ]; then echo "$BIN"; exit 0; fi
command -v cmake >/dev/null || { echo "build-llama-cpp: needs cmake (apt-get install cmake)" >&2; exit 1; }
mkdir -p "$OUT"
python3 -m pip download --no-deps --no-binary :all: -q -d "$OUT" "llama-cpp-python==$VERSION"
tar xzf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$OUT"
SRC="$OUT/llama_cpp_python-$VERSION/vendor/llama.cpp"
# GGML_NATIVE: tuned for this CPU, as llm-gpu's CPU backend is (-target-cpu native).
cmake -S "$SRC" -B "$OUT/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$OUT/build" -j "$(nproc)" --target llama-bench >&2
echo "$BIN"
