import BackendCPU
import Foundation
import LLM
import XCTest

// The Q5_0, Q5_1, Q4_K, Q5_K and Q6_K weight formats (issue #7) on every backend of
// ConformanceBackends.all() that claims them, against the CPU oracle: mat-vec and batched
// matmul over odd output counts, and embedding lookups, on random valid blocks (finite f16
// scales, every quant and scale bit random), plus llama.cpp-quantized blocks from
// Tests/Fixtures/quants checked against gguf-py's dequantization.
//
// Tolerances, nmse = Σ(a−b)²/Σb², as OpConformanceTests: matmul 1e-9 (both sides decode the
// same blocks exactly up to an f32 rounding or fma contraction of d·sc·q − dmin·m, then sum up
// to 512 products in another order), embedding 1e-12 (one decode per value). A misplaced bit,
// nibble, scale or block shows up as nmse ≳ 1e-3.

final class KQuantConformanceTests: XCTestCase {
    static let types: [GGMLType] = [.q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    /// Columns: multiples of the block size; 96 (three 32-blocks) too for the Q5 formats.
    static func columns(_ type: GGMLType) -> [Int] { type.blockSize == 256 ? [256, 512] : [96, 256, 512] }

    func testMatmul() throws {
        for type in Self.types {
            try forEachBackend(supporting: .matmul(type)) { backend, cpu in
                var rng = SeededRandom(seed: 71)
                for columns in Self.columns(type) {
                    for outputs in [1, 7, 33, 67] {
                        let bytes = kquantRandomBlocks(type, rows: outputs, columns: columns, &rng)
                        for rows in [1, 3] {
                            let x = rng.floats(rows * columns)
                            var results: [[Float]] = []
                            for b in [backend, cpu as Backend] {
                                let w = try makeWeight(b, "w", type, rows: outputs, columns: columns, bytes: bytes)
                                let output = try b.makeBuffer(count: rows * outputs + 3, label: "y")
                                try b.matmul(w, makeFilled(b, x, label: "x"), into: output, rows: rows)
                                results.append(try download(b, output))
                            }
                            assertClose(results[0], results[1], tolerance: 1e-9,
                                        "\(backend.name) matmul \(type) \(outputs)x\(columns) rows \(rows)")
                        }
                    }
                }
            }
        }
    }

    func testEmbedding() throws {
        for type in Self.types {
            try forEachBackend(supporting: .embedding(type)) { backend, cpu in
                var rng = SeededRandom(seed: 72)
                let tokens: [Int32] = [0, 66, 5, 5, 33, 1, 65]
                for columns in Self.columns(type) {
                    let bytes = kquantRandomBlocks(type, rows: 67, columns: columns, &rng)
                    var results: [[Float]] = []
                    for b in [backend, cpu as Backend] {
                        let table = try makeWeight(b, "table", type, rows: 67, columns: columns, bytes: bytes)
                        let output = try b.makeBuffer(count: tokens.count * columns, label: "e")
                        try b.embed(table, tokens: tokens, into: output)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-12, "\(backend.name) embedding \(type) 67x\(columns)")
                }
            }
        }
    }

    /// Blocks llama.cpp's quantizers wrote (Tests/Fixtures/quants/<T>.blocks, 2048 values), looked
    /// up as a table of 256-wide rows and compared with gguf-py's dequantization (<T>.f32).
    func testFixtureBlocksMatchGGUFPy() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/quants")
        for type in Self.types {
            let blocks = directory.appendingPathComponent("\(kquantFixtureName(type)).blocks")
            let values = directory.appendingPathComponent("\(kquantFixtureName(type)).f32")
            guard let bytes = try? Data(contentsOf: blocks), let reference = try? Data(contentsOf: values) else {
                throw XCTSkip("fixture \(kquantFixtureName(type)) is missing in \(directory.path)")
            }
            let want = reference.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let columns = 256, rows = want.count / columns
            try forEachBackend(supporting: .embedding(type)) { backend, _ in
                let table = try makeWeight(backend, "fixture", type, rows: rows, columns: columns, bytes: [UInt8](bytes))
                let output = try backend.makeBuffer(count: want.count, label: "e")
                try backend.embed(table, tokens: (0..<Int32(rows)).reversed(), into: output)
                let got = try download(backend, output)
                let reordered = (0..<rows).flatMap { r in got[((rows - 1 - r) * columns)..<((rows - r) * columns)] }
                assertClose(reordered, want, tolerance: 1e-12, "\(backend.name) \(type) fixture blocks against gguf-py")
            }
        }
    }
}

/// The fixture file stem for `type` (Q5_0, Q4_K, ...).
private func kquantFixtureName(_ type: GGMLType) -> String {
    switch type {
    case .q5_0: return "Q5_0"
    case .q5_1: return "Q5_1"
    case .q4_K: return "Q4_K"
    case .q5_K: return "Q5_K"
    case .q6_K: return "Q6_K"
    default: preconditionFailure("no fixture for \(type)")
    }
}

/// Random valid blocks of `type` in llama.cpp's layouts: finite f16 scales (magnitudes that keep
/// the values near ±1), every other byte random (quants, high bits, 6-bit scales and mins).
func kquantRandomBlocks(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SeededRandom) -> [UInt8] {
    var bytes: [UInt8] = []
    func half(_ x: Float) {
        let bits = Float16(x).bitPattern
        bytes.append(UInt8(bits & 0xFF)); bytes.append(UInt8(bits >> 8))
    }
    func random(_ n: Int) { for _ in 0..<n { bytes.append(rng.byte()) } }
    for _ in 0..<(rows * columns / type.blockSize) {
        switch type {
        case .q5_0:   // d, qh[4], qs[16]
            half(rng.uniform(-0.08, 0.08)); random(4 + 16)
        case .q5_1:   // d, m, qh[4], qs[16]
            half(rng.uniform(0.005, 0.06)); half(rng.uniform(-0.9, 0)); random(4 + 16)
        case .q4_K:   // d, dmin, scales[12], qs[128]
            half(rng.uniform(0.0005, 0.003)); half(rng.uniform(0.0005, 0.003)); random(12 + 128)
        case .q5_K:   // d, dmin, scales[12], qh[32], qs[128]
            half(rng.uniform(0.0003, 0.0015)); half(rng.uniform(0.0005, 0.003)); random(12 + 32 + 128)
        case .q6_K:   // ql[128], qh[64], scales[16] (int8), d
            random(128 + 64 + 16); half(rng.uniform(-0.0004, 0.0004))
        default:
            preconditionFailure("kquantRandomBlocks(\(type))")
        }
    }
    precondition(bytes.count == rows * (type.rowBytes(columns) ?? -1))
    return bytes
}
