import XCTest
import LLM
import BackendCPU

/// The CPU backend against llama.cpp's logits on the tiny conformance models
/// (Tests/Fixtures/tiny/README.md says how they were made).
///
/// Tolerances, as max |ours − llama.cpp| over all 56 × 512 logits:
/// - F32: 1e-4. An exact float64 pass differs from llama.cpp by at most 6.2e-6; f32 summation order adds little.
/// - F16: 2e-2. llama.cpp rounds activations to f16 before F16 dot products; we keep f32 (measured 9.1e-3 exact).
/// - Q8_0/Q4_0/Q4_1: 0.35. llama.cpp rounds activations to 8-bit blocks before quantized dots
///   (measured up to 0.26 for an exact pass); mean |diff| must stay under 0.07.
/// Where llama.cpp's own top two logits are at least 0.3 apart, our argmax must equal its argmax.
final class TinyModelGoldenTests: XCTestCase {
    struct Case {
        let name: String
        let maxDiff: Float
        let meanDiff: Float
    }

    static let cases = [
        Case(name: "tiny-llama-f32", maxDiff: 1e-4, meanDiff: 1e-5),
        Case(name: "tiny-llama-ffn340-f32", maxDiff: 1e-4, meanDiff: 1e-5),
        Case(name: "tiny-llama-f16", maxDiff: 2e-2, meanDiff: 5e-3),
        Case(name: "tiny-llama-q8_0", maxDiff: 0.35, meanDiff: 0.07),
        Case(name: "tiny-llama-q4_0", maxDiff: 0.35, meanDiff: 0.07),
        Case(name: "tiny-llama-q4_1", maxDiff: 0.35, meanDiff: 0.07),
    ]

    func testF32() throws { try check(Self.cases[0]) }
    func testF32WithFFN340() throws { try check(Self.cases[1]) }
    func testF16() throws { try check(Self.cases[2]) }
    func testQ8_0() throws { try check(Self.cases[3]) }
    func testQ4_0() throws { try check(Self.cases[4]) }
    func testQ4_1() throws { try check(Self.cases[5]) }

    /// Feeds the 56-token sequence the way llama.cpp did (one batched prompt, then one token at a
    /// time through the KV cache) and compares every row of logits; then checks greedy decoding.
    private func check(_ c: Case) throws {
        let reference = try TokensReference(path: Fixtures.tiny(c.name + ".tokens.txt"))
        let expected = try NPYArray(path: Fixtures.tiny(c.name + ".logits.npy"))
        XCTAssertEqual(expected.shape, [56, 512])
        let model = try Model.load(path: Fixtures.tiny(c.name + ".gguf"), backend: CPUBackend(threads: 2))
        let session = try InferenceSession(model: model, contextLength: 128)
        let vocab = model.config.vocabularySize

        var rows: [[Float]] = []
        let promptLogits = try session.evaluate(reference.promptIDs, logits: .all)
        let prompt = try model.backend.download(promptLogits, offset: 0, count: reference.promptIDs.count * vocab)
        for r in 0..<reference.promptIDs.count { rows.append(Array(prompt[(r * vocab)..<((r + 1) * vocab)])) }
        for token in reference.greedyIDs {
            let logits = try session.evaluate([token], logits: .last)
            rows.append(try model.backend.download(logits, offset: 0, count: vocab))
        }

        var maxDiff: Float = 0, total: Double = 0
        for (r, row) in rows.enumerated() {
            let want = expected.row(r)
            for (a, b) in zip(row, want) {
                maxDiff = max(maxDiff, abs(a - b))
                total += Double(abs(a - b))
            }
            let top = reference.top[r]
            if top[0].logit - top[1].logit >= 0.3 {
                XCTAssertEqual(argmax(row), top[0].id, "\(c.name) row \(r): argmax differs where llama.cpp's gap is \(top[0].logit - top[1].logit)")
            }
        }
        let mean = Float(total / Double(rows.count * vocab))
        print("\(c.name): max |diff| \(maxDiff), mean |diff| \(mean) vs llama.cpp over \(rows.count) rows")
        XCTAssertLessThanOrEqual(maxDiff, c.maxDiff, "\(c.name): max |logit diff|")
        XCTAssertLessThanOrEqual(mean, c.meanDiff, "\(c.name): mean |logit diff|")

        // Greedy continuation from the prompt matches up to the first near-tie.
        let generator = Generator(session: session)
        let completion = try generator.generate(prompt: reference.promptIDs,
                                                options: GenerationOptions(maxTokens: 32, stopAtEndOfGeneration: false)).best
        let agree = reference.firstNearTie()
        XCTAssertEqual(Array(completion.tokens.prefix(agree)), Array(reference.greedyIDs.prefix(agree)),
                       "\(c.name): greedy ids before the first near-tie (step \(agree))")
    }

    private func argmax(_ row: [Float]) -> Int {
        var best = 0
        for i in row.indices where row[i] > row[best] { best = i }
        return best
    }
}
