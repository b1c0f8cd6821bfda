import LLM

/// Which OpenAI endpoint a request came through: it decides the input field (`messages` or
/// `prompt`), the logprobs fields' types, the response's shape and the default `max_tokens`.
public enum Endpoint: Sendable {
    case chat, completion
}

/// A `/v1/chat/completions` or `/v1/completions` body, checked field by field. Ranges follow
/// OpenAI's API reference; a field that is absent or `null` takes OpenAI's default.
struct CompletionRequest {
    enum Input {
        case messages([ChatMessage])
        case text(String)
        case tokens([Int32])
    }

    var endpoint: Endpoint
    var input: Input
    /// nil: as many as the context leaves (chat), OpenAI's 16 for completions is applied here.
    var maxTokens: Int?
    /// nil: greedy (`temperature: 0`).
    var sampling: SamplingParameters?
    var stop: [String]
    /// nil: no logprobs; else how many alternatives per token.
    var topLogprobs: Int?
    var stream: Bool
    var includeUsage: Bool

    /// OpenAI's limits: 4 stop sequences, 20 alternatives per token.
    static let maxStopSequences = 4
    static let maxTopLogprobs = 20

    init(endpoint: Endpoint, body: JSON) throws {
        guard case .object = body else {
            throw APIError(status: .badRequest, message: "the request body must be a JSON object, not \(body.typeName)",
                           code: "invalid_json")
        }
        let f = Fields(body)
        self.endpoint = endpoint
        switch endpoint {
        case .chat: input = .messages(try f.messages())
        case .completion: input = try f.prompt()
        }
        // `max_completion_tokens` is the newer name; either is accepted, not both at once.
        let legacy = try f.int("max_tokens", min: 1)
        let newer = try f.int("max_completion_tokens", min: 1)
        if legacy != nil, newer != nil {
            throw APIError.invalid("max_completion_tokens", "and 'max_tokens' are the same limit: give one")
        }
        maxTokens = newer ?? legacy ?? (endpoint == .completion ? 16 : nil)
        if let n = try f.int("n", min: 1), n != 1 { throw APIError.invalid("n", "must be 1 (one choice per request)") }
        stream = try f.bool("stream") ?? false
        includeUsage = false
        if let options = f["stream_options"] {
            guard stream else { throw APIError.invalid("stream_options", "is only allowed with 'stream': true") }
            guard case .object = options else { throw APIError.invalid("stream_options", "must be an object") }
            includeUsage = try Fields(options, path: "stream_options").bool("include_usage") ?? false
        }
        stop = try f.stop()
        topLogprobs = try f.logprobs(endpoint)

        // OpenAI's default temperature is 1; 0 is greedy decoding.
        let temperature = try f.double("temperature", 0...2) ?? 1
        let topP = try f.double("top_p", 0...1) ?? 1
        if topP == 0 { throw APIError.invalid("top_p", "must be above 0 (and at most 1)") }
        let minP = try f.double("min_p", 0...1) ?? 0
        if minP == 1 { throw APIError.invalid("min_p", "must be below 1 (and at least 0)") }
        let topK = try f.int("top_k", min: 0) ?? 0
        let presence = try f.double("presence_penalty", -2...2) ?? 0
        let frequency = try f.double("frequency_penalty", -2...2) ?? 0
        let repetition = try f.double("repetition_penalty", 0...10) ?? 1
        if repetition == 0 { throw APIError.invalid("repetition_penalty", "must be above 0") }
        let seed = try f.int("seed", min: Int.min)
        if temperature == 0 {
            sampling = nil
        } else {
            sampling = SamplingParameters(
                temperature: Float(temperature), topK: topK, topP: Float(topP), minP: Float(minP),
                repetitionPenalty: Float(repetition), presencePenalty: Float(presence), frequencyPenalty: Float(frequency),
                seed: seed.map { UInt64(bitPattern: Int64($0)) } ?? UInt64.random(in: .min ... .max))
        }
    }
}

/// Typed access to an object's fields; each error names the field by its path.
private struct Fields {
    let object: JSON
    let path: String

    init(_ object: JSON, path: String = "") {
        self.object = object
        self.path = path
    }

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The field's value; nil when absent or null (OpenAI treats an explicit null as absent).
    subscript(_ key: String) -> JSON? {
        guard let value = object[key], value != .null else { return nil }
        return value
    }

    func bool(_ key: String) throws -> Bool? {
        guard let value = self[key] else { return nil }
        guard case .bool(let b) = value else { throw APIError.invalid(name(key), "must be a boolean, not \(value.typeName)") }
        return b
    }

    func int(_ key: String, min: Int, max: Int = .max) throws -> Int? {
        guard let value = self[key] else { return nil }
        let i: Int
        switch value {
        case .int(let v): i = v
        case .number(let d) where d.rounded() == d && abs(d) < 0x1p53: i = Int(d)
        default: throw APIError.invalid(name(key), "must be an integer, not \(value.typeName)")
        }
        guard i >= min, i <= max else {
            if max == .max { throw APIError.invalid(name(key), "must be at least \(min), got \(i)") }
            throw APIError.invalid(name(key), "must be between \(min) and \(max), got \(i)")
        }
        return i
    }

    func double(_ key: String, _ range: ClosedRange<Double>) throws -> Double? {
        guard let value = self[key] else { return nil }
        let d: Double
        switch value {
        case .int(let v): d = Double(v)
        case .number(let v): d = v
        default: throw APIError.invalid(name(key), "must be a number, not \(value.typeName)")
        }
        guard range.contains(d) else {
            throw APIError.invalid(name(key), "must be between \(range.lowerBound) and \(range.upperBound), got \(d)")
        }
        return d
    }

    func messages() throws -> [ChatMessage] {
        guard let value = self["messages"] else { throw APIError.missing("messages") }
        guard case .array(let items) = value else { throw APIError.invalid("messages", "must be an array, not \(value.typeName)") }
        guard !items.isEmpty else { throw APIError.invalid("messages", "must hold at least one message") }
        return try items.enumerated().map { k, item in
            let at = "messages[\(k)]"
            guard case .object = item else { throw APIError.invalid(at, "must be an object, not \(item.typeName)") }
            let m = Fields(item, path: at)
            guard let roleValue = m["role"] else { throw APIError.missing("\(at).role") }
            guard case .string(let roleName) = roleValue else {
                throw APIError.invalid("\(at).role", "must be a string, not \(roleValue.typeName)")
            }
            // OpenAI's `developer` role is the newer name of `system`.
            guard let role = roleName == "developer" ? .system : ChatMessage.Role(rawValue: roleName) else {
                throw APIError.invalid("\(at).role", "must be system, developer, user or assistant, not '\(APIError.clipped(roleName))'")
            }
            return ChatMessage(role: role, content: try m.content())
        }
    }

    /// A message's `content`: a string, or an array of `{"type": "text", "text": …}` parts.
    func content() throws -> String {
        guard let value = self["content"] else { throw APIError.missing(name("content")) }
        switch value {
        case .string(let s): return s
        case .array(let parts):
            return try parts.enumerated().map { k, part in
                let at = name("content[\(k)]")
                let p = Fields(part, path: at)
                guard case .object = part, p["type"] == .string("text") else {
                    throw APIError.invalid(at, "must be a text part ({\"type\": \"text\", \"text\": …}); only text is supported")
                }
                guard case .string(let text)? = p["text"] else { throw APIError.invalid("\(at).text", "must be a string") }
                return text
            }.joined()
        default: throw APIError.invalid(name("content"), "must be a string or an array of text parts, not \(value.typeName)")
        }
    }

    /// `prompt`: a string, an array of token ids, or a one-element array of either (OpenAI's
    /// batched forms with more than one prompt are refused: one request, one prompt).
    func prompt() throws -> CompletionRequest.Input {
        guard let value = self["prompt"] else { throw APIError.missing("prompt") }
        switch value {
        case .string(let s): return .text(s)
        case .array(let items):
            if items.count == 1, case .string(let s) = items[0] { return .text(s) }
            if items.count == 1, case .array(let ids) = items[0] { return .tokens(try tokenIDs(ids, at: "prompt[0]")) }
            return .tokens(try tokenIDs(items, at: "prompt"))
        default: throw APIError.invalid("prompt", "must be a string or an array of token ids, not \(value.typeName)")
        }
    }

    private func tokenIDs(_ items: [JSON], at: String) throws -> [Int32] {
        try items.enumerated().map { k, item in
            guard case .int(let id) = item, id >= 0, id <= Int(Int32.max) else {
                throw APIError.invalid("\(at)[\(k)]", "must be a token id (an integer ≥ 0); one prompt per request")
            }
            return Int32(id)
        }
    }

    /// `stop`: a string or up to four strings, none empty.
    func stop() throws -> [String] {
        guard let value = self["stop"] else { return [] }
        let texts: [String]
        switch value {
        case .string(let s): texts = [s]
        case .array(let items):
            texts = try items.enumerated().map { k, item in
                guard case .string(let s) = item else { throw APIError.invalid("stop[\(k)]", "must be a string, not \(item.typeName)") }
                return s
            }
        default: throw APIError.invalid("stop", "must be a string or an array of strings, not \(value.typeName)")
        }
        guard texts.count <= CompletionRequest.maxStopSequences else {
            throw APIError.invalid("stop", "holds at most \(CompletionRequest.maxStopSequences) sequences, got \(texts.count)")
        }
        guard !texts.contains("") else { throw APIError.invalid("stop", "must not contain an empty string") }
        return texts
    }

    /// Chat: `logprobs` is a boolean and `top_logprobs` the count. Completions: `logprobs` is the count.
    func logprobs(_ endpoint: Endpoint) throws -> Int? {
        let limit = CompletionRequest.maxTopLogprobs
        switch endpoint {
        case .chat:
            let top = try int("top_logprobs", min: 0, max: limit)
            guard try bool("logprobs") == true else {
                if top != nil { throw APIError.invalid("top_logprobs", "needs 'logprobs': true") }
                return nil
            }
            return top ?? 0
        case .completion:
            return try int("logprobs", min: 0, max: limit)
        }
    }
}
