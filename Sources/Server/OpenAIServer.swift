import Foundation
import Hummingbird
import LLM
import Logging
import ServiceLifecycle
import UnixSignals

public struct ServerConfiguration: Sendable {
    public var host: String
    /// 0: an ephemeral port (the bound one is passed to `onListening`).
    public var port: Int
    /// With a key, every route but `/health` wants `Authorization: Bearer KEY`.
    public var apiKey: String?
    /// The name `/v1/models` lists and every response's `model` carries.
    public var modelName: String
    /// Larger bodies are refused with 413 before they are read in full.
    public var maxBodyBytes: Int
    /// How long in-flight requests may take to end after SIGINT/SIGTERM before they are cancelled.
    public var shutdownGrace: Duration

    public init(host: String = "127.0.0.1", port: Int = 8080, apiKey: String? = nil, modelName: String,
                maxBodyBytes: Int = 2 << 20, shutdownGrace: Duration = .seconds(5)) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.modelName = modelName
        self.maxBodyBytes = maxBodyBytes
        self.shutdownGrace = shutdownGrace
    }
}

/// `llm-gpu serve`: OpenAI's chat and completions API over a `ServingEngine`. The server owns
/// HTTP, JSON, tokenization and chat templates; the engine owns batching, sampling and stop
/// sequences. It listens before the model is loaded (`/health` answers 503 meanwhile).
public final class OpenAIServer: Sendable {
    public let configuration: ServerConfiguration
    let logger: Logger
    let slot = EngineSlot()
    let metrics = ServerMetrics()
    private let loadEngine: @Sendable () async throws -> any ServingEngine
    let startTime = Int(Date().timeIntervalSince1970)

    public init(configuration: ServerConfiguration, logger: Logger, loadEngine: @escaping @Sendable () async throws -> any ServingEngine) {
        self.configuration = configuration
        self.logger = logger
        self.loadEngine = loadEngine
    }

    /// The HTTP application and the engine in one group. On a graceful shutdown (a signal in
    /// `signals`, or `triggerGracefulShutdown()`), services stop in reverse order: the engine
    /// first, which refuses new requests and ends the running ones with a finish reason, then the
    /// HTTP server, which closes the listener once the responses are written.
    public func serviceGroup(signals: [UnixSignal] = [.sigint, .sigterm],
                             onListening: @escaping @Sendable (Int) async -> Void = { _ in }) -> ServiceGroup {
        let app = Application(
            router: makeRouter(),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: "llm-gpu"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? 0) },
            logger: logger)
        let engine = EngineService(server: self, load: loadEngine)
        var group = ServiceGroupConfiguration(services: [.init(service: app), .init(service: engine)],
                                              gracefulShutdownSignals: signals, logger: logger)
        group.maximumGracefulShutdownDuration = configuration.shutdownGrace
        group.maximumCancellationDuration = .seconds(2)
        return ServiceGroup(configuration: group)
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ErrorMiddleware(logger: logger, maxBodyBytes: configuration.maxBodyBytes))
        if let key = configuration.apiKey { router.add(middleware: APIKeyMiddleware(key: key)) }
        router.get("health") { [slot] _, _ -> Response in
            let (status, text): (HTTPResponse.Status, String) = switch slot.state {
            case .loading: (.serviceUnavailable, "loading")
            case .ready: (.ok, "ok")
            case .stopping: (.serviceUnavailable, "shutting down")
            }
            return .json(.object([("status", .string(text))]), status: status)
        }
        router.get("metrics") { [slot, metrics] _, _ -> Response in
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            let text = metrics.scrape(slot.ready?.engine.statistics())
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
        router.get("v1/models") { [configuration, startTime] _, _ -> Response in
            .json(.object([("object", .string("list")), ("data", .array([.object([
                ("id", .string(configuration.modelName)), ("object", .string("model")), ("created", .int(startTime)),
                ("owned_by", .string("llm-gpu")),
            ])]))]))
        }
        router.post("v1/chat/completions") { [self] request, context in
            try await self.complete(request, context: context, endpoint: .chat)
        }
        router.post("v1/completions") { [self] request, context in
            try await self.complete(request, context: context, endpoint: .completion)
        }
        return router
    }
}

/// Where the engine is: loading (503), ready, or shutting down (503). Read by every request.
final class EngineSlot: @unchecked Sendable {
    struct Ready {
        let engine: any ServingEngine
        let tokenizer: Tokenizer
        /// nil when the model has none: `/v1/chat/completions` then says so.
        let template: Result<ChatTemplate, ChatTemplateError>
    }

    enum State {
        case loading, ready(Ready), stopping
    }

    private var value = State.loading
    private let lock = NSLock()

    var state: State {
        lock.lock()
        defer { lock.unlock() }
        return value
    }

    var ready: Ready? {
        if case .ready(let r) = state { return r }
        return nil
    }

    func set(_ state: State) {
        lock.lock()
        value = state
        lock.unlock()
    }

    /// The engine for a new request, or the 503 that says why there is none.
    func engineForRequest() throws -> Ready {
        switch state {
        case .loading: throw APIError.loading
        case .ready(let r): return r
        case .stopping: throw APIError(ServingError.shuttingDown)
        }
    }
}

/// Loads the engine, then waits for the graceful shutdown and shuts the engine down.
struct EngineService: Service {
    let server: OpenAIServer
    let load: @Sendable () async throws -> any ServingEngine

    func run() async throws {
        let started = ContinuousClock.now
        let engine = try await load()
        let template: Result<ChatTemplate, ChatTemplateError>
        do { template = .success(try ChatTemplate(gguf: engine.model.gguf)) } catch let e as ChatTemplateError {
            template = .failure(e)
        }
        let metrics = server.metrics
        engine.setStepObserver { seconds, _ in metrics.recordStep(seconds: seconds) }
        server.slot.set(.ready(.init(engine: engine, tokenizer: engine.model.tokenizer, template: template)))
        server.logger.info("model ready", metadata: [
            "model": "\(server.configuration.modelName)", "sequence_capacity": "\(engine.sequenceCapacity)",
            "load_seconds": "\(String(format: "%.2f", (ContinuousClock.now - started).seconds))",
        ])
        // Returns at the graceful shutdown (or throws at cancellation: shut down all the same).
        try? await gracefulShutdown()
        server.slot.set(.stopping)
        server.logger.info("shutting down: ending requests in flight")
        await engine.shutdown()
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}

extension Response {
    static func json(_ value: JSON, status: HTTPResponse.Status = .ok, extraHeaders: HTTPFields = [:]) -> Response {
        var headers = extraHeaders
        headers[.contentType] = "application/json"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: value.serialized)))
    }
}

/// Every error becomes OpenAI's error object: ours as they are, Hummingbird's (404 for an unknown
/// route, 413 for a body over the limit) with their status, anything else as a 500 that is logged.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let logger: Logger
    let maxBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return Self.response(error)
        } catch let error as HTTPError {
            switch error.status {
            case .notFound: return Self.response(.notFound(request.method, request.uri.path))
            case .contentTooLarge: return Self.response(.bodyTooLarge(limit: maxBodyBytes))
            default:
                return Self.response(APIError(status: error.status, message: error.body ?? error.status.reasonPhrase))
            }
        } catch {
            logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error)"])
            return Self.response(APIError(status: .internalServerError, message: "internal error", type: "server_error"))
        }
    }

    static func response(_ error: APIError) -> Response {
        var headers = HTTPFields()
        if let seconds = error.retryAfter { headers[.retryAfter] = String(seconds) }
        if error.status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return .json(error.json, status: error.status, extraHeaders: headers)
    }
}

/// `--api-key`: `Authorization: Bearer KEY` on every route but `/health` (load balancers' probes
/// carry no key). The comparison takes the same time wherever the first difference is.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: String

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if request.uri.path != "/health" {
            let given = Array((request.headers[.authorization] ?? "").utf8)
            let expected = Array("Bearer \(key)".utf8)
            var difference = given.count ^ expected.count
            for k in 0..<expected.count { difference |= Int((k < given.count ? given[k] : 0) ^ expected[k]) }
            guard difference == 0 else { throw APIError.unauthorized }
        }
        return try await next(request, context)
    }
}
