import Foundation
import XCTest
import LLM
import BackendCPU

/// Beam search against brute-force enumeration, against greedy, and against recomputed logprobs.
final class BeamSearchTests: XCTestCase {
    private var model: Model!
    private let prompt: [Int32] = [1, 336, 340, 341, 345]   // "<s> Once upon a time" in the tiny vocabulary

    override func setUpWithError() throws {
        model = try Model.load(path: Fixtures.tiny("tiny-llama-f32.gguf"), backend: CPUBackend(threads: 2))
    }

    private func logSoftmax(_ row: ArraySlice<Float>) -> [Double] {
        let m = Double(row.max()!)
        let z = m + log(row.reduce(0.0) { $0 + exp(Double($1) - m) })
        return row.map { Double($0) - z }
    }

    /// Σ log p of `tokens` after the prompt, by one teacher-forced pass over prompt + tokens.
    private func recomputedLogprob(_ tokens: [Int32]) throws -> Double {
        let session = try InferenceSession(model: model, contextLength: 64)
        let sequence = prompt + tokens
        let vocab = model.config.vocabularySize
        let buffer = try session.evaluate(sequence, logits: .all)
        let logits = try model.backend.download(buffer, offset: 0, count: sequence.count * vocab)
        var total = 0.0
        for (i, t) in tokens.enumerated() {
            let row = prompt.count - 1 + i
            total += logSoftmax(logits[(row * vocab)..<((row + 1) * vocab)])[Int(t)]
        }
        return total
    }

    /// Every sequence of at most two tokens (ending in EOS, or stopped by the length limit),
    /// scored exactly: the best one, by enumeration.
    private func bruteForceBest(alpha: Double) throws -> (tokens: [Int32], score: Double) {
        let session = try InferenceSession(model: model, contextLength: 64)
        let vocab = model.config.vocabularySize
        let first = logSoftmax(try model.backend.download(session.evaluate(prompt, logits: .last), offset: 0, count: vocab)[...])
        var best: (tokens: [Int32], score: Double) = ([], -.infinity)
        // An end-of-generation token ends a sequence of length 1 (L^α = 1).
        for end in model.tokenizer.endOfGenerationTokens where first[Int(end)] > best.score { best = ([end], first[Int(end)]) }
        let divisor = pow(2.0, alpha)
        for a in 0..<Int32(vocab) where !model.tokenizer.isEndOfGeneration(a) {
            session.cache.truncate(to: prompt.count)
            let second = logSoftmax(try model.backend.download(session.evaluate([a], logits: .last), offset: 0, count: vocab)[...])
            for b in 0..<vocab {
                let score = (first[Int(a)] + second[b]) / divisor
                if score > best.score { best = ([a, Int32(b)], score) }
            }
        }
        return best
    }

    func testBeamsAtLeastVocabularyFindTheExactOptimum() throws {
        let vocab = model.config.vocabularySize
        for alpha in [0.0, 1.0, 3.0] {
            let exact = try bruteForceBest(alpha: alpha)
            let result = try BeamSearch(model: model).run(
                prompt: prompt, maxTokens: 2, parameters: BeamSearchParameters(beams: vocab, lengthPenalty: alpha, earlyStopping: .never),
                contextLength: 64)
            let top = try XCTUnwrap(result.hypotheses.first)
            XCTAssertEqual(top.tokens, exact.tokens, "α = \(alpha)")
            XCTAssertEqual(top.score, exact.score, accuracy: 1e-6 * max(1, abs(exact.score)), "α = \(alpha)")
        }
    }

    func testSmallBeamScoresAgreeWithRecomputedLogprobs() throws {
        for (beams, norm) in [(2, LengthNormalization.power), (3, .gnmt), (4, .power)] {
            let alpha = 0.8
            let result = try BeamSearch(model: model).run(
                prompt: prompt, maxTokens: 6,
                parameters: BeamSearchParameters(beams: beams, lengthPenalty: alpha, lengthNormalization: norm, returnCount: beams),
                contextLength: 64)
            XCTAssertFalse(result.hypotheses.isEmpty)
            XCTAssertEqual(result.hypotheses.map(\.score), result.hypotheses.map(\.score).sorted(by: >), "sorted best first")
            for h in result.hypotheses {
                let logprob = try recomputedLogprob(h.tokens)
                XCTAssertEqual(h.logprob, logprob, accuracy: 1e-4, "beams \(beams): \(h.tokens)")
                XCTAssertEqual(h.score, logprob / norm.divisor(length: h.tokens.count, alpha: alpha), accuracy: 1e-4)
            }
        }
    }

    /// Beam search never beats the exact optimum (it cannot, unless it misreports a score).
    func testSmallBeamNeverReportsMoreThanTheOptimum() throws {
        let exact = try bruteForceBest(alpha: 1)
        for beams in [1, 2, 5] {
            let result = try BeamSearch(model: model).run(
                prompt: prompt, maxTokens: 2, parameters: BeamSearchParameters(beams: beams, lengthPenalty: 1), contextLength: 64)
            XCTAssertLessThanOrEqual(result.hypotheses[0].score, exact.score + 1e-9, "beams \(beams)")
        }
    }

    func testOneBeamEqualsGreedy() throws {
        let session = try InferenceSession(model: model, contextLength: 64)
        let greedy = try Generator(session: session).generate(
            prompt: prompt, options: GenerationOptions(maxTokens: 20, stopAtEndOfGeneration: false)).best
        let beam = try Generator(session: session).generate(
            prompt: prompt, options: GenerationOptions(maxTokens: 20, strategy: .beamSearch(BeamSearchParameters(beams: 1)),
                                                       stopAtEndOfGeneration: false)).best
        XCTAssertEqual(beam.tokens, greedy.tokens)
        XCTAssertEqual(beam.text, greedy.text)
    }

    /// Beams share the prompt's full blocks: four beams over a long prompt hold far less than
    /// four per-beam caches.
    func testPromptIsStoredOnce() throws {
        let long = Array((prompt + Array(repeating: prompt.dropFirst(), count: 20).flatMap { $0 }).prefix(80))
        let result = try BeamSearch(model: model).run(
            prompt: long, maxTokens: 8, parameters: BeamSearchParameters(beams: 4), contextLength: 128)
        XCTAssertLessThan(Double(result.peakKVBytes), 0.5 * Double(result.contiguousKVBytes),
                          "paged \(result.peakKVBytes) vs per-beam \(result.contiguousKVBytes)")
    }
}
