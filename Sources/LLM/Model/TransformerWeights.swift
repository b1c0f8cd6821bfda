/// The device-resident weights of one decoder layer. Shapes are `[rows (outputs), columns (inputs)]`.
public struct LayerWeights {
    public let attentionNorm: BackendWeight   // [1, dim] f32
    // nil in a latent-attention layer (deepseek2), which has `latent` instead.
    public let wq: BackendWeight?             // [heads · headDim, dim]
    public let wk: BackendWeight?             // [kvHeads · headDim, dim]
    public let wv: BackendWeight?             // [kvHeads · headDim, dim]
    public let wo: BackendWeight              // [dim, heads · headDim] (latent: [dim, heads · valueDim])
    public let ffnNorm: BackendWeight         // [1, dim] f32
    // The dense FFN; nil in a mixture-of-experts layer, which has `moe` instead.
    public let ffnGate: BackendWeight?        // [ffnDim, dim]
    public let ffnUp: BackendWeight?          // [ffnDim, dim]
    public let ffnDown: BackendWeight?        // [dim, ffnDim]
    // Where families differ (nil when absent):
    public var qBias: BackendWeight? = nil            // [1, heads · headDim] (qwen2)
    public var kBias: BackendWeight? = nil            // [1, kvHeads · headDim]
    public var vBias: BackendWeight? = nil            // [1, kvHeads · headDim]
    public var qNorm: BackendWeight? = nil            // [1, headDim], RMSNorm per head (gemma3, qwen3)
    public var kNorm: BackendWeight? = nil            // [1, headDim]
    public var postAttentionNorm: BackendWeight? = nil // [1, dim] (gemma)
    public var postFFNNorm: BackendWeight? = nil      // [1, dim] (gemma)
    public var moe: MoELayerWeights? = nil            // routed experts (mixtral, qwen2moe, qwen3moe, olmoe, deepseek2)
    public var attentionNormBias: BackendWeight? = nil // [1, dim] LayerNorm biases (gpt2)
    public var ffnNormBias: BackendWeight? = nil      // [1, dim]
    public var oBias: BackendWeight? = nil            // [1, dim] (gpt2)
    public var ffnUpBias: BackendWeight? = nil        // [1, ffnDim] (gpt2)
    public var ffnDownBias: BackendWeight? = nil      // [1, dim] (gpt2)
    public var latent: LatentAttentionWeights? = nil  // multi-head latent attention (deepseek2)

    init(attentionNorm: BackendWeight, wq: BackendWeight?, wk: BackendWeight?, wv: BackendWeight?, wo: BackendWeight,
         ffnNorm: BackendWeight, ffnGate: BackendWeight?, ffnUp: BackendWeight?, ffnDown: BackendWeight?) {
        self.attentionNorm = attentionNorm
        self.wq = wq
        self.wk = wk
        self.wv = wv
        self.wo = wo
        self.ffnNorm = ffnNorm
        self.ffnGate = ffnGate
        self.ffnUp = ffnUp
        self.ffnDown = ffnDown
    }

    /// The weights one token reads: every dense matrix, and of an MoE layer the router and shared
    /// expert (the routed experts it reads are `moe.expertBytes` for each of its k choices).
    var all: [BackendWeight] {
        [attentionNorm, wo, ffnNorm]
            + [wq, wk, wv, ffnGate, ffnUp, ffnDown, qBias, kBias, vBias, qNorm, kNorm, postAttentionNorm, postFFNNorm,
               attentionNormBias, ffnNormBias, oBias, ffnUpBias, ffnDownBias].compactMap { $0 }
            + (moe?.alwaysRead ?? []) + (latent?.all ?? [])
    }
}

public struct TransformerWeights {
    public let tokenEmbedding: BackendWeight  // [vocab, dim]; a row per token
    public let layers: [LayerWeights]
    public let outputNorm: BackendWeight      // [1, dim]
    /// [vocab, dim]; the same object as tokenEmbedding when the model ties them.
    public let output: BackendWeight
    /// [1, dim] LayerNorm bias of the output norm (gpt2).
    public var outputNormBias: BackendWeight? = nil
    /// [context, dim] learned positions (gpt2's `position_embd`); a row per position.
    public var positionEmbedding: BackendWeight? = nil
    public var tiedOutput: Bool { output === tokenEmbedding }

    /// Bytes of weights read to decode one token: every layer matrix once, the norms, the
    /// output matrix, and one embedding row. MoE layers count k average-sized experts (`expertsPerToken`).
    public var bytesPerDecodedToken: Int { bytesPerDecodedToken(expertsPerToken: nil) }

    /// As `bytesPerDecodedToken`, with `expertsPerToken` routed experts per MoE layer (nil: the model's k).
    public func bytesPerDecodedToken(expertsPerToken k: Int?) -> Int {
        var total = output.byteCount + outputNorm.byteCount + (outputNormBias?.byteCount ?? 0)
        total += tokenEmbedding.byteCount / max(tokenEmbedding.rows, 1)
        if let positions = positionEmbedding { total += positions.byteCount / max(positions.rows, 1) }
        for l in layers {
            total += l.all.reduce(0) { $0 + $1.byteCount }
            if let moe = l.moe, moe.experts > 0 {
                let all = (0..<moe.experts).reduce(0) { $0 + moe.expertBytes($1) }
                total += all * (k ?? moe.expertsPerToken) / moe.experts
            }
        }
        return total
    }
}

/// Uploads GGUF tensors to a backend, checking shape and type support on the way.
struct WeightLoader {
    let gguf: GGUFFile
    let backend: Backend
    /// `blk.N.` tensor names are mapped here and nowhere else.
    func layer(_ index: Int, _ suffix: String) -> String { "blk.\(index).\(suffix).weight" }

    /// Loads `name`, which must be `rows × columns` (ggml ne = [columns, rows]).
    func matrix(_ name: String, rows: Int, columns: Int, op: (GGMLType) -> BackendOp = BackendOp.matmul) throws -> BackendWeight {
        let info = try gguf.requireTensor(name)
        guard info.columns == columns, info.rows == rows, info.dimensions.count <= 2 else {
            throw ModelError.tensorShape(tensor: name, expected: [columns, rows], found: info.dimensions)
        }
        guard Quantization.decodableWeightTypes.contains(info.type), backend.supports(op(info.type)) else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try backend.makeWeight(name: name, type: info.type, rows: rows, columns: columns, bytes: gguf.bytes(of: info))
    }

    /// The standard decoder layer every llama-like family shares; families then add their extras.
    /// A layer with a router (`ffn_gate_inp`) gets routed experts instead of the dense FFN.
    func standardLayer(_ i: Int, _ c: ModelConfig) throws -> LayerWeights {
        let dim = c.dim, q = c.heads * c.headDim, kv = c.kvHeads * c.headDim
        let moe = try moeLayer(i, c)
        var layer = LayerWeights(
            attentionNorm: try vector(layer(i, "attn_norm"), width: dim),
            wq: try matrix(layer(i, "attn_q"), rows: q, columns: dim),
            wk: try matrix(layer(i, "attn_k"), rows: kv, columns: dim),
            wv: try matrix(layer(i, "attn_v"), rows: kv, columns: dim),
            wo: try matrix(layer(i, "attn_output"), rows: dim, columns: q),
            ffnNorm: try vector(layer(i, "ffn_norm"), width: dim),
            ffnGate: moe == nil ? try matrix(layer(i, "ffn_gate"), rows: c.ffnDim, columns: dim) : nil,
            ffnUp: moe == nil ? try matrix(layer(i, "ffn_up"), rows: c.ffnDim, columns: dim) : nil,
            ffnDown: moe == nil ? try matrix(layer(i, "ffn_down"), rows: dim, columns: c.ffnDim) : nil)
        layer.moe = moe
        return layer
    }

    /// The embedding table, and the output projection (`output.weight`, or the embedding when tied).
    func embeddingAndOutput(_ c: ModelConfig) throws -> (embedding: BackendWeight, output: BackendWeight, norm: BackendWeight) {
        let embedding = try matrix("token_embd.weight", rows: c.vocabularySize, columns: c.dim, op: BackendOp.embedding)
        let norm = try vector("output_norm.weight", width: c.dim)
        if gguf.tensor("output.weight") != nil {
            return (embedding, try matrix("output.weight", rows: c.vocabularySize, columns: c.dim), norm)
        }
        // Tied: the embedding table doubles as the output projection, so it must support matmul too.
        guard backend.supports(.matmul(embedding.type)) else {
            throw ModelError.unsupportedTensorType(tensor: "token_embd.weight", type: embedding.type, backend: backend.name)
        }
        return (embedding, embedding, norm)
    }

    /// A fused matrix (`rows.reduce(0, +)` × columns, ggml ne [columns, Σ rows]) as one weight per
    /// run of rows, in order: gpt2's `attn_qkv` as q, k and v. Rows are whole block runs, so each
    /// slice is the same bytes the fused matmul would read, and computes the same outputs.
    func rowSlices(_ name: String, rows: [Int], columns: Int) throws -> [BackendWeight] {
        let total = rows.reduce(0, +)
        let info = try gguf.requireTensor(name)
        guard info.columns == columns, info.rows == total, info.dimensions.count <= 2 else {
            throw ModelError.tensorShape(tensor: name, expected: [columns, total], found: info.dimensions)
        }
        guard Quantization.decodableWeightTypes.contains(info.type), backend.supports(.matmul(info.type)),
              let rowBytes = info.type.rowBytes(columns) else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try slices(name, info.type, gguf.bytes(of: info), rows: rows, columns: columns, rowBytes: rowBytes)
    }

    /// A fused bias vector split into runs of `widths` values (gpt2's `attn_qkv.bias`).
    func vectorSlices(_ name: String, widths: [Int]) throws -> [BackendWeight] {
        let info = try gguf.requireTensor(name)
        let total = widths.reduce(0, +)
        guard info.elementCount == total, info.dimensions.count == 1 else {
            throw ModelError.tensorShape(tensor: name, expected: [total], found: info.dimensions)
        }
        guard info.type == .f32 else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try slices(name, .f32, gguf.bytes(of: info), rows: widths, columns: 1, rowBytes: 4, asVectors: true)
    }

    private func slices(_ name: String, _ type: GGMLType, _ bytes: UnsafeRawBufferPointer, rows: [Int], columns: Int,
                        rowBytes: Int, asVectors: Bool = false) throws -> [BackendWeight] {
        var start = 0
        return try rows.enumerated().map { i, count in
            defer { start += count }
            let part = UnsafeRawBufferPointer(rebasing: bytes[(start * rowBytes)..<((start + count) * rowBytes)])
            return asVectors
                ? try backend.makeWeight(name: "\(name)[\(i)]", type: type, rows: 1, columns: count, bytes: part)
                : try backend.makeWeight(name: "\(name)[\(i)]", type: type, rows: count, columns: columns, bytes: part)
        }
    }

    /// A bias vector `blk.N.<suffix>.bias`.
    func bias(_ i: Int, _ suffix: String, width: Int) throws -> BackendWeight {
        try vector("blk.\(i).\(suffix).bias", width: width)
    }

    /// Loads a norm vector of `width` values. Norms are F32 in every GGUF llama.cpp writes.
    func vector(_ name: String, width: Int) throws -> BackendWeight {
        let info = try gguf.requireTensor(name)
        guard info.elementCount == width, info.dimensions.count == 1 else {
            throw ModelError.tensorShape(tensor: name, expected: [width], found: info.dimensions)
        }
        guard info.type == .f32 else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try backend.makeWeight(name: name, type: .f32, rows: 1, columns: width, bytes: gguf.bytes(of: info))
    }
}
