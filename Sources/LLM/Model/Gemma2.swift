// Follows llama.cpp's LLM_ARCH_GEMMA2 graph (llm_build_gemma2_iswa). It is Gemma 3 without the
// per-head q/k norms, with
// - soft-capping of attention scores and of the final logits (`attn_logit_softcapping`,
//   `final_logit_softcapping`): x → cap · tanh(x / cap);
// - local and global layers alternating: even layers use the sliding window (swa pattern 2);
// - one RoPE base for both kinds of layer.
// As for Gemma 3, the converter has already added Gemma's +1 to the norm weights.

enum Gemma2 {
    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: "gemma2", ropeStyle: .neox)
        applyGemmaBasics(&config)
        let window = gguf["gemma2.attention.sliding_window"]?.intValue ?? 0
        config.layerWindows = (0..<config.layers).map { $0 % 2 == 0 ? window : 0 }

        let loader = WeightLoader(gguf: gguf, backend: backend)
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            var layer = try loader.standardLayer(i, config)
            try loadPostNorms(&layer, i, loader, config)
            return layer
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}
