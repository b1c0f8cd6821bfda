// Follows llama.cpp's LLM_ARCH_OLMOE graph (llm_build_olmoe): the llama layer with NEOX RoPE and
// RMSNorm on the whole q and k projections (`attn_q_norm` [heads · headDim], `attn_k_norm`
// [kvHeads · headDim]: over the full width, not per head as in qwen3/gemma3), no biases, an untied
// output, and every FFN a mixture of experts routed by softmax top-k without renormalization.

enum OLMoE {
    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: "olmoe", ropeStyle: .neox)
        guard let moe = try MoEConfig.read(gguf: gguf, architecture: "olmoe", dim: config.dim, normalizeByDefault: false) else {
            throw ModelError.invalidHyperparameter(key: "blk.0.ffn_gate_inp.weight", value: "missing (olmoe needs a router)")
        }
        config.moe = moe
        let loader = WeightLoader(gguf: gguf, backend: backend)
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            var layer = try loader.standardLayer(i, config)
            layer.qNorm = try loader.vector(loader.layer(i, "attn_q_norm"), width: config.heads * config.headDim)
            layer.kNorm = try loader.vector(loader.layer(i, "attn_k_norm"), width: config.kvHeads * config.headDim)
            return layer
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}
