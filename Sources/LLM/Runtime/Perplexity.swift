import Foundation

public struct PerplexityResult: Sendable {
    public var perplexity: Double
    /// Tokens scored (predictions whose negative log-likelihood entered the mean).
    public var scoredTokens: Int
    public var windows: Int
}

/// Perplexity as llama.cpp's `perplexity` tool computes it, so the figures compare:
/// the text is tokenized once (with BOS if the model adds one), cut into non-overlapping
/// windows of `context` tokens, the first token of each window is replaced by BOS when the
/// model adds BOS, and each window is scored on its second half: the predictions of tokens
/// context/2 + 1 ..< context.
public enum Perplexity {
    public static func evaluate(session: InferenceSession, text: String, context: Int) throws -> PerplexityResult {
        let tokenizer = session.model.tokenizer
        let tokens = tokenizer.encode(text, addSpecial: true, parseSpecial: false)
        return try evaluate(session: session, tokens: tokens, context: context, bos: tokenizer.addsBOS ? tokenizer.bos : nil)
    }

    public static func evaluate(session: InferenceSession, tokens: [Int32], context: Int, bos: Int32?) throws -> PerplexityResult {
        guard context >= 4, context <= session.cache.capacity else {
            throw ModelError.promptTooLong(tokens: context, context: session.cache.capacity)
        }
        let windows = tokens.count / context
        guard windows > 0 else { throw PerplexityError.textTooShort(tokens: tokens.count, context: context) }
        let vocab = session.model.config.vocabularySize
        let first = context / 2
        var nll = 0.0
        var count = 0
        for w in 0..<windows {
            var window = Array(tokens[(w * context)..<((w + 1) * context)])
            if let bos { window[0] = bos }
            session.reset()
            let logits = try session.evaluate(window, logits: .tail(from: first))
            let rows = try session.model.backend.download(logits, offset: 0, count: (context - 1 - first) * vocab)
            for j in 0..<(context - 1 - first) {
                let target = Int(tokens[w * context + first + j + 1])
                nll -= logProbability(rows, row: j, width: vocab, of: target)
                count += 1
            }
        }
        return PerplexityResult(perplexity: exp(nll / Double(count)), scoredTokens: count, windows: windows)
    }

    /// log softmax(row)[target], in double.
    static func logProbability(_ logits: [Float], row: Int, width: Int, of target: Int) -> Double {
        let base = row * width
        var maxLogit = -Float.infinity
        for i in 0..<width { maxLogit = max(maxLogit, logits[base + i]) }
        var sum = 0.0
        for i in 0..<width { sum += exp(Double(logits[base + i] - maxLogit)) }
        return Double(logits[base + target] - maxLogit) - log(sum)
    }
}

public enum PerplexityError: Error, CustomStringConvertible {
    case textTooShort(tokens: Int, context: Int)
    public var description: String {
        switch self {
        case let .textTooShort(tokens, context):
            return "the text has \(tokens) tokens, fewer than one window of --context \(context)"
        }
    }
}
