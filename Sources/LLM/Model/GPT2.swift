// Follows llama.cpp's LLM_ARCH_GPT2 graph (src/models/gpt2.cpp):
//   x = token_embd[t] + position_embd[pos]                 (learned positions, no RoPE)
//   per layer, pre-LN:  h = LayerNorm(x)·w + b             (ggml_norm, eps `attention.layer_norm_epsilon`)
//                       q|k|v = W_qkv·h + b_qkv            (fused `attn_qkv`: rows 0..<d q, d..<2d k, 2d..<3d v)
//                       x += W_o·attention(q, k, v) + b_o  (causal softmax, scale 1/√headDim)
//                       x += W_down·gelu(W_up·LayerNorm(x) + b_up) + b_down   (ungated, tanh GELU)
//   logits = output · LayerNorm(x)                         (`output.weight`, or token_embd when absent)
// The fused QKV matrix is sliced at load time into q, k and v: whole rows of blocks, so each
// slice computes exactly the outputs the fused matmul would.

enum GPT2 {
    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: "gpt2", ropeStyle: .normal,
                                     normEpsilonKey: "attention.layer_norm_epsilon")
        config.normalization = .layer
        config.positionEncoding = .learned
        config.ffnActivation = .gelu

        let loader = WeightLoader(gguf: gguf, backend: backend)
        let dim = config.dim, q = config.heads * config.headDim, kv = config.kvHeads * config.headDim
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        // llama.cpp requires exactly one row per trained position.
        let positions = try loader.matrix("position_embd.weight", rows: config.trainedContext, columns: dim, op: BackendOp.embedding)
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            let qkv = try loader.rowSlices(loader.layer(i, "attn_qkv"), rows: [q, kv, kv], columns: dim)
            let qkvBias = try loader.vectorSlices("blk.\(i).attn_qkv.bias", widths: [q, kv, kv])
            var layer = LayerWeights(
                attentionNorm: try loader.vector(loader.layer(i, "attn_norm"), width: dim),
                wq: qkv[0], wk: qkv[1], wv: qkv[2],
                wo: try loader.matrix(loader.layer(i, "attn_output"), rows: dim, columns: q),
                ffnNorm: try loader.vector(loader.layer(i, "ffn_norm"), width: dim),
                ffnGate: nil,
                ffnUp: try loader.matrix(loader.layer(i, "ffn_up"), rows: config.ffnDim, columns: dim),
                ffnDown: try loader.matrix(loader.layer(i, "ffn_down"), rows: dim, columns: config.ffnDim))
            layer.qBias = qkvBias[0]
            layer.kBias = qkvBias[1]
            layer.vBias = qkvBias[2]
            layer.attentionNormBias = try loader.bias(i, "attn_norm", width: dim)
            layer.ffnNormBias = try loader.bias(i, "ffn_norm", width: dim)
            layer.oBias = try loader.bias(i, "attn_output", width: dim)
            layer.ffnUpBias = try loader.bias(i, "ffn_up", width: config.ffnDim)
            layer.ffnDownBias = try loader.bias(i, "ffn_down", width: dim)
            return layer
        }
        var weights = TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output)
        weights.outputNormBias = try loader.vector("output_norm.bias", width: dim)
        weights.positionEmbedding = positions
        return (config, weights)
    }
}
