import XCTest
import LLM
import BackendCPU

/// The default model against llama.cpp's outputs (see RealModelGolden for the tolerances).
final class SmolLM2GoldenTests: XCTestCase {
    private static var model: Model?
    private func model() throws -> Model {
        if let m = Self.model { return m }
        let m = try RealModelGolden.smolLM2.load()
        Self.model = m
        return m
    }

    func testCapitalOfFranceIsParis() throws {
        let model = try model()
        let session = try InferenceSession(model: model, contextLength: 64)
        let prompt = model.tokenizer.encode("The capital of France is")
        let completion = try Generator(session: session).generate(prompt: prompt, options: GenerationOptions(maxTokens: 2)).best
        XCTAssertEqual(completion.text, " Paris.")
        XCTAssertEqual(completion.finishReason, .length)
    }

    func testGreedyIDsMatchLlamaCppUpToFirstNearTie() throws { try RealModelGolden.smolLM2.checkGreedy(model()) }
    func testLogitsMatchLlamaCppTopFive() throws { try RealModelGolden.smolLM2.checkLogits(model()) }
    /// llama.cpp: PPL = 17.6614 over Tests/Fixtures/real/perplexity-text.txt at context 128.
    func testPerplexityWithinOnePercentOfLlamaCpp() throws { try RealModelGolden.smolLM2.checkPerplexity(model()) }
    /// The CLI's default, int8 activations and integer kernels end to end (prompt batches included).
    func testPerplexityWithInt8ActivationsWithinOnePercent() throws {
        try RealModelGolden.smolLM2.checkPerplexity(RealModelGolden.smolLM2.load(backend: CPUBackend(int8Activations: true)))
    }
}
