import XCTest
import LLM
import BackendCPU

/// What the gpt2 and deepseek2 loaders refuse, and what they accept as llama.cpp does, on edited
/// copies of the tiny fixtures.
final class FamiliesValidationTests: XCTestCase {
    /// A copy of a fixture with metadata replaced or added (`set`), keys and tensors left out.
    private func edited(_ name: String, set: [(String, GGUFValue)] = [], dropKeys: Set<String> = [],
                        dropTensors: (String) -> Bool = { _ in false }) throws -> String {
        let file = try GGUFFile(path: Fixtures.families(name + ".gguf"))
        var b = GGUFBuilder()
        b.alignment = file.alignment
        let replaced = Set(set.map(\.0))
        b.metadata = file.metadataKeys.filter { !dropKeys.contains($0) && !replaced.contains($0) }.map { ($0, file.metadata[$0]!) } + set
        b.tensors = file.tensors.filter { !dropTensors($0.name) }.map { t in
            (name: t.name, dims: t.dimensions, type: t.type, data: Array(file.bytes(of: t)))
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("families-\(UUID().uuidString).gguf")
        try Data(b.bytes()).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private func loadError(_ path: String) -> Error? {
        do { _ = try Model.load(path: path, backend: CPUBackend(threads: 1)); return nil } catch { return error }
    }

    func testYaRNIsRefusedNamingTheKey() throws {
        for (name, arch) in [("tiny-deepseek2-f32", "deepseek2"), ("tiny-gpt2-f32", "gpt2")] {
            let path = try edited(name, set: [("\(arch).rope.scaling.type", .string("yarn")), ("\(arch).rope.scaling.factor", .float32(4))])
            let error = try XCTUnwrap(loadError(path) as? ModelError, name)
            guard case .invalidHyperparameter(let key, _) = error else { return XCTFail("\(name): \(error)") }
            XCTAssertEqual(key, "\(arch).rope.scaling.type")
        }
    }

    func testLegacyKVBLayoutIsRefused() throws {
        let path = try edited("tiny-deepseek2-f32", dropKeys: ["deepseek2.attention.key_length_mla", "deepseek2.attention.value_length_mla"])
        XCTAssertTrue("\(try XCTUnwrap(loadError(path)))".contains("key_length_mla"))
    }

    func testBadGroupCountsAreRefused() throws {
        for (count, used) in [(3, 1), (4, 4), (8, 2)] {
            let path = try edited("tiny-deepseek2-f32", set: [("deepseek2.expert_group_count", .uint32(UInt32(count))),
                                                              ("deepseek2.expert_group_used_count", .uint32(UInt32(used)))])
            XCTAssertNotNil(loadError(path) as? ModelError, "groups \(used) of \(count)")
        }
    }

    /// llama.cpp loads `exp_probs_b` as optional and then selects by p alone; so does this engine,
    /// and the choices then differ from the biased ones (README: 12 of 25 prompt rows on layer 1).
    func testMissingSelectionBiasSelectsByScoreAlone() throws {
        let path = try edited("tiny-deepseek2-f32", dropTensors: { $0.hasSuffix("exp_probs_b.bias") })
        let prompt = try TokensReference(path: Fixtures.families("tiny-deepseek2-f32.tokens.txt")).promptIDs
        func choices(_ path: String) throws -> [[Int32]] {
            let model = try Model.load(path: path, backend: CPUBackend(threads: 1))
            let session = try InferenceSession(model: model, contextLength: 64)
            var layer1: [[Int32]] = []
            session.routingObserver = { event in
                if event.layer == 1 { layer1 = (0..<event.rows).map { Array(event.selected[($0 * 2)..<($0 * 2 + 2)]).sorted() } }
            }
            _ = try session.evaluate(prompt, logits: .last)
            return layer1
        }
        let biased = try choices(Fixtures.families("tiny-deepseek2-f32.gguf")), unbiased = try choices(path)
        XCTAssertEqual(biased.count, 25)
        XCTAssertEqual(zip(biased, unbiased).filter { $0 != $1 }.count, 12)
    }

    /// Beam search runs the paged cache (block tables, per-row positions): MLA's latent rows and
    /// gpt2's learned positions through it must score each hypothesis as one contiguous pass does.
    func testBeamSearchScoresMatchContiguousPasses() throws {
        for name in ["tiny-deepseek2-f32", "tiny-gpt2-f32"] {
            let model = try Model.load(path: Fixtures.families(name + ".gguf"), backend: CPUBackend(threads: 2))
            let prompt = Array(try TokensReference(path: Fixtures.families(name + ".tokens.txt")).promptIDs.prefix(12))
            let result = try BeamSearch(model: model).run(
                prompt: prompt, maxTokens: 6, parameters: BeamSearchParameters(beams: 3, lengthPenalty: 0, returnCount: 3),
                contextLength: 64)
            XCTAssertEqual(result.hypotheses.count, 3, name)
            let vocab = model.config.vocabularySize
            for h in result.hypotheses {
                let session = try InferenceSession(model: model, contextLength: 64)
                let sequence = prompt + h.tokens
                let logits = try model.backend.download(session.evaluate(sequence, logits: .all), offset: 0, count: sequence.count * vocab)
                var total = 0.0
                for (i, t) in h.tokens.enumerated() {
                    let row = logits[((prompt.count - 1 + i) * vocab)..<((prompt.count + i) * vocab)].map(Double.init)
                    let m = row.max()!, z = m + log(row.reduce(0) { $0 + exp($1 - m) })
                    total += row[Int(t)] - z
                }
                XCTAssertEqual(h.logprob, total, accuracy: 1e-4, "\(name): \(h.tokens)")
            }
        }
    }
}
