/// A whole request's outcome, gathered from its events: what a non-streamed response returns.
public struct ServingResult: Sendable {
    public var tokens: [Int32] = []
    /// The token events in order (their logprobs when asked for).
    public var events: [ServingToken] = []
    /// Every token's text plus the final held-back text.
    public var text = ""
    /// nil when the request failed.
    public var finishReason: ServingFinishReason?
    public var usage: ServingUsage?
    public var failure: String?
    public var cachedTokens: Int?
}

extension ServingHandle {
    /// Waits for the request to end and gathers its events.
    public func result() async -> ServingResult {
        var r = ServingResult()
        for await event in events {
            switch event {
            case let .started(_, cached):
                r.cachedTokens = cached
            case .token(let t):
                r.tokens.append(t.token)
                r.events.append(t)
                r.text += t.text
            case let .finished(reason, text, usage):
                r.text += text
                r.finishReason = reason
                r.usage = usage
            case .failed(let message):
                r.failure = message
            }
        }
        return r
    }
}
