import Foundation
import XCTest
import LLM

/// The `llm-gpu` executable as a user meets it: bad input is one line on stderr and a
/// non-zero exit, never a crash or a stack trace.
final class CLITests: XCTestCase {
    typealias Result = LLMGPUExecutable.Result

    private func run(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        try LLMGPUExecutable.run(arguments, environment: environment)
    }

    private func temporaryFile(_ bytes: [UInt8], name: String = "model.gguf") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llm-gpu-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let url = dir.appendingPathComponent(name)
        try Data(bytes).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return url.path
    }

    /// One line on stderr starting with "error:" that mentions `fragment`, exit status 1, a normal exit.
    private func assertOneLineError(_ result: Result, mentions fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 1, "exit status; stderr: \(result.stderr)", file: file, line: line)
        let lines = result.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "stderr should be one line: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("error: "), result.stderr, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(fragment), "'\(fragment)' not in: \(result.stderr)", file: file, line: line)
    }

    func testMissingFile() throws {
        assertOneLineError(try run(["run", "--model", "/nonexistent/x.gguf"]), mentions: "/nonexistent/x.gguf")
    }

    func testCorruptFiles() throws {
        let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.tiny("tiny-llama-q4_0.gguf"))))
        // Wrong magic.
        var bad = good
        bad[0] = 0
        assertOneLineError(try run(["run", "--model", try temporaryFile(bad), "--prompt", "hi"]), mentions: "not a GGUF file")
        // Truncated in the metadata, and truncated in the tensor data.
        assertOneLineError(try run(["inspect", "--model", try temporaryFile(Array(good.prefix(5000)))]), mentions: "truncated")
        assertOneLineError(try run(["run", "--model", try temporaryFile(Array(good.prefix(good.count - 1000))), "--prompt", "hi"]),
                           mentions: "past the end")
    }

    func testUnsupportedArchitectureAndQuantType() throws {
        var b = GGUFBuilder()
        b.metadata = [("general.architecture", .string("mamba"))]
        let mamba = try temporaryFile(b.bytes())
        assertOneLineError(try run(["run", "--model", mamba, "--prompt", "hi"]), mentions: "unsupported model architecture 'mamba'")

        // A llama model whose weights are Q2_K (not supported yet): rewrite the tiny model's tensor types.
        let tiny = try GGUFFile(path: Fixtures.tiny("tiny-llama-q4_0.gguf"))
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.tiny("tiny-llama-q4_0.gguf"))))
        let q = try XCTUnwrap(tiny.tensor("blk.0.attn_q.weight"))
        // Find the tensor info record by name and patch its type field (after name, dim count, 2 dims).
        let needle = Array("blk.0.attn_q.weight".utf8)
        let at = try XCTUnwrap(bytes.firstRange(of: needle)).upperBound
        XCTAssertEqual(bytes[at], 2, "two dimensions")
        let typeOffset = at + 4 + 16
        XCTAssertEqual(bytes[typeOffset], UInt8(q.type.rawValue))
        // IQ4_NL shares Q4_0's 18-byte block of 32, so the file stays well-formed, but this engine does not run it.
        bytes[typeOffset] = 20
        assertOneLineError(try run(["run", "--model", try temporaryFile(bytes), "--prompt", "hi"]), mentions: "IQ4_NL")
    }

    func testPromptLongerThanContext() throws {
        let result = try run(["run", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--context", "8",
                              "--prompt", "Once upon a time there was a little girl named Lily."])
        assertOneLineError(result, mentions: "does not fit the context of 8")
    }

    func testBadFlag() throws {
        let result = try run(["run", "--threads", "0"])
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("--threads"), result.stderr)
        XCTAssertFalse(result.stderr.contains("Fatal error"), result.stderr)
    }

    func testMissingDefaultModelSaysHowToFetch() throws {
        var env = ProcessInfo.processInfo.environment
        env["LLM_GPU_CACHE"] = FileManager.default.temporaryDirectory.appendingPathComponent("empty-\(UUID().uuidString)").path
        assertOneLineError(try run(["run", "--prompt", "hi"], environment: env), mentions: "scripts/fetch-model")
    }

    func testRunJSONOnTinyModel() throws {
        let result = try run(["run", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--prompt", "Once upon a time",
                              "--max-tokens", "4", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["backend"] as? String, "cpu")
        XCTAssertEqual(object["prompt_tokens"] as? [Int], [1, 336, 340, 341, 345])
        let completion = try XCTUnwrap((object["completions"] as? [[String: Any]])?.first)
        XCTAssertEqual((completion["tokens"] as? [Int])?.count, 4)
        XCTAssertEqual(completion["finish_reason"] as? String, "length")
        XCTAssertNotNil((object["timings"] as? [String: Any])?["generation_tokens_per_s"])
    }

    /// `logits` over llama.cpp's tiny prompt: the top-1 ids equal llama.cpp's.
    func testLogitsJSONMatchesReferenceTopOne() throws {
        let reference = try TokensReference(path: Fixtures.tiny("tiny-llama-f32.tokens.txt"))
        let ids = reference.promptIDs.map(String.init).joined(separator: ",")
        let result = try run(["logits", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--tokens", ids, "--top", "2", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let positions = try XCTUnwrap(object["positions"] as? [[String: Any]])
        XCTAssertEqual(positions.count, reference.promptIDs.count)
        for (p, position) in positions.enumerated() {
            let top = try XCTUnwrap(position["top"] as? [[String: Any]])
            XCTAssertEqual(top.count, 2)
            XCTAssertEqual(top[0]["id"] as? Int, reference.top[p][0].id, "position \(p)")
        }
    }
}

extension CLITests {
    /// A KV cache that cannot fit in memory is refused before anything is allocated.
    func testContextTooLargeForMemory() throws {
        let result = try run(["run", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--context", "2000000000", "--prompt", "hi"])
        assertOneLineError(result, mentions: "lower --context")
    }
}

extension CLITests {
    /// Help is help: usage on stdout and exit status 0, for the root and every subcommand.
    func testHelpExitsZero() throws {
        for arguments in [["--help"], ["run", "--help"], ["bench", "--help"], ["tokenize", "--help"]] {
            let result = try run(arguments)
            XCTAssertEqual(result.status, 0, "\(arguments): \(result.stderr)")
            XCTAssertTrue(result.stdout.contains("USAGE:"), "\(arguments): \(result.stdout)")
        }
    }
}

extension CLITests {
    /// --profile wraps the backend; every op of every family must pass through the wrapper.
    func testProfileRunsEveryFamily() throws {
        var models = [Fixtures.tiny("tiny-llama-q8_0.gguf"), Fixtures.tiny("tiny-moe-q8_0.gguf")]
        for golden in [RealModelGolden.gemma3, RealModelGolden.qwen25] {
            if let path = try? golden.path() { models.append(path) }
        }
        for model in models {
            let result = try run(["run", "--model", model, "--prompt", "Once upon a time", "--max-tokens", "2", "--profile"])
            XCTAssertEqual(result.status, 0, "\(model): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("profile of run"), result.stderr)
            XCTAssertTrue(result.stderr.contains("(cpu backend, host clock, each op synchronized)"), result.stderr)
        }
    }

    /// On OpenCL and Vulkan, --profile reads device timestamps and says so; skipped per backend
    /// when this machine has no driver for it.
    func testProfileUsesDeviceTimestampsOnGPUBackends() throws {
        var skipped: [String] = []
        for (backend, source) in [("opencl", "OpenCL event profiling"), ("vulkan", "Vulkan timestamp queries")] {
            let result = try run(["run", "--backend", backend, "--model", Fixtures.tiny("tiny-llama-q4_1.gguf"),
                                  "--prompt", "Once upon a time", "--max-tokens", "4", "--profile"])
            if result.status != 0, result.stderr.contains("no OpenCL") || result.stderr.contains("no Vulkan") {
                skipped.append(result.stderr)
                continue
            }
            XCTAssertEqual(result.status, 0, "\(backend): \(result.stderr)")
            XCTAssertTrue(result.stderr.contains("(\(backend) backend, device timestamps from \(source), ops not synchronized)"),
                          result.stderr)
            XCTAssertTrue(result.stderr.contains("device ms"), result.stderr)
            XCTAssertTrue(result.stderr.range(of: #"device busy [0-9.]+ ms of [0-9.]+ ms wall"#, options: .regularExpression) != nil,
                          result.stderr)
        }
        if skipped.count == 2 { throw XCTSkip(skipped.joined(separator: "; ")) }
    }
}

/// Batch invariance as a user sees it (docs/ARCHITECTURE.md, "Batch invariance"), in the default
/// `--cpu-activations int8` mode, where prompts from 8 tokens take another kernel than decode.
extension CLITests {
    /// The logits at each position, from `logits --json`.
    private func logitRows(_ model: String, _ ids: [Int32], top: Int, extra: [String] = []) throws -> [[(id: Int, logit: Float)]] {
        let result = try run(["logits", "--model", model, "--tokens", ids.map(String.init).joined(separator: ","),
                              "--top", String(top), "--json"] + extra)
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let positions = try XCTUnwrap(object["positions"] as? [[String: Any]])
        return try positions.map { position in
            try XCTUnwrap(position["top"] as? [[String: Any]]).map { entry in
                (try XCTUnwrap(entry["id"] as? Int), Float(try XCTUnwrap(entry["logit"] as? Double)))
            }
        }
    }

    /// `logits` prints the same top logits for a token whatever prefix length it is called with
    /// (the int8 batch kernel starts at 8 tokens), with --threads 1 and 2.
    func testLogitsAreTheSameWhateverThePrefixLength() throws {
        var models = [Fixtures.tiny("tiny-llama-q4_1.gguf"), Fixtures.tiny("tiny-llama-q8_0.gguf")]
        if FileManager.default.fileExists(atPath: ModelCache.path(ModelCache.defaultModelFile)) {
            models.append(ModelCache.path(ModelCache.defaultModelFile))
        }
        let ids: [Int32] = [6403, 1980, 253, 655, 28, 281, 253, 1165, 30, 216, 1065, 314]
        for model in models {
            let tokens = model.contains("tiny") ? ids.map { $0 % 512 } : ids
            let full = try logitRows(model, tokens, top: 5)
            // Prefixes around the 8-token threshold, alternating 1 and 2 threads (each is a process).
            for (i, n) in [1, 4, 7, 8, 9, 11].enumerated() {
                do {
                    let threads = String(1 + i % 2)
                    let prefix = try logitRows(model, Array(tokens.prefix(n)), top: 5, extra: ["--threads", threads])
                    for p in 0..<n {
                        XCTAssertEqual(prefix[p].map(\.id), full[p].map(\.id), "\(model): position \(p) of \(n) tokens")
                        XCTAssertEqual(prefix[p].map(\.logit.bitPattern), full[p].map(\.logit.bitPattern),
                                       "\(model): position \(p) of \(n) tokens, --threads \(threads): \(prefix[p]) against \(full[p])")
                    }
                }
            }
        }
    }

    /// A beam's reported logprob is Σ log softmax(logits)[token] recomputed from `logits` over the
    /// prompt and the beam's tokens (all 512 logits of the tiny model: the whole softmax), to 1e-4.
    func testBeamLogprobEqualsLogprobFromLogits() throws {
        for name in ["tiny-llama-q4_1.gguf", "tiny-llama-q8_0.gguf", "tiny-llama-f32.gguf"] {
            let model = Fixtures.tiny(name)
            let result = try run(["run", "--model", model, "--prompt", "Once upon a time there was a little",
                                  "--beams", "4", "--num-return", "2", "--max-tokens", "10", "--json"])
            XCTAssertEqual(result.status, 0, result.stderr)
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            let prompt = try XCTUnwrap(object["prompt_tokens"] as? [Int]).map(Int32.init)
            let completions = try XCTUnwrap(object["completions"] as? [[String: Any]])
            XCTAssertFalse(completions.isEmpty)
            for (k, completion) in completions.enumerated() {
                let tokens = try XCTUnwrap(completion["tokens"] as? [Int]).map(Int32.init)
                let reported = try XCTUnwrap(completion["logprob"] as? Double)
                let rows = try logitRows(model, prompt + tokens, top: 512)
                var logprob = 0.0
                for (i, token) in tokens.enumerated() {
                    let row = rows[prompt.count - 1 + i]
                    let peak = Double(row.map(\.logit).max()!)
                    let lse = peak + log(row.reduce(0.0) { $0 + exp(Double($1.logit) - peak) })
                    logprob += Double(try XCTUnwrap(row.first { $0.id == Int(token) }).logit) - lse
                }
                XCTAssertEqual(reported, logprob, accuracy: 1e-4, "\(name): hypothesis \(k) (\(tokens))")
            }
        }
    }
}
