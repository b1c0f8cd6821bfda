// Follows llama.cpp's LLM_ARCH_LLAMA graph (SmolLM2, Llama 2/3, Mistral without sliding window):
// pre-norm RMSNorm, RoPE in NORM style on q and k (the converter permutes q/k rows so that
// adjacent pairs rotate), GQA, SwiGLU FFN, no biases, output tied to the embedding when
// `output.weight` is absent.

enum Llama {
    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: "llama", ropeStyle: .normal)
        let loader = WeightLoader(gguf: gguf, backend: backend)

        // Llama 3.1+ stores per-pair RoPE frequency divisors.
        if let info = gguf.tensor("rope_freqs.weight") {
            guard info.type == .f32, info.elementCount == config.rope.dimensions / 2 else {
                throw ModelError.tensorShape(tensor: info.name, expected: [config.rope.dimensions / 2], found: info.dimensions)
            }
            config.rope.frequencyFactors = Quantization.dequantize(.f32, gguf.bytes(of: info), count: info.elementCount)
        }
        // Mistral v0.1 style: one window for every layer.
        if let window = gguf["llama.attention.sliding_window"]?.intValue, window > 0 {
            config.layerWindows = Array(repeating: window, count: config.layers)
        }

        // Mixtral: llama arch with experts, found by the router tensor. llama.cpp always
        // renormalizes the top-k softmax weights here (there is no metadata key for it).
        config.moe = try MoEConfig.read(gguf: gguf, architecture: "llama", dim: config.dim, normalizeByDefault: true)
        config.moe?.gating.normalize = true

        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let layers = try (0..<config.layers).map { try loader.standardLayer($0, config) }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}
