import Hummingbird
import LLM

/// An error as OpenAI's API returns it: an HTTP status and
/// `{"error": {"message", "type", "param", "code"}}`. Messages are short and never echo more
/// than a short prefix of what the client sent.
public struct APIError: Error, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// OpenAI's `type`: invalid_request_error, authentication_error, server_error…
    public var type: String
    /// The request field at fault, as a path (`messages[1].content`), when there is one.
    public var param: String?
    public var code: String?
    /// Seconds, for 429 and 503 (the `Retry-After` header).
    public var retryAfter: Int?

    public init(status: HTTPResponse.Status, message: String, type: String = "invalid_request_error", param: String? = nil,
                code: String? = nil, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status.code) \(message)" }

    public var json: JSON {
        .object([("error", .object([
            ("message", .string(message)),
            ("type", .string(type)),
            ("param", param.map(JSON.string) ?? .null),
            ("code", code.map(JSON.string) ?? .null),
        ]))])
    }

    /// A field that is present but wrong: its type or its range.
    static func invalid(_ param: String, _ message: String) -> APIError {
        APIError(status: .badRequest, message: "'\(param)' \(message)", param: param, code: "invalid_value")
    }

    static func missing(_ param: String) -> APIError {
        APIError(status: .badRequest, message: "'\(param)' is required", param: param, code: "missing_required_parameter")
    }

    static let malformedJSON = APIError(status: .badRequest, message: "the request body is not valid JSON", code: "invalid_json")

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "the request body is over the limit of \(limit) bytes", code: "request_too_large")
    }

    static func notFound(_ method: HTTPRequest.Method, _ path: String) -> APIError {
        APIError(status: .notFound, message: "no route \(method.rawValue) \(clipped(path))", code: "unknown_url")
    }

    static let unauthorized = APIError(status: .unauthorized, message: "a valid API key is required (Authorization: Bearer KEY)",
                                       type: "authentication_error", code: "invalid_api_key")

    static let loading = APIError(status: .serviceUnavailable, message: "the model is still loading", type: "server_error",
                                  code: "model_loading", retryAfter: 1)

    /// What the engine refused at submission, in HTTP terms.
    init(_ error: ServingError) {
        switch error {
        case .contextLengthExceeded:
            self.init(status: .badRequest, message: error.description, param: "messages", code: "context_length_exceeded")
        case .emptyPrompt:
            self.init(status: .badRequest, message: error.description, param: "prompt", code: "invalid_value")
        case .tokenOutOfRange:
            self.init(status: .badRequest, message: error.description, param: "prompt", code: "invalid_value")
        case .queueFull:
            // Retry-After: a request of the usual length takes a few seconds on a CPU.
            self.init(status: .tooManyRequests, message: error.description, type: "server_error", code: "queue_full", retryAfter: 2)
        case .shuttingDown:
            self.init(status: .serviceUnavailable, message: error.description, type: "server_error", code: "shutting_down",
                      retryAfter: 1)
        }
    }

    /// At most 64 characters of client input in a message.
    static func clipped(_ text: String) -> String {
        text.count <= 64 ? text : String(text.prefix(64)) + "…"
    }
}
