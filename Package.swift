// swift-tools-version: 6.0
import PackageDescription

// Release-mode numerics matter: the CPU backend is the oracle *and* the fallback, so its
// loops are built with full optimisation even in debug builds, and for the build machine's
// own vector units (AVX2/AVX-512, NEON), as llama.cpp's GGML_NATIVE does: llm-gpu is built
// where it runs.
let optimised: [SwiftSetting] = [.unsafeFlags(["-Ounchecked", "-target-cpu", "native"])]

let package = Package(
    name: "llm-gpu",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "llm-gpu", targets: ["llm-gpu"]),
        .library(name: "LLM", targets: ["LLM"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // `llm-gpu serve`: HTTP, logs, Prometheus metrics, signal handling; the HTTP client for its tests.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // C module shim: CL/cl.h and vulkan/vulkan.h, plus small wrappers for what Swift cannot import.
        // libOpenCL and libvulkan are opened at run time (dlopen), so --backend cpu starts without them.
        .target(
            name: "CGPU",
            path: "Sources/CGPU",
            cSettings: [.define("CL_TARGET_OPENCL_VERSION", to: "120")],
            linkerSettings: [.linkedLibrary("dl")]
        ),
        // The engine: GGUF, tokenizers, models, runtime, decoding. No GPU API in it.
        .target(name: "LLM", path: "Sources/LLM", swiftSettings: optimised),
        // Integer-dot kernels for the CPU decode mat-vec (int8 activations, as llama.cpp): AVX2 /
        // AVX512-VNNI per function and picked at run time, so the binary stays portable.
        .target(name: "CPUKernels", path: "Sources/CPUKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // The CPU backend: the fallback and the oracle every GPU kernel is tested against.
        .target(name: "BackendCPU", dependencies: ["LLM", "CPUKernels"], path: "Sources/BackendCPU", swiftSettings: optimised),
        // OpenCL backend: host code over the CGPU shim; kernels from Kernels/opencl embedded at build time.
        .target(name: "BackendOpenCL", dependencies: ["LLM", "CGPU"], path: "Sources/BackendOpenCL", plugins: ["EmbedKernelsPlugin"]),
        // Embeds Kernels/opencl/*.cl into BackendOpenCL as Swift string literals at build time.
        .executableTarget(name: "EmbedKernels", path: "Sources/EmbedKernels"),
        .plugin(name: "EmbedKernelsPlugin", capability: .buildTool(), dependencies: ["EmbedKernels"], path: "Sources/EmbedKernelsPlugin"),
        // Vulkan backend: host code over the CGPU shim; GLSL from Kernels/vulkan compiled to SPIR-V at build time.
        .target(name: "BackendVulkan", dependencies: ["LLM", "CGPU"], path: "Sources/BackendVulkan", plugins: ["CompileShadersPlugin"]),
        // Compiles Kernels/vulkan with glslc and embeds the SPIR-V into BackendVulkan at build time.
        .executableTarget(name: "CompileShaders", path: "Sources/CompileShaders"),
        .plugin(name: "CompileShadersPlugin", capability: .buildTool(), dependencies: ["CompileShaders"], path: "Sources/CompileShadersPlugin"),
        // The OpenAI-compatible HTTP server over a `ServingEngine` (Sources/LLM/Serving): a library,
        // so tests start it in-process on an ephemeral loopback port.
        .target(
            name: "Server",
            dependencies: [
                "LLM",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Sources/Server"
        ),
        .executableTarget(
            name: "llm-gpu",
            dependencies: [
                "LLM", "BackendCPU", "BackendOpenCL", "BackendVulkan", "CGPU", "Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/llm-gpu"
        ),
        .testTarget(
            name: "LLMTests",
            dependencies: ["LLM", "BackendCPU", "CPUKernels", "CGPU", "llm-gpu"],
            path: "Tests/LLMTests",
            swiftSettings: optimised
        ),
        // `llm-gpu serve` over HTTP: a scripted fake engine for the protocol cases, the real one for
        // results; and the official `openai` Python client against the running server.
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "LLM", "BackendCPU", "Server", "llm-gpu",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/ServerTests",
            exclude: ["openai_client_check.py"]
        ),
        // Every op case on every backend against the CPU oracle.
        .testTarget(
            name: "BackendConformanceTests",
            dependencies: ["LLM", "BackendCPU", "BackendOpenCL", "BackendVulkan"],
            path: "Tests/BackendConformanceTests",
            swiftSettings: optimised
        ),
    ],
    swiftLanguageModes: [.v5]
)
