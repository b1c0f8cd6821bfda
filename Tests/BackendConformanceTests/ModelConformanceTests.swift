import BackendCPU
import Foundation
import LLM
import XCTest

// Whole-model checks: each backend's logits against the CPU backend's on the tiny fixtures
// (one batched prompt, then single-token decode steps through the KV cache), and greedy ids
// on SmolLM2 when it is in the cache.
//
// Tolerance: nmse 1e-8 over all logits. The ops agree to 1e-9 or better each, and four
// layers of them compound that to ~1e-10..1e-9 on the F32 and quantized models alike (both
// backends dequantize the same blocks exactly and keep activations in f32).

final class ModelConformanceTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/tiny")

    static func ids(_ model: String, _ key: String) throws -> [Int32] {
        let text = try String(contentsOf: fixtures.appendingPathComponent("\(model).tokens.txt"), encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("\(key):") }) else {
            throw XCTSkip("\(model).tokens.txt has no \(key) line")
        }
        return line.dropFirst(key.count + 1).split(separator: " ").compactMap { Int32($0) }
    }

    /// The prompt's logits (all rows), then `decodeSteps` single-token steps' logits.
    static func logits(_ backend: Backend, model name: String, decodeSteps: Int) throws -> [[Float]] {
        let model = try Model.load(path: fixtures.appendingPathComponent("\(name).gguf").path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 64)
        let prompt = try ids(name, "prompt_ids"), greedy = try ids(name, "greedy_ids")
        let vocab = model.config.vocabularySize
        var result = [try backend.download(session.evaluate(prompt, logits: .all), offset: 0, count: prompt.count * vocab)]
        for token in greedy.prefix(decodeSteps) {
            result.append(try backend.download(session.evaluate([token], logits: .last), offset: 0, count: vocab))
        }
        return result
    }

    func checkTinyModel(_ name: String) throws {
        let path = Self.fixtures.appendingPathComponent("\(name).gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("fixture \(name).gguf is missing") }
        let want = try Self.logits(ConformanceBackends.oracle, model: name, decodeSteps: 6)
        try forEachBackend { backend, _ in
            let got = try Self.logits(backend, model: name, decodeSteps: 6)
            assertClose(got[0], want[0], tolerance: 1e-8, "\(backend.name) \(name) prompt logits (24 rows)")
            for step in 1..<got.count {
                assertClose(got[step], want[step], tolerance: 1e-8, "\(backend.name) \(name) decode step \(step) logits")
            }
        }
    }

    func testTinyLlamaF32() throws { try checkTinyModel("tiny-llama-f32") }
    func testTinyLlamaF16() throws { try checkTinyModel("tiny-llama-f16") }
    func testTinyLlamaQ8_0() throws { try checkTinyModel("tiny-llama-q8_0") }
    func testTinyLlamaQ4_0() throws { try checkTinyModel("tiny-llama-q4_0") }
    func testTinyLlamaQ4_1() throws { try checkTinyModel("tiny-llama-q4_1") }
    func testTinyLlamaFFN340() throws { try checkTinyModel("tiny-llama-ffn340-f32") }

    /// Greedy ids of "The capital of France is" on SmolLM2-135M Q4_1, 16 tokens: each backend
    /// must pick exactly the CPU backend's tokens.
    func testSmolLM2GreedyMatchesCPU() throws {
        let path = try cachedModel(ModelCache.defaultModelFile)
        let prompt: [Int32] = [504, 3575, 282, 4649, 314]

        func greedy(_ backend: Backend) throws -> [Int32] {
            let model = try Model.load(path: path, backend: backend)
            let session = try InferenceSession(model: model, contextLength: 64)
            var ids: [Int32] = []
            var next = try session.evaluateGreedy(prompt)
            for _ in 0..<16 {
                ids.append(next)
                if ids.count == 16 { break }
                next = try session.evaluateGreedy([next])
            }
            return ids
        }
        let want = try greedy(ConformanceBackends.oracle)
        try forEachBackend { backend, _ in
            XCTAssertEqual(try greedy(backend), want, "\(backend.name) greedy ids on SmolLM2")
        }
    }
}
