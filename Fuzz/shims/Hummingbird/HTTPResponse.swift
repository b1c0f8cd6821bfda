// The Hummingbird types the request decoder (Sources/Server/APIError.swift) names, so the fuzz
// build compiles those files without the HTTP stack: only what APIError uses.
public enum HTTPResponse {
    public struct Status: Equatable, Sendable {
        public var code: Int
        public init(code: Int) { self.code = code }
        public static let badRequest = Status(code: 400)
        public static let unauthorized = Status(code: 401)
        public static let notFound = Status(code: 404)
        public static let contentTooLarge = Status(code: 413)
        public static let tooManyRequests = Status(code: 429)
        public static let serviceUnavailable = Status(code: 503)
    }
}

public enum HTTPRequest {
    public struct Method: Equatable, Sendable {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }
    }
}
