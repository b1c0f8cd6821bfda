import BackendCPU
import Foundation
import LLM
import Server
import XCTest

/// The server over the real `BatchScheduler` with SmolLM2 on the CPU, and the `llm-gpu serve`
/// binary driven by the official `openai` Python client.
final class RealEngineTests: XCTestCase {
    /// 8 concurrent greedy requests, each token for token what the same request gives alone.
    func testConcurrentGreedyEqualsAlone() async throws {
        let path = try ServerFixtures.smolLM2Path()
        let server = try await TestServer.start {
            try BatchScheduler(model: try Model.load(path: path, backend: CPUBackend(threads: 2)),
                               options: BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 256))
        }
        for _ in 0..<500 {
            if try await server.request(.GET, "/health").status == 200 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        let prompts = (0..<8).map { "Question \($0): name a colour and a fruit." }
        func ask(_ prompt: String) async throws -> [String] {
            let reply = try await server.post("/v1/completions", ["prompt": prompt, "max_tokens": 24, "temperature": 0, "logprobs": 0])
            XCTAssertEqual(reply.status, 200, reply.body)
            return (firstChoice(reply.json)["logprobs"] as? [String: Any])?["tokens"] as? [String] ?? []
        }
        var alone: [[String]] = []
        for p in prompts { alone.append(try await ask(p)) }
        let together = try await withThrowingTaskGroup(of: (Int, [String]).self) { group in
            for (k, p) in prompts.enumerated() { group.addTask { (k, try await ask(p)) } }
            var out = [[String]](repeating: [], count: prompts.count)
            for try await (k, tokens) in group { out[k] = tokens }
            return out
        }
        for k in prompts.indices {
            XCTAssertFalse(alone[k].isEmpty, "request \(k) generated nothing")
            XCTAssertEqual(together[k], alone[k], "request \(k)")
        }
        try await server.shutdown()
    }

    /// `llm-gpu serve` as a user starts it, the `openai` client's chat, completions and streams,
    /// then SIGTERM: exit status 0 within a few seconds. scripts/test sets LLM_GPU_OPENAI_PYTHON to
    /// its virtualenv's python (openai pinned there); without it the case is skipped.
    func testOpenAIClientAgainstBinary() throws {
        guard let python = ProcessInfo.processInfo.environment["LLM_GPU_OPENAI_PYTHON"] else {
            throw XCTSkip("LLM_GPU_OPENAI_PYTHON is not set (scripts/test sets it)")
        }
        _ = try ServerFixtures.smolLM2Path()
        let binary = try serveBinary()
        let serve = Process()
        serve.executableURL = binary
        serve.arguments = ["serve", "--port", "0", "--threads", "2", "--parallel", "4", "--context", "4096"]
        let err = Pipe()
        serve.standardError = err
        try serve.run()
        defer { if serve.isRunning { serve.terminate() } }
        // The bound port, from the "listening on" line.
        var seen = ""
        let deadline = Date().addingTimeInterval(30)
        while !seen.contains("listening on http://127.0.0.1:"), Date() < deadline {
            seen += String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
        }
        let url = try XCTUnwrap(seen.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression).map { String(seen[$0]) })

        let client = Process()
        client.executableURL = URL(fileURLWithPath: python)
        client.arguments = [URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("openai_client_check.py").path, url]
        let out = Pipe()
        client.standardOutput = out
        client.standardError = out
        try client.run()
        let printed = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        client.waitUntilExit()
        XCTAssertEqual(client.terminationStatus, 0, printed)

        serve.terminate()  // SIGTERM
        let stop = Date()
        serve.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(stop), 5)
        XCTAssertEqual(serve.terminationReason, .exit)
        XCTAssertEqual(serve.terminationStatus, 0)
    }

    private func serveBinary() throws -> URL {
        let candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()] + Bundle.allBundles.map(\.bundleURL)
        for dir in candidates {
            for base in [dir, dir.deletingLastPathComponent()] {
                let url = base.appendingPathComponent("llm-gpu")
                if FileManager.default.isExecutableFile(atPath: url.path) { return url }
            }
        }
        throw XCTSkip("llm-gpu executable not found beside the tests")
    }
}
