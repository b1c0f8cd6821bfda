/// Hyperparameters of a decoder-only transformer, read from `<arch>.*` GGUF metadata.
public struct ModelConfig: Sendable, Equatable {
    public var architecture: String
    public var name: String
    public var layers: Int
    /// Residual stream width (`embedding_length`).
    public var dim: Int
    /// FFN hidden width (`feed_forward_length`).
    public var ffnDim: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocabularySize: Int
    /// The context the model was trained for (`context_length`).
    public var trainedContext: Int
    public var normEps: Float
    /// RoPE of the global-attention layers (all layers, for most families).
    public var rope: RopeParameters
    /// Where a family differs per layer (Gemma 3's local layers): that layer's RoPE; nil = `rope`.
    public var localRope: RopeParameters?
    /// Per layer: the sliding window (0 = global attention). Empty = all global.
    public var layerWindows: [Int] = []
    public var ffnActivation: FFNActivation = .silu
    /// Multiplies the embeddings before the first layer (Gemma: √dim); nil = none.
    public var embeddingScale: Float?
    /// Multiplies q·k (default 1/√headDim).
    public var attentionScale: Float?
    /// Soft-capping of attention scores and of the final logits (`<arch>.attn_logit_softcapping`,
    /// `<arch>.final_logit_softcapping`, Gemma 2); nil when the file has none.
    public var attentionSoftcap: Float?
    public var finalLogitSoftcap: Float?
    /// Sparse mixture-of-experts FFN (Model/MixtureOfExperts.swift); nil for dense models.
    public var moe: MoEConfig?
    /// RMSNorm (most families) or LayerNorm with bias (gpt2).
    public var normalization: Normalization = .rms
    /// Where positions come from: RoPE on q and k, or a learned table added to the embeddings (gpt2,
    /// `position_embd`, one row per position up to `trainedContext`).
    public var positionEncoding: PositionEncoding = .rope
    /// Multi-head latent attention (deepseek2); nil for ordinary attention. With it, `headDim` is
    /// the cache row (kvLoraRank + rope dims) and `kvHeads` is 1: the absorbed form's MQA.
    public var latentAttention: LatentAttentionShape?

    public func window(layer: Int) -> Int { layer < layerWindows.count ? layerWindows[layer] : 0 }
    public func rope(layer: Int) -> RopeParameters { window(layer: layer) > 0 ? (localRope ?? rope) : rope }

    public func attentionShape(layer: Int) -> AttentionShape {
        AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim,
                       scale: attentionScale ?? 1 / Float(headDim).squareRoot(), window: window(layer: layer),
                       softcap: attentionSoftcap ?? 0)
    }

    public var attentionShape: AttentionShape { attentionShape(layer: 0) }

    /// Reads the keys every llama-like architecture shares. `architecture` prefixes every key (`llama.block_count`).
    /// `normEpsilonKey`: gpt2 writes `attention.layer_norm_epsilon`. `valueLengthMustMatch`: false
    /// where key_length and value_length describe something other than the heads (deepseek2's cache).
    public init(gguf: GGUFFile, architecture: String, ropeStyle: RopeStyle,
                normEpsilonKey: String = "attention.layer_norm_rms_epsilon", valueLengthMustMatch: Bool = true) throws {
        func key(_ k: String) -> String { "\(architecture).\(k)" }
        func optionalInt(_ k: String) throws -> Int? { gguf[key(k)] == nil ? nil : try gguf.int(key(k)) }

        self.architecture = architecture
        self.name = (gguf["general.name"]?.stringValue) ?? architecture
        layers = try gguf.int(key("block_count"))
        dim = try gguf.int(key("embedding_length"))
        ffnDim = try gguf.int(key("feed_forward_length"))
        heads = try gguf.int(key("attention.head_count"))
        kvHeads = try optionalInt("attention.head_count_kv") ?? heads
        headDim = try optionalInt("attention.key_length") ?? (heads > 0 ? dim / heads : 0)
        if valueLengthMustMatch, let valueLength = try optionalInt("attention.value_length"), valueLength != headDim {
            throw ModelError.invalidHyperparameter(key: "\(architecture).attention.value_length",
                                                   value: "\(valueLength) (differs from key_length \(headDim); not supported)")
        }
        trainedContext = try gguf.int(key("context_length"))
        normEps = Float(try gguf.float(key(normEpsilonKey)))
        if let v = try optionalInt("vocab_size") {
            vocabularySize = v
        } else if let tokens = gguf["tokenizer.ggml.tokens"]?.arrayValue {
            vocabularySize = tokens.count
        } else {
            throw GGUFError.missingKey(key("vocab_size"))
        }

        let ropeDims = try optionalInt("rope.dimension_count") ?? headDim
        let ropeBase = gguf[key("rope.freq_base")] == nil ? 10_000 : Float(try gguf.float(key("rope.freq_base")))
        // llama.cpp reads the type as "linear" when the key is absent, and applies the factor either way.
        // YaRN and LongRoPE change the angles per frequency band and the attention scale: not
        // implemented here, so refused rather than run as plain RoPE.
        let scalingType = gguf[key("rope.scaling.type")]?.stringValue ?? "linear"
        guard scalingType == "linear" || scalingType == "none" else {
            throw ModelError.invalidHyperparameter(key: key("rope.scaling.type"),
                                                   value: "\(scalingType.quotedForError) (RoPE scaling other than linear is not supported)")
        }
        var positionScale: Float = 1
        if scalingType == "linear", let factor = gguf[key("rope.scaling.factor")]?.floatValue, factor > 0, factor != 1 {
            positionScale = Float(1 / factor)
        }
        rope = RopeParameters(dimensions: ropeDims, base: ropeBase, style: ropeStyle, positionScale: positionScale)
        // Soft-capping wherever the metadata provides it.
        if let cap = gguf[key("attn_logit_softcapping")]?.floatValue, cap > 0 { attentionSoftcap = Float(cap) }
        if let cap = gguf[key("final_logit_softcapping")]?.floatValue, cap > 0 { finalLogitSoftcap = Float(cap) }

        try validate()
    }

    private func validate() throws {
        func check(_ ok: Bool, _ field: String, _ value: Int) throws {
            if !ok { throw ModelError.invalidHyperparameter(key: "\(architecture).\(field)", value: "\(value)") }
        }
        try check(layers > 0 && layers <= 1024, "block_count", layers)
        try check(dim > 0 && dim <= 1 << 16, "embedding_length", dim)
        try check(ffnDim > 0 && ffnDim <= 1 << 18, "feed_forward_length", ffnDim)
        try check(heads > 0 && heads <= 1024, "attention.head_count", heads)
        try check(kvHeads > 0 && heads % kvHeads == 0, "attention.head_count_kv", kvHeads)
        try check(headDim > 0 && headDim <= 1024, "attention.key_length", headDim)
        try check(rope.dimensions > 0 && rope.dimensions <= headDim && rope.dimensions % 2 == 0, "rope.dimension_count", rope.dimensions)
        try check(trainedContext > 0, "context_length", trainedContext)
        try check(vocabularySize > 0, "vocab_size", vocabularySize)
    }
}

public enum FFNActivation: String, Sendable {
    /// silu(gate) · up (llama, qwen)
    case silu
    /// gelu_tanh(gate) · up (gemma)
    case geluTanh
    /// gelu_tanh(up), no gate (gpt2: up → GELU → down, with biases)
    case gelu
}

public enum Normalization: String, Sendable {
    /// x / √(mean(x²) + eps) · w
    case rms
    /// (x − mean) / √(var + eps) · w + b (gpt2)
    case layer
}

public enum PositionEncoding: String, Sendable {
    case rope
    /// A learned [context, dim] table added to the token embeddings (gpt2's `position_embd`).
    case learned
}

/// The head split of multi-head latent attention (deepseek2, `attention.q_lora_rank`, `kv_lora_rank`,
/// `key_length_mla`, `value_length_mla`, `rope.dimension_count`). Per head, q and k are [nope | rope]
/// and v is vHead wide; keys and values come from one compressed latent of kvLoraRank values plus
/// a rope-dims key part shared by all heads, which is all the cache keeps per token.
public struct LatentAttentionShape: Sendable, Equatable {
    /// 0: queries come straight from `attn_q`.
    public var qLoraRank: Int
    public var kvLoraRank: Int
    public var nopeDim: Int
    public var ropeDim: Int
    public var valueDim: Int
    public var queryKeyDim: Int { nopeDim + ropeDim }
    /// A cache row: the latent and the shared rope key part.
    public var cacheRow: Int { kvLoraRank + ropeDim }

    /// Bytes one token's keys and values take per layer: the latent row, against what full
    /// per-head keys (nope + rope) and values would take (f32).
    public var latentBytesPerLayer: Int { cacheRow * 4 }
    public func fullBytesPerLayer(heads: Int) -> Int { heads * (queryKeyDim + valueDim) * 4 }
}

public enum ModelError: Error, Equatable, CustomStringConvertible {
    case unsupportedArchitecture(String)
    case invalidHyperparameter(key: String, value: String)
    case unsupportedTensorType(tensor: String, type: GGMLType, backend: String)
    case tensorShape(tensor: String, expected: [Int], found: [Int])
    case contextTooSmall(requested: Int)
    case contextTooLarge(context: Int, bytes: Int, available: UInt64, backend: String)
    case promptTooLong(tokens: Int, context: Int)
    case rewoundTooFar(position: Int)
    case emptyPrompt
    case tokenOutOfRange(token: Int, vocabularySize: Int)
    /// A learned position table (gpt2) has no row for positions at or past its length.
    case contextBeyondPositions(context: Int, positions: Int)
    case invalidLogitRows(rows: [Int], tokens: Int, batchSize: Int)
    case tooManyBeams(beams: Int, limit: Int)
    /// Beam search's paged KV cache and logits for `beams` beams of `tokens` new tokens do not fit.
    case beamsTooLarge(beams: Int, tokens: Int, bytes: Int, available: UInt64, backend: String)

    public var description: String {
        switch self {
        case .unsupportedArchitecture(let a):
            return "unsupported model architecture \(a.quotedForError) (supported: \(ModelLoader.supportedArchitectures.sorted().joined(separator: ", ")))"
        case let .invalidHyperparameter(key, value):
            return "invalid model metadata: \(key) = \(value)"
        case let .unsupportedTensorType(tensor, type, backend):
            return "tensor \(tensor.quotedForError) has weight type \(type), which the \(backend) backend does not support"
        case let .tensorShape(tensor, expected, found):
            return "tensor \(tensor.quotedForError) has shape \(found), expected \(expected)"
        case .contextTooSmall(let n):
            return "context of \(n) tokens is too small (need at least 1)"
        case let .contextTooLarge(context, bytes, available, backend):
            return "a KV cache for --context \(context) needs \(bytes / (1 << 20)) MiB, more than the \(backend) device's \(available / (1 << 20)) MiB; lower --context"
        case let .promptTooLong(tokens, context):
            return "prompt of \(tokens) tokens does not fit the context of \(context) tokens (raise --context or shorten the prompt)"
        case .rewoundTooFar(let position):
            return "cannot continue at position \(position): the sliding-window cache was rewound past what it keeps; reset it"
        case .emptyPrompt:
            return "the prompt is empty: nothing to evaluate"
        case let .tokenOutOfRange(token, size):
            return "token id \(token) is outside the vocabulary (0..<\(size))"
        case let .contextBeyondPositions(context, positions):
            return "a context of \(context) tokens is longer than the model's \(positions) learned positions; lower --context"
        case let .invalidLogitRows(rows, tokens, batchSize):
            return "logits for rows \(rows) of \(tokens) tokens: each row must be in 0..<\(tokens), and at most \(batchSize) tokens"
        case let .tooManyBeams(beams, limit):
            return "--beams \(beams) is more than the limit of \(limit) beams"
        case let .beamsTooLarge(beams, tokens, bytes, available, backend):
            let need = bytes == .max ? "more than can be counted" : "\(bytes / (1 << 20)) MiB"
            return "\(beams) beams × \(tokens) new tokens need \(need) of KV cache and logits, more than the \(backend) device's \(available / (1 << 20)) MiB; lower --beams or --max-tokens"
        }
    }
}
