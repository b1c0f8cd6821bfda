/// A loaded model: its file, hyperparameters, tokenizer and device-resident weights.
public final class Model {
    public let gguf: GGUFFile
    public let config: ModelConfig
    public let weights: TransformerWeights
    public let backend: Backend
    public let tokenizer: Tokenizer

    init(gguf: GGUFFile, config: ModelConfig, weights: TransformerWeights, backend: Backend, tokenizer: Tokenizer) {
        self.gguf = gguf
        self.config = config
        self.weights = weights
        self.backend = backend
        self.tokenizer = tokenizer
    }

    /// Opens `path`, checks that `backend` can run every tensor, and uploads the weights.
    public static func load(path: String, backend: Backend) throws -> Model {
        try load(gguf: GGUFFile(path: path), backend: backend)
    }

    public static func load(gguf: GGUFFile, backend: Backend) throws -> Model {
        let architecture = try gguf.string("general.architecture")
        guard ModelLoader.supportedArchitectures.contains(architecture) else {
            throw ModelError.unsupportedArchitecture(architecture)
        }
        // The tokenizer comes before the weights: it is cheap, and a bad vocabulary should fail
        // before megabytes of weights are uploaded.
        let tokenizer = try Tokenizer(gguf: gguf)
        let (config, weights) = try ModelLoader.load(architecture: architecture, gguf: gguf, backend: backend)
        return Model(gguf: gguf, config: config, weights: weights, backend: backend, tokenizer: tokenizer)
    }

    /// Parameters (weight elements) in the file.
    public var parameterCount: Int { gguf.tensors.reduce(0) { $0 + $1.elementCount } }
    /// Bytes of tensor data in the file.
    public var weightBytes: Int { gguf.tensors.reduce(0) { $0 + $1.byteCount } }
}

/// Maps `general.architecture` to the file that knows its tensors.
public enum ModelLoader {
    public static let supportedArchitectures: Set<String> = ["llama", "qwen2", "qwen3", "gemma2", "gemma3", "qwen2moe", "qwen3moe", "olmoe", "gpt2", "deepseek2"]

    static func load(architecture: String, gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        switch architecture {
        case "llama": return try Llama.load(gguf: gguf, backend: backend)
        case "qwen2", "qwen3": return try Qwen2.load(gguf: gguf, backend: backend, architecture: architecture)
        case "gemma2": return try Gemma2.load(gguf: gguf, backend: backend)
        case "gemma3": return try Gemma3.load(gguf: gguf, backend: backend)
        case "qwen2moe", "qwen3moe": return try QwenMoE.load(gguf: gguf, backend: backend, architecture: architecture)
        case "olmoe": return try OLMoE.load(gguf: gguf, backend: backend)
        case "gpt2": return try GPT2.load(gguf: gguf, backend: backend)
        case "deepseek2": return try DeepSeek2.load(gguf: gguf, backend: backend)
        default: throw ModelError.unsupportedArchitecture(architecture)
        }
    }
}
