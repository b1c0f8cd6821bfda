import Foundation
import XCTest
import LLM
import BackendCPU

/// Sampling checked statistically against distributions computed here by hand, penalties on
/// hand-computed cases, stop sequences across token boundaries.
final class SamplerTests: XCTestCase {
    let logits: [Float] = [2.0, 1.5, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0]

    /// Pearson's chi-square of `draws` samples against `expected` probabilities (zero-probability
    /// tokens must never be drawn), compared with the 0.1% critical value for its degrees of freedom.
    private func assertDistribution(_ parameters: SamplingParameters, expected: [Double], draws: Int = 20_000,
                                    file: StaticString = #filePath, line: UInt = #line) {
        var sampler = Sampler(parameters)
        var counts = [Int](repeating: 0, count: logits.count)
        for _ in 0..<draws { counts[Int(sampler.sample(logits: logits, history: []))] += 1 }
        var chi = 0.0
        var df = -1
        for (i, p) in expected.enumerated() {
            if p == 0 {
                XCTAssertEqual(counts[i], 0, "token \(i) has probability 0 but was drawn", file: file, line: line)
                continue
            }
            let e = p * Double(draws)
            chi += (Double(counts[i]) - e) * (Double(counts[i]) - e) / e
            df += 1
        }
        // 99.9% quantiles of chi-square for df = 1...7.
        let critical = [10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32]
        XCTAssertLessThan(chi, critical[max(df, 1) - 1], "chi-square \(chi) with \(df) dof; counts \(counts)", file: file, line: line)
    }

    /// softmax(logits[kept] / T), zero elsewhere.
    private func expected(kept: [Int], temperature: Double) -> [Double] {
        let weights = logits.indices.map { kept.contains($0) ? exp(Double(logits[$0]) / temperature) : 0 }
        let total = weights.reduce(0, +)
        return weights.map { $0 / total }
    }

    func testTemperatureOnly() {
        assertDistribution(SamplingParameters(temperature: 1.0, seed: 1), expected: expected(kept: Array(0..<8), temperature: 1))
        assertDistribution(SamplingParameters(temperature: 0.5, seed: 2), expected: expected(kept: Array(0..<8), temperature: 0.5))
    }

    func testTopK() {
        assertDistribution(SamplingParameters(temperature: 0.7, topK: 3, seed: 3), expected: expected(kept: [0, 1, 2], temperature: 0.7))
    }

    func testTopP() {
        // Probabilities at T=1: 0.395, 0.240, 0.145, 0.088, … cumulative 0.395, 0.635, 0.780 → p = 0.7 keeps three.
        assertDistribution(SamplingParameters(temperature: 1.3, topP: 0.7, seed: 4), expected: expected(kept: [0, 1, 2], temperature: 1.3))
    }

    func testMinP() {
        // min-p 0.2 keeps tokens with p ≥ 0.2 · 0.395 = 0.079: the first four (0.088 ≥ 0.079; next is 0.053).
        assertDistribution(SamplingParameters(temperature: 1.0, minP: 0.2, seed: 5), expected: expected(kept: [0, 1, 2, 3], temperature: 1))
    }

    func testSameSeedSameTokensDifferentSeedDifferentTokens() {
        func run(_ seed: UInt64) -> [Int32] {
            var sampler = Sampler(SamplingParameters(temperature: 1, seed: seed))
            return (0..<50).map { _ in sampler.sample(logits: logits, history: []) }
        }
        XCTAssertEqual(run(9), run(9))
        XCTAssertNotEqual(run(9), run(10))
    }

    func testPenaltiesHandComputed() {
        var l: [Float] = [2.0, -1.0, 0.5, 3.0]
        // Token 0 twice, token 1 once; token 3 is outside the window of 3.
        let history: [Int32] = [3, 0, 1, 0]
        Sampler.applyPenalties(&l, history: history, SamplingParameters(
            repetitionPenalty: 2, presencePenalty: 0.5, frequencyPenalty: 0.25, penaltyWindow: 3))
        // token 0: 2/2 − 2·0.25 − 0.5 = 0;  token 1: −1·2 − 0.25 − 0.5 = −2.75;  tokens 2, 3 untouched.
        XCTAssertEqual(l, [0, -2.75, 0.5, 3.0])
    }

    /// SmolLM2 greedily continues "The capital of France is" with " Paris" "." "\n" "\n" "The": the stop
    /// "s.\n" spans three tokens and must cut the text to " Pari", never streaming any of it.
    func testStopSequenceAcrossTokenBoundaries() throws {
        let model = try Model.load(path: try Fixtures.smolLM2(), backend: CPUBackend(threads: 2))
        let session = try InferenceSession(model: model, contextLength: 64)
        let prompt = model.tokenizer.encode("The capital of France is")
        var streamed = ""
        let cut = try Generator(session: session).generate(
            prompt: prompt, options: GenerationOptions(maxTokens: 12, stopSequences: ["s.\n"])) { streamed += $0 }.best
        XCTAssertEqual(cut.finishReason, .stop)
        XCTAssertEqual(cut.text, " Pari")
        XCTAssertEqual(streamed, " Pari")
        XCTAssertEqual(cut.tokens, [7042, 30, 198], "generation stops at the token that completes the match")

        // A stop that never matches changes nothing.
        let free = try Generator(session: session).generate(
            prompt: prompt, options: GenerationOptions(maxTokens: 4, stopSequences: ["zzz"])).best
        XCTAssertEqual(free.text, " Paris.\n\n")
        XCTAssertEqual(free.finishReason, .length)
    }
}
