// Follows llama.cpp's LLM_ARCH_DEEPSEEK2 graph (src/models/deepseek2.cpp, its MLA path), which also
// runs DeepSeek-V3 files:
//   h    = RMSNorm(x)·attn_norm
//   q    = W_q_b · (RMSNorm(W_q_a·h)·q_a_norm)      (q_lora_rank > 0; else q = W_q·h, `attn_q`)
//          per head [nope | rope]
//   ckv  = W_kv_a_mqa·h = [c: kv_lora_rank | k_pe: rope], c = RMSNorm(c)·kv_a_norm
//   RoPE (adjacent pairs) on q's rope part and on k_pe, which all heads share
//   score_h = ((k_b_h·q_nope_h)·c + q_pe_h·k_pe) / √(nope + rope), causal
//   o_h     = v_b_h·(softmax·c);  x += W_o·concat_h(o_h)
// Absorbed this way, attention is MQA over the cache rows [c | k_pe] (head dim kv_lora_rank + rope),
// values read from the first kv_lora_rank columns of the same rows: the cache holds the latent only.
// `attn_k_b` is ne [nope, kv_lora_rank, heads] and `attn_v_b` ne [kv_lora_rank, v_head, heads], as the
// fixtures' converter writes them (with `key_length_mla`/`value_length_mla`). The FFN is dense for
// the first `leading_dense_block_count` layers, then MoE (Model/MixtureOfExperts.swift) with an
// ungated shared expert.

/// One layer's latent-attention weights (Runtime/LatentAttention.swift runs them).
public struct LatentAttentionWeights {
    public let qA: BackendWeight?        // [qLoraRank, dim]; nil: qB is `attn_q` over h directly
    public let qANorm: BackendWeight?    // [1, qLoraRank]
    public let qB: BackendWeight         // [heads · (nope + rope), qLoraRank or dim]
    public let kvA: BackendWeight        // [kvLoraRank + rope, dim]
    public let kvANorm: BackendWeight    // [1, kvLoraRank]
    public let kB: [BackendWeight]       // per head [kvLoraRank, nope]
    public let vB: [BackendWeight]       // per head [valueDim, kvLoraRank]

    var all: [BackendWeight] { [qA, qANorm].compactMap { $0 } + [qB, kvA, kvANorm] + kB + vB }
}

enum DeepSeek2 {
    static func load(gguf: GGUFFile, backend: Backend) throws -> (ModelConfig, TransformerWeights) {
        let arch = "deepseek2"
        func key(_ k: String) -> String { "\(arch).\(k)" }
        var config = try ModelConfig(gguf: gguf, architecture: arch, ropeStyle: .normal, valueLengthMustMatch: false)
        guard gguf[key("attention.key_length_mla")] != nil, gguf[key("attention.value_length_mla")] != nil else {
            throw ModelError.invalidHyperparameter(key: key("attention.key_length_mla"),
                                                   value: "absent (files with the older attn_kv_b layout are not supported)")
        }
        let ropeDim = config.rope.dimensions
        let shape = LatentAttentionShape(
            qLoraRank: try gguf[key("attention.q_lora_rank")] == nil ? 0 : gguf.int(key("attention.q_lora_rank")),
            kvLoraRank: try gguf.int(key("attention.kv_lora_rank")),
            nopeDim: try gguf.int(key("attention.key_length_mla")) - ropeDim,
            ropeDim: ropeDim,
            valueDim: try gguf.int(key("attention.value_length_mla")))
        guard shape.nopeDim > 0, shape.kvLoraRank > 0, shape.valueDim > 0, shape.qLoraRank >= 0 else {
            throw ModelError.invalidHyperparameter(key: key("attention.key_length_mla"),
                                                   value: "\(shape.queryKeyDim) with rope \(ropeDim), kv_lora_rank \(shape.kvLoraRank)")
        }
        // The converter writes head_count_kv 1 and key_length = the cache row; the absorbed form needs exactly that.
        guard config.kvHeads == 1, config.headDim == shape.cacheRow else {
            throw ModelError.invalidHyperparameter(key: key("attention.key_length"),
                                                   value: "\(config.headDim) with head_count_kv \(config.kvHeads) (MLA needs kv_lora_rank + rope = \(shape.cacheRow) and 1)")
        }
        config.latentAttention = shape
        config.attentionScale = 1 / Float(shape.queryKeyDim).squareRoot()
        let dense = try gguf[key("leading_dense_block_count")] == nil ? 0 : gguf.int(key("leading_dense_block_count"))
        guard dense >= 0, dense <= config.layers else {
            throw ModelError.invalidHyperparameter(key: key("leading_dense_block_count"), value: "\(dense) of \(config.layers) layers")
        }
        // llama.cpp: a missing gating function means softmax; weights are not renormalized unless the file says so.
        config.moe = try MoEConfig.read(gguf: gguf, architecture: arch, dim: config.dim, normalizeByDefault: false, firstLayer: dense)

        let loader = WeightLoader(gguf: gguf, backend: backend)
        let (embedding, output, norm) = try loader.embeddingAndOutput(config)
        let dim = config.dim, heads = config.heads, s = shape
        let layers = try (0..<config.layers).map { i -> LayerWeights in
            let qA = s.qLoraRank > 0 ? try loader.matrix(loader.layer(i, "attn_q_a"), rows: s.qLoraRank, columns: dim) : nil
            let latent = LatentAttentionWeights(
                qA: qA,
                qANorm: s.qLoraRank > 0 ? try loader.vector(loader.layer(i, "attn_q_a_norm"), width: s.qLoraRank) : nil,
                qB: try loader.matrix(loader.layer(i, s.qLoraRank > 0 ? "attn_q_b" : "attn_q"), rows: heads * s.queryKeyDim,
                                      columns: s.qLoraRank > 0 ? s.qLoraRank : dim),
                kvA: try loader.matrix(loader.layer(i, "attn_kv_a_mqa"), rows: s.cacheRow, columns: dim),
                kvANorm: try loader.vector(loader.layer(i, "attn_kv_a_norm"), width: s.kvLoraRank),
                kB: try loader.experts(loader.layer(i, "attn_k_b"), count: heads, rows: s.kvLoraRank, columns: s.nopeDim),
                vB: try loader.experts(loader.layer(i, "attn_v_b"), count: heads, rows: s.valueDim, columns: s.kvLoraRank))
            let moe = try loader.moeLayer(i, config)
            guard (moe == nil) == (i < dense) else {
                throw ModelError.invalidHyperparameter(key: key("leading_dense_block_count"),
                                                       value: "\(dense), but layer \(i) \(moe == nil ? "has no" : "has a") router")
            }
            var layer = LayerWeights(
                attentionNorm: try loader.vector(loader.layer(i, "attn_norm"), width: dim),
                wq: nil, wk: nil, wv: nil,
                wo: try loader.matrix(loader.layer(i, "attn_output"), rows: dim, columns: heads * s.valueDim),
                ffnNorm: try loader.vector(loader.layer(i, "ffn_norm"), width: dim),
                ffnGate: moe == nil ? try loader.matrix(loader.layer(i, "ffn_gate"), rows: config.ffnDim, columns: dim) : nil,
                ffnUp: moe == nil ? try loader.matrix(loader.layer(i, "ffn_up"), rows: config.ffnDim, columns: dim) : nil,
                ffnDown: moe == nil ? try loader.matrix(loader.layer(i, "ffn_down"), rows: dim, columns: config.ffnDim) : nil)
            layer.moe = moe
            layer.latent = latent
            return layer
        }
        return (config, TransformerWeights(tokenEmbedding: embedding, layers: layers, outputNorm: norm, output: output))
    }
}
