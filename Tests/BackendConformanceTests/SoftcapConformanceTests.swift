import BackendCPU
import BackendOpenCL
import Foundation
import LLM
import XCTest

// Gemma 2 soft-capping on every backend of ConformanceBackends.all() against the CPU oracle:
// attention with `AttentionShape.softcap` (contiguous and paged, with and without a sliding
// window) and the element-wise `softcap` op. A backend whose `supports` lacks `.attentionSoftcap`
// or `.softcap` is skipped, and says so.
//
// Tolerances, nmse = Σ(a−b)²/Σb²: attention 1e-9 (as the other attention cases: f32 summation
// order, exp and tanh ulps); softcap 1e-12 (one tanh, a few ulps). Scores here reach ±40, so
// cap 5 saturates most of them and cap 50 bends the large ones: a missing cap shows as nmse ~1.

final class SoftcapConformanceTests: XCTestCase {
    static let blockSize = 16

    /// Runs `body` once per attention kernel the backend has (OpenCL: work-group and per-row;
    /// other backends: their own choice), naming the variant.
    private func forEachAttentionVariant(_ backend: Backend, _ body: (String) throws -> Void) throws {
        if let opencl = backend as? OpenCLBackend {
            let saved = opencl.attentionKernel
            defer { opencl.attentionKernel = saved }
            for variant in [OpenCLBackend.AttentionKernel.workGroup, .perRow] {
                opencl.attentionKernel = variant
                try body("\(variant)")
            }
        } else {
            try body("default")
        }
    }

    private func forEachSoftcapBackend(_ op: BackendOp, _ body: (Backend, CPUBackend) throws -> Void) throws {
        try forEachBackend(supporting: op, body)
    }

    /// The cases: GQA 4:2 with head dims 40 and 64, rows 1 and 7, start 0 and 300, window 0 and 16, cap 5 and 50.
    static var cases: [(headDim: Int, rows: Int, start: Int, window: Int, cap: Float)] {
        var result: [(Int, Int, Int, Int, Float)] = []
        for headDim in [40, 64] {
            for (rows, start) in [(1, 0), (7, 0), (1, 300), (7, 300)] {
                for window in [0, 16] {
                    for cap: Float in [5, 50] { result.append((headDim, rows, start, window, cap)) }
                }
            }
        }
        return result
    }

    func testAttentionSoftcap() throws {
        try forEachSoftcapBackend(.attentionSoftcap) { backend, cpu in
            if !backend.supports(.slidingWindowAttention) {
                print("note: \(backend.name) does not support slidingWindowAttention; its windowed softcap cases are skipped")
            }
            var rng = SeededRandom(seed: 91)
            for c in Self.cases {
                if c.window > 0 && !backend.supports(.slidingWindowAttention) { continue }
                // scale 1: scores of ±40, so the cap matters.
                let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: c.headDim, scale: 1, window: c.window, softcap: c.cap)
                let positions = c.start + c.rows
                let q = rng.floats(c.rows * shape.queryWidth, -2, 2)
                let k = rng.floats(positions * shape.kvWidth, -2, 2)
                let v = rng.floats(positions * shape.kvWidth)
                // Past the causal limit: large values that must not count.
                let tailK = rng.floats(3 * shape.kvWidth, 5, 9), tailV = rng.floats(3 * shape.kvWidth, 5, 9)
                let oracle = try run(cpu, q, k + tailK, v + tailV, c.rows, c.start, shape)
                try forEachAttentionVariant(backend) { variant in
                    let got = try run(backend, q, k + tailK, v + tailV, c.rows, c.start, shape)
                    assertClose(got, oracle, tolerance: 1e-9,
                                "\(backend.name) [\(variant)] attention softcap \(c.cap) 4:2x\(c.headDim) rows \(c.rows) at \(c.start) window \(c.window)")
                }
            }
        }
    }

    func testPagedAttentionSoftcap() throws {
        try forEachSoftcapBackend(.attentionSoftcap) { backend, cpu in
            var rng = SeededRandom(seed: 92)
            let poolBlocks = 24, poolRows = poolBlocks * Self.blockSize
            for c in Self.cases {
                if c.window > 0 && !backend.supports(.slidingWindowAttention) { continue }
                let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: c.headDim, scale: 1, window: c.window, softcap: c.cap)
                // One shuffled table shared by a prefill-like run of rows at positions start ... start + rows - 1.
                var ids = Array(0..<Int32(poolBlocks))
                for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                let length = c.start + c.rows
                let table = Array(ids.prefix((length + Self.blockSize - 1) / Self.blockSize))
                let layout = PagedLayout(blockSize: Self.blockSize, tables: Array(repeating: table, count: c.rows),
                                         lengths: (0..<c.rows).map { c.start + $0 + 1 })
                // Pool rows no table names hold large values: reading one shows at once.
                var k = rng.floats(poolRows * shape.kvWidth, 5, 9), v = rng.floats(poolRows * shape.kvWidth, 5, 9)
                for p in 0..<length {
                    let row = layout.physicalRow(c.rows - 1, position: p) * shape.kvWidth
                    for i in 0..<shape.kvWidth {
                        k[row + i] = rng.uniform(-2, 2)
                        v[row + i] = rng.uniform()
                    }
                }
                let q = rng.floats(c.rows * shape.queryWidth, -2, 2)
                let oracle = try runPaged(cpu, q, k, v, layout, shape)
                try forEachAttentionVariant(backend) { variant in
                    let got = try runPaged(backend, q, k, v, layout, shape)
                    assertClose(got, oracle, tolerance: 1e-9,
                                "\(backend.name) [\(variant)] pagedAttention softcap \(c.cap) 4:2x\(c.headDim) rows \(c.rows) at \(c.start) window \(c.window)")
                }
            }
        }
    }

    /// 1000 values in [−100, 100]; cap 0.5 puts x / cap at ±200, where exp(2x) overflows a float:
    /// a tanh written as (e^2x − 1)/(e^2x + 1) gives NaN there.
    func testSoftcap() throws {
        try forEachSoftcapBackend(.softcap) { backend, cpu in
            var rng = SeededRandom(seed: 93)
            let x = rng.floats(1000, -100, 100)
            for cap: Float in [30, 5, 0.5] {
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let buffer = try makeFilled(b, x, label: "logits")
                    try b.softcap(buffer, cap: cap, count: x.count)
                    results.append(try download(b, buffer))
                }
                XCTAssert(results[0].allSatisfy(\.isFinite), "\(backend.name) softcap \(cap): a value is not finite")
                XCTAssert(results[0].allSatisfy { abs($0) <= cap }, "\(backend.name) softcap \(cap): a value exceeds the cap")
                assertClose(results[0], results[1], tolerance: 1e-12, "\(backend.name) softcap \(cap) over 1000 values in [-100, 100]")
            }
        }
    }

    /// Only `count` values change: the one past the end keeps its value.
    func testSoftcapCount() throws {
        try forEachSoftcapBackend(.softcap) { backend, _ in
            let buffer = try makeFilled(backend, [100, -100, 3, 77], label: "logits")
            try backend.softcap(buffer, cap: 10, count: 3)
            let got = try download(backend, buffer)
            XCTAssertEqual(got[3], 77, "\(backend.name) softcap wrote past count")
            XCTAssertEqual(Double(got[0]), 10 * tanh(10.0), accuracy: 1e-5)
            XCTAssertEqual(Double(got[1]), -10 * tanh(10.0), accuracy: 1e-5)
        }
    }

    private func run(_ b: Backend, _ q: [Float], _ k: [Float], _ v: [Float], _ rows: Int, _ start: Int,
                     _ shape: AttentionShape) throws -> [Float] {
        let keys = try makeFilled(b, k, label: "k"), values = try makeFilled(b, v, label: "v")
        let query = try makeFilled(b, q, label: "q")
        let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
        try b.attention(query: query, keys: keys, values: values, into: output, rows: rows, startPosition: start, shape: shape)
        return try download(b, output)
    }

    private func runPaged(_ b: Backend, _ q: [Float], _ k: [Float], _ v: [Float], _ layout: PagedLayout,
                          _ shape: AttentionShape) throws -> [Float] {
        let keys = try makeFilled(b, k, label: "pool.k"), values = try makeFilled(b, v, label: "pool.v")
        let query = try makeFilled(b, q, label: "q")
        let rows = layout.lengths.count
        let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
        try b.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
        return try download(b, output)
    }
}
