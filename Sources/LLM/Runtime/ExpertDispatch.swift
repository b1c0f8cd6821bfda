import Foundation

/// One MoE layer's routing for a batch, as the host sees it: what `InferenceSession.routingObserver` receives.
public struct RoutingEvent {
    public let layer: Int
    /// Rows (tokens) in the batch.
    public let rows: Int
    public let experts: Int
    /// Router logits, [rows, experts] (downloaded only because an observer asked).
    public let logits: [Float]
    /// Chosen experts per row, [rows, k], best first.
    public let selected: [Int32]
    /// Their routing weights, [rows, k].
    public let weights: [Float]
    public let gating: ExpertGating
}

/// Runs a mixture-of-experts FFN in the host layer, on any backend with `moeGate`, `gatherRows`
/// and `scatterAddRows` (Model/MixtureOfExperts.swift has the formulas):
/// 1. the router matmul and the gating op run on the device; only the k chosen ids and weights
///    per token come back (2·k floats a token), because the host needs them to dispatch;
/// 2. tokens are grouped by expert, and each expert that received tokens runs once, as a matmul
///    over its gathered rows (decode: one row, so only the k chosen experts' weights are read);
/// 3. each expert's output rows are scaled by their routing weights and scatter-added straight
///    into the residual stream (x += Σ w·expert(h)); MoE families have no post-FFN norm.
/// Experts no token chose are never touched.
final class ExpertDispatch {
    private let backend: Backend
    private let config: MoEConfig
    private let dim: Int
    private let routerLogits, ids, weights, gathered, gate, up, output: BackendBuffer
    private let sharedGate, sharedUp, sharedLogit, sharedWeight, sharedID: BackendBuffer?
    var observer: ((RoutingEvent) -> Void)?

    init(backend: Backend, config c: ModelConfig, moe: MoEConfig, rows: Int) throws {
        func make(_ width: Int, _ label: String) throws -> BackendBuffer {
            try backend.makeBuffer(count: rows * width, label: label)
        }
        self.backend = backend
        self.config = moe
        self.dim = c.dim
        routerLogits = try make(moe.experts, "moe.logits")
        ids = try make(moe.expertsPerToken, "moe.ids")
        weights = try make(moe.expertsPerToken, "moe.weights")
        gathered = try make(c.dim, "moe.gathered")
        gate = try make(max(moe.expertFFNDim, moe.sharedFFNDim), "moe.gate")
        up = try make(max(moe.expertFFNDim, moe.sharedFFNDim), "moe.up")
        output = try make(c.dim, "moe.output")
        let shared = moe.sharedFFNDim > 0
        sharedGate = shared ? gate : nil
        sharedUp = shared ? up : nil
        sharedLogit = shared ? try make(1, "moe.shared.logit") : nil
        sharedWeight = shared ? try make(1, "moe.shared.weight") : nil
        sharedID = shared ? try make(1, "moe.shared.id") : nil
    }

    static let requiredOps: [BackendOp] = [.moeGating, .gatherRows, .scatterAddRows]

    /// x += MoE-FFN(h) for `rows` rows; h is the normalized input.
    func run(_ layer: MoELayerWeights, index: Int, input h: BackendBuffer, residual x: BackendBuffer, rows n: Int) throws {
        let b = backend, k = config.expertsPerToken, experts = layer.experts
        try b.matmul(layer.router, h, into: routerLogits, rows: n)
        try b.moeGate(routerLogits, rows: n, experts: experts, gating: config.gating, selectionBias: layer.selectionBias,
                      ids: ids, weights: weights)
        let chosen = try b.download(ids, offset: 0, count: n * k).map { Int32($0) }
        let factors = try b.download(weights, offset: 0, count: n * k)
        if let observer {
            observer(RoutingEvent(layer: index, rows: n, experts: experts,
                                  logits: try b.download(routerLogits, offset: 0, count: n * experts),
                                  selected: chosen, weights: factors, gating: config.gating))
        }

        // Group the (token, weight) pairs by expert, tokens in increasing order.
        var tokens = [[Int32]](repeating: [], count: experts), scales = [[Float]](repeating: [], count: experts)
        for r in 0..<n {
            for j in 0..<k {
                let e = Int(chosen[r * k + j])
                precondition(e >= 0 && e < experts, "gating returned expert \(e) of \(experts)")
                tokens[e].append(Int32(r))
                scales[e].append(factors[r * k + j])
            }
        }
        let ff = config.expertFFNDim
        for e in 0..<experts where !tokens[e].isEmpty {
            let m = tokens[e].count
            // Every row of the batch chose this expert (always so in decode): no gather needed.
            let input: BackendBuffer
            if m == n {
                input = h
            } else {
                try b.gatherRows(h, indices: tokens[e], into: gathered, width: dim)
                input = gathered
            }
            try ffn(gate: layer.gate[e], up: layer.up[e], down: layer.down[e], input: input, rows: m, width: ff)
            try b.scatterAddRows(output, indices: tokens[e], factors: scales[e], into: x, width: dim)
        }

        // The shared expert runs on every token: ungated (DeepSeek), or scaled by σ(its gate · h) (qwen2moe).
        if let sg = layer.sharedGate, let su = layer.sharedUp, let sd = layer.sharedDown {
            let all = (0..<n).map(Int32.init)
            var sharedFactors = [Float](repeating: 1, count: n)
            if let router = layer.sharedRouter, let logit = sharedLogit, let weight = sharedWeight, let id = sharedID {
                try b.matmul(router, h, into: logit, rows: n)
                // One "expert", k = 1, sigmoid, no normalization: the gating op computes σ on the device.
                try b.moeGate(logit, rows: n, experts: 1, gating: ExpertGating(function: .sigmoid, k: 1, normalize: false),
                              ids: id, weights: weight)
                sharedFactors = try b.download(weight, offset: 0, count: n)
            }
            try ffn(gate: sg, up: su, down: sd, input: h, rows: n, width: config.sharedFFNDim)
            try b.scatterAddRows(output, indices: all, factors: sharedFactors, into: x, width: dim)
        }
    }

    /// output = down(silu(gate · input) · (up · input)) over `rows` rows.
    private func ffn(gate g: BackendWeight, up u: BackendWeight, down d: BackendWeight, input: BackendBuffer,
                     rows: Int, width: Int) throws {
        try backend.matmul(g, input, into: gate, rows: rows)
        try backend.matmul(u, input, into: up, rows: rows)
        try backend.swiglu(gate: gate, up: up, into: gate, count: rows * width)
        try backend.matmul(d, gate, into: output, rows: rows)
    }
}
