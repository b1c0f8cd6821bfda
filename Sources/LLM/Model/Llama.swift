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

        let dim = config.dim, q = config.heads * config.headDim, kv = config.kvHeads * config.headDim
        let embedding = try loader.matrix("token_embd.weight", rows: config.vocabularySize, columns: dim,
                                          op: BackendOp.embedding)
        var layers: [LayerWeights] = []
        for i in 0..<config.layers {
            layers.append(LayerWeights(
                attentionNorm: try loader.vector(loader.layer(i, "attn_norm"), width: dim),
                wq: try loader.matrix(loader.layer(i, "attn_q"), rows: q, columns: dim),
                wk: try loader.matrix(loader.layer(i, "attn_k"), rows: kv, columns: dim),
                wv: try loader.matrix(loader.layer(i, "attn_v"), rows: kv, columns: dim),
                wo: try loader.matrix(loader.layer(i, "attn_output"), rows: dim, columns: q),
                ffnNorm: try loader.vector(loader.layer(i, "ffn_norm"), width: dim),
                ffnGate: try loader.matrix(loader.layer(i, "ffn_gate"), rows: config.ffnDim, columns: dim),
                ffnUp: try loader.matrix(loader.layer(i, "ffn_up"), rows: config.ffnDim, columns: dim),
                ffnDown: try loader.matrix(loader.layer(i, "ffn_down"), rows: dim, columns: config.ffnDim)))
        }
        let outputNorm = try loader.vector("output_norm.weight", width: dim)
        let output: BackendWeight
        if gguf.tensor("output.weight") != nil {
            output = try loader.matrix("output.weight", rows: config.vocabularySize, columns: dim)
        } else {
            // Tied: the embedding table doubles as the output projection, so it must support matmul too.
            guard backend.supports(.matmul(embedding.type)) else {
                throw ModelError.unsupportedTensorType(tensor: "token_embd.weight", type: embedding.type, backend: backend.name)
            }
            output = embedding
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: outputNorm, output: output))
    }
}
