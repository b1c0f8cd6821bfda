import Foundation
import XCTest
import LLM

/// Limits on what a flag can ask for: each absurd value gets one line naming the flag and the limit,
/// and a merely unusual one (more threads than cores, a context past the trained length) runs with a note.
final class FlagLimitsCLITests: XCTestCase {
    private func run(_ arguments: [String], input: String? = nil) throws -> LLMGPUExecutable.Result {
        try LLMGPUExecutable.run(arguments, input: input)
    }

    private var tiny: String { Fixtures.tiny("tiny-llama-f32.gguf") }

    /// `--max-tokens -1` and `--max-tokens=-1` both reach the range check (not "Missing value").
    func testNegativeValuesGetTheRangeMessageInBothForms() throws {
        for (flag, message) in [("--max-tokens", "--max-tokens must be 0 or more, got -1"),
                                ("--threads", "--threads must be at least 1, got -1"),
                                ("--context", "--context must be at least 1, got -1"),
                                ("--beams", "--beams must be in 1...1024, got -1")] {
            for arguments in [[flag, "-1"], ["\(flag)=-1"]] {
                let result = try run(["run", "--model", tiny, "--prompt", "hi"] + arguments)
                XCTAssertNotEqual(result.status, 0, "\(arguments)")
                XCTAssertTrue(result.stderr.contains(message), "\(arguments): \(result.stderr)")
                XCTAssertFalse(result.stderr.contains("Missing value"), "\(arguments): \(result.stderr)")
            }
        }
    }

    func testThreadsAreClampedToTheCoresWithANote() throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let result = try run(["run", "--model", tiny, "--prompt", "Once upon a time", "--max-tokens", "2", "--threads", "1000"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stderr.contains("note: --threads 1000 is more than the \(cores) cores here; using \(cores)"), result.stderr)
    }

    /// The tiny model was trained on 2048 positions: 4096 runs, with one warning line.
    func testContextBeyondTheTrainedLengthWarns() throws {
        let result = try run(["run", "--model", tiny, "--prompt", "Once upon a time", "--max-tokens", "2", "--context", "4096"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let warnings = result.stderr.split(separator: "\n").filter { $0.hasPrefix("warning:") }
        XCTAssertEqual(warnings.count, 1, result.stderr)
        XCTAssertTrue(warnings[0].contains("--context 4096 is beyond the 2048 tokens"), result.stderr)
        let quiet = try run(["run", "--model", tiny, "--prompt", "Once upon a time", "--max-tokens", "2", "--context", "2048"])
        XCTAssertFalse(quiet.stderr.contains("warning:"), quiet.stderr)
    }

    /// Beams over the limit are refused by the flag; beams whose pool cannot fit are refused before any
    /// allocation, with the memory named as beams × tokens (not "lower --context").
    func testBeamsAreBoundedByTheLimitAndByMemory() throws {
        let over = try run(["run", "--model", tiny, "--prompt", "hi", "--beams", "1025"])
        XCTAssertNotEqual(over.status, 0)
        XCTAssertTrue(over.stderr.contains("--beams must be in 1...1024, got 1025"), over.stderr)

        // 64 beams × 10^8 tokens × 2 KiB per token of KV is about 12 TiB: more than any machine here.
        let huge = try run(["run", "--model", tiny, "--prompt", "hi", "--beams", "64",
                            "--max-tokens", "100000000", "--context", "100000100"])
        XCTAssertEqual(huge.status, 1, huge.stderr)
        let errors = huge.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        XCTAssertEqual(errors.count, 1, huge.stderr)
        XCTAssertTrue(errors[0].contains("64 beams × 100000000 new tokens need"), huge.stderr)
        XCTAssertTrue(errors[0].contains("lower --beams or --max-tokens"), huge.stderr)
        XCTAssertFalse(huge.stderr.contains("lower --context"), huge.stderr)
    }

    /// `tokenize --file` and `--file -` give the ids `--text` gives for the same text.
    func testTokenizeFileAndStdin() throws {
        let text = "Once upon a time there was a little girl.\nShe liked tea."
        let expected = try run(["tokenize", "--model", tiny, "--text", text])
        XCTAssertEqual(expected.status, 0, expected.stderr)
        XCTAssertFalse(expected.stdout.isEmpty)

        let url = FileManager.default.temporaryDirectory.appendingPathComponent("tokenize-\(UUID().uuidString).txt")
        try Data(text.utf8).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        let fromFile = try run(["tokenize", "--model", tiny, "--file", url.path])
        XCTAssertEqual(fromFile.status, 0, fromFile.stderr)
        XCTAssertEqual(fromFile.stdout, expected.stdout)

        let fromStdin = try run(["tokenize", "--model", tiny, "--file", "-"], input: text)
        XCTAssertEqual(fromStdin.status, 0, fromStdin.stderr)
        XCTAssertEqual(fromStdin.stdout, expected.stdout)

        let neither = try run(["tokenize", "--model", tiny])
        XCTAssertNotEqual(neither.status, 0)
        XCTAssertTrue(neither.stderr.contains("give exactly one of --text and --file"), neither.stderr)
        let missing = try run(["tokenize", "--model", tiny, "--file", "/nonexistent/t.txt"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("cannot read --file /nonexistent/t.txt"), missing.stderr)
    }
}
