import Foundation

// Follows llama.cpp's LLM_ARCH_GEMMA3 graph (llm_build_gemma3_iswa):
// - embeddings × √dim before the first layer;
// - RMSNorm on q and k per head (`attn_q_norm`, `attn_k_norm`) before NEOX RoPE;
// - norms after attention and after the FFN (`post_attention_norm`, `post_ffw_norm`) as well as before;
// - GeGLU FFN with the tanh GELU;
// - five local layers (sliding window from metadata, RoPE base 10 000) then one global layer
//   (RoPE base and scaling from metadata): layer l is global when (l + 1) % 6 == 0;
// - q·k scaled by 1/√key_length; output tied to the embedding.
// The GGUF converter already adds Gemma's +1 to the norm weights, so the norms are plain RMSNorm.

enum Gemma3 {
    /// Every sixth layer attends globally (llama.cpp: hparams.set_swa_pattern(6) for gemma3).
    static let globalEvery = 6
    /// RoPE base of the local layers (llama.cpp: rope_freq_base_train_swa = 10000 for gemma3).
    static let localRopeBase: Float = 10_000

    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: "gemma3", ropeStyle: .neox)
        applyGemmaBasics(&config)
        let window = gguf["gemma3.attention.sliding_window"]?.intValue ?? 0
        config.layerWindows = (0..<config.layers).map { ($0 + 1) % globalEvery == 0 ? 0 : window }
        var local = config.rope
        local.base = localRopeBase
        local.positionScale = 1
        config.localRope = local

        let loader = WeightLoader(gguf: gguf, backend: backend)
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            var layer = try loader.standardLayer(i, config)
            layer.qNorm = try loader.vector(loader.layer(i, "attn_q_norm"), width: config.headDim)
            layer.kNorm = try loader.vector(loader.layer(i, "attn_k_norm"), width: config.headDim)
            try loadPostNorms(&layer, i, loader, config)
            return layer
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}

/// What Gemma 2 and Gemma 3 share: GeGLU with the tanh GELU, embeddings × √dim, q·k scaled by
/// 1/√key_length, and norms after attention and after the FFN as well as before.
func applyGemmaBasics(_ config: inout ModelConfig) {
    config.ffnActivation = .geluTanh
    config.embeddingScale = Float(config.dim).squareRoot()
    config.attentionScale = 1 / Float(config.headDim).squareRoot()
}

func loadPostNorms(_ layer: inout LayerWeights, _ i: Int, _ loader: WeightLoader, _ config: ModelConfig) throws {
    layer.postAttentionNorm = try loader.vector(loader.layer(i, "post_attention_norm"), width: config.dim)
    layer.postFFNNorm = try loader.vector(loader.layer(i, "post_ffw_norm"), width: config.dim)
}
