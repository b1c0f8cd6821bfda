import BackendCPU
import LLM
import XCTest

// Ops for qwen2 / gemma-style models (bias, scale, GeGLU, sliding-window attention), on every
// backend that supports them, against the CPU oracle. Tolerances as their OpConformanceTests
// siblings: element-wise 1e-10 (a rounding or two, device tanh), attention 1e-9.
final class ModelOpsConformanceTests: XCTestCase {
    func testAddBias() throws {
        try forEachBackend(supporting: .addBias) { backend, cpu in
            var rng = SeededRandom(seed: 31)
            for (rows, width) in [(1, 7), (3, 340), (5, 64)] {
                let bias = randomWeightBytes(.f32, rows: 1, columns: width, &rng), x = rng.floats(rows * width)
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let buffer = try makeFilled(b, x, label: "x")
                    try b.addBias(buffer, bias: makeWeight(b, "bias", .f32, rows: 1, columns: width, bytes: bias), rows: rows)
                    results.append(try download(b, buffer))
                }
                assertClose(results[0], results[1], tolerance: 1e-12, "\(backend.name) addBias \(rows)x\(width)")
            }
        }
    }

    func testScaleAndGeGLU() throws {
        try forEachBackend(supporting: .geglu) { backend, cpu in
            var rng = SeededRandom(seed: 32)
            for count in [1, 7, 340, 4099] {
                let x = rng.floats(count, -6, 6), y = rng.floats(count, -2, 2)
                var results: [[Float]] = []
                for b in [backend, cpu as Backend] {
                    let gate = try makeFilled(b, x, label: "gate"), up = try makeFilled(b, y, label: "up")
                    try b.geglu(gate: gate, up: up, into: gate, count: count)
                    try b.scale(gate, by: 1.7, count: count)
                    results.append(try download(b, gate))
                }
                assertClose(results[0], results[1], tolerance: 1e-10, "\(backend.name) geglu+scale count \(count)")
            }
        }
    }

    func testSlidingWindowAttention() throws {
        try forEachBackend(supporting: .slidingWindowAttention) { backend, cpu in
            var rng = SeededRandom(seed: 33)
            for (heads, kvHeads, headDim, window) in [(4, 2, 64, 16), (5, 5, 40, 1), (6, 2, 96, 100)] {
                let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim,
                                           scale: 1 / Float(headDim).squareRoot(), window: window)
                for (rows, start) in [(1, 0), (7, 10), (3, 300), (20, 0)] {
                    let positions = start + rows
                    let q = rng.floats(rows * shape.queryWidth, -2, 2)
                    let k = rng.floats(positions * shape.kvWidth, -2, 2), v = rng.floats(positions * shape.kvWidth)
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "o")
                        try b.attention(query: makeFilled(b, q, label: "q"), keys: makeFilled(b, k, label: "k"),
                                        values: makeFilled(b, v, label: "v"), into: output, rows: rows, startPosition: start, shape: shape)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-9,
                                "\(backend.name) window \(window) attention \(heads):\(kvHeads)x\(headDim) rows \(rows) at \(start)")
                }
            }
        }
    }
}
