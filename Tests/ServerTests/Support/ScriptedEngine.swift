import Foundation
import LLM

/// A `ServingEngine` that answers every request with the same scripted pieces of text, one token
/// per piece, at a set pace: the HTTP cases (shapes, SSE framing, validation, cancellation,
/// queue-full, shutdown) against a known answer, without running a model. It records what it
/// was asked and which requests were cancelled.
final class ScriptedEngine: ServingEngine, @unchecked Sendable {
    let model: Model
    let sequenceCapacity: Int
    /// Token i carries pieces[i]; its id is 1000 + i.
    let pieces: [String]
    let tokenDelay: Duration
    /// Requests in flight at most; one more is refused with `queueFull`.
    let limit: Int

    private let lock = NSLock()
    private var active: [Int: Request] = [:]
    private var nextID = 0
    private var stopping = false
    private(set) var submitted: [ServingRequest] = []
    private(set) var cancelledCount = 0

    private final class Request {
        var cancelled = false
    }

    init(model: Model, pieces: [String], tokenDelay: Duration = .zero, limit: Int = 64, sequenceCapacity: Int = 256) {
        self.model = model
        self.pieces = pieces
        self.tokenDelay = tokenDelay
        self.limit = limit
        self.sequenceCapacity = sequenceCapacity
    }

    var activeCount: Int { lock.withLock { active.count } }
    var requests: [ServingRequest] { lock.withLock { submitted } }
    var cancellations: Int { lock.withLock { cancelledCount } }

    func submit(_ request: ServingRequest) throws -> any ServingHandle {
        if request.prompt.isEmpty { throw ServingError.emptyPrompt }
        if request.prompt.count + request.maxTokens > sequenceCapacity {
            throw ServingError.contextLengthExceeded(promptTokens: request.prompt.count, maxTokens: request.maxTokens,
                                                     context: sequenceCapacity)
        }
        let id: Int
        let state = Request()
        lock.lock()
        if stopping {
            lock.unlock()
            throw ServingError.shuttingDown
        }
        guard active.count < limit else {
            lock.unlock()
            throw ServingError.queueFull(waiting: active.count)
        }
        id = nextID
        nextID += 1
        active[id] = state
        submitted.append(request)
        lock.unlock()

        let (events, continuation) = AsyncStream<ServingEvent>.makeStream()
        Task {
            continuation.yield(.started(promptTokens: request.prompt.count, cachedTokens: 0))
            let count = min(request.maxTokens, pieces.count)
            var reason = count < pieces.count ? ServingFinishReason.length : .stop
            var emitted = 0
            for k in 0..<count {
                if tokenDelay > .zero { try? await Task.sleep(for: tokenDelay) }
                let (cancelled, stop) = lock.withLock { (state.cancelled, stopping) }
                if cancelled { reason = .cancelled; break }
                if stop { reason = .shutdown; break }
                let text = pieces[k]
                let chosen = TokenLogprob(token: Int32(1000 + k), text: text, bytes: Array(text.utf8), logprob: -0.5 * Float(k + 1))
                let top = (0..<(request.topLogprobs ?? 0)).map { j in
                    j == 0 ? chosen : TokenLogprob(token: Int32(j), text: "alt\(j)", bytes: Array("alt\(j)".utf8), logprob: -0.5 * Float(k + 1) - Float(j))
                }
                continuation.yield(.token(ServingToken(token: Int32(1000 + k), text: text,
                                                       logprob: request.topLogprobs == nil ? nil : chosen, top: top)))
                emitted += 1
            }
            lock.withLock {
                active[id] = nil
                if reason == .cancelled { cancelledCount += 1 }
            }
            continuation.yield(.finished(reason: reason, text: "", usage: ServingUsage(
                promptTokens: request.prompt.count, completionTokens: emitted, cachedTokens: 0)))
            continuation.finish()
        }
        return Handle(events: events) { [weak self] in self?.lock.withLock { state.cancelled = true } }
    }

    private struct Handle: ServingHandle {
        let events: AsyncStream<ServingEvent>
        let onCancel: @Sendable () -> Void
        func cancel() { onCancel() }
    }

    func statistics() -> ServingStatistics {
        lock.withLock { ServingStatistics(running: active.count) }
    }

    func setStepObserver(_ observer: (@Sendable (Double, Int) -> Void)?) {}

    func shutdown() async {
        lock.withLock { stopping = true }
        while activeCount > 0 { try? await Task.sleep(for: .milliseconds(5)) }
    }
}
