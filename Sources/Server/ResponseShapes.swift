import LLM

/// OpenAI's response objects for one request: the whole completion, or the stream's chunks.
/// Shapes from OpenAI's API reference (chat.completion, chat.completion.chunk, text_completion).
struct ResponseShapes {
    let endpoint: Endpoint
    let id: String
    /// Unix seconds, the same in every chunk of a stream.
    let created: Int
    let model: String
    let includeUsage: Bool

    init(endpoint: Endpoint, requestID: String, created: Int, model: String, includeUsage: Bool = false) {
        self.endpoint = endpoint
        self.id = (endpoint == .chat ? "chatcmpl-" : "cmpl-") + requestID
        self.created = created
        self.model = model
        self.includeUsage = includeUsage
    }

    private var object: String { endpoint == .chat ? "chat.completion" : "text_completion" }
    private var chunkObject: String { endpoint == .chat ? "chat.completion.chunk" : "text_completion" }

    /// `stop`, `length`; a stream ended by the server's shutdown says `abort` (as vLLM does: OpenAI
    /// has no such reason).
    static func finishReason(_ reason: ServingFinishReason) -> String {
        switch reason {
        case .stop: return "stop"
        case .length: return "length"
        case .cancelled, .shutdown: return "abort"
        }
    }

    /// A Float as JSON with its own shortest digits (-0.2344872, not the widened -0.23448717594146729).
    static func number(_ value: Float) -> JSON {
        .number(Double("\(value)") ?? Double(value))
    }

    static func usage(_ u: ServingUsage) -> JSON {
        .object([
            ("prompt_tokens", .int(u.promptTokens)),
            ("completion_tokens", .int(u.completionTokens)),
            ("total_tokens", .int(u.promptTokens + u.completionTokens)),
            ("prompt_tokens_details", .object([("cached_tokens", .int(u.cachedTokens))])),
        ])
    }

    /// The response of a request that was not streamed.
    func completion(text: String, finishReason: ServingFinishReason, tokens: [ServingToken], withLogprobs: Bool,
                    usage: ServingUsage) -> JSON {
        var choice: [(String, JSON)] = [("index", .int(0))]
        switch endpoint {
        case .chat: choice.append(("message", .object([("role", .string("assistant")), ("content", .string(text))])))
        case .completion: choice.append(("text", .string(text)))
        }
        choice.append(("logprobs", withLogprobs ? logprobs(tokens, textOffset: 0) : .null))
        choice.append(("finish_reason", .string(Self.finishReason(finishReason))))
        return .object([
            ("id", .string(id)), ("object", .string(object)), ("created", .int(created)), ("model", .string(model)),
            ("choices", .array([.object(choice)])), ("usage", Self.usage(usage)),
        ])
    }

    /// One stream chunk: a piece of text (the chat stream's first chunk also carries the role),
    /// its tokens' logprobs, and the finish reason on the last.
    func chunk(text: String, role: Bool = false, tokens: [ServingToken] = [], withLogprobs: Bool = false, textOffset: Int = 0,
               finishReason: ServingFinishReason? = nil) -> JSON {
        var choice: [(String, JSON)] = [("index", .int(0))]
        switch endpoint {
        case .chat:
            var delta: [(String, JSON)] = role ? [("role", .string("assistant"))] : []
            if !text.isEmpty || role { delta.append(("content", .string(text))) }
            choice.append(("delta", .object(delta)))
        case .completion:
            choice.append(("text", .string(text)))
        }
        choice.append(("logprobs", withLogprobs && !tokens.isEmpty ? logprobs(tokens, textOffset: textOffset) : .null))
        choice.append(("finish_reason", finishReason.map { .string(Self.finishReason($0)) } ?? .null))
        var fields: [(String, JSON)] = [
            ("id", .string(id)), ("object", .string(chunkObject)), ("created", .int(created)), ("model", .string(model)),
            ("choices", .array([.object(choice)])),
        ]
        // With `include_usage`, every chunk has `usage: null` and one more chunk at the end has it.
        if includeUsage { fields.append(("usage", .null)) }
        return .object(fields)
    }

    /// The extra last chunk of `stream_options.include_usage`: no choices, the usage.
    func usageChunk(_ usage: ServingUsage) -> JSON {
        .object([
            ("id", .string(id)), ("object", .string(chunkObject)), ("created", .int(created)), ("model", .string(model)),
            ("choices", .array([])), ("usage", Self.usage(usage)),
        ])
    }

    /// Chat: `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`.
    /// Completions: `{tokens, token_logprobs, top_logprobs: [{text: logprob}], text_offset}`, the
    /// offsets in characters from the start of the completion (`textOffset` for this chunk's first).
    func logprobs(_ tokens: [ServingToken], textOffset: Int) -> JSON {
        let scored = tokens.compactMap { token in token.logprob.map { (token, $0) } }
        let chosen = scored.map(\.1)
        switch endpoint {
        case .chat:
            func entry(_ t: TokenLogprob) -> [(String, JSON)] {
                [("token", .string(t.text)), ("logprob", Self.number(t.logprob)), ("bytes", .array(t.bytes.map { .int(Int($0)) }))]
            }
            return .object([("content", .array(scored.map { token, lp in
                .object(entry(lp) + [("top_logprobs", .array(token.top.map { .object(entry($0)) }))])
            }))])
        case .completion:
            var offsets: [JSON] = []
            var offset = textOffset
            for lp in chosen {
                offsets.append(.int(offset))
                offset += lp.text.count
            }
            return .object([
                ("tokens", .array(chosen.map { .string($0.text) })),
                ("token_logprobs", .array(chosen.map { Self.number($0.logprob) })),
                ("top_logprobs", .array(scored.map { token, _ in
                    var seen = Set<String>()
                    return .object(token.top.compactMap { seen.insert($0.text).inserted ? ($0.text, Self.number($0.logprob)) : nil })
                })),
                ("text_offset", .array(offsets)),
            ])
        }
    }
}
