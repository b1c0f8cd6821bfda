import Foundation
import XCTest
import LLM
import BackendCPU

/// The int8 mode (`CPUBackend(int8Activations: true)`, the CLI's default) is meant to
/// round as llama.cpp's CPU backend does, so over the visible real prompts its logits must land
/// closer to llama.cpp's than the exact f32 oracle's. What holds today: mean |Δ| over llama.cpp's
/// top-5 logits below f32's and max |Δ| no larger. Issue 13's goal, mean at most half of f32's, is
/// not reached yet (at d40ece2: SmolLM2 0.194 against 0.212, Qwen2.5 0.054 against 0.066, Gemma 3
/// 0.203 against 0.224): something besides activation rounding still differs from llama.cpp.
final class Int8GoldenTests: XCTestCase {
    /// Per prompt, max and mean |ours − llama.cpp| over llama.cpp's top-5 logits at every position.
    static func differences(_ golden: RealModelGolden, _ model: Model) throws -> [(max: Float, mean: Double)] {
        let session = try InferenceSession(model: model, contextLength: 64)
        let vocab = model.config.vocabularySize
        return try (1...3).map { k in
            let ref = try golden.reference(k)
            session.reset()
            let sequence = ref.sequence
            let logits = try model.backend.download(try session.evaluate(sequence, logits: .all), offset: 0, count: sequence.count * vocab)
            var worst: Float = 0, total = 0.0, count = 0
            for p in 0..<min(sequence.count, ref.top.count) {
                for entry in ref.top[p] {
                    let diff = abs(logits[p * vocab + entry.id] - entry.logit)
                    worst = max(worst, diff)
                    total += Double(diff)
                    count += 1
                }
            }
            return (worst, total / Double(count))
        }
    }

    private func check(_ golden: RealModelGolden) throws {
        let f32 = try Self.differences(golden, golden.load(backend: CPUBackend()))
        let int8 = try Self.differences(golden, golden.load(backend: CPUBackend(int8Activations: true)))
        func line(_ d: [(max: Float, mean: Double)]) -> String {
            d.map { String(format: "%.3f / %.4f", $0.max, $0.mean) }.joined(separator: ", ")
        }
        print("\(golden.prefix) vs llama.cpp, max |Δ| / mean |Δ| per prompt: f32 \(line(f32)); int8 \(line(int8))")
        let f32Mean = f32.map(\.mean).reduce(0, +) / 3, int8Mean = int8.map(\.mean).reduce(0, +) / 3
        XCTAssertLessThan(int8Mean, f32Mean, "\(golden.prefix): int8 mean |Δ| against f32's")
        XCTAssertLessThanOrEqual(int8.map(\.max).max()!, f32.map(\.max).max()!, "\(golden.prefix): int8 max |Δ| against f32's")
    }

    func testSmolLM2() throws { try check(.smolLM2) }
    func testQwen25() throws { try check(.qwen25) }
    func testGemma3() throws { try check(.gemma3) }
}
