import XCTest

/// `llm-gpu batch-bench` runs end to end on the tiny model (its speeds are not checked: tests
/// never time things); the prefix-cache line must report the shared prefix's full blocks cached.
final class BatchBenchCLITests: XCTestCase {
    func testRunsAndReportsTheCachedPrefix() throws {
        let r = try LLMGPUExecutable.run(["batch-bench", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--threads", "2",
                                          "--clients", "1,3", "--prompt-tokens", "20", "--gen-tokens", "6",
                                          "--prefix-tokens", "40", "--repetitions", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertTrue(lines.contains { $0.trimmingCharacters(in: .whitespaces).hasPrefix("3 ") }, r.stdout)
        // 40 shared tokens: two full 16-token blocks; the third also holds new tokens.
        XCTAssertTrue(r.stdout.contains("40-token shared prefix") && r.stdout.contains("32 tokens cached"), r.stdout)
    }

    func testBadClientListIsOneLine() throws {
        let r = try LLMGPUExecutable.run(["batch-bench", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--clients", "1,x"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("--clients"), r.stderr)
    }
}
