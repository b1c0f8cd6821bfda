// Follows llama.cpp's LLM_ARCH_QWEN2 graph: the llama layer plus biases on q, k and v, RoPE in
// NEOX style (halves, not adjacent pairs: Qwen's weights are not permuted by the converter), and
// usually a separate output matrix. LLM_ARCH_QWEN3 drops the biases and instead RMS-normalizes q
// and k per head before RoPE, as Gemma 3 does.

enum Qwen2 {
    static func load(gguf: GGUFFile, backend: Backend, architecture: String) throws -> (ModelConfig, TransformerWeights) {
        try load(config: ModelConfig(gguf: gguf, architecture: architecture, ropeStyle: .neox), gguf: gguf, backend: backend)
    }

    /// The qwen2/qwen3 decoder for `config` (QwenMoE.swift passes one with experts).
    static func load(config: ModelConfig, gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        let architecture = config.architecture
        let loader = WeightLoader(gguf: gguf, backend: backend)
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let q = config.heads * config.headDim, kv = config.kvHeads * config.headDim
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            var layer = try loader.standardLayer(i, config)
            if architecture.hasPrefix("qwen3") {
                layer.qNorm = try loader.vector(loader.layer(i, "attn_q_norm"), width: config.headDim)
                layer.kNorm = try loader.vector(loader.layer(i, "attn_k_norm"), width: config.headDim)
            } else {
                layer.qBias = try loader.bias(i, "attn_q", width: q)
                layer.kBias = try loader.bias(i, "attn_k", width: kv)
                layer.vBias = try loader.bias(i, "attn_v", width: kv)
            }
            return layer
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}
