// The contract between the HTTP server (`llm-gpu serve`) and the engine that runs many requests
// at once (continuous batching over the paged KV pool). The server tokenizes and renders chat
// templates, validates JSON and maps errors to HTTP; the engine owns the backend, the KV pool,
// scheduling, sampling, detokenization and stop sequences. Nothing here is HTTP-specific.

/// One request as the engine sees it: token ids in, a stream of tokens out.
public struct ServingRequest: Sendable {
    /// The prompt, already tokenized (chat template applied, BOS added where the model wants it).
    public var prompt: [Int32]
    /// Generated tokens at most (the engine also stops at the end of a sequence's context).
    public var maxTokens: Int
    /// nil: greedy. Otherwise the sampling chain with the request's own seed, so a seeded request
    /// gives the same tokens whatever else is running.
    public var sampling: SamplingParameters?
    /// Stop when the decoded text contains one of these; the match is not part of the text.
    public var stopSequences: [String]
    /// Stop at the model's end-of-generation tokens.
    public var stopAtEndOfGeneration: Bool
    /// nil: no log-probabilities. n ≥ 0: each token event carries the chosen token's log-probability
    /// and the n most probable alternatives (OpenAI's `top_logprobs`, at most 20).
    public var topLogprobs: Int?

    public init(prompt: [Int32], maxTokens: Int, sampling: SamplingParameters? = nil, stopSequences: [String] = [],
                stopAtEndOfGeneration: Bool = true, topLogprobs: Int? = nil) {
        self.prompt = prompt
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopSequences = stopSequences
        self.stopAtEndOfGeneration = stopAtEndOfGeneration
        self.topLogprobs = topLogprobs
    }
}

/// A token with its log-probability (natural log, of the model's distribution at temperature 1,
/// before sampling filters), and its text and UTF-8 bytes as OpenAI's logprobs objects carry them.
public struct TokenLogprob: Sendable, Equatable {
    public var token: Int32
    public var text: String
    public var bytes: [UInt8]
    public var logprob: Float

    public init(token: Int32, text: String, bytes: [UInt8], logprob: Float) {
        self.token = token
        self.text = text
        self.bytes = bytes
        self.logprob = logprob
    }
}

public struct ServingToken: Sendable {
    public var token: Int32
    /// Text that became final with this token: empty while its UTF-8 is incomplete or while it may
    /// still be the start of a stop sequence (it then arrives with a later token or the finish).
    public var text: String
    /// Set when the request asked for `topLogprobs`.
    public var logprob: TokenLogprob?
    /// The most probable tokens, best first (`topLogprobs` of them).
    public var top: [TokenLogprob]

    public init(token: Int32, text: String, logprob: TokenLogprob? = nil, top: [TokenLogprob] = []) {
        self.token = token
        self.text = text
        self.logprob = logprob
        self.top = top
    }
}

public enum ServingFinishReason: String, Sendable {
    /// An end-of-generation token or a stop sequence (OpenAI's "stop").
    case stop
    /// `maxTokens` or the sequence's context was reached (OpenAI's "length").
    case length
    /// The client cancelled (disconnected).
    case cancelled
    /// The engine is shutting down; the stream ends with what it had.
    case shutdown
}

public struct ServingUsage: Sendable, Equatable {
    public var promptTokens: Int
    public var completionTokens: Int
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    public var cachedTokens: Int

    public init(promptTokens: Int, completionTokens: Int, cachedTokens: Int) {
        self.promptTokens = promptTokens
        self.completionTokens = completionTokens
        self.cachedTokens = cachedTokens
    }
}

public enum ServingEvent: Sendable {
    /// The request got its first forward pass (it left the queue).
    case started(promptTokens: Int, cachedTokens: Int)
    case token(ServingToken)
    /// Always the last event. `text` is what was held back and is now final (may be empty).
    case finished(reason: ServingFinishReason, text: String, usage: ServingUsage)
    /// The request failed inside the engine (its stream ends here; other requests go on).
    case failed(message: String)
}

public enum ServingError: Error, Equatable, CustomStringConvertible {
    /// prompt + maxTokens can never fit one sequence's context (HTTP 400, `context_length_exceeded`).
    case contextLengthExceeded(promptTokens: Int, maxTokens: Int, context: Int)
    case emptyPrompt
    /// A token id outside the vocabulary (a `prompt` given as ids).
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    /// `--parallel` requests are running and `--queue` more are waiting (HTTP 429 with Retry-After).
    case queueFull(waiting: Int)
    /// The engine no longer accepts requests (HTTP 503).
    case shuttingDown

    public var description: String {
        switch self {
        case let .contextLengthExceeded(prompt, maxTokens, context):
            return "the prompt has \(prompt) tokens and \(maxTokens) more were asked for, but a sequence holds at most \(context)"
        case .emptyPrompt: return "the prompt is empty"
        case let .tokenOutOfRange(token, vocab): return "token id \(token) is outside the vocabulary (0..<\(vocab))"
        case let .queueFull(waiting): return "the server is busy: \(waiting) requests are already waiting"
        case .shuttingDown: return "the server is shutting down"
        }
    }
}

/// A snapshot for `/metrics` and logs.
public struct ServingStatistics: Sendable, Equatable {
    public var running: Int
    /// Admitted nowhere yet, or pre-empted and waiting to be recomputed.
    public var waiting: Int
    /// Blocks held by running sequences.
    public var kvBlocksUsed: Int
    /// Blocks not held by any sequence: free, or held only by the prefix cache (evicted when needed).
    /// kvBlocksUsed + kvBlocksFree is the pool's size.
    public var kvBlocksFree: Int
    /// Blocks the prefix cache holds (some may also be in use by sequences).
    public var kvBlocksCached: Int
    /// Counters since start.
    public var promptTokens: Int
    public var generatedTokens: Int
    public var prefixCacheHitTokens: Int
    public var preemptions: Int

    public init(running: Int = 0, waiting: Int = 0, kvBlocksUsed: Int = 0, kvBlocksFree: Int = 0, kvBlocksCached: Int = 0, promptTokens: Int = 0,
                generatedTokens: Int = 0, prefixCacheHitTokens: Int = 0, preemptions: Int = 0) {
        self.running = running
        self.waiting = waiting
        self.kvBlocksUsed = kvBlocksUsed
        self.kvBlocksFree = kvBlocksFree
        self.kvBlocksCached = kvBlocksCached
        self.promptTokens = promptTokens
        self.generatedTokens = generatedTokens
        self.prefixCacheHitTokens = prefixCacheHitTokens
        self.preemptions = preemptions
    }
}

/// A submitted request: its events, and a way to end it early. Cancelling ends the sequence and
/// frees its KV blocks at the engine's next step; the stream then finishes with `.cancelled`.
public protocol ServingHandle: Sendable {
    var events: AsyncStream<ServingEvent> { get }
    func cancel()
}

/// What the server drives. Thread-safe: `submit` may be called from any task; the engine runs
/// its forward passes on a thread of its own (the backend is used from that thread only).
public protocol ServingEngine: AnyObject, Sendable {
    var model: Model { get }
    /// The most tokens (prompt + generated) one sequence can hold.
    var sequenceCapacity: Int { get }
    /// Throws `ServingError` for what can be refused at once; everything else arrives as events.
    func submit(_ request: ServingRequest) throws -> any ServingHandle
    func statistics() -> ServingStatistics
    /// Called after every step with its wall time in seconds and the tokens it evaluated (for histograms).
    func setStepObserver(_ observer: (@Sendable (_ seconds: Double, _ tokens: Int) -> Void)?)
    /// Stops accepting, ends in-flight requests with `.shutdown`, and returns when the engine's
    /// thread has stopped.
    func shutdown() async
}
