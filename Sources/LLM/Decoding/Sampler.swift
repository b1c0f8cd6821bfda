import Foundation

/// Parameters of stochastic decoding. Each stage is off at its neutral value.
///
/// The chain runs in this fixed order (llama.cpp's default order, minus DRY/XTC/typical):
/// 1. penalties on the logits of recently generated tokens (repetition, then presence/frequency);
/// 2. top-k: keep the k largest logits (0 = off);
/// 3. top-p: keep the smallest set of most probable tokens whose probability reaches p (1 = off);
/// 4. min-p: drop tokens whose probability is below min-p × the top probability (0 = off);
/// 5. temperature: divide the surviving logits by T;
/// 6. draw one token from the softmax of what is left, with a seeded generator.
/// Probabilities in 3 and 4 are the softmax of the penalized logits at temperature 1.
public struct SamplingParameters: Sendable, Equatable {
    public var temperature: Float = 0.8
    public var topK: Int = 0
    public var topP: Float = 1
    public var minP: Float = 0
    /// CTRL-style: a seen token's logit is divided by this when positive, multiplied when negative (1 = off).
    public var repetitionPenalty: Float = 1
    /// Subtracted once from the logit of every seen token (0 = off).
    public var presencePenalty: Float = 0
    /// Subtracted per occurrence from the logit of every seen token (0 = off).
    public var frequencyPenalty: Float = 0
    /// How many of the most recent tokens the penalties look at.
    public var penaltyWindow: Int = 64
    public var seed: UInt64 = 0

    public init(temperature: Float = 0.8, topK: Int = 0, topP: Float = 1, minP: Float = 0,
                repetitionPenalty: Float = 1, presencePenalty: Float = 0, frequencyPenalty: Float = 0,
                penaltyWindow: Int = 64, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.minP = minP
        self.repetitionPenalty = repetitionPenalty
        self.presencePenalty = presencePenalty
        self.frequencyPenalty = frequencyPenalty
        self.penaltyWindow = penaltyWindow
        self.seed = seed
    }
}

/// A seeded, platform-independent generator (xoshiro256**, seeded by SplitMix64), so a seed gives
/// the same draws on every machine and backend.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var x = seed
        func splitmix() -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
    }

    public mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = s.3 << 45 | s.3 >> 19
        return result
    }

    /// Uniform in [0, 1) with 53 bits.
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1p-53 }
}

/// The sampling chain over one row of logits. Holds no per-step allocations beyond `candidates`.
public struct Sampler {
    public let parameters: SamplingParameters
    private var generator: SeededGenerator

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        self.generator = SeededGenerator(seed: parameters.seed)
    }

    /// Chooses the next token after `history` (the prompt and what was generated so far).
    public mutating func sample(logits: [Float], history: [Int32]) -> Int32 {
        let candidates = Self.filter(logits: logits, history: history, parameters)
        return Self.draw(candidates, using: &generator)
    }

    /// Stages 1–5: the surviving (token, logit at temperature) pairs, most probable first.
    public static func filter(logits input: [Float], history: [Int32], _ p: SamplingParameters) -> [(id: Int32, logit: Float)] {
        var logits = input
        applyPenalties(&logits, history: history, p)
        var candidates = logits.enumerated().map { (id: Int32($0.offset), logit: $0.element) }
        candidates.sort { $0.logit != $1.logit ? $0.logit > $1.logit : $0.id < $1.id }
        if p.topK > 0 && p.topK < candidates.count { candidates.removeSubrange(p.topK...) }

        let probabilities = softmax(candidates.map(\.logit))
        var keep = candidates.count
        if p.topP < 1 {
            var cumulative: Double = 0
            for (i, q) in probabilities.enumerated() {
                cumulative += q
                if cumulative >= Double(p.topP) { keep = i + 1; break }
            }
        }
        if p.minP > 0, let top = probabilities.first {
            let threshold = Double(p.minP) * top
            keep = min(keep, max(1, probabilities.prefix(keep).prefix { $0 >= threshold }.count))
        }
        candidates.removeSubrange(max(keep, 1)...)
        let temperature = max(p.temperature, 1e-6)
        return candidates.map { ($0.id, $0.logit / temperature) }
    }

    /// Stage 1, in place. Repetition applies once per distinct token; frequency counts occurrences.
    public static func applyPenalties(_ logits: inout [Float], history: [Int32], _ p: SamplingParameters) {
        guard p.repetitionPenalty != 1 || p.presencePenalty != 0 || p.frequencyPenalty != 0, p.penaltyWindow > 0 else { return }
        var counts: [Int32: Int] = [:]
        for t in history.suffix(p.penaltyWindow) { counts[t, default: 0] += 1 }
        for (token, count) in counts where token >= 0 && Int(token) < logits.count {
            var l = logits[Int(token)]
            if p.repetitionPenalty != 1 { l = l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty }
            l -= Float(count) * p.frequencyPenalty + p.presencePenalty
            logits[Int(token)] = l
        }
    }

    /// Stage 6: inverse-CDF draw from softmax(candidates).
    static func draw(_ candidates: [(id: Int32, logit: Float)], using generator: inout SeededGenerator) -> Int32 {
        let probabilities = softmax(candidates.map(\.logit))
        let u = generator.nextUnit()
        var cumulative = 0.0
        for (i, q) in probabilities.enumerated() {
            cumulative += q
            if u < cumulative { return candidates[i].id }
        }
        return candidates[candidates.count - 1].id
    }

    static func softmax(_ logits: [Float]) -> [Double] {
        guard let maxLogit = logits.max() else { return [] }
        let e = logits.map { exp(Double($0 - maxLogit)) }
        let total = e.reduce(0, +)
        return e.map { $0 / total }
    }
}
