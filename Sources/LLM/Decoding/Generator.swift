import Foundation

/// How the next token is chosen.
public enum DecodingStrategy: Sendable, Equatable {
    /// Maximum probability at every step (argmax of the logits, first index on ties).
    case greedy
}

/// Everything one generation call takes: a single options value, not a family of overloads.
public struct GenerationOptions: Sendable {
    public var maxTokens: Int
    public var strategy: DecodingStrategy
    /// Stop at the model's end-of-generation tokens (EOS, EOT).
    public var stopAtEndOfGeneration: Bool

    public init(maxTokens: Int = 128, strategy: DecodingStrategy = .greedy, stopAtEndOfGeneration: Bool = true) {
        self.maxTokens = maxTokens
        self.strategy = strategy
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
    }
}

public enum FinishReason: String, Sendable, Codable {
    /// The model produced an end-of-generation token.
    case eos
    /// `maxTokens` or the context was reached.
    case length
    /// A stop sequence matched.
    case stop
}

public struct Timings: Sendable {
    public var promptTokens = 0
    public var promptSeconds = 0.0
    /// Decode steps: forward passes of one token each.
    public var generationSteps = 0
    public var generationSeconds = 0.0

    public var promptTokensPerSecond: Double { promptSeconds > 0 ? Double(promptTokens) / promptSeconds : 0 }
    public var generationTokensPerSecond: Double { generationSeconds > 0 ? Double(generationSteps) / generationSeconds : 0 }
}

public struct Completion: Sendable {
    /// Generated ids; an end-of-generation token that stopped the run is not included.
    public var tokens: [Int32]
    public var text: String
    public var finishReason: FinishReason
    public var timings: Timings
}

/// Runs prompt processing then the decode loop on an `InferenceSession`.
public struct Generator {
    public let session: InferenceSession

    public init(session: InferenceSession) {
        self.session = session
    }

    /// Generates after `prompt` (already tokenized; the session's cache is reset first).
    /// `onText` receives text as soon as it is whole UTF-8.
    public func generate(prompt: [Int32], options: GenerationOptions, onText: (String) -> Void = { _ in }) throws -> Completion {
        let tokenizer = session.model.tokenizer
        session.reset()
        guard !prompt.isEmpty else { throw ModelError.emptyPrompt }
        guard prompt.count <= session.cache.capacity else {
            throw ModelError.promptTooLong(tokens: prompt.count, context: session.cache.capacity)
        }
        var timings = Timings()
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var tokens: [Int32] = []
        var text = ""
        var finish = FinishReason.length

        let clock = ContinuousClock()
        var started = clock.now
        var next = try session.evaluateGreedy(prompt)
        timings.promptTokens = prompt.count
        timings.promptSeconds = seconds(clock.now - started)

        started = clock.now
        while tokens.count < options.maxTokens {
            if options.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(next) {
                finish = .eos
                break
            }
            tokens.append(next)
            let piece = decoder.feed(next)
            if !piece.isEmpty {
                text += piece
                onText(piece)
            }
            // Stop before evaluating a token whose successor would not be used.
            if tokens.count == options.maxTokens || session.cache.remaining == 0 { break }
            next = try session.evaluateGreedy([next])
            timings.generationSteps += 1
        }
        timings.generationSeconds = seconds(clock.now - started)
        let tail = decoder.flush()
        if !tail.isEmpty {
            text += tail
            onText(tail)
        }
        return Completion(tokens: tokens, text: text, finishReason: finish, timings: timings)
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}
