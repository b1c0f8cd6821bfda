import AsyncHTTPClient
import Foundation
import LLM
import Logging
import NIOCore
import Server
import ServiceLifecycle
import XCTest

/// The server started in-process on an ephemeral port of 127.0.0.1 (never another address),
/// with a graceful shutdown at the end as SIGTERM would trigger it.
final class TestServer: @unchecked Sendable {
    let server: OpenAIServer
    let port: Int
    private let group: ServiceGroup
    private let running: Task<Void, Error>

    static func start(apiKey: String? = nil, maxBodyBytes: Int = 2 << 20,
                      load: @escaping @Sendable () async throws -> any ServingEngine) async throws -> TestServer {
        var logger = Logger(label: "test-server")
        logger.logLevel = ProcessInfo.processInfo.environment["SERVER_TEST_LOGS"] == nil ? .critical : .info
        let configuration = ServerConfiguration(host: "127.0.0.1", port: 0, apiKey: apiKey, modelName: "test-model",
                                                maxBodyBytes: maxBodyBytes, shutdownGrace: .seconds(5))
        let server = OpenAIServer(configuration: configuration, logger: logger, loadEngine: load)
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let group = server.serviceGroup(signals: []) { port in continuation.yield(port) }
        let running = Task { try await group.run() }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next(), port > 0 else { throw XCTSkip("the server did not report a port") }
        return TestServer(server: server, port: port, group: group, running: running)
    }

    private init(server: OpenAIServer, port: Int, group: ServiceGroup, running: Task<Void, Error>) {
        self.server = server
        self.port = port
        self.group = group
        self.running = running
    }

    func shutdown() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
    }

    var base: String { "http://127.0.0.1:\(port)" }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
        var json: [String: Any] { (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:] }
        var error: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    }

    enum Method { case GET, POST }

    func request(_ method: Method = .POST, _ path: String, body: String? = nil, headers: [String: String] = [:]) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method == .GET ? .GET : .POST
        if let body {
            request.body = .bytes(ByteBuffer(string: body))
            request.headers.add(name: "content-type", value: "application/json")
        }
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(120))
        let bytes = try await response.body.collect(upTo: 16 << 20)
        var fields: [String: String] = [:]
        for header in response.headers { fields[header.name.lowercased()] = header.value }
        return Reply(status: Int(response.status.code), headers: fields, body: String(buffer: bytes))
    }

    func post(_ path: String, _ object: [String: Any], headers: [String: String] = [:]) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: object)
        return try await request(.POST, path, body: String(decoding: data, as: UTF8.self), headers: headers)
    }

    /// A streamed reply split into its server-sent events' data (the `data: ` prefix removed).
    func events(_ path: String, _ object: [String: Any]) async throws -> (reply: Reply, data: [String]) {
        let reply = try await post(path, object)
        let data = reply.body.components(separatedBy: "\n\n").filter { !$0.isEmpty }.map { event -> String in
            XCTAssertTrue(event.hasPrefix("data: "), "an SSE event starts with 'data: ': \(event.prefix(80))")
            return String(event.dropFirst(6))
        }
        return (reply, data)
    }
}

/// JSON objects of a stream's chunks (every event but the final `[DONE]`).
func chunks(_ data: [String]) -> [[String: Any]] {
    data.dropLast().compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
}

func firstChoice(_ object: [String: Any]) -> [String: Any] {
    (object["choices"] as? [[String: Any]])?.first ?? [:]
}

enum ServerFixtures {
    /// SmolLM2 from the user's cache (its tokenizer and chat template); tests skip when it is absent.
    static func smolLM2Path() throws -> String {
        let path = ModelCache.path(ModelCache.defaultModelFile)
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(path) is absent; run scripts/fetch-model") }
        return path
    }
}
