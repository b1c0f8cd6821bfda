import BackendCPU
import LLM
import XCTest

// Every op, on every backend of `ConformanceBackends.all()`, against the CPU oracle.
//
// Tolerances are normalized squared errors, nmse = Σ(a−b)²/Σb². Both sides dequantize the same
// blocks exactly (an f16 scale times a ≤8-bit integer is exact in f32), so what remains is f32
// rounding in a different order (work-group reductions vs the CPU's SIMD lanes), contraction
// into fma, and the few-ulp error of the device's exp/sin/cos:
//   copy, embedding (pure moves, or one d·q+m):            1e-12
//   add, swiglu (one or two roundings + exp):             1e-10
//   softmax (the oracle sums a row sequentially in f32; over
//         49152 values its total is off by ~4e-5 relative): 1e-8
//   rmsNorm (the oracle sums in double, kernels in f32):  1e-10
//   matmul (sums of up to 576 products in another order):  1e-9
//   rope (angle position·freq rounded to f32: at position
//         ~300 that is ~3e-5 rad of absolute error):       1e-8
//   attention (two dot products per position, online
//         softmax rescaling, 300 positions):               1e-9
//   argmax: exact.
// Measured errors sit 10–1000x below these bounds on PoCL (see docs/OPENCL.md).

final class OpConformanceTests: XCTestCase {
    static let floatTypes: [GGMLType] = [.f32, .f16, .bf16]
    static let blockTypes: [GGMLType] = [.q8_0, .q4_0, .q4_1]

    /// (outputs, columns, rows): odd output counts, columns that are not multiples of the
    /// work-group or of 4 (float types), batches under and over the tiled-matmul threshold,
    /// and tiles with ragged edges.
    static func matmulShapes(_ type: GGMLType) -> [(Int, Int, Int)] {
        let c = type.blockSize == 1 ? [340, 7, 576] : [96, 32, 576]
        return [(33, c[0], 1), (67, c[1], 3), (1, c[0], 7), (67, c[0], 8), (33, c[2], 20), (5, c[1], 9),
                (257, c[2], 1), (130, c[2], 37)]
    }

    func testMatmul() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 1)
            for type in Self.floatTypes + Self.blockTypes {
                for (outputs, columns, rows) in Self.matmulShapes(type) {
                    let bytes = randomWeightBytes(type, rows: outputs, columns: columns, &rng)
                    let x = rng.floats(rows * columns)
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let w = try makeWeight(b, "w", type, rows: outputs, columns: columns, bytes: bytes)
                        let input = try makeFilled(b, x, label: "x")
                        let output = try b.makeBuffer(count: rows * outputs + 5, label: "y")
                        try b.matmul(w, input, into: output, rows: rows)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-9,
                                "\(backend.name) matmul \(type) \(outputs)x\(columns) rows \(rows)")
                }
            }
        }
    }

    func testEmbedding() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 2)
            for type in Self.floatTypes + Self.blockTypes {
                let rows = 67, columns = type.blockSize == 1 ? 340 : 96
                let bytes = randomWeightBytes(type, rows: rows, columns: columns, &rng)
                let tokens: [Int32] = [0, 66, 5, 5, 33, 1, 65]
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let table = try makeWeight(b, "table", type, rows: rows, columns: columns, bytes: bytes)
                    let output = try b.makeBuffer(count: tokens.count * columns, label: "x")
                    try b.embed(table, tokens: tokens, into: output)
                    results.append(try download(b, output))
                }
                assertClose(results[0], results[1], tolerance: 1e-12, "\(backend.name) embedding \(type)")
            }
        }
    }

    func testRMSNorm() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 3)
            for width in [1, 7, 340, 576, 2049] {
                for rows in [1, 3] {
                    for inPlace in [false, true] {
                        let g = randomWeightBytes(.f32, rows: 1, columns: width, &rng)
                        let x = rng.floats(rows * width, -3, 3)
                        var results: [[Float]] = []
                        for b in [backend, cpu as Backend] {
                            let weight = try makeWeight(b, "norm", .f32, rows: 1, columns: width, bytes: g)
                            let input = try makeFilled(b, x, label: "x")
                            let output = inPlace ? input : try b.makeBuffer(count: rows * width, label: "y")
                            try b.rmsNorm(input, weight: weight, into: output, rows: rows, eps: 1e-5)
                            results.append(try download(b, output))
                        }
                        assertClose(results[0], results[1], tolerance: 1e-10,
                                    "\(backend.name) rmsNorm width \(width) rows \(rows)\(inPlace ? " in place" : "")")
                    }
                }
            }
        }
    }

    func testRope() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 4)
            // (heads, headDim, rotated dimensions, scale, factors)
            let configs: [(Int, Int, Int, Float, Bool)] = [(5, 40, 40, 1, false), (3, 96, 64, 0.25, false), (2, 64, 64, 1, true)]
            for style in [RopeStyle.normal, .neox] {
                for (heads, headDim, dims, scale, factors) in configs {
                    let parameters = RopeParameters(dimensions: dims, base: 10000, style: style, positionScale: scale,
                                                    frequencyFactors: factors ? rng.floats(dims / 2, 1, 8) : nil)
                    for (rows, start) in [(1, 0), (7, 0), (3, 123), (1, 300)] {
                        let x = rng.floats(rows * heads * headDim)
                        var results: [[Float]] = []
                        for b in [backend, cpu as Backend] {
                            let buffer = try makeFilled(b, x, label: "q")
                            try b.rope(buffer, rows: rows, heads: heads, headDim: headDim, startPosition: start, parameters: parameters)
                            results.append(try download(b, buffer))
                        }
                        assertClose(results[0], results[1], tolerance: 1e-8,
                                    "\(backend.name) rope \(style) heads \(heads) dim \(headDim)/\(dims) rows \(rows) at \(start)")
                    }
                }
            }
        }
    }

    func testAttention() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 5)
            // (heads, kvHeads, headDim): no GQA, GQA 6:2, multi-query 4:1
            let shapes: [(Int, Int, Int)] = [(5, 5, 40), (6, 2, 96), (4, 1, 64)]
            for (heads, kvHeads, headDim) in shapes {
                let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot())
                for (rows, start) in [(1, 0), (3, 0), (7, 17), (1, 300), (5, 300), (24, 0)] {
                    let positions = start + rows
                    let q = rng.floats(rows * shape.queryWidth, -2, 2)
                    let k = rng.floats(positions * shape.kvWidth, -2, 2)
                    let v = rng.floats(positions * shape.kvWidth)
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        // Caches a little longer than used: positions past the causal limit must not count.
                        let keys = try makeFilled(b, k + rng.floats(3 * shape.kvWidth, 5, 9), label: "k")
                        let values = try makeFilled(b, v + rng.floats(3 * shape.kvWidth, 5, 9), label: "v")
                        let query = try makeFilled(b, q, label: "q")
                        let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
                        try b.attention(query: query, keys: keys, values: values, into: output, rows: rows,
                                        startPosition: start, shape: shape)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-9,
                                "\(backend.name) attention \(heads):\(kvHeads)x\(headDim) rows \(rows) at \(start)")
                }
            }
        }
    }

    func testCopyRows() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 6)
            let width = 37, a = rng.floats(9 * width), z = rng.floats(11 * width)
            for (sourceRow, destinationRow, rows) in [(0, 0, 9), (8, 0, 1), (2, 5, 4), (0, 10, 1)] {
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let source = try makeFilled(b, a, label: "a"), destination = try makeFilled(b, z, label: "z")
                    try b.copyRows(source, sourceRow: sourceRow, into: destination, destinationRow: destinationRow, rows: rows, width: width)
                    results.append(try download(b, destination))
                }
                assertClose(results[0], results[1], tolerance: 1e-12, "\(backend.name) copyRows \(sourceRow)->\(destinationRow) x\(rows)")
            }
        }
    }

    func testSwiGLUAndAdd() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 7)
            for count in [1, 7, 340, 4099] {
                let x = rng.floats(count, -8, 8), y = rng.floats(count, -2, 2)
                for op in ["swiglu", "add", "add aliased", "swiglu aliased"] {
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let first = try makeFilled(b, x, label: "a"), second = try makeFilled(b, y, label: "b")
                        let output = op.hasSuffix("aliased") ? first : try b.makeBuffer(count: count, label: "out")
                        if op.hasPrefix("swiglu") {
                            try b.swiglu(gate: first, up: second, into: output, count: count)
                        } else {
                            try b.add(first, second, into: output, count: count)
                        }
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-10, "\(backend.name) \(op) count \(count)")
                }
            }
        }
    }

    func testSoftmax() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 8)
            for width in [1, 7, 340, 49152] {
                for rows in [1, 3] {
                    let x = rng.floats(rows * width, -10, 10)
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let buffer = try makeFilled(b, x, label: "x")
                        try b.softmax(buffer, rows: rows, width: width)
                        results.append(try download(b, buffer))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-8, "\(backend.name) softmax width \(width) rows \(rows)")
                }
            }
        }
    }

    func testArgmax() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 9)
            for width in [1, 3, 340, 49152] {
                for rows in [1, 5] {
                    var x = rng.floats(rows * width, -10, 10)
                    // Ties: the first index must win.
                    if width > 3 {
                        for r in 0..<rows {
                            let top = x[(r * width)..<((r + 1) * width)].max()! + 1
                            x[r * width + width - 1] = top
                            x[r * width + (r * 7) % (width - 1)] = top
                        }
                    }
                    var results: [[Int32]] = []
                    for b in [backend, cpu as Backend] {
                        results.append(try b.argmax(try makeFilled(b, x, label: "logits"), rows: rows, width: width))
                    }
                    XCTAssertEqual(results[0], results[1], "\(backend.name) argmax width \(width) rows \(rows)")
                }
            }
        }
    }

    /// The forward pass reuses buffers across ops with no host wait: a chain of ops on one
    /// backend must see each other's results (in-order execution).
    func testChainedOpsWithoutSync() throws {
        try forEachBackend { backend, cpu in
            var rng = SeededRandom(seed: 10)
            let columns = 96, outputs = 64
            let bytes = randomWeightBytes(.q8_0, rows: outputs, columns: columns, &rng)
            let x = rng.floats(columns)
            var results: [[Float]] = []
            for b in [backend, cpu as Backend] {
                let w = try makeWeight(b, "w", .q8_0, rows: outputs, columns: columns, bytes: bytes)
                let input = try makeFilled(b, x, label: "x"), y = try b.makeBuffer(count: outputs, label: "y")
                try b.matmul(w, input, into: y, rows: 1)
                try b.add(y, y, into: y, count: outputs)
                try b.softmax(y, rows: 1, width: outputs)
                try b.copyRows(y, sourceRow: 0, into: input, destinationRow: 0, rows: 1, width: outputs)
                try b.swiglu(gate: input, up: input, into: input, count: outputs)
                results.append(try download(b, input))
            }
            assertClose(results[0], results[1], tolerance: 1e-9, "\(backend.name) chained ops")
        }
    }
}
