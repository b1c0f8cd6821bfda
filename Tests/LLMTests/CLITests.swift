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
