import BackendCPU
import Foundation
import LLM
import XCTest

// The beam-search ops on every backend of ConformanceBackends.all() against the CPU oracle:
// `pagedAttention` over a shuffled block pool and `rope(positions:)` with arbitrary per-row
// positions, then beam search end to end (tiny f32 fixture, and SmolLM2 when cached).
//
// Tolerances, nmse = Σ(a−b)²/Σb²: paged attention 1e-9 and rope 1e-8, the same as the
// contiguous `attention` and `rope` cases in OpConformanceTests (f32 summation order and
// exp/sin/cos ulps; a wrong block or position shows up as nmse ~1). Beam search: identical
// tokens, scores within 1e-3.

final class PagedConformanceTests: XCTestCase {
    static let blockSize = 16

    /// Rows over one pool: lengths 1, 17, 33 and 300 on shuffled, non-contiguous blocks; two
    /// beams sharing a prefix's blocks (one of them also a copied last block); a prefill-like
    /// run of three rows on one table with consecutive lengths; a row identical to another.
    static func layout(poolBlocks: Int, _ rng: inout SeededRandom) -> PagedLayout {
        var ids = Array(0..<Int32(poolBlocks))
        for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        var next = 0
        func take(_ n: Int) -> [Int32] { defer { next += n }; return Array(ids[next..<(next + n)]) }
        let t1 = take(1), t17 = take(2), t33 = take(3), t300 = take(19)
        let shared = take(2)                         // a 24-position prefix two beams share
        let beamA = shared + take(1), beamB = Array(shared.prefix(1)) + take(2)
        let tables = [t1, t17, t33, t300, beamA, beamB, t33, t33, t33, t17]
        let lengths = [1, 17, 33, 300, 40, 45, 31, 32, 33, 17]
        return PagedLayout(blockSize: blockSize, tables: tables, lengths: lengths)
    }

    func testPagedAttention() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 21)
            // (heads, kvHeads, headDim): GQA 6:2, multi-query 4:1 with an odd head size, no GQA.
            let shapes: [(Int, Int, Int)] = [(6, 2, 64), (4, 1, 40), (3, 3, 24)]
            let poolBlocks = 40
            let layout = Self.layout(poolBlocks: poolBlocks, &rng)
            let rows = layout.lengths.count
            for (heads, kvHeads, headDim) in shapes {
                let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot())
                let poolRows = poolBlocks * Self.blockSize
                // Positions no table names hold large values: reading one shows up at once.
                var k = rng.floats(poolRows * shape.kvWidth, 5, 9), v = rng.floats(poolRows * shape.kvWidth, 5, 9)
                for r in 0..<rows {
                    for p in 0..<layout.lengths[r] {
                        let row = layout.physicalRow(r, position: p) * shape.kvWidth
                        for i in 0..<shape.kvWidth where k[row + i] >= 5 {
                            k[row + i] = rng.uniform(-2, 2)
                            v[row + i] = rng.uniform()
                        }
                    }
                }
                let q = rng.floats(rows * shape.queryWidth, -2, 2)
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let keys = try makeFilled(b, k, label: "pool.k"), values = try makeFilled(b, v, label: "pool.v")
                    let query = try makeFilled(b, q, label: "q")
                    let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
                    try b.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
                    results.append(try download(b, output))
                }
                assertClose(results[0], results[1], tolerance: 1e-9,
                            "\(backend.name) pagedAttention \(heads):\(kvHeads)x\(headDim), \(rows) rows, lengths \(layout.lengths)")
            }
        }
    }

    /// Several layouts recorded back to back before one download (as the layers and steps of
    /// beam search are): each call must see its own tables, not the next call's.
    func testPagedAttentionLayoutsInOneSubmission() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 22)
            let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: 32, scale: 0.2)
            let poolBlocks = 40, poolRows = poolBlocks * Self.blockSize
            let full = Self.layout(poolBlocks: poolBlocks, &rng)
            let layouts = [
                full,
                PagedLayout(blockSize: 16, tables: [full.tables[4], full.tables[5]], lengths: [41, 46]),
                PagedLayout(blockSize: 16, tables: [full.tables[3]], lengths: [299]),
                full,
            ]
            let k = rng.floats(poolRows * shape.kvWidth, -2, 2), v = rng.floats(poolRows * shape.kvWidth)
            let q = rng.floats(full.lengths.count * shape.queryWidth, -2, 2)
            var results: [[[Float]]] = []
            for b in [backend, cpu as Backend] {
                let keys = try makeFilled(b, k, label: "pool.k"), values = try makeFilled(b, v, label: "pool.v")
                let query = try makeFilled(b, q, label: "q")
                let outputs = try layouts.map { try b.makeBuffer(count: $0.lengths.count * shape.queryWidth, label: "out") }
                for (layout, output) in zip(layouts, outputs) {
                    try b.pagedAttention(query: query, keys: keys, values: values, into: output, rows: layout.lengths.count,
                                         layout: layout, shape: shape)
                }
                results.append(try outputs.map { try download(b, $0) })
            }
            for i in layouts.indices {
                assertClose(results[0][i], results[1][i], tolerance: 1e-9, "\(backend.name) pagedAttention layout \(i) of \(layouts.count)")
            }
        }
    }

    func testRopePositions() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 23)
            // (heads, headDim, rotated dimensions, scale, factors)
            let configs: [(Int, Int, Int, Float, Bool)] = [(5, 40, 40, 1, false), (3, 96, 64, 0.25, false), (2, 64, 64, 1, true)]
            let positionLists: [[Int]] = [
                [5, 0, 300, 17, 17, 1, 33],   // arbitrary
                [33, 33, 33, 33],             // beams: one position
                [4, 5, 6],                    // a prompt chunk
                [299],
                [16, 15, 14, 13, 0],          // descending
            ]
            for style in [RopeStyle.normal, .neox] {
                for (heads, headDim, dims, scale, factors) in configs {
                    let parameters = RopeParameters(dimensions: dims, base: 10000, style: style, positionScale: scale,
                                                    frequencyFactors: factors ? rng.floats(dims / 2, 1, 8) : nil)
                    // All lists are recorded before one download: each must use its own positions.
                    let inputs = positionLists.map { rng.floats($0.count * heads * headDim) }
                    var results: [[[Float]]] = []
                    for b in [backend, cpu as Backend] {
                        let buffers = try inputs.map { try makeFilled(b, $0, label: "q") }
                        for (positions, buffer) in zip(positionLists, buffers) {
                            try b.rope(buffer, rows: positions.count, heads: heads, headDim: headDim, positions: positions, parameters: parameters)
                        }
                        results.append(try buffers.map { try download(b, $0) })
                    }
                    for (i, positions) in positionLists.enumerated() {
                        assertClose(results[0][i], results[1][i], tolerance: 1e-8,
                                    "\(backend.name) rope \(style) heads \(heads) dim \(headDim)/\(dims) positions \(positions)")
                    }
                }
            }
        }
    }

    // MARK: Beam search end to end

    static func beamSearch(_ backend: Backend, path: String, prompt: [Int32], beams: Int, maxTokens: Int, returnCount: Int) throws -> [Hypothesis] {
        let model = try Model.load(path: path, backend: backend)
        return try BeamSearch(model: model).run(
            prompt: prompt, maxTokens: maxTokens, parameters: BeamSearchParameters(beams: beams, returnCount: returnCount),
            contextLength: 64).hypotheses
    }

    /// Tiny llama (f32), its 24-token prompt (two blocks, the second partial), 4 beams, 8 tokens:
    /// all four returned hypotheses equal the CPU backend's.
    func testTinyBeamSearchMatchesCPU() throws {
        let name = "tiny-llama-f32"
        let path = ModelConformanceTests.fixtures.appendingPathComponent("\(name).gguf").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("fixture \(name).gguf is missing") }
        let prompt = try ModelConformanceTests.ids(name, "prompt_ids")
        let want = try Self.beamSearch(CPUBackend(threads: 2), path: path, prompt: prompt, beams: 4, maxTokens: 8, returnCount: 4)
        XCTAssertEqual(want.count, 4)
        try forEachBackend { backend, _ in
            let got = try Self.beamSearch(backend, path: path, prompt: prompt, beams: 4, maxTokens: 8, returnCount: 4)
            XCTAssertEqual(got.map(\.tokens), want.map(\.tokens), "\(backend.name) beam hypotheses on \(name)")
            for (g, w) in zip(got, want) {
                XCTAssertEqual(g.score, w.score, accuracy: 1e-3, "\(backend.name) score of \(w.tokens)")
            }
        }
    }

    /// SmolLM2-135M Q4_1, "The capital of France is", 4 beams (the CLI's --beams 4 defaults),
    /// 8 tokens: the best hypothesis equals the CPU backend's.
    func testSmolLM2BeamSearchMatchesCPU() throws {
        let path = try cachedModel(ModelCache.defaultModelFile)
        let prompt: [Int32] = [504, 3575, 282, 4649, 314]
        let want = try Self.beamSearch(ConformanceBackends.oracle, path: path, prompt: prompt, beams: 4, maxTokens: 8, returnCount: 1)
        try forEachBackend { backend, _ in
            let got = try Self.beamSearch(backend, path: path, prompt: prompt, beams: 4, maxTokens: 8, returnCount: 1)
            XCTAssertEqual(got.first?.tokens, want.first?.tokens, "\(backend.name) best beam on SmolLM2")
        }
    }
}
