import BackendCPU
import Foundation
import LLM
import XCTest

// The ops gpt2 and deepseek2 added, on every backend against the CPU oracle, then the tiny
// gpt2 and deepseek2 models end to end. Tolerances (nmse, as in OpConformanceTests):
//   layerNorm (the oracle sums the mean and variance in double, kernels in f32 work-group
//              reductions; rows offset from zero make the centring matter):   1e-10
//   gelu (the device's tanh/exp within a few ulps):                            1e-10
//   copyColumns (a move):                                                       exact
//   moeGate with selection bias and groups: ids exact, weights within 1e-5 relative
//   models: logits nmse 1e-8 (prompt and 6 decode steps), all 32 greedy ids and every
//           deepseek2 expert choice equal to the oracle's.

final class FamiliesConformanceTests: XCTestCase {
    func testLayerNorm() throws {
        try forEachBackend(supporting: .layerNorm) { backend, cpu in
            var rng = SeededRandom(seed: 191)
            for width in [1, 7, 128, 340, 2049] {
                for rows in [1, 3, 5] {
                    for (bias, inPlace) in [(true, false), (false, false), (true, true)] {
                        let g = randomWeightBytes(.f32, rows: 1, columns: width, &rng)
                        let bb = randomWeightBytes(.f32, rows: 1, columns: width, &rng)
                        // Every other row sits around 4, not 0.
                        var x = rng.floats(rows * width, -3, 3)
                        for r in stride(from: 1, to: rows, by: 2) { for i in 0..<width { x[r * width + i] += 4 } }
                        var results: [[Float]] = []
                        for b in [backend, cpu as Backend] {
                            let weight = try makeWeight(b, "norm", .f32, rows: 1, columns: width, bytes: g)
                            let shift = bias ? try makeWeight(b, "norm.bias", .f32, rows: 1, columns: width, bytes: bb) : nil
                            let input = try makeFilled(b, x, label: "x")
                            let output = inPlace ? input : try b.makeBuffer(count: rows * width, label: "y")
                            try b.layerNorm(input, weight: weight, bias: shift, into: output, rows: rows, eps: 1e-5)
                            results.append(try download(b, output))
                        }
                        assertClose(results[0], results[1], tolerance: 1e-10,
                                    "\(backend.name) layerNorm width \(width) rows \(rows) bias \(bias) in place \(inPlace)")
                    }
                }
            }
        }
    }

    func testGELU() throws {
        try forEachBackend(supporting: .gelu) { backend, cpu in
            var rng = SeededRandom(seed: 192)
            for count in [1, 7, 1000, 4099] {
                for inPlace in [false, true] {
                    var x = rng.floats(count, -12, 12)
                    if count > 4 { x[0] = 0; x[1] = -10; x[2] = 10; x[3] = 30 }
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let input = try makeFilled(b, x, label: "x")
                        let output = inPlace ? input : try b.makeBuffer(count: count, label: "y")
                        try b.gelu(input, into: output, count: count)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-10, "\(backend.name) gelu \(count)\(inPlace ? " in place" : "")")
                }
            }
        }
    }

    func testCopyColumns() throws {
        try forEachBackend(supporting: .copyColumns) { backend, cpu in
            var rng = SeededRandom(seed: 193)
            // (rows, groups, width, from, to): MLA's shapes (q_pe out of 4 heads of 48, a head's
            // 32 nope columns, the latent back into its row) and odd ones.
            let cases: [(Int, Int, Int, ColumnBlock, ColumnBlock)] = [
                (5, 4, 16, ColumnBlock(offset: 32, rowStride: 192, groupStride: 48), ColumnBlock(offset: 0, rowStride: 64, groupStride: 16)),
                (7, 1, 32, ColumnBlock(offset: 96, rowStride: 192), ColumnBlock(offset: 0, rowStride: 32)),
                (1, 1, 32, ColumnBlock(offset: 0, rowStride: 32), ColumnBlock(offset: 0, rowStride: 48)),
                (3, 5, 7, ColumnBlock(offset: 3, rowStride: 61, groupStride: 11), ColumnBlock(offset: 1, rowStride: 40, groupStride: 7)),
                (65, 2, 70, ColumnBlock(offset: 0, rowStride: 141, groupStride: 71), ColumnBlock(offset: 5, rowStride: 150, groupStride: 72)),
            ]
            for (rows, groups, width, from, to) in cases {
                let source = rng.floats(from.end(rows: rows, groups: groups, width: width) + 3)
                let before = rng.floats(to.end(rows: rows, groups: groups, width: width) + 3)
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let s = try makeFilled(b, source, label: "source"), d = try makeFilled(b, before, label: "destination")
                    try b.copyColumns(s, from, into: d, to, rows: rows, groups: groups, width: width)
                    results.append(try download(b, d))
                }
                XCTAssertEqual(results[0], results[1], "\(backend.name) copyColumns \(rows)×\(groups)×\(width)")
            }
            // A block past the end is an error, not a write outside the buffer.
            let small = try backend.makeBuffer(count: 10, label: "small"), big = try backend.makeBuffer(count: 100, label: "big")
            XCTAssertThrowsError(try backend.copyColumns(big, ColumnBlock(offset: 0, rowStride: 10), into: small,
                                                         ColumnBlock(offset: 5, rowStride: 10), rows: 1, groups: 1, width: 6))
        }
    }

    /// Gating with DeepSeek-V3's selection bias and group limit: the ids must be the oracle's
    /// exactly (ties included: MoEConformanceTests.logits repeats values), the weights p, not p + bias.
    func testMoEGateWithBiasAndGroups() throws {
        try forEachBackend(supporting: .moeGating) { backend, cpu in
            var rng = SeededRandom(seed: 194)
            // (experts, k, groups, groups used)
            let shapes = [(8, 2, 4, 2), (8, 2, 1, 1), (60, 4, 6, 3), (256, 8, 8, 4), (12, 6, 3, 2)]
            var cases = 0
            for (experts, k, groups, used) in shapes {
                for function in [ExpertGating.Function.sigmoid, .softmax] {
                    for withBias in [true, false] {
                        for rows in [1, 7, 33] {
                            let gating = ExpertGating(function: function, k: k, normalize: function == .sigmoid, scale: 2.5,
                                                      groups: groups, groupsUsed: used)
                            let x = MoEConformanceTests.logits(rows: rows, experts: experts, &rng)
                            let biasBytes = randomWeightBytes(.f32, rows: 1, columns: experts, &rng)
                            var results: [(ids: [Float], weights: [Float])] = []
                            for b in [backend, cpu as Backend] {
                                let bias = withBias ? try makeWeight(b, "exp_probs_b", .f32, rows: 1, columns: experts, bytes: biasBytes) : nil
                                let logits = try makeFilled(b, x, label: "logits")
                                let ids = try b.makeBuffer(count: (rows + 1) * k, label: "ids")
                                let weights = try b.makeBuffer(count: (rows + 1) * k, label: "weights")
                                try b.moeGate(logits, rows: rows, experts: experts, gating: gating, selectionBias: bias, ids: ids, weights: weights)
                                results.append((try download(b, ids), try download(b, weights)))
                            }
                            let what = "\(backend.name) moeGate \(function) bias \(withBias) groups \(used)/\(groups) top-\(k) of \(experts), \(rows) rows"
                            XCTAssertEqual(results[0].ids, results[1].ids, "\(what): ids")
                            for (a, b) in zip(results[0].weights, results[1].weights) where abs(a - b) > 1e-5 * abs(b) + 1e-7 {
                                XCTFail("\(what): weight \(a), oracle \(b)")
                                break
                            }
                            cases += 1
                        }
                    }
                }
            }
            XCTAssertEqual(cases, 60)
        }
    }

    /// The oracle's own choice against a brute force of the rule: the best `used` groups by top-2
    /// sum of p + bias, then the top-k of p + bias within them, weighted by p.
    func testGroupedGatingAgainstBruteForce() throws {
        var rng = SeededRandom(seed: 195)
        let cpu = CPUBackend(threads: 1)
        let experts = 16, groups = 4, used = 2, k = 3, rows = 40
        let gating = ExpertGating(function: .sigmoid, k: k, normalize: false, groups: groups, groupsUsed: used)
        let x = rng.floats(rows * experts, -3, 3), biasValues = rng.floats(experts, -0.5, 0.5)
        let bias = try makeWeight(cpu, "b", .f32, rows: 1, columns: experts, bytes: biasValues.withUnsafeBytes { Array($0) })
        let ids = try cpu.makeBuffer(count: rows * k, label: "ids"), weights = try cpu.makeBuffer(count: rows * k, label: "w")
        try cpu.moeGate(try makeFilled(cpu, x, label: "x"), rows: rows, experts: experts, gating: gating, selectionBias: bias,
                        ids: ids, weights: weights)
        let gotIDs = try download(cpu, ids), gotWeights = try download(cpu, weights)
        for r in 0..<rows {
            let p = (0..<experts).map { 1 / (1 + exp(-Double(x[r * experts + $0]))) }
            let s = (0..<experts).map { p[$0] + Double(biasValues[$0]) }
            let size = experts / groups
            let groupScore = (0..<groups).map { g in s[(g * size)..<((g + 1) * size)].sorted(by: >).prefix(2).reduce(0, +) }
            let kept = Set((0..<groups).sorted { groupScore[$0] > groupScore[$1] }.prefix(used))
            let top = (0..<experts).filter { kept.contains($0 / size) }.sorted { s[$0] > s[$1] }.prefix(k)
            XCTAssertEqual(gotIDs[(r * k)..<((r + 1) * k)].map { Int($0) }, Array(top), "row \(r)")
            for (j, e) in top.enumerated() { XCTAssertEqual(Double(gotWeights[r * k + j]), p[e], accuracy: 1e-6) }
        }
    }

    // MARK: Models

    static let fixtures = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/families")

    struct Run {
        var logits: [[Float]] = []
        var experts: [Int: [[Float]]] = [:]
        var greedy: [Int32] = []
    }

    static func run(_ backend: Backend, model name: String, decodeSteps: Int) throws -> Run {
        let text = try String(contentsOf: fixtures.appendingPathComponent("\(name).tokens.txt"), encoding: .utf8)
        func ids(_ key: String) -> [Int32] {
            text.split(separator: "\n").first { $0.hasPrefix("\(key):") }!.dropFirst(key.count + 1).split(separator: " ").compactMap { Int32($0) }
        }
        let model = try Model.load(path: fixtures.appendingPathComponent("\(name).gguf").path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 128)
        let prompt = ids("prompt_ids"), greedy = ids("greedy_ids"), vocab = model.config.vocabularySize
        var result = Run()
        session.routingObserver = { event in result.experts[event.layer, default: []].append(event.selected.map(Float.init)) }
        result.logits = [try backend.download(session.evaluate(prompt, logits: .all), offset: 0, count: prompt.count * vocab)]
        for token in greedy.prefix(decodeSteps) {
            result.logits.append(try backend.download(session.evaluate([token], logits: .last), offset: 0, count: vocab))
        }
        session.routingObserver = nil
        session.reset()
        result.greedy = try Generator(session: session).generate(
            prompt: prompt, options: GenerationOptions(maxTokens: 32, stopAtEndOfGeneration: false)).best.tokens
        return result
    }

    func checkModel(_ name: String) throws {
        let want = try Self.run(ConformanceBackends.oracle, model: name, decodeSteps: 6)
        try forEachBackend { backend, _ in
            let got = try Self.run(backend, model: name, decodeSteps: 6)
            for step in want.logits.indices {
                assertClose(got.logits[step], want.logits[step], tolerance: 1e-8, "\(backend.name) \(name) logits, step \(step)")
            }
            XCTAssertEqual(got.experts, want.experts, "\(backend.name) \(name) expert choices")
            XCTAssertEqual(got.greedy, want.greedy, "\(backend.name) \(name) greedy ids")
        }
    }

    func testTinyGPT2F32() throws { try checkModel("tiny-gpt2-f32") }
    func testTinyGPT2Q8_0() throws { try checkModel("tiny-gpt2-q8_0") }
    func testTinyDeepSeek2F32() throws { try checkModel("tiny-deepseek2-f32") }
    func testTinyDeepSeek2Q8_0() throws { try checkModel("tiny-deepseek2-q8_0") }
}
