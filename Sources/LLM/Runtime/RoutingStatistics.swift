import Foundation

/// How a mixture-of-experts router spreads its load, per layer (`llm-gpu experts`).
///
/// For N experts, n tokens and k experts per token, in one layer:
/// - counts[i]: tokens routed to expert i (Σ counts = n·k);
/// - f_i = counts[i] / (n·k), the share of routing assignments (Σ f = 1);
/// - P_i: the mean router probability of expert i over the tokens (softmax of the logits; for
///   sigmoid gating the sigmoid scores normalized to sum 1);
/// - load-balancing loss (Switch Transformer) N · Σ f_i · P_i: 1 when f and P are uniform;
/// - z-loss (ST-MoE): mean over tokens of logsumexp(logits)²;
/// - entropy: −Σ f_i ln f_i / ln N, 1 for a uniform load, 0 when one expert takes everything;
/// - collapsed: the k busiest experts receive more than half of all assignments *and* more than
///   twice their uniform share (2k/N). At k = 2 of 8 that is "the top 2 take more than half".
public struct LayerRoutingStatistics: Codable, Equatable, Sendable {
    public var layer: Int
    public var counts: [Int]
    public var fractions: [Double]
    public var meanProbs: [Double]
    public var loadBalancingLoss: Double
    public var zLoss: Double
    public var entropy: Double
    public var collapsed: Bool

    enum CodingKeys: String, CodingKey {
        case layer, counts, fractions, entropy, collapsed
        case meanProbs = "mean_probs"
        case loadBalancingLoss = "load_balancing_loss"
        case zLoss = "z_loss"
    }
}

public final class RoutingStatistics {
    public static let collapseRule =
        "collapsed: the k busiest experts take more than max(1/2, 2k/N) of the routing assignments"

    public let experts: Int
    public let expertsPerToken: Int
    private var counts: [[Int]]
    private var probabilitySums: [[Double]]
    private var zSums: [Double]
    private var rows: [Int]

    public init(layers: Int, experts: Int, expertsPerToken: Int) {
        self.experts = experts
        self.expertsPerToken = expertsPerToken
        counts = Array(repeating: Array(repeating: 0, count: experts), count: layers)
        probabilitySums = Array(repeating: Array(repeating: 0, count: experts), count: layers)
        zSums = Array(repeating: 0, count: layers)
        rows = Array(repeating: 0, count: layers)
    }

    /// Tokens seen (by the first MoE layer).
    public var tokens: Int { rows.max() ?? 0 }

    public func record(_ event: RoutingEvent) {
        let l = event.layer, n = event.experts
        for e in event.selected { counts[l][Int(e)] += 1 }
        for r in 0..<event.rows {
            let row = event.logits[(r * n)..<((r + 1) * n)].map(Double.init)
            let top = row.max() ?? 0
            let total = row.reduce(0) { $0 + exp($1 - top) }
            let logSumExp = top + log(total)
            zSums[l] += logSumExp * logSumExp
            switch event.gating.function {
            case .softmax:
                for e in 0..<n { probabilitySums[l][e] += exp(row[e] - logSumExp) }
            case .sigmoid:
                let s = row.map { 1 / (1 + exp(-$0)) }, sum = s.reduce(0, +)
                for e in 0..<n { probabilitySums[l][e] += s[e] / sum }
            }
        }
        rows[l] += event.rows
    }

    /// One entry per MoE layer that saw tokens.
    public var layers: [LayerRoutingStatistics] {
        counts.indices.compactMap { l in
            guard rows[l] > 0 else { return nil }
            let n = Double(experts), assignments = Double(counts[l].reduce(0, +))
            let f = counts[l].map { assignments > 0 ? Double($0) / assignments : 0 }
            let p = probabilitySums[l].map { $0 / Double(rows[l]) }
            let loss = n * zip(f, p).reduce(0) { $0 + $1.0 * $1.1 }
            let entropy = experts > 1 ? -f.reduce(0) { $0 + ($1 > 0 ? $1 * log($1) : 0) } / log(n) : 0
            let busiest = f.sorted(by: >).prefix(expertsPerToken).reduce(0, +)
            let collapsed = busiest > max(0.5, 2 * Double(expertsPerToken) / n) + 1e-12
            return LayerRoutingStatistics(layer: l, counts: counts[l], fractions: f, meanProbs: p, loadBalancingLoss: loss,
                                          zLoss: zSums[l] / Double(rows[l]), entropy: entropy, collapsed: collapsed)
        }
    }

    /// Runs `tokens` through a fresh pass of `session` (which it resets) and gathers the routing of every MoE layer.
    public static func collect(session: InferenceSession, tokens: [Int32]) throws -> RoutingStatistics {
        let statistics = try RoutingStatistics(model: session.model)
        try statistics.observe(session: session, tokens: tokens)
        return statistics
    }

    /// Empty statistics for `model`'s MoE layers; an error for a dense model.
    public convenience init(model: Model) throws {
        guard let moe = model.config.moe else {
            throw ModelError.invalidHyperparameter(key: "\(model.config.architecture).expert_count",
                                                   value: "absent: \(model.config.name) is a dense model, it has no experts")
        }
        self.init(layers: model.config.layers, experts: moe.experts, expertsPerToken: moe.expertsPerToken)
    }

    /// Adds the routing of `tokens`, evaluated from position 0 of `session` (it is reset first).
    public func observe(session: InferenceSession, tokens: [Int32]) throws {
        session.reset()
        session.routingObserver = { [unowned self] in self.record($0) }
        defer { session.routingObserver = nil }
        _ = try session.evaluate(tokens, logits: .last)
    }
}
