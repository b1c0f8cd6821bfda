import ArgumentParser
import BackendCPU
import BackendVulkan
import Foundation
import LLM

enum BackendChoice: String, ExpressibleByArgument, CaseIterable {
    case cpu, opencl, vulkan
}

/// How the CPU backend feeds activations to quantized matmuls: int8 blocks with integer dots, as
/// llama.cpp does (its rounding, and its speed; the default), or f32 (the exact oracle).
enum CPUActivations: String, ExpressibleByArgument, CaseIterable {
    case f32, int8
}

/// Options every subcommand that runs the model shares.
struct EngineOptions: ParsableArguments {
    @Option(help: "Compute backend: \(BackendChoice.allCases.map(\.rawValue).joined(separator: ", ")).")
    var backend: BackendChoice = .cpu

    @Option(parsing: .unconditional, help: "Device index for GPU backends (see `llm-gpu devices`).")
    var device: Int?

    @Option(parsing: .unconditional, help: "CPU threads (default: all cores).")
    var threads: Int?

    @Option(help: "CPU activations for quantized matmuls: int8 (8-bit blocks and integer dots, as llama.cpp; fast) or f32 (exact: the oracle the GPU backends are tested against).")
    var cpuActivations: CPUActivations = .int8

    @Option(parsing: .unconditional, help: "Context length in tokens: the KV cache capacity (default: min(model's, 4096)).")
    var context: Int?

    @Flag(help: "Time every op by kind and print the table to stderr: device timestamps on OpenCL and Vulkan, else the host clock with each op synchronized.")
    var profile = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
        if let context, context < 1 { throw ValidationError("--context must be at least 1, got \(context)") }
        if let device, device < 0 { throw ValidationError("--device must be 0 or more, got \(device)") }
        if backend == .cpu, device != nil { throw ValidationError("--device applies to GPU backends, not --backend cpu") }
    }

    /// `--threads` (default: all cores), clamped to the cores this process may use: more threads
    /// than cores only contend.
    var cpuThreads: Int {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return min(threads ?? cores, cores)
    }

    func makeBackend() throws -> Backend {
        switch backend {
        case .cpu:
            if let threads, threads > cpuThreads {
                printError("note: --threads \(threads) is more than the \(cpuThreads) cores here; using \(cpuThreads)")
            }
            return CPUBackend(threads: cpuThreads, int8Activations: cpuActivations == .int8)
        case .opencl:
            // Errors (no platform, no such device, too little memory) propagate: never a CPU fallback.
            return try makeOpenCLBackend(device: device)
        case .vulkan:
            // Errors (no driver, no such device, allocation over the device's limits) propagate: never a CPU fallback.
            return try VulkanBackend(deviceIndex: device)
        }
    }

    /// Loads the model and opens a session with the requested context.
    func open(modelPath: String) throws -> (Model, InferenceSession) {
        let model = try loadModel(path: modelPath)
        let length = contextLength(for: model)
        let session = try InferenceSession(model: model, contextLength: length)
        warnIfBeyondTrainedContext(length, model: model)
        return (model, session)
    }

    /// Loads the model onto the chosen backend (profiled with `--profile`), with no KV cache.
    func loadModel(path: String) throws -> Model {
        let backend = try makeBackend()
        return try Model.load(path: path, backend: profile ? ProfilingBackend(backend) : backend)
    }

    /// `--context`, else min(the model's trained context, 4096).
    func contextLength(for model: Model) -> Int {
        context ?? min(model.config.trainedContext, 4096)
    }
}

/// A context past the model's trained length is allowed (RoPE extrapolates, quality degrades), with
/// one line on stderr, as llama.cpp warns: once the cache is allocated, so a refused one is one error line.
func warnIfBeyondTrainedContext(_ context: Int, model: Model) {
    let trained = model.config.trainedContext
    if context > trained {
        printError("warning: --context \(context) is beyond the \(trained) tokens the model was trained on; output may degrade past \(trained)")
    }
}

/// `--model`, defaulting to SmolLM2 in the user's cache.
struct ModelOption: ParsableArguments {
    @Option(help: "Path to a GGUF model (default: SmolLM2-135M-Instruct Q4_1 in ~/.cache/llm-gpu).")
    var model: String?

    func resolve() throws -> String {
        if let model {
            guard FileManager.default.fileExists(atPath: model) else { throw CLIError("model file not found: \(model)") }
            return model
        }
        let path = ModelCache.path(ModelCache.defaultModelFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw CLIError("the default model is not in the cache (\(path)); fetch it with `scripts/fetch-model` or pass --model PATH")
        }
        return path
    }
}


/// A user-facing error from the CLI layer itself.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Prints `value` as one line of JSON to stdout.
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Writes to stderr (progress, timings), keeping stdout for the text or JSON.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}
