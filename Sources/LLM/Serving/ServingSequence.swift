import Foundation

/// One request inside the scheduler: its tokens, where their keys and values are, and the
/// decoding state (sampler, detokenizer, stop matcher) that turns its logits into events.
/// Owned by the scheduler thread.
final class ServingSequence {
    /// Arrival order: smaller is older. Older sequences are scheduled first and pre-empted last.
    let id: UInt64
    let request: ServingRequest
    let continuation: AsyncStream<ServingEvent>.Continuation
    /// Prompt + generated: what the KV cache is built from. While decoding, the last of them is
    /// the one the next step evaluates.
    private(set) var tokens: [Int32]
    /// Leading `tokens` whose keys and values are in `table`.
    var computed = 0
    var table: [Int32] = []
    /// Chain keys of the prompt's full blocks (PrefixCache), and how many of them are in the cache.
    let promptKeys: [UInt64]
    var registeredBlocks = 0
    /// Prompt tokens that came from the prefix cache at the first admission (`usage.cachedTokens`).
    var cachedTokens: Int?
    private var sampler: Sampler?
    private var decoder: StreamingDecoder
    private var stops: StopMatcher

    init(id: UInt64, request: ServingRequest, tokenizer: Tokenizer, blockSize: Int,
         continuation: AsyncStream<ServingEvent>.Continuation) {
        self.id = id
        self.request = request
        self.continuation = continuation
        tokens = request.prompt
        promptKeys = PrefixCache.keys(request.prompt, blockSize: blockSize)
        sampler = request.sampling.map { Sampler($0) }
        decoder = StreamingDecoder(tokenizer: tokenizer)
        stops = StopMatcher(stops: request.stopSequences)
    }

    var generatedCount: Int { tokens.count - request.prompt.count }
    /// Tokens still to evaluate before the next token can be chosen.
    var pending: Int { tokens.count - computed }
    var needsHostLogits: Bool { sampler != nil || request.topLogprobs != nil }
    var usage: ServingUsage {
        ServingUsage(promptTokens: request.prompt.count, completionTokens: generatedCount, cachedTokens: cachedTokens ?? 0)
    }

    /// The next token from this sequence's logits row: `greedy` is the backend's argmax of it, `row`
    /// the downloaded row when `needsHostLogits`. Applies the same rules, in the same order, as
    /// `Generator.generate`: end-of-generation, then the stop sequences, then the length limits.
    /// Returns the event to send and, when the sequence is done, its finish reason.
    func accept(greedy: Int32?, row: [Float]?, capacity: Int) -> (event: ServingEvent?, finish: ServingFinishReason?) {
        let next: Int32
        if sampler != nil, let row {
            next = sampler!.sample(logits: row, history: tokens)
        } else {
            next = greedy!
        }
        if request.stopAtEndOfGeneration && decoder.tokenizer.isEndOfGeneration(next) { return (nil, .stop) }
        tokens.append(next)
        let (shown, stopped) = stops.append(decoder.feed(next))
        let (chosen, top) = logprobs(next, row)
        let event = ServingEvent.token(ServingToken(token: next, text: shown, logprob: chosen, top: top))
        if stopped {
            matchedStop = true
            return (event, .stop)
        }
        // As in Generator: no token is evaluated whose successor would not be used.
        if generatedCount == request.maxTokens || tokens.count - 1 == capacity { return (event, .length) }
        return (event, nil)
    }

    private var matchedStop = false

    /// The text held back that is final now the sequence ends, and the reason it ends with (an
    /// end-of-text flush can still complete a stop sequence).
    func finalText(_ reason: ServingFinishReason) -> (String, ServingFinishReason) {
        guard !matchedStop else { return ("", reason) }
        let (shown, stopped) = stops.append(decoder.flush())
        return (shown + (stopped ? "" : stops.finish()), stopped ? .stop : reason)
    }

    private func entry(_ token: Int32, _ logprob: Double) -> TokenLogprob {
        let bytes = decoder.tokenizer.piece(token)
        return TokenLogprob(token: token, text: String(decoding: bytes, as: UTF8.self), bytes: bytes, logprob: Float(logprob))
    }

    /// The chosen token's log-probability and the `topLogprobs` best, from the raw logits
    /// (log-softmax in double precision, as beam search scores).
    private func logprobs(_ token: Int32, _ row: [Float]?) -> (TokenLogprob?, [TokenLogprob]) {
        guard let n = request.topLogprobs, let row else { return (nil, []) }
        let values = logSoftmax(row)
        return (entry(token, values[Int(token)]), n > 0 ? topIndices(values, count: n).map { entry(Int32($0), values[$0]) } : [])
    }

    /// Forgets the KV (pre-emption): everything is recomputed from `tokens` when re-admitted.
    func dropKV() -> [Int32] {
        defer {
            table = []
            computed = 0
            registeredBlocks = 0
        }
        return table
    }
}
