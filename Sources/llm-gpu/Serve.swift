import ArgumentParser
import Foundation
import LLM
import Logging
import Server

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP with OpenAI's chat and completions API (docs/SERVING.md).",
        discussion: """
            Endpoints: POST /v1/chat/completions, POST /v1/completions (streamed with "stream": true),
            GET /v1/models, GET /health (200 ready, 503 loading), GET /metrics (Prometheus).
            --context is the KV positions of the pool all sequences share (default: parallel × 2048,
            at most a quarter of the device's memory). SIGINT/SIGTERM end the requests in flight
            with finish_reason "abort" and exit 0.
            """)

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions

    @Option(help: "Address to listen on (loopback by default; 0.0.0.0 for every interface).")
    var host = "127.0.0.1"

    @Option(parsing: .unconditional, help: "TCP port (0: any free port; the bound one is printed on stderr).")
    var port = 8080

    @Option(parsing: .unconditional, help: "Sequences decoding at once.")
    var parallel = 8

    @Option(parsing: .unconditional, help: "Requests that may wait beyond --parallel before the server answers 429.")
    var queue = 64

    @Option(help: "Require `Authorization: Bearer KEY` on every route but /health.")
    var apiKey: String?

    func validate() throws {
        if port < 0 || port > 65535 { throw ValidationError("--port must be in 0...65535, got \(port)") }
        if parallel < 1 { throw ValidationError("--parallel must be at least 1, got \(parallel)") }
        if queue < 0 { throw ValidationError("--queue must be 0 or more, got \(queue)") }
        if apiKey?.isEmpty == true { throw ValidationError("--api-key needs a non-empty key") }
    }

    func run() throws {
        let path = try modelOption.resolve()
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "llm-gpu.serve")
        logger.logLevel = .info
        let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        let config = ServerConfiguration(host: host, port: port, apiKey: apiKey, modelName: name)
        let (engine, parallel, queue) = (self.engine, self.parallel, self.queue)
        let server = OpenAIServer(configuration: config, logger: logger) {
            // Loading maps the file and builds the pool: blocking work, off the server's threads.
            try await Task.detached {
                let backend = try engine.makeBackend()
                let model = try Model.load(path: path, backend: engine.profile ? ProfilingBackend(backend) : backend)
                return try BatchScheduler(model: model, options: BatchSchedulerOptions(
                    parallel: parallel, kvPositions: engine.context ?? Self.defaultPool(model, parallel: parallel), queueLimit: queue))
            }.value
        }
        let host = self.host
        let group = server.serviceGroup { port in printError("llm-gpu serve: listening on http://\(host):\(port)") }
        let done = DispatchSemaphore(value: 0)
        let failure = Box()
        Task {
            do { try await group.run() } catch { failure.error = error }
            done.signal()
        }
        done.wait()
        if let error = failure.error { throw error }
    }

    /// parallel × 2048 positions, or fewer if their keys and values would take more than a
    /// quarter of the device's memory (the host's for the CPU backend).
    static func defaultPool(_ model: Model, parallel: Int) -> Int {
        let c = model.config
        let bytesPerPosition = 2 * c.layers * c.kvHeads * c.headDim * MemoryLayout<Float>.size
        let memory = model.backend.memoryCapacity ?? ProcessInfo.processInfo.physicalMemory
        let fit = Int(memory / 4) / max(1, bytesPerPosition)
        return max(2048, min(parallel * 2048, fit))
    }

    private final class Box: @unchecked Sendable {
        var error: Error?
    }
}
