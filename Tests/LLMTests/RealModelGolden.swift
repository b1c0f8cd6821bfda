import Foundation
import XCTest
import LLM
import BackendCPU

/// Golden checks of a real model against llama.cpp's outputs in Tests/Fixtures/real (see its README):
/// tokenization, greedy ids up to the first near-tie, logits row by row, and perplexity.
///
/// Logit tolerance: llama.cpp's CPU backend rounds activations to 8-bit blocks before every
/// quantized dot product (to Q8_K blocks for the K-quants) and this engine keeps f32; on these
/// models that moves a logit by up to about 0.7–1.0. Gemma's GELU in llama.cpp also goes through an
/// f16 lookup table, so Gemma gets 1.5. We require |Δ| ≤ `maxLogitDiff` for each of llama.cpp's
/// top-5 logits, mean |Δ| ≤ 0.35 over them, and llama.cpp's top-1 token wherever its own top-2 gap is
/// ≥ 0.3. Where the f32 engine flips such a position (Qwen2.5, one position with a gap of 0.46), the
/// top-1 and greedy checks run with `CPUBackend(int8Activations: true)`, which reproduces
/// llama.cpp's rounding: then the logits agree to 0.26 and every top-1 matches, which shows the flip
/// is llama.cpp's rounding and not an error here.
struct RealModelGolden {
    let modelFile: String
    let prefix: String
    let maxLogitDiff: Float
    let fetchName: String

    static let smolLM2 = RealModelGolden(modelFile: "SmolLM2-135M-Instruct-Q4_1.gguf", prefix: "smollm2", maxLogitDiff: 1.0, fetchName: "")
    static let qwen25 = RealModelGolden(modelFile: "qwen2.5-coder-0.5b-instruct-Q4_K_M.gguf", prefix: "qwen25", maxLogitDiff: 1.0, fetchName: "qwen25")
    static let gemma3 = RealModelGolden(modelFile: "gemma-3-270m-Q4_K_M.gguf", prefix: "gemma3", maxLogitDiff: 1.5, fetchName: "gemma3")

    static let prompts = ["The capital of France is", "My favourite food is", "import numpy as np"]

    func path() throws -> String {
        let path = ModelCache.path(modelFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("\(modelFile) is not in \(ModelCache.directory); run scripts/fetch-model \(fetchName)")
        }
        return path
    }

    func load(backend: Backend = CPUBackend()) throws -> Model {
        try Model.load(path: path(), backend: backend)
    }

    func reference(_ k: Int) throws -> TokensReference {
        try TokensReference(path: Fixtures.real("\(prefix).prompt\(k).tokens.txt"))
    }

    /// Every line of `<prefix>.tokenize.tsv` (text, then llama.cpp's ids; split at the last tab).
    func checkTokenizer(_ model: Model, file: StaticString = #filePath, line: UInt = #line) throws {
        let text = try String(contentsOfFile: Fixtures.real("\(prefix).tokenize.tsv"), encoding: .utf8)
        var count = 0
        for row in text.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let tab = row.lastIndex(of: "\t") else { continue }
            let input = String(row[..<tab])
            let ids = row[row.index(after: tab)...].trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
                .split(separator: ",").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
            XCTAssertEqual(model.tokenizer.encode(input), ids, "\(prefix): \(input.debugDescription)", file: file, line: line)
            count += 1
        }
        XCTAssertGreaterThan(count, 5, file: file, line: line)
    }

    /// Prompt tokenization, and greedy ids up to llama.cpp's first near-tie, for the three prompts.
    func checkGreedy(_ model: Model, file: StaticString = #filePath, line: UInt = #line) throws {
        let session = try InferenceSession(model: model, contextLength: 64)
        var compared = 0
        defer { XCTAssertGreaterThan(compared, 0, "\(prefix): every prompt starts with a near-tie", file: file, line: line) }
        for (k, text) in Self.prompts.enumerated() {
            let ref = try reference(k + 1)
            XCTAssertEqual(model.tokenizer.encode(text), ref.promptIDs, "\(prefix) prompt \(k + 1) tokenization", file: file, line: line)
            let completion = try Generator(session: session).generate(
                prompt: ref.promptIDs, options: GenerationOptions(maxTokens: ref.greedyIDs.count, stopAtEndOfGeneration: false)).best
            let agree = ref.firstNearTie()
            compared += agree
            XCTAssertEqual(Array(completion.tokens.prefix(agree)), Array(ref.greedyIDs.prefix(agree)),
                           "\(prefix) prompt \(k + 1): greedy ids before the first near-tie at step \(agree)", file: file, line: line)
        }
    }

    /// Logits over each prompt and its continuation, position by position.
    func checkLogits(_ model: Model, maxDiff: Float? = nil, checkTopOne: Bool = true,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let maxLogitDiff = maxDiff ?? self.maxLogitDiff
        let session = try InferenceSession(model: model, contextLength: 64)
        let vocab = model.config.vocabularySize
        var worst: Float = 0, total: Double = 0, count = 0
        for k in 1...3 {
            let ref = try reference(k)
            session.reset()
            let sequence = ref.sequence
            let buffer = try session.evaluate(sequence, logits: .all)
            let logits = try model.backend.download(buffer, offset: 0, count: sequence.count * vocab)
            for p in 0..<min(sequence.count, ref.top.count) {
                let row = logits[(p * vocab)..<((p + 1) * vocab)]
                let top = ref.top[p]
                for entry in top {
                    let diff = abs(row[p * vocab + entry.id] - entry.logit)
                    worst = max(worst, diff)
                    total += Double(diff)
                    count += 1
                    XCTAssertLessThanOrEqual(diff, maxLogitDiff, "\(prefix) prompt \(k) position \(p) token \(entry.id)", file: file, line: line)
                }
                if checkTopOne && top[0].logit - top[1].logit >= 0.3 {
                    let argmax = row.indices.max { row[$0] < row[$1] }! - p * vocab
                    XCTAssertEqual(argmax, top[0].id, "\(prefix) prompt \(k) position \(p): top-1 differs", file: file, line: line)
                }
            }
        }
        let mean = total / Double(count)
        print("\(prefix) logits vs llama.cpp top-5: max |diff| \(worst), mean |diff| \(mean) over \(count) logits")
        XCTAssertLessThanOrEqual(mean, 0.35, file: file, line: line)
    }

    /// Perplexity over Tests/Fixtures/real/perplexity-text.txt at context 128, within 1% of llama.cpp's.
    func checkPerplexity(_ model: Model, file: StaticString = #filePath, line: UInt = #line) throws {
        let session = try InferenceSession(model: model, contextLength: 128)
        let text = try String(contentsOfFile: Fixtures.real("perplexity-text.txt"), encoding: .utf8)
        let log = try String(contentsOfFile: Fixtures.real("\(prefix).perplexity.txt"), encoding: .utf8)
        guard let range = log.range(of: "PPL = "),
              let expected = Double(log[range.upperBound...].prefix { "0123456789.".contains($0) }) else {
            return XCTFail("cannot parse \(prefix).perplexity.txt", file: file, line: line)
        }
        let result = try Perplexity.evaluate(session: session, text: text, context: 128)
        print("\(prefix) perplexity \(result.perplexity) vs llama.cpp \(expected) (\(result.windows) windows)")
        XCTAssertEqual(result.perplexity, expected, accuracy: expected * 0.01, file: file, line: line)
    }

    /// Greedy continuation text of "The capital of France is".
    func greedyText(_ model: Model, tokens: Int) throws -> String {
        let session = try InferenceSession(model: model, contextLength: 64)
        return try Generator(session: session).generate(
            prompt: model.tokenizer.encode(Self.prompts[0]), options: GenerationOptions(maxTokens: tokens)).best.text
    }
}

final class Qwen25GoldenTests: XCTestCase {
    private static var model: Model?
    private func model() throws -> Model {
        if let m = Self.model { return m }
        let m = try RealModelGolden.qwen25.load()
        Self.model = m
        return m
    }

    func testTokenizerMatchesLlamaCpp() throws { try RealModelGolden.qwen25.checkTokenizer(model()) }
    func testCapitalOfFranceIsParis() throws { XCTAssertTrue(try RealModelGolden.qwen25.greedyText(model(), tokens: 2).hasPrefix(" Paris")) }
    /// The f32 oracle: logits within tolerance (its top-1 flips at one position, see the type's note).
    func testLogits() throws { try RealModelGolden.qwen25.checkLogits(model(), checkTopOne: false) }
    /// With llama.cpp's activation rounding: logits within 0.5, every top-1 and the greedy ids agree.
    func testTopOneAndGreedyWithLlamaCppRounding() throws {
        let rounded = try RealModelGolden.qwen25.load(backend: CPUBackend(int8Activations: true))
        try RealModelGolden.qwen25.checkLogits(rounded, maxDiff: 0.5)
        try RealModelGolden.qwen25.checkGreedy(rounded)
    }
    func testPerplexity() throws { try RealModelGolden.qwen25.checkPerplexity(model()) }
    /// The CLI's default, int8 activations: Q5_0, Q8_0 and K-quant integer kernels end to end.
    func testPerplexityWithInt8Activations() throws {
        try RealModelGolden.qwen25.checkPerplexity(RealModelGolden.qwen25.load(backend: CPUBackend(int8Activations: true)))
    }
}

final class Gemma3GoldenTests: XCTestCase {
    private static var model: Model?
    private func model() throws -> Model {
        if let m = Self.model { return m }
        let m = try RealModelGolden.gemma3.load()
        Self.model = m
        return m
    }

    func testTokenizerMatchesLlamaCpp() throws { try RealModelGolden.gemma3.checkTokenizer(model()) }
    func testCapitalOfFranceContinues() throws {
        XCTAssertTrue(try RealModelGolden.gemma3.greedyText(model(), tokens: 4).hasPrefix(" the capital of the"))
    }
    func testGreedyIDs() throws { try RealModelGolden.gemma3.checkGreedy(model()) }
    func testLogits() throws { try RealModelGolden.gemma3.checkLogits(model()) }
    func testPerplexity() throws { try RealModelGolden.gemma3.checkPerplexity(model()) }
    /// The CLI's default, int8 activations and llama.cpp's f16 GELU table: greedy ids up to the first
    /// near-tie, logits within the same tolerance as the f32 oracle's (measured: max 1.08, mean 0.19,
    /// against 1.15 and 0.22 in f32; Gemma keeps other differences from llama.cpp's graph) and
    /// perplexity within 1%.
    func testInt8ActivationsAgainstLlamaCpp() throws {
        let int8 = try RealModelGolden.gemma3.load(backend: CPUBackend(int8Activations: true))
        try RealModelGolden.gemma3.checkGreedy(int8)
        try RealModelGolden.gemma3.checkLogits(int8)
        try RealModelGolden.gemma3.checkPerplexity(int8)
    }
}
