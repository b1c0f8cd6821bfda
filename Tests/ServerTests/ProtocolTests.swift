import BackendCPU
import Foundation
import LLM
import Server
import XCTest

/// The HTTP side against `ScriptedEngine`: every endpoint streamed and not, OpenAI's shapes, the
/// request fields as the engine receives them, each bad input, cancellation and shutdown. The
/// model (SmolLM2) is loaded for its tokenizer and chat template only.
final class ProtocolTests: XCTestCase {
    static let pieces = ["Paris", " is", " the", " capital", "."]
    private var model: Model!

    override func setUp() async throws {
        model = try Model.load(path: ServerFixtures.smolLM2Path(), backend: CPUBackend(threads: 1))
    }

    private func start(_ engine: ScriptedEngine, apiKey: String? = nil, maxBodyBytes: Int = 2 << 20) async throws -> TestServer {
        let server = try await TestServer.start(apiKey: apiKey, maxBodyBytes: maxBodyBytes) { engine }
        // Ready once /health says so.
        for _ in 0..<200 {
            if try await server.request(.GET, "/health").status == 200 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        return server
    }

    private func engine(delay: Duration = .zero, limit: Int = 64, pieces: [String] = ProtocolTests.pieces) -> ScriptedEngine {
        ScriptedEngine(model: model, pieces: pieces, tokenDelay: delay, limit: limit)
    }

    /// Polls for at most 5 s, so a broken case fails instead of hanging the run.
    private func waitUntil(_ condition: () -> Bool, file: StaticString = #filePath, line: UInt = #line) async throws {
        let deadline = ContinuousClock.now + .seconds(5)
        while !condition() {
            guard ContinuousClock.now < deadline else { return XCTFail("timed out waiting", file: file, line: line) }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    private let chat: [String: Any] = ["model": "m", "messages": [["role": "user", "content": "Capital of France?"]], "temperature": 0]

    func testChatCompletionShapeAndTemplate() async throws {
        let engine = engine()
        let server = try await start(engine)
        let reply = try await server.post("/v1/chat/completions", chat)
        XCTAssertEqual(reply.status, 200, reply.body)
        let o = reply.json
        XCTAssertTrue((o["id"] as? String)?.hasPrefix("chatcmpl-") == true)
        XCTAssertEqual(o["object"] as? String, "chat.completion")
        XCTAssertEqual(o["model"] as? String, "test-model")
        XCTAssertNotNil(o["created"] as? Int)
        let choice = firstChoice(o)
        XCTAssertEqual(choice["index"] as? Int, 0)
        XCTAssertEqual((choice["message"] as? [String: Any])?["content"] as? String, Self.pieces.joined())
        XCTAssertEqual((choice["message"] as? [String: Any])?["role"] as? String, "assistant")
        XCTAssertTrue(choice["logprobs"] is NSNull, "logprobs is an explicit null")
        XCTAssertEqual(choice["finish_reason"] as? String, "stop")
        // The prompt the engine got is `run --chat`'s: the template's one-turn rendering, tokenized.
        let template = try ChatTemplate(gguf: model.gguf)
        let expected = model.tokenizer.encode(template.render(user: "Capital of France?"))
        XCTAssertEqual(engine.requests.first?.prompt, expected)
        XCTAssertNil(engine.requests.first?.sampling, "temperature 0 is greedy")
        let usage = try XCTUnwrap(o["usage"] as? [String: Any])
        XCTAssertEqual(usage["prompt_tokens"] as? Int, expected.count)
        XCTAssertEqual(usage["completion_tokens"] as? Int, Self.pieces.count)
        XCTAssertEqual(usage["total_tokens"] as? Int, expected.count + Self.pieces.count)
        XCTAssertEqual((usage["prompt_tokens_details"] as? [String: Any])?["cached_tokens"] as? Int, 0)
        try await server.shutdown()
    }

    func testChatStreamFraming() async throws {
        let server = try await start(engine())
        var body = chat
        body["stream"] = true
        body["stream_options"] = ["include_usage": true]
        let (reply, data) = try await server.events("/v1/chat/completions", body)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.headers["content-type"], "text/event-stream")
        XCTAssertEqual(data.last, "[DONE]")
        let objects = chunks(data)
        XCTAssertEqual(objects.count, data.count - 1, "every event before [DONE] is a JSON chunk")
        XCTAssertTrue(objects.allSatisfy { $0["object"] as? String == "chat.completion.chunk" })
        XCTAssertEqual(Set(objects.compactMap { $0["id"] as? String }).count, 1, "one id across the stream")
        XCTAssertEqual((firstChoice(objects[0])["delta"] as? [String: Any])?["role"] as? String, "assistant")
        let text = objects.map { (firstChoice($0)["delta"] as? [String: Any])?["content"] as? String ?? "" }.joined()
        XCTAssertEqual(text, Self.pieces.joined())
        let reasons = objects.compactMap { firstChoice($0)["finish_reason"] as? String }
        XCTAssertEqual(reasons, ["stop"], "one finish reason, on the last choice chunk")
        // include_usage: every chunk has usage null, and a last chunk has no choices and the usage.
        let last = try XCTUnwrap(objects.last)
        XCTAssertEqual((last["choices"] as? [Any])?.count, 0)
        XCTAssertEqual((last["usage"] as? [String: Any])?["completion_tokens"] as? Int, Self.pieces.count)
        XCTAssertTrue(objects.dropLast().allSatisfy { $0["usage"] is NSNull })
        try await server.shutdown()
    }

    func testCompletionsStreamedAndNotWithLogprobs() async throws {
        let engine = engine()
        let server = try await start(engine)
        let body: [String: Any] = ["prompt": [1, 2, 3], "max_tokens": 4, "logprobs": 2, "temperature": 0.5, "seed": 7,
                                   "top_p": 0.9, "top_k": 40, "min_p": 0.05, "stop": ["\n", "END"], "presence_penalty": 0.5,
                                   "frequency_penalty": 0.25, "repetition_penalty": 1.1]
        let reply = try await server.post("/v1/completions", body)
        XCTAssertEqual(reply.status, 200, reply.body)
        XCTAssertEqual(reply.json["object"] as? String, "text_completion")
        let choice = firstChoice(reply.json)
        XCTAssertEqual(choice["text"] as? String, Self.pieces.prefix(4).joined())
        XCTAssertEqual(choice["finish_reason"] as? String, "length")
        let logprobs = try XCTUnwrap(choice["logprobs"] as? [String: Any])
        XCTAssertEqual(logprobs["tokens"] as? [String], Array(Self.pieces.prefix(4)))
        XCTAssertEqual(logprobs["token_logprobs"] as? [Double], [-0.5, -1, -1.5, -2])
        XCTAssertEqual(logprobs["text_offset"] as? [Int], [0, 5, 8, 12], "character offsets of each token in the text")
        let top = try XCTUnwrap(logprobs["top_logprobs"] as? [[String: Double]])
        XCTAssertEqual(top[0], ["Paris": -0.5, "alt1": -1.5])
        // What the engine was asked for: ids as given, the sampling chain, stops, logprobs.
        let request = try XCTUnwrap(engine.requests.first)
        XCTAssertEqual(request.prompt, [1, 2, 3])
        XCTAssertEqual(request.maxTokens, 4)
        XCTAssertEqual(request.stopSequences, ["\n", "END"])
        XCTAssertEqual(request.topLogprobs, 2)
        XCTAssertEqual(request.sampling, SamplingParameters(temperature: 0.5, topK: 40, topP: 0.9, minP: 0.05, repetitionPenalty: 1.1,
                                                            presencePenalty: 0.5, frequencyPenalty: 0.25, seed: 7))

        var streamed = body
        streamed["stream"] = true
        let (_, data) = try await server.events("/v1/completions", streamed)
        XCTAssertEqual(data.last, "[DONE]")
        let objects = chunks(data)
        XCTAssertEqual(objects.map { firstChoice($0)["text"] as? String ?? "" }.joined(), Self.pieces.prefix(4).joined())
        let offsets = objects.compactMap { (firstChoice($0)["logprobs"] as? [String: Any])?["text_offset"] as? [Int] }.flatMap { $0 }
        XCTAssertEqual(offsets, [0, 5, 8, 12], "offsets run on across chunks")
        // OpenAI's default max_tokens for completions is 16; the prompt may be a one-element array.
        _ = try await server.post("/v1/completions", ["prompt": ["Hello"]])
        XCTAssertEqual(engine.requests.last?.maxTokens, 16)
        XCTAssertEqual(engine.requests.last?.prompt, model.tokenizer.encode("Hello"))
        try await server.shutdown()
    }

    func testChatLogprobsShape() async throws {
        let server = try await start(engine())
        var body = chat
        body["logprobs"] = true
        body["top_logprobs"] = 2
        body["max_completion_tokens"] = 2
        let reply = try await server.post("/v1/chat/completions", body)
        XCTAssertEqual(reply.status, 200, reply.body)
        let content = try XCTUnwrap((firstChoice(reply.json)["logprobs"] as? [String: Any])?["content"] as? [[String: Any]])
        XCTAssertEqual(content.count, 2)
        XCTAssertEqual(content[0]["token"] as? String, "Paris")
        XCTAssertEqual(content[0]["logprob"] as? Double, -0.5)
        XCTAssertEqual(content[0]["bytes"] as? [Int], Array("Paris".utf8).map(Int.init))
        let alternatives = try XCTUnwrap(content[1]["top_logprobs"] as? [[String: Any]])
        XCTAssertEqual(alternatives.map { $0["token"] as? String }, [" is", "alt1"])
        XCTAssertEqual(alternatives.map { $0["logprob"] as? Double }, [-1, -2])
        XCTAssertEqual(firstChoice(reply.json)["finish_reason"] as? String, "length")
        try await server.shutdown()
    }

    func testModelsHealthMetrics() async throws {
        let server = try await start(engine())
        let models = try await server.request(.GET, "/v1/models")
        XCTAssertEqual(models.status, 200)
        XCTAssertEqual(models.json["object"] as? String, "list")
        XCTAssertEqual((models.json["data"] as? [[String: Any]])?.first?["id"] as? String, "test-model")
        let health = try await server.request(.GET, "/health")
        XCTAssertEqual(health.body, #"{"status":"ok"}"#)
        _ = try await server.post("/v1/chat/completions", chat)
        let metrics = try await server.request(.GET, "/metrics")
        XCTAssertEqual(metrics.status, 200)
        XCTAssertTrue(metrics.headers["content-type"]?.hasPrefix("text/plain") == true)
        for name in ["llmgpu_requests_running", "llmgpu_requests_waiting", "llmgpu_prompt_tokens_total", "llmgpu_generated_tokens_total",
                     "llmgpu_prefix_cache_hit_tokens_total", "llmgpu_kv_blocks_used", "llmgpu_kv_blocks_free",
                     "llmgpu_time_to_first_token_seconds_bucket", "llmgpu_inter_token_latency_seconds_bucket", "llmgpu_step_seconds_bucket"] {
            XCTAssertTrue(metrics.body.contains(name), "\(name) in /metrics")
        }
        // One request went through: one time-to-first-token sample, four inter-token gaps.
        XCTAssertTrue(metrics.body.contains("llmgpu_time_to_first_token_seconds_count 1"), metrics.body)
        XCTAssertTrue(metrics.body.contains("llmgpu_inter_token_latency_seconds_count 4"), metrics.body)
        try await server.shutdown()
    }

    /// Every bad input: its status, OpenAI's error shape, the field named. A slow stream runs
    /// meanwhile and must come out whole.
    func testBadInputsAnswerTypedErrorsAndDisturbNothing() async throws {
        let engine = engine(delay: .milliseconds(20), pieces: Array(repeating: "x", count: 40))
        let server = try await start(engine, maxBodyBytes: 64 << 10)
        let slow = Task { try await server.events("/v1/completions", ["prompt": "hi", "max_tokens": 40, "stream": true]) }

        let cases: [(body: String, status: Int, param: String?, code: String?)] = [
            ("{not json", 400, nil, "invalid_json"),
            ("[1, 2]", 400, nil, "invalid_json"),
            (#"{"model": "m"}"#, 400, "messages", "missing_required_parameter"),
            (#"{"messages": "hi"}"#, 400, "messages", "invalid_value"),
            (#"{"messages": [{"content": "hi"}]}"#, 400, "messages[0].role", "missing_required_parameter"),
            (#"{"messages": [{"role": "robot", "content": "hi"}]}"#, 400, "messages[0].role", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": 3}]}"#, 400, "messages[0].content", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}"#, 400, "messages[0].content[0]", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}"#, 400, "max_tokens", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2.5}"#, 400, "max_tokens", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": 3}"#, 400, "temperature", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}"#, 400, "temperature", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "top_p": 0}"#, 400, "top_p", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "n": 2}"#, 400, "n", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}"#, 400, "stop", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stop": 5}"#, 400, "stop", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "logprobs": true, "top_logprobs": 21}"#, 400, "top_logprobs", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 2}"#, 400, "top_logprobs", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": true}}"#, 400, "stream_options", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}"#, 400, "stream", "invalid_value"),
            (#"{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 300}"#, 400, "messages", "context_length_exceeded"),
        ]
        for c in cases {
            let reply = try await server.request(.POST, "/v1/chat/completions", body: c.body)
            XCTAssertEqual(reply.status, c.status, "\(c.body) → \(reply.body)")
            XCTAssertEqual(reply.error["param"] as? String, c.param, c.body)
            XCTAssertEqual(reply.error["code"] as? String, c.code, c.body)
            XCTAssertEqual(reply.error["type"] as? String, "invalid_request_error", c.body)
            XCTAssertLessThan(reply.body.count, 400, "short messages: \(reply.body)")
        }
        let completionCases: [(body: String, param: String, code: String)] = [
            (#"{"prompt": 5}"#, "prompt", "invalid_value"),
            (#"{"prompt": [1, -2]}"#, "prompt[1]", "invalid_value"),
            (#"{"prompt": ["a", "b"]}"#, "prompt[0]", "invalid_value"),
            (#"{"prompt": "hi", "logprobs": true}"#, "logprobs", "invalid_value"),
            ("{\"prompt\": [\(Array(repeating: "1", count: 300).joined(separator: ","))]}", "prompt", "context_length_exceeded"),
        ]
        for c in completionCases {
            let reply = try await server.request(.POST, "/v1/completions", body: c.body)
            XCTAssertEqual(reply.status, 400, "\(c.body.prefix(60)) → \(reply.body)")
            XCTAssertEqual(reply.error["param"] as? String, c.param, String(c.body.prefix(60)))
            XCTAssertEqual(reply.error["code"] as? String, c.code, String(c.body.prefix(60)))
        }
        // A long input is not echoed back.
        let role = String(repeating: "r", count: 10_000)
        let echoed = try await server.request(.POST, "/v1/chat/completions", body: #"{"messages": [{"role": "\#(role)", "content": "x"}]}"#)
        XCTAssertEqual(echoed.status, 400)
        XCTAssertLessThan(echoed.body.count, 400)

        let big = try await server.request(.POST, "/v1/completions", body: #"{"prompt": ""# + String(repeating: "a", count: 100 << 10) + #""}"#)
        XCTAssertEqual(big.status, 413, big.body)
        XCTAssertEqual(big.error["code"] as? String, "request_too_large")
        let unknown = try await server.request(.GET, "/v1/engines")
        XCTAssertEqual(unknown.status, 404)
        XCTAssertEqual(unknown.error["code"] as? String, "unknown_url")

        let (slowReply, data) = try await slow.value
        XCTAssertEqual(slowReply.status, 200)
        XCTAssertEqual(chunks(data).map { firstChoice($0)["text"] as? String ?? "" }.joined(), String(repeating: "x", count: 40))
        XCTAssertEqual(data.last, "[DONE]")
        try await server.shutdown()
    }

    func testAPIKey() async throws {
        let server = try await start(engine(), apiKey: "sesame")
        let missing = try await server.post("/v1/chat/completions", chat)
        XCTAssertEqual(missing.status, 401)
        XCTAssertEqual(missing.error["type"] as? String, "authentication_error")
        let wrong = try await server.post("/v1/chat/completions", chat, headers: ["authorization": "Bearer sesam"])
        XCTAssertEqual(wrong.status, 401)
        let models = try await server.request(.GET, "/v1/models")
        XCTAssertEqual(models.status, 401)
        let right = try await server.post("/v1/chat/completions", chat, headers: ["authorization": "Bearer sesame"])
        XCTAssertEqual(right.status, 200)
        let health = try await server.request(.GET, "/health")
        XCTAssertEqual(health.status, 200, "probes carry no key")
        try await server.shutdown()
    }

    func testQueueFullAnswers429WithRetryAfter() async throws {
        let engine = engine(delay: .milliseconds(50), limit: 1)
        let server = try await start(engine)
        let first = Task { try await server.post("/v1/completions", ["prompt": "hi", "max_tokens": 5]) }
        try await waitUntil { engine.activeCount > 0 }
        let refused = try await server.post("/v1/completions", ["prompt": "hi"])
        XCTAssertEqual(refused.status, 429, refused.body)
        XCTAssertEqual(refused.error["code"] as? String, "queue_full")
        XCTAssertNotNil(refused.headers["retry-after"].flatMap(Int.init))
        let firstReply = try await first.value
        XCTAssertEqual(firstReply.status, 200, "the running request is not disturbed")
        try await server.shutdown()
    }

    func testLoadingAnswers503() async throws {
        let gate = AsyncStream<Void>.makeStream()
        let model = self.model!
        let server = try await TestServer.start {
            for await _ in gate.stream { break }
            return ScriptedEngine(model: model, pieces: ["a"])
        }
        let health = try await server.request(.GET, "/health")
        XCTAssertEqual(health.status, 503)
        XCTAssertEqual(health.body, #"{"status":"loading"}"#)
        let early = try await server.post("/v1/chat/completions", chat)
        XCTAssertEqual(early.status, 503)
        XCTAssertEqual(early.error["code"] as? String, "model_loading")
        XCTAssertNotNil(early.headers["retry-after"])
        gate.continuation.yield()
        var status = 503
        for _ in 0..<200 where status != 200 {
            status = try await server.request(.GET, "/health").status
            try await Task.sleep(for: .milliseconds(5))
        }
        XCTAssertEqual(status, 200)
        try await server.shutdown()
    }

    /// A client that goes away mid-stream has its request cancelled in the engine.
    func testDisconnectCancels() async throws {
        let engine = engine(delay: .milliseconds(20), pieces: Array(repeating: "y", count: 200))
        let server = try await start(engine)
        let client = Task {
            try await server.events("/v1/completions", ["prompt": "hi", "max_tokens": 200, "stream": true])
        }
        try await waitUntil { engine.activeCount > 0 }
        try await Task.sleep(for: .milliseconds(100))
        client.cancel()
        let deadline = ContinuousClock.now + .seconds(5)
        while engine.cancellations == 0, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(10)) }
        XCTAssertEqual(engine.cancellations, 1, "the engine saw the cancellation")
        XCTAssertEqual(engine.activeCount, 0)
        try await server.shutdown()
    }

    /// A graceful shutdown (what SIGTERM triggers) ends a stream in flight with a finish reason.
    func testShutdownEndsStreamsWithFinishReason() async throws {
        let engine = engine(delay: .milliseconds(20), pieces: Array(repeating: "z", count: 200))
        let server = try await start(engine)
        let client = Task { try await server.events("/v1/completions", ["prompt": "hi", "max_tokens": 200, "stream": true]) }
        try await waitUntil { engine.activeCount > 0 }
        try await Task.sleep(for: .milliseconds(100))
        let started = ContinuousClock.now
        try await server.shutdown()
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(3))
        let (_, data) = try await client.value
        XCTAssertEqual(data.last, "[DONE]")
        XCTAssertEqual(chunks(data).compactMap { firstChoice($0)["finish_reason"] as? String }, ["abort"])
    }
}
