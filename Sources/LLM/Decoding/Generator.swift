import Foundation

/// How the next token is chosen.
public enum DecodingStrategy: Sendable, Equatable {
    /// Maximum probability at every step (argmax of the logits, first index on ties). Only the
    /// token id crosses back from the device.
    case greedy
    /// Draw from the filtered distribution (see `SamplingParameters` for the chain's order).
    case sample(SamplingParameters)
    /// Keep the `beams` best partial sequences by length-normalized log-probability.
    case beamSearch(BeamSearchParameters)
}

/// Everything one generation call takes: a single options value, not a family of overloads.
public struct GenerationOptions: Sendable {
    public var maxTokens: Int
    public var strategy: DecodingStrategy
    /// Stop at the model's end-of-generation tokens (EOS, EOT).
    public var stopAtEndOfGeneration: Bool
    /// Stop when the decoded text contains one of these; the match is not part of the result.
    public var stopSequences: [String]

    public init(maxTokens: Int = 128, strategy: DecodingStrategy = .greedy, stopAtEndOfGeneration: Bool = true,
                stopSequences: [String] = []) {
        self.maxTokens = maxTokens
        self.strategy = strategy
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
        self.stopSequences = stopSequences
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
    /// Generated ids. Greedy and sampling leave out an end-of-generation token that stopped the
    /// run; beam search keeps it, since it counts in the hypothesis's logprob and length.
    public var tokens: [Int32]
    public var text: String
    public var finishReason: FinishReason
    /// Beam search: Σ log p of `tokens`, and that sum divided by the length term.
    public var logprob: Double?
    public var score: Double?
}

/// What one `generate` call returns: one completion, or a beam search's best hypotheses, best first.
public struct Generation: Sendable {
    public var completions: [Completion]
    public var timings: Timings
    /// Beam search: the most KV-cache bytes held at once, and what per-beam contiguous caches would take.
    public var peakKVBytes: Int?
    public var contiguousKVBytes: Int?

    public var best: Completion { completions[0] }
}

/// Runs prompt processing then the decode loop on an `InferenceSession`.
public struct Generator {
    public let session: InferenceSession

    public init(session: InferenceSession) {
        self.session = session
    }

    /// Beam search needs no session: it runs on its own paged pool, sized for `parameters.beams`
    /// beams of `options.maxTokens` tokens after `prompt` (which, with them, must fit `contextLength`).
    /// The best hypothesis is known only at the end, so nothing streams; the caller prints completions.
    public static func beamSearch(model: Model, prompt: [Int32], options: GenerationOptions,
                                  parameters: BeamSearchParameters, contextLength: Int) throws -> Generation {
        let result = try BeamSearch(model: model).run(
            prompt: prompt, maxTokens: options.maxTokens, parameters: parameters,
            stopAtEndOfGeneration: options.stopAtEndOfGeneration, contextLength: contextLength)
        let completions = result.hypotheses.map {
            Completion(tokens: $0.tokens, text: $0.text, finishReason: $0.finishReason, logprob: $0.logprob, score: $0.score)
        }
        return Generation(completions: completions, timings: result.timings,
                          peakKVBytes: result.peakKVBytes, contiguousKVBytes: result.contiguousKVBytes)
    }

    /// Generates after `prompt` (already tokenized; the session's cache is reset first).
    /// `onText` receives text as soon as it is whole UTF-8.
    public func generate(prompt: [Int32], options: GenerationOptions, onText: (String) -> Void = { _ in }) throws -> Generation {
        try generate(prompt: prompt, reusing: 0, options: options, interrupt: { false }, onText: onText)
    }

    /// As `generate`, keeping the cache's first `reusing` positions, which the caller knows hold
    /// `prompt[..<reusing]` (a conversation's earlier turns), so only the rest is evaluated.
    /// `interrupt` is asked before each token; true ends the generation there (finish `.length`).
    func generate(prompt: [Int32], reusing: Int, options: GenerationOptions, interrupt: () -> Bool,
                  onText: (String) -> Void) throws -> Generation {
        if case .beamSearch(let parameters) = options.strategy {
            return try Self.beamSearch(model: session.model, prompt: prompt, options: options, parameters: parameters,
                                       contextLength: session.cache.capacity)
        }
        let tokenizer = session.model.tokenizer
        precondition(reusing >= 0 && reusing < max(prompt.count, 1) && reusing <= session.position, "reusing \(reusing) of \(prompt.count)")
        session.cache.truncate(to: reusing)
        guard !prompt.isEmpty else { throw ModelError.emptyPrompt }
        guard prompt.count <= session.cache.capacity else {
            throw ModelError.promptTooLong(tokens: prompt.count, context: session.cache.capacity)
        }
        var timings = Timings()
        var decoder = StreamingDecoder(tokenizer: tokenizer)
        var stops = StopMatcher(stops: options.stopSequences)
        var tokens: [Int32] = []
        var finish = FinishReason.length
        var chooser = NextToken(strategy: options.strategy, session: session)

        let clock = ContinuousClock()
        var started = clock.now
        var next = try chooser.next(after: Array(prompt[reusing...]), history: prompt)
        timings.promptTokens = prompt.count - reusing
        timings.promptSeconds = seconds(clock.now - started)

        started = clock.now
        while tokens.count < options.maxTokens && !interrupt() {
            if options.stopAtEndOfGeneration && tokenizer.isEndOfGeneration(next) {
                finish = .eos
                break
            }
            tokens.append(next)
            let (shown, stopped) = stops.append(decoder.feed(next))
            if !shown.isEmpty { onText(shown) }
            if stopped {
                finish = .stop
                break
            }
            // Stop before evaluating a token whose successor would not be used.
            if tokens.count == options.maxTokens || session.cache.remaining == 0 { break }
            next = try chooser.next(after: [next], history: prompt + tokens)
            timings.generationSteps += 1
        }
        timings.generationSeconds = seconds(clock.now - started)
        if finish != .stop {
            let (shown, stopped) = stops.append(decoder.flush())
            if stopped { finish = .stop }
            let tail = shown + (stopped ? "" : stops.finish())
            if !tail.isEmpty { onText(tail) }
        }
        return Generation(completions: [Completion(tokens: tokens, text: stops.text, finishReason: finish)], timings: timings)
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}

/// Evaluates tokens and picks the next one by the strategy: greedy reads back only the id,
/// sampling reads back the last row of logits.
private struct NextToken {
    let session: InferenceSession
    var sampler: Sampler?

    init(strategy: DecodingStrategy, session: InferenceSession) {
        self.session = session
        switch strategy {
        case .greedy: sampler = nil
        case .sample(let parameters): sampler = Sampler(parameters)
        case .beamSearch: preconditionFailure("beam search runs in BeamSearch")
        }
    }

    mutating func next(after tokens: [Int32], history: [Int32]) throws -> Int32 {
        guard sampler != nil else { return try session.evaluateGreedy(tokens) }
        let vocab = session.model.config.vocabularySize
        let buffer = try session.evaluate(tokens, logits: .last)
        let logits = try session.model.backend.download(buffer, offset: 0, count: vocab)
        return sampler!.sample(logits: logits, history: history)
    }
}
