import Foundation
import Hummingbird
import LLM
import Logging
import NIOCore

extension OpenAIServer {
    /// `POST /v1/chat/completions` and `POST /v1/completions`: check the body, tokenize, submit,
    /// then answer with one JSON object or a stream of server-sent events.
    func complete(_ request: Request, context: BasicRequestContext, endpoint: Endpoint) async throws -> Response {
        let arrival = ContinuousClock.now
        let ready = try slot.engineForRequest()
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: configuration.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw APIError.bodyTooLarge(limit: configuration.maxBodyBytes)
        }
        guard let json = JSON.parse(body.readableBytesView) else { throw APIError.malformedJSON }
        let parsed = try CompletionRequest(endpoint: endpoint, body: json)
        let prompt = try promptTokens(parsed.input, ready)

        let inputField = endpoint == .chat ? "messages" : "prompt"
        let capacity = ready.engine.sequenceCapacity
        // Without max_tokens a request may use what the context leaves; it needs room for one token.
        guard prompt.count < capacity else {
            throw Self.refusal(.contextLengthExceeded(promptTokens: prompt.count, maxTokens: parsed.maxTokens ?? 1, context: capacity),
                               field: inputField)
        }
        let handle: any ServingHandle
        do {
            handle = try ready.engine.submit(ServingRequest(
                prompt: prompt, maxTokens: parsed.maxTokens ?? capacity - prompt.count, sampling: parsed.sampling,
                stopSequences: parsed.stop, stopAtEndOfGeneration: true, topLogprobs: parsed.topLogprobs))
        } catch let error as ServingError {
            throw Self.refusal(error, field: inputField)
        }

        let id = Self.newRequestID()
        let shapes = ResponseShapes(endpoint: endpoint, requestID: id, created: Int(Date().timeIntervalSince1970),
                                    model: configuration.modelName, includeUsage: parsed.includeUsage)
        let trace = RequestTrace(id: shapes.id, arrival: arrival, metrics: metrics, logger: logger)
        let wantLogprobs = parsed.topLogprobs != nil
        // A streamed request whose client went away is cancelled at the first write that fails
        // (the next token). Hummingbird's inbound-close watch cannot follow a body already read
        // (NIO traps on it), and the body must be read to answer 400s before the stream starts, so a
        // request that is not streamed runs to its end even if its client has gone.
        if parsed.stream {
            var headers = HTTPFields()
            headers[.contentType] = "text/event-stream"
            headers[.cacheControl] = "no-cache"
            return Response(status: .ok, headers: headers, body: ResponseBody { writer in
                try await Self.stream(handle, shapes: shapes, logprobs: wantLogprobs, trace: trace, to: &writer)
            })
        }
        let outcome = await withTaskCancellationHandler {
            await Self.collect(handle, logprobs: wantLogprobs, trace: trace)
        } onCancel: { handle.cancel() }
        switch outcome {
        case let .finished(text, reason, tokens, usage):
            return .json(shapes.completion(text: text, finishReason: reason, tokens: tokens, withLogprobs: wantLogprobs, usage: usage))
        case .failed(let message):
            throw APIError(status: .internalServerError, message: message, type: "server_error")
        }
    }

    /// The prompt's token ids: `messages` through the model's chat template (as `run --chat`), a
    /// string through the tokenizer (BOS where the model wants it), or ids as given.
    private func promptTokens(_ input: CompletionRequest.Input, _ ready: EngineSlot.Ready) throws -> [Int32] {
        switch input {
        case .messages(let messages):
            guard case .success(let template) = ready.template else {
                throw APIError(status: .badRequest, message: "this model has no usable chat template; use /v1/completions with a prompt",
                               param: "messages", code: "no_chat_template")
            }
            return ready.tokenizer.encode(template.render(conversation: messages))
        case .text(let text): return ready.tokenizer.encode(text)
        case .tokens(let ids): return ids
        }
    }

    /// A refusal from the engine, naming the request's input field where it is at fault.
    private static func refusal(_ error: ServingError, field: String) -> APIError {
        var api = APIError(error)
        if api.param != nil { api.param = field }
        return api
    }

    private static func newRequestID() -> String {
        String(UInt64.random(in: 1 ... .max), radix: 36)
    }

    enum Outcome: Sendable {
        case finished(text: String, reason: ServingFinishReason, tokens: [ServingToken], usage: ServingUsage)
        case failed(String)
    }

    private static func collect(_ handle: any ServingHandle, logprobs: Bool, trace: RequestTrace) async -> Outcome {
        var text = ""
        var tokens: [ServingToken] = []
        for await event in handle.events {
            switch event {
            case let .started(promptTokens, cachedTokens):
                trace.started(promptTokens: promptTokens, cachedTokens: cachedTokens)
            case .token(let token):
                trace.token()
                text += token.text
                if logprobs { tokens.append(token) }
            case let .finished(reason, tail, usage):
                trace.finished(reason: ResponseShapes.finishReason(reason), usage: usage)
                return .finished(text: text + tail, reason: reason, tokens: tokens, usage: usage)
            case .failed(let message):
                trace.finished(reason: "error", usage: nil)
                return .failed(message)
            }
        }
        trace.finished(reason: "error", usage: nil)
        return .failed("the engine ended the request without a result")
    }

    /// Server-sent events: `data: {chunk}` per piece of text, a chunk with the finish reason,
    /// the usage chunk when asked for, then `data: [DONE]`. A failed write (the client is gone)
    /// cancels the request.
    private static func stream(_ handle: any ServingHandle, shapes: ResponseShapes, logprobs: Bool, trace: RequestTrace,
                               to writer: inout any ResponseBodyWriter) async throws {
        func send(_ json: JSON) async throws {
            try await writer.write(ByteBuffer(string: "data: \(json.serialized)\n\n"))
        }
        do {
            // OpenAI's chat stream opens with the role.
            if shapes.endpoint == .chat { try await send(shapes.chunk(text: "", role: true)) }
            var textOffset = 0
            events: for await event in handle.events {
                switch event {
                case let .started(promptTokens, cachedTokens):
                    trace.started(promptTokens: promptTokens, cachedTokens: cachedTokens)
                case .token(let token):
                    trace.token()
                    // A token whose text is held back (incomplete UTF-8, a possible stop sequence)
                    // still gets its chunk when logprobs were asked for.
                    guard !token.text.isEmpty || logprobs else { continue }
                    try await send(shapes.chunk(text: token.text, tokens: [token], withLogprobs: logprobs, textOffset: textOffset))
                    textOffset += token.logprob?.text.count ?? 0
                case let .finished(reason, tail, usage):
                    trace.finished(reason: ResponseShapes.finishReason(reason), usage: usage)
                    if reason == .cancelled { break events }
                    if !tail.isEmpty { try await send(shapes.chunk(text: tail)) }
                    try await send(shapes.chunk(text: "", finishReason: reason))
                    if shapes.includeUsage { try await send(shapes.usageChunk(usage)) }
                    break events
                case .failed(let message):
                    trace.finished(reason: "error", usage: nil)
                    try await send(APIError(status: .internalServerError, message: message, type: "server_error").json)
                    break events
                }
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        } catch {
            handle.cancel()
            trace.finished(reason: "client gone", usage: nil)
            throw error
        }
    }
}

/// One request's timings: time to first token and inter-token latency go to the histograms,
/// and its one log line goes out when it ends (the first `finished` call wins).
final class RequestTrace: @unchecked Sendable {
    private let id: String
    private let arrival: ContinuousClock.Instant
    private let metrics: ServerMetrics
    private let logger: Logger
    private var firstToken: ContinuousClock.Instant?
    private var lastToken: ContinuousClock.Instant?
    private var tokens = 0
    private var promptTokens = 0
    private var cachedTokens = 0
    private var done = false
    private let lock = NSLock()

    init(id: String, arrival: ContinuousClock.Instant, metrics: ServerMetrics, logger: Logger) {
        self.id = id
        self.arrival = arrival
        self.metrics = metrics
        self.logger = logger
    }

    func started(promptTokens: Int, cachedTokens: Int) {
        lock.lock()
        self.promptTokens = promptTokens
        self.cachedTokens = cachedTokens
        lock.unlock()
    }

    func token() {
        let now = ContinuousClock.now
        lock.lock()
        if let last = lastToken {
            metrics.recordInterTokenLatency(seconds: (now - last).seconds)
        } else {
            firstToken = now
            metrics.recordTimeToFirstToken(seconds: (now - arrival).seconds)
        }
        lastToken = now
        tokens += 1
        lock.unlock()
    }

    func finished(reason: String, usage: ServingUsage?) {
        lock.lock()
        defer { lock.unlock() }
        guard !done else { return }
        done = true
        let total = (ContinuousClock.now - arrival).seconds
        let ttft = firstToken.map { String(format: "%.3fs", ($0 - arrival).seconds) } ?? "-"
        logger.info("request", metadata: [
            "id": "\(id)", "prompt_tokens": "\(usage?.promptTokens ?? promptTokens)",
            "cached_tokens": "\(usage?.cachedTokens ?? cachedTokens)", "completion_tokens": "\(usage?.completionTokens ?? tokens)",
            "ttft": "\(ttft)", "total": "\(String(format: "%.3fs", total))", "finish": "\(reason)",
        ])
    }
}
