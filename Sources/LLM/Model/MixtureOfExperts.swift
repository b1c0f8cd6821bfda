import Foundation

// Sparse mixture-of-experts feed-forward layers, as llama.cpp's build_moe_ffn runs them:
//   logits = router · h                                  (`ffn_gate_inp`, [experts, dim])
//   p      = softmax(logits) | sigmoid(logits)           (`expert_gating_func`)
//   top-k experts by p; w = p[top]                       (`expert_used_count`)
//   w     /= Σ w  when the family normalizes             (`expert_weights_norm` or the family's fixed choice)
//   w     *= expert_weights_scale                        (DeepSeek-style; 1 elsewhere)
//   out    = Σ_k w_k · down_k(silu(gate_k h) · up_k h)   (`ffn_{gate,up,down}_exps`, 3-D: one slice per expert)
//          + [σ(gate_inp_shexp · h)] · down_s(silu(gate_s h) · up_s h)   (shared expert, where present)
// Where the families differ (llama.cpp's graph builders):
//   llama (Mixtral):  softmax, renormalize (hard-coded: the GGUF has no key), no shared expert.
//   qwen2moe:         softmax, no renormalization unless the file says `expert_weights_norm`; a shared expert
//                     scaled by the sigmoid of its own gate (`ffn_gate_inp_shexp`, a [dim] vector).
//   qwen3moe:         softmax, renormalize; no shared expert.
//   olmoe:            softmax, no renormalization.
//   DeepSeek-style:   `expert_gating_func` = 2 (sigmoid), normalize, × `expert_weights_scale`; shared experts ungated.
//   deepseek2 (V3):   experts are chosen by p + `exp_probs_b` (the weights stay p), only within the
//                     `expert_group_used_count` best of `expert_group_count` groups (a group scores
//                     the sum of its top two); the first `leading_dense_block_count` layers are dense.
// The expert dispatch itself (grouping tokens by expert) is in Runtime/ExpertDispatch.swift.

/// A model's MoE hyperparameters (`ModelConfig.moe`; nil for dense models).
public struct MoEConfig: Sendable, Equatable {
    /// `expert_count`.
    public var experts: Int
    /// Routing: gating function, k (`expert_used_count`), normalization, scale.
    public var gating: ExpertGating
    /// Hidden width of one routed expert (from the `ffn_gate_exps` shape).
    public var expertFFNDim: Int
    /// Hidden width of the shared expert; 0 when there is none.
    public var sharedFFNDim: Int = 0

    public var expertsPerToken: Int { gating.k }

    /// llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE values for `<arch>.expert_gating_func`.
    static func gatingFunction(_ value: Int, key: String) throws -> ExpertGating.Function {
        switch value {
        case 1: return .softmax
        case 2: return .sigmoid
        default: throw ModelError.invalidHyperparameter(key: key, value: "\(value) (supported: 1 softmax, 2 sigmoid)")
        }
    }

    /// Reads the MoE keys of `architecture`; nil when layer 0 has no router (a dense model).
    /// `normalizeByDefault` is the family's choice when the file has no `expert_weights_norm`.
    /// `firstLayer`: the first MoE layer (deepseek2's leading dense layers come before it).
    static func read(gguf: GGUFFile, architecture: String, dim: Int, normalizeByDefault: Bool, firstLayer: Int = 0) throws -> MoEConfig? {
        guard gguf.tensor("blk.\(firstLayer).ffn_gate_inp.weight") != nil else { return nil }
        func key(_ k: String) -> String { "\(architecture).\(k)" }
        let experts = try gguf.int(key("expert_count"))
        let k = try gguf.int(key("expert_used_count"))
        guard experts > 0, experts <= 1 << 12 else {
            throw ModelError.invalidHyperparameter(key: key("expert_count"), value: "\(experts)")
        }
        guard k > 0, k <= experts else {
            throw ModelError.invalidHyperparameter(key: key("expert_used_count"), value: "\(k) (of \(experts) experts)")
        }
        let function = try gguf[key("expert_gating_func")] == nil
            ? .softmax : gatingFunction(gguf.int(key("expert_gating_func")), key: key("expert_gating_func"))
        let normalize = gguf[key("expert_weights_norm")]?.boolValue ?? normalizeByDefault
        // llama.cpp multiplies only where the key is set (0 means unset there).
        let fileScale = gguf[key("expert_weights_scale")]?.floatValue.map { Float($0) } ?? 0
        let scale: Float = fileScale != 0 ? fileScale : 1
        // Group-limited selection, with the limits llama.cpp asserts.
        var groups = 1, groupsUsed = 1
        if gguf[key("expert_group_count")] != nil || gguf[key("expert_group_used_count")] != nil {
            groups = try gguf.int(key("expert_group_count"))
            groupsUsed = try gguf.int(key("expert_group_used_count"))
            if groups > 1 {
                guard groups < experts, experts % groups == 0, experts / groups >= 2 else {
                    throw ModelError.invalidHyperparameter(key: key("expert_group_count"),
                                                           value: "\(groups) (needs groups of at least 2 of the \(experts) experts)")
                }
                guard groupsUsed > 0, groupsUsed < groups, k <= groupsUsed * (experts / groups) else {
                    throw ModelError.invalidHyperparameter(key: key("expert_group_used_count"),
                                                           value: "\(groupsUsed) (of \(groups) groups, for top-\(k))")
                }
            }
        }
        let gate = try gguf.requireTensor("blk.\(firstLayer).ffn_gate_exps.weight")
        guard gate.dimensions.count == 3, gate.dimensions[0] == dim, gate.dimensions[2] == experts else {
            throw ModelError.tensorShape(tensor: gate.name, expected: [dim, gate.dimensions.count > 1 ? gate.dimensions[1] : 0, experts],
                                         found: gate.dimensions)
        }
        var config = MoEConfig(experts: experts,
                               gating: ExpertGating(function: function, k: k, normalize: normalize, scale: scale,
                                                    groups: groups, groupsUsed: groupsUsed),
                               expertFFNDim: gate.dimensions[1])
        if let shared = gguf.tensor("blk.\(firstLayer).ffn_gate_shexp.weight") { config.sharedFFNDim = shared.rows }
        return config
    }
}

/// One MoE layer's weights. Each routed expert is its own `BackendWeight`: a slice of the 3-D
/// GGUF tensor (the CPU views the mapped bytes in place), so decode reads only the chosen slices.
public struct MoELayerWeights {
    public let router: BackendWeight            // [experts, dim]
    /// k: routed experts each token runs.
    public let expertsPerToken: Int
    public let gate: [BackendWeight]            // per expert [expertFFN, dim]
    public let up: [BackendWeight]              // per expert [expertFFN, dim]
    public let down: [BackendWeight]            // per expert [dim, expertFFN]
    public var sharedGate: BackendWeight? = nil // [sharedFFN, dim]
    public var sharedUp: BackendWeight? = nil   // [sharedFFN, dim]
    public var sharedDown: BackendWeight? = nil // [dim, sharedFFN]
    /// qwen2moe: the shared expert's output is scaled by σ(sharedRouter · h); [1, dim].
    public var sharedRouter: BackendWeight? = nil
    /// deepseek2 (V3): `exp_probs_b`, added to the scores for choosing experts only; [1, experts].
    public var selectionBias: BackendWeight? = nil

    public var experts: Int { gate.count }
    /// Bytes of one expert's three slices.
    public func expertBytes(_ e: Int) -> Int { gate[e].byteCount + up[e].byteCount + down[e].byteCount }
    /// Weights every token reads: the router and the shared expert.
    var alwaysRead: [BackendWeight] { [router] + [sharedGate, sharedUp, sharedDown, sharedRouter, selectionBias].compactMap { $0 } }
}

extension WeightLoader {
    /// The MoE weights of layer `i`, or nil when it has no router (a dense layer).
    func moeLayer(_ i: Int, _ c: ModelConfig) throws -> MoELayerWeights? {
        guard let moe = c.moe, gguf.tensor(layer(i, "ffn_gate_inp")) != nil else { return nil }
        let dim = c.dim, ff = moe.expertFFNDim
        var weights = MoELayerWeights(
            router: try matrix(layer(i, "ffn_gate_inp"), rows: moe.experts, columns: dim),
            expertsPerToken: moe.expertsPerToken,
            gate: try experts(layer(i, "ffn_gate_exps"), count: moe.experts, rows: ff, columns: dim),
            up: try experts(layer(i, "ffn_up_exps"), count: moe.experts, rows: ff, columns: dim),
            down: try experts(layer(i, "ffn_down_exps"), count: moe.experts, rows: dim, columns: ff))
        // Optional in llama.cpp too (TENSOR_NOT_REQUIRED): without it experts are chosen by p alone.
        if gguf.tensor("blk.\(i).exp_probs_b.bias") != nil {
            weights.selectionBias = try vector("blk.\(i).exp_probs_b.bias", width: moe.experts)
        }
        if gguf.tensor(layer(i, "ffn_gate_shexp")) != nil {
            let shared = moe.sharedFFNDim
            weights.sharedGate = try matrix(layer(i, "ffn_gate_shexp"), rows: shared, columns: dim)
            weights.sharedUp = try matrix(layer(i, "ffn_up_shexp"), rows: shared, columns: dim)
            weights.sharedDown = try matrix(layer(i, "ffn_down_shexp"), rows: dim, columns: shared)
            if gguf.tensor(layer(i, "ffn_gate_inp_shexp")) != nil {
                weights.sharedRouter = try matrix(layer(i, "ffn_gate_inp_shexp"), rows: 1, columns: dim)
            }
        }
        return weights
    }

    /// The `count` expert slices of a 3-D tensor with ggml ne [columns, rows, count].
    func experts(_ name: String, count: Int, rows: Int, columns: Int) throws -> [BackendWeight] {
        let info = try gguf.requireTensor(name)
        guard info.dimensions == [columns, rows, count] else {
            throw ModelError.tensorShape(tensor: name, expected: [columns, rows, count], found: info.dimensions)
        }
        guard Quantization.decodableWeightTypes.contains(info.type), backend.supports(.matmul(info.type)),
              let rowBytes = info.type.rowBytes(columns) else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        let bytes = gguf.bytes(of: info), slice = rows * rowBytes
        return try (0..<count).map { e in
            try backend.makeWeight(name: "\(name)[\(e)]", type: info.type, rows: rows, columns: columns,
                                   bytes: UnsafeRawBufferPointer(rebasing: bytes[(e * slice)..<((e + 1) * slice)]))
        }
    }
}
