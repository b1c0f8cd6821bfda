#!/usr/bin/env bash
# Builds llama.cpp's benchmark tools (llama-bench, llama-batched-bench, llama-server, and
# llama-eval-callback, which prints every intermediate tensor) from the source package
# llama-cpp-python on PyPI, which vendors llama.cpp, into Benchmarks/.llama.cpp (ignored by git;
# nothing of it is committed), or into $LLAMA_CPP_OUT.
#
#     Benchmarks/build-llama-cpp.sh [cpu|vulkan|opencl]     (default cpu; prints the bin folder)
#
# One source tree, one build folder per backend: .llama.cpp/build (cpu), .llama.cpp/build-vulkan,
# .llama.cpp/build-opencl. LLAMA_CPP_SRC=path uses an already unpacked llama.cpp tree instead of
# downloading the sdist. The build runs under `nice` with at most $JOBS (default: all cores) jobs.
# Needs cmake and a C++ compiler (Debian: apt-get install cmake g++), and for
#   vulkan: libvulkan-dev glslc spirv-headers (the Vulkan loader, the shader compiler, SPIR-V headers)
#   opencl: ocl-icd-opencl-dev opencl-headers (the OpenCL loader and its C headers), python3
set -euo pipefail
cd "$(dirname "$0")"
BACKEND=${1:-cpu}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
OUT=${LLAMA_CPP_OUT:-.llama.cpp}
TOOLS=(llama-bench llama-batched-bench llama-server llama-eval-callback)
case "$BACKEND" in
    cpu) BUILD="$OUT/build"; FLAGS=() ;;
    vulkan)
        BUILD="$OUT/build-vulkan"; FLAGS=(-DGGML_VULKAN=ON)
        missing=()
        [ -e /usr/include/vulkan/vulkan.hpp ] || missing+=(libvulkan-dev)
        command -v glslc >/dev/null || missing+=(glslc)
        [ -e /usr/include/spirv/unified1/spirv.hpp ] || missing+=(spirv-headers)
        if [ ${#missing[@]} -gt 0 ]; then
            echo "build-llama-cpp: the vulkan build needs ${missing[*]} (apt-get install libvulkan-dev glslc spirv-headers)" >&2
            exit 1
        fi ;;
    opencl)
        BUILD="$OUT/build-opencl"; FLAGS=(-DGGML_OPENCL=ON)
        missing=()
        [ -e /usr/include/CL/cl.h ] || missing+=(opencl-headers)
        ls /usr/lib/*/libOpenCL.so >/dev/null 2>&1 || missing+=(ocl-icd-opencl-dev)
        command -v python3 >/dev/null || missing+=(python3)
        if [ ${#missing[@]} -gt 0 ]; then
            echo "build-llama-cpp: the opencl build needs ${missing[*]} (apt-get install ocl-icd-opencl-dev opencl-headers python3)" >&2
            exit 1
        fi ;;
    *) echo "usage: build-llama-cpp.sh [cpu|vulkan|opencl]" >&2; exit 2 ;;
esac
BIN="$BUILD/bin"
built=1
for t in "${TOOLS[@]}"; do [ -x "$BIN/$t" ] || built=0; done
if [ $built = 1 ]; then echo "$BIN"; exit 0; fi
command -v cmake >/dev/null || { echo "build-llama-cpp: needs cmake (apt-get install cmake)" >&2; exit 1; }
mkdir -p "$OUT"
if [ -n "${LLAMA_CPP_SRC:-}" ]; then
    SRC=$LLAMA_CPP_SRC
else
    SRC="$OUT/llama_cpp_python-$VERSION/vendor/llama.cpp"
    if [ ! -d "$SRC" ]; then
        # --no-binary for this one package only: with :all:, pip also builds its build
        # requirements (cmake among them) from source, which takes 20 minutes or more.
        python3 -m pip download --no-deps --no-binary llama-cpp-python -q -d "$OUT" "llama-cpp-python==$VERSION"
        tar xzf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$OUT"
    fi
fi
if [ "$BACKEND" = vulkan ] && ! grep -rqs 'struct LayerSettingEXT' /usr/include/vulkan/; then
    # Debian 12's Vulkan headers (1.3.239) predate VK_EXT_layer_settings (1.3.272), which
    # ggml_vk_instance_init() chains into vk::InstanceCreateInfo unconditionally; it only takes
    # effect with -DGGML_VULKAN_VALIDATE (ggml_vk_instance_layer_settings_available() is false
    # otherwise), so for older headers compile the same instance without it. In place, idempotent.
    python3 - "$SRC/ggml/src/ggml-vulkan/ggml-vulkan.cpp" <<'PY'
import sys
path = sys.argv[1]
text = open(path).read()
start = "    VkBool32 enable_best_practice = layer_settings;\n"
end = "    vk::InstanceCreateInfo instance_create_info(vk::InstanceCreateFlags{}, &app_info, layers, extensions, &layer_setting_info);\n"
if "VK_HEADER_VERSION >= 272 // build-llama-cpp.sh" not in text and start in text and end in text:
    text = text.replace(start, "#if VK_HEADER_VERSION >= 272 // build-llama-cpp.sh\n" + start, 1)
    text = text.replace(end, end + "#else\n" + end.replace(", &layer_setting_info", "") + "#endif\n", 1)
    open(path, "w").write(text)
    print("build-llama-cpp: patched ggml-vulkan.cpp to build without VK_EXT_layer_settings (Vulkan headers < 1.3.272)", file=sys.stderr)
PY
fi
# GGML_NATIVE: tuned for this CPU, as llm-gpu's CPU backend is (-target-cpu native).
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=ON "${FLAGS[@]}" >&2
nice -n 15 cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" --target "${TOOLS[@]}" >&2
echo "$BIN"
