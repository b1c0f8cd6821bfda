import Foundation

// The protocol every compute backend implements (CPU, OpenCL, Vulkan). The forward pass is
// written once against it (Runtime/InferenceSession.swift); a backend only supplies buffers and ops.
//
// Conventions shared by every op:
// - Activations are f32, row-major `[rows, width]`: one row per token of the batch.
// - A weight matrix has `rows` outputs over `columns` inputs, stored as GGUF stores it
//   (ggml ne = [columns, rows]), each row a run of quantized blocks.
// - Ops are enqueued in order; a backend may run them asynchronously. Only `download` and
//   `argmax` bring data back to the host, and they wait for the work before them.

/// Device memory holding `count` f32 values. Backends subclass it with their own handle.
open class BackendBuffer {
    public let count: Int
    public let label: String
    public init(count: Int, label: String) {
        self.count = count
        self.label = label
    }
}

/// A weight tensor resident on the device, in its GGUF block format.
open class BackendWeight {
    public let name: String
    public let type: GGMLType
    /// Output features (ggml ne1 × ne2 × ne3).
    public let rows: Int
    /// Input features (ggml ne0).
    public let columns: Int
    public init(name: String, type: GGMLType, rows: Int, columns: Int) {
        self.name = name
        self.type = type
        self.rows = rows
        self.columns = columns
    }
    public var byteCount: Int { rows * (type.rowBytes(columns) ?? 0) }
}

/// How RoPE pairs up the dimensions of a head.
public enum RopeStyle: String, Sendable, Hashable {
    /// Adjacent pairs (x[2i], x[2i+1]): llama.cpp's LLAMA_ROPE_TYPE_NORM (llama, mistral).
    case normal
    /// Halves (x[i], x[i + d/2]): LLAMA_ROPE_TYPE_NEOX (qwen2, gemma, gpt-neox).
    case neox
}

public struct RopeParameters: Sendable, Equatable {
    /// Rotated dimensions per head (≤ headDim); the rest pass through unchanged.
    public var dimensions: Int
    public var base: Float
    public var style: RopeStyle
    /// Linear position scaling (1 / rope.scaling.factor); 1 when absent.
    public var positionScale: Float
    /// Per-pair frequency divisors (llama 3.1's `rope_freqs.weight`); nil when absent.
    public var frequencyFactors: [Float]?

    public init(dimensions: Int, base: Float, style: RopeStyle, positionScale: Float = 1, frequencyFactors: [Float]? = nil) {
        self.dimensions = dimensions
        self.base = base
        self.style = style
        self.positionScale = positionScale
        self.frequencyFactors = frequencyFactors
    }

    /// θ for pair `i` at `position`: position · base^(−2i/dimensions) / factor[i].
    @inline(__always)
    public func angle(position: Int, pair: Int) -> Float {
        angle(position: position, pair: pair, power: power(pair: pair))
    }

    /// base^(−2i/dimensions), the part of θ that does not depend on the position: a backend that
    /// rotates many rows computes it once per pair and passes it to `angle(position:pair:power:)`.
    @inline(__always)
    public func power(pair: Int) -> Double {
        pow(Double(base), -2.0 * Double(pair) / Double(dimensions))
    }

    /// θ as `angle(position:pair:)` computes it, bit for bit, from a precomputed `power(pair:)`.
    @inline(__always)
    public func angle(position: Int, pair: Int, power: Double) -> Float {
        var theta = Double(position) * Double(positionScale) * power
        if let factors = frequencyFactors { theta /= Double(factors[pair]) }
        return Float(theta)
    }
}

public struct AttentionShape: Sendable, Equatable {
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    /// Multiplies q·k before the softmax (1/√headDim for llama).
    public var scale: Float
    /// Sliding window: a query at position p sees keys at positions > p − window (0 = unlimited).
    /// Gemma's local layers and Mistral use it (llama.cpp's LLAMA_SWA_TYPE_STANDARD).
    public var window: Int
    /// Logit soft-capping: a scaled score s becomes softcap · tanh(s / softcap) before the
    /// softmax (Gemma 2's attn_logit_softcapping; 0 = none).
    public var softcap: Float

    public init(heads: Int, kvHeads: Int, headDim: Int, scale: Float, window: Int = 0, softcap: Float = 0) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.scale = scale
        self.window = window
        self.softcap = softcap
    }

    /// The first position a query at `position` attends to.
    @inline(__always)
    public func firstVisible(from position: Int) -> Int { window > 0 ? max(0, position - window + 1) : 0 }
    public var queryWidth: Int { heads * headDim }
    public var kvWidth: Int { kvHeads * headDim }
}

/// An op a backend may or may not implement. The engine asks before it plans, and an
/// unsupported op is an error, never a silent fallback to another backend.
public enum BackendOp: Hashable, Sendable, CustomStringConvertible {
    case matmul(GGMLType)
    case embedding(GGMLType)
    case rmsNorm
    case rope(RopeStyle)
    case attention
    case softmax
    case swiglu
    case add
    case copyRows
    case argmax
    /// Row-wise bias add (qwen2's q/k/v biases).
    case addBias
    /// Multiply by a constant (gemma's embedding scale).
    case scale
    /// gelu_tanh(gate) · up (gemma's FFN).
    case geglu
    /// Attention limited to a sliding window (`AttentionShape.window` > 0).
    case slidingWindowAttention
    /// Attention scores soft-capped (`AttentionShape.softcap` > 0).
    case attentionSoftcap
    /// x = cap · tanh(x / cap) over a buffer (Gemma 2's final logits).
    case softcap
    /// Mixture-of-experts routing: router scores → top-k expert ids and weights (`moeGate`).
    case moeGating
    /// Row gather by index (`gatherRows`): an expert's tokens into one contiguous batch.
    case gatherRows
    /// Weighted row scatter-add by index (`scatterAddRows`): expert outputs back into the residual.
    case scatterAddRows
    /// LayerNorm with weight and optional bias (`layerNorm`: gpt2).
    case layerNorm
    /// GELU (tanh form) over a buffer (`gelu`: gpt2's ungated FFN).
    case gelu
    /// A block of columns copied between strided rows (`copyColumns`: MLA's head splits and joins).
    case copyColumns

    public var description: String {
        switch self {
        case .matmul(let t): return "matmul(\(t))"
        case .embedding(let t): return "embedding(\(t))"
        case .rope(let s): return "rope(\(s.rawValue))"
        case .rmsNorm: return "rmsNorm"
        case .attention: return "attention"
        case .softmax: return "softmax"
        case .swiglu: return "swiglu"
        case .add: return "add"
        case .copyRows: return "copyRows"
        case .argmax: return "argmax"
        case .addBias: return "addBias"
        case .scale: return "scale"
        case .geglu: return "geglu"
        case .slidingWindowAttention: return "slidingWindowAttention"
        case .attentionSoftcap: return "attentionSoftcap"
        case .softcap: return "softcap"
        case .moeGating: return "moeGating"
        case .gatherRows: return "gatherRows"
        case .scatterAddRows: return "scatterAddRows"
        case .layerNorm: return "layerNorm"
        case .gelu: return "gelu"
        case .copyColumns: return "copyColumns"
        }
    }
}

public protocol Backend: AnyObject {
    /// "cpu", "opencl", "vulkan".
    var name: String { get }
    /// The device in words, for logs and `bench`.
    var deviceDescription: String { get }

    func supports(_ op: BackendOp) -> Bool

    // MARK: Memory

    /// Bytes of memory the device can hold, when known; used to refuse a plan (a KV cache for
    /// a huge --context, say) before allocating it piece by piece.
    var memoryCapacity: UInt64? { get }

    /// Makes `bytes` (a 2-D-viewable GGUF tensor) resident on the device.
    func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight
    /// A zero-filled buffer of `count` f32 values.
    func makeBuffer(count: Int, label: String) throws -> BackendBuffer
    func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws
    func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float]

    // MARK: Ops (rows = tokens in the batch)

    /// output[r] = table[tokens[r]], dequantized.
    func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws
    /// output[r, o] = Σ_c weight[o, c] · input[r, c], for r < rows.
    func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws
    /// output[r] = input[r] / √(mean(input[r]²) + eps) · weight.
    func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws
    /// Rotates each head of `buffer` ([rows, heads · headDim]) in place; row r sits at position startPosition + r.
    func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws
    /// RoPE with an explicit position per row (default implementation in PagedAttention.swift).
    func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws
    /// Causal attention over a paged KV cache (default implementation in PagedAttention.swift).
    func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                        rows: Int, layout: PagedLayout, shape: AttentionShape) throws
    /// Causal attention of `query` rows (positions startPosition + r) over cached keys and
    /// values at positions 0 ... startPosition + r. Query heads share KV heads in groups (GQA).
    func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                   rows: Int, startPosition: Int, shape: AttentionShape) throws
    /// Copies `rows` rows of `width` values from source row `sourceRow` to destination row `destinationRow`.
    func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                  rows: Int, width: Int) throws
    /// output = silu(gate) · up, element-wise over `count` values.
    func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws
    /// buffer[r] += bias for each of `rows` rows (bias is a [1, width] weight).
    func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws
    /// buffer *= factor over `count` values.
    func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws
    /// buffer = cap · tanh(buffer / cap) over `count` values.
    func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws
    /// output = gelu(gate) · up, with GELU's tanh approximation, over `count` values.
    func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws
    /// output = a + b over `count` values (output may alias a).
    func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws
    /// Softmax over each row of `width` values, in place.
    func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws
    /// Mixture-of-experts gating over `rows` rows of router logits ([rows, experts]): scores
    /// p = softmax(row) or sigmoid(row); selection scores s = p + selectionBias (a [1, experts]
    /// f32 weight, DeepSeek-V3's `exp_probs_b`; s = p without it); with `gating.groups` > 1, only
    /// the experts of the `gating.groupsUsed` groups with the largest top-2 sums of s stay eligible
    /// (`ExpertGating.eligible`); the `k` largest s among them (the lower expert index first on
    /// ties) go to ids[r, j] (expert index stored as a float, best first) and their p (not s) to
    /// weights[r, j]; then weights are divided by their sum when `normalize`, and multiplied by `scale`.
    func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                 ids: BackendBuffer, weights: BackendBuffer) throws
    /// y[r] = (x[r] − mean) / √(var + eps) · weight + bias over rows of weight.columns values
    /// (ggml_norm then mul and add; the variance is the mean of (x − mean)²).
    func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                   rows: Int, eps: Float) throws
    /// output = gelu(input) over `count` values, tanh form (output may alias input).
    func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws
    /// For r < rows, g < groups, c < width:
    /// destination[to.at(r, g) + c] = source[from.at(r, g) + c]. Source and destination must not overlap.
    func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                     rows: Int, groups: Int, width: Int) throws
    /// destination row i = source row indices[i], rows of `width` values.
    func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws
    /// destination row indices[i] += factors[i] · source row i, in order of i, rows of `width` values.
    func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                        width: Int) throws
    /// The index of the largest value of each row (the first one on ties).
    func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32]
    /// Waits until all enqueued work has finished.
    func synchronize() throws
}

extension Backend {
    public var memoryCapacity: UInt64? { nil }

    // Ops added after the first backends: a backend without them says so when they are called.
    // (Plans check `supports` first; these throw for backends that have not implemented them.)
    public func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        throw UnsupportedOpError(backend: name, op: .addBias, context: "a model with biases")
    }
    public func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        throw UnsupportedOpError(backend: name, op: .scale, context: "a model with scaled embeddings")
    }
    public func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        throw UnsupportedOpError(backend: name, op: .geglu, context: "a GeGLU feed-forward")
    }
    public func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        throw UnsupportedOpError(backend: name, op: .softcap, context: "final logit soft-capping")
    }
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        throw UnsupportedOpError(backend: name, op: .moeGating, context: "a mixture-of-experts model")
    }
    /// Gating without a selection bias.
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        try moeGate(logits, rows: rows, experts: experts, gating: gating, selectionBias: nil, ids: ids, weights: weights)
    }
    public func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                          rows: Int, eps: Float) throws {
        throw UnsupportedOpError(backend: name, op: .layerNorm, context: "a LayerNorm model")
    }
    public func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        throw UnsupportedOpError(backend: name, op: .gelu, context: "a GELU feed-forward")
    }
    public func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                            rows: Int, groups: Int, width: Int) throws {
        throw UnsupportedOpError(backend: name, op: .copyColumns, context: "multi-head latent attention")
    }
    public func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        throw UnsupportedOpError(backend: name, op: .gatherRows, context: "a mixture-of-experts model")
    }
    public func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                               width: Int) throws {
        throw UnsupportedOpError(backend: name, op: .scatterAddRows, context: "a mixture-of-experts model")
    }
}

/// Where a block of columns sits in a buffer of rows: value (r, g, 0) is at
/// offset + r · rowStride + g · groupStride (groups: heads, say).
public struct ColumnBlock: Sendable, Equatable {
    public var offset: Int
    public var rowStride: Int
    public var groupStride: Int
    public init(offset: Int, rowStride: Int, groupStride: Int = 0) {
        self.offset = offset
        self.rowStride = rowStride
        self.groupStride = groupStride
    }
    @inline(__always) public func at(_ row: Int, _ group: Int) -> Int { offset + row * rowStride + group * groupStride }
    /// One past the last value a copy of rows × groups × width touches.
    public func end(rows: Int, groups: Int, width: Int) -> Int {
        rows == 0 || groups == 0 || width == 0 ? 0 : at(rows - 1, groups - 1) + width
    }
}

/// How a mixture-of-experts router turns scores into expert weights (llama.cpp's build_moe_ffn).
public struct ExpertGating: Sendable, Equatable {
    public enum Function: String, Sendable {
        /// softmax over all experts (Mixtral, Qwen-MoE, OLMoE): `expert_gating_func` 1 or absent.
        case softmax
        /// independent sigmoid per expert (DeepSeek V3 style): `expert_gating_func` 2.
        case sigmoid
    }
    public var function: Function
    /// Experts chosen per token (`expert_used_count`).
    public var k: Int
    /// Divide the k weights by their sum (llama.cpp clamps the sum below at 6.1e-5).
    public var normalize: Bool
    /// Multiply the weights by this (`expert_weights_scale`; 1 when absent).
    public var scale: Float
    /// Group-limited routing (DeepSeek-V3: `expert_group_count`, `expert_group_used_count`): the
    /// experts are `groups` runs of experts/groups consecutive ones; only the `groupsUsed` groups
    /// whose two best selection scores sum highest stay eligible. groups ≤ 1: no limit.
    public var groups: Int
    public var groupsUsed: Int

    public init(function: Function, k: Int, normalize: Bool, scale: Float = 1, groups: Int = 1, groupsUsed: Int = 1) {
        self.function = function
        self.k = k
        self.normalize = normalize
        self.scale = scale
        self.groups = groups
        self.groupsUsed = groupsUsed
    }

    public var limitsGroups: Bool { groups > 1 && groupsUsed < groups }

    /// Which experts the top-k may pick from, given one row's selection scores: all of them, or
    /// those of the `groupsUsed` best groups. A group scores the sum of its two largest values
    /// (llama.cpp's argsort top-2 per group, the DeepSeek-V3 rule), groups ranked by that score,
    /// the lower group first on ties. Every backend's kernel follows this function.
    public func eligible(_ scores: [Float]) -> [Bool] {
        guard limitsGroups else { return Array(repeating: true, count: scores.count) }
        let size = scores.count / groups
        let groupScores: [Float] = (0..<groups).map { g in
            var first = -Float.infinity, second = -Float.infinity
            for e in (g * size)..<((g + 1) * size) {
                let v = scores[e]
                if v > first { second = first; first = v } else if v > second { second = v }
            }
            return first + second
        }
        var kept = [Bool](repeating: false, count: groups)
        for _ in 0..<groupsUsed {
            var best = -1
            for g in 0..<groups where !kept[g] && (best < 0 || groupScores[g] > groupScores[best]) { best = g }
            kept[best] = true
        }
        return (0..<scores.count).map { kept[$0 / size] }
    }

    /// The smallest weight sum llama.cpp divides by (ggml_clamp(weights_sum, 6.103515625e-5, inf)).
    public static let minimumWeightSum: Float = 6.103515625e-5
}

/// Raised when a plan needs an op the chosen backend lacks.
public struct UnsupportedOpError: Error, CustomStringConvertible {
    public let backend: String
    public let op: BackendOp
    public let context: String
    public init(backend: String, op: BackendOp, context: String) {
        self.backend = backend
        self.op = op
        self.context = context
    }
    public var description: String {
        "the \(backend) backend does not support \(op) (needed for \(context))"
    }
}
