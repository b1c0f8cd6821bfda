import Foundation
import XCTest
import LLM
import BackendCPU

/// Every block format decodes bit-exactly like the `gguf` Python package (scripts/make-quant-fixtures.py
/// wrote the blocks and that package's dequantization into Tests/Fixtures/quants), and the CPU matmul
/// on those blocks equals a float64 dot over the reference values.
final class QuantFixtureTests: XCTestCase {
    static let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q4_K, .q5_K, .q6_K]

    func fixture(_ type: GGMLType) throws -> (blocks: [UInt8], values: [Float]) {
        let dir = Fixtures.root.appendingPathComponent("quants")
        let blocks = try [UInt8](Data(contentsOf: dir.appendingPathComponent("\(type).blocks")))
        let raw = try Data(contentsOf: dir.appendingPathComponent("\(type).f32"))
        let values = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        XCTAssertEqual(values.count, 4 * 512)
        XCTAssertEqual(blocks.count, 4 * type.rowBytes(512)!)
        return (blocks, values)
    }

    func testDequantizationIsBitExact() throws {
        for type in Self.types {
            let (blocks, expected) = try fixture(type)
            let got = blocks.withUnsafeBytes { Quantization.dequantize(type, $0, count: expected.count) }
            var mismatches = 0
            for i in expected.indices where got[i].bitPattern != expected[i].bitPattern { mismatches += 1 }
            XCTAssertEqual(mismatches, 0, "\(type): \(mismatches) values differ from gguf-py (first: \(zip(got, expected).first { $0.0 != $0.1 }.map { "\($0)" } ?? ""))")
        }
    }

    func testCPUMatmulOnFixtureBlocks() throws {
        let backend = CPUBackend(threads: 2)
        var rng = SplitMix(seed: 3)
        for type in Self.types {
            let (blocks, reference) = try fixture(type)
            let input = (0..<(2 * 512)).map { _ in Float(rng.nextUnit() * 2 - 1) }
            let got: [Float] = try blocks.withUnsafeBytes { raw in
                let weight = try backend.makeWeight(name: "w", type: type, rows: 4, columns: 512, bytes: raw)
                let x = try backend.makeBuffer(count: input.count, label: "x"), y = try backend.makeBuffer(count: 8, label: "y")
                try backend.upload(input, to: x, offset: 0)
                var out: [Float] = []
                for rows in [1, 2] {   // the decode (mat-vec) and the batched path
                    try backend.matmul(weight, x, into: y, rows: rows)
                    out += try backend.download(y, offset: 0, count: rows * 4)
                }
                return out
            }
            // (token, weight row) of each output: the mat-vec's 4, then the batch's 2 × 4.
            let expected = (0..<4).map { (0, $0) } + (0..<2).flatMap { b in (0..<4).map { (b, $0) } }
            for (i, (b, r)) in expected.enumerated() {
                var want = 0.0, scale = 0.0
                for c in 0..<512 {
                    let term = Double(reference[r * 512 + c]) * Double(input[b * 512 + c])
                    want += term
                    scale += abs(term)
                }
                XCTAssertEqual(Double(got[i]), want, accuracy: 1e-5 * max(scale, 1), "\(type) batch \(b) row \(r)")
            }
        }
    }
}

extension QuantFixtureTests {
    /// The CPU's SIMD decoders equal the reference decoder bit for bit (they do the same
    /// arithmetic in the same order), on the fixture blocks and on every embedding row path.
    func testCPUEmbeddingDecodesLikeTheReference() throws {
        let backend = CPUBackend(threads: 2)
        for type in Self.types {
            let (blocks, expected) = try fixture(type)
            let got: [Float] = try blocks.withUnsafeBytes { raw in
                let table = try backend.makeWeight(name: "t", type: type, rows: 4, columns: 512, bytes: raw)
                let out = try backend.makeBuffer(count: 4 * 512, label: "out")
                try backend.embed(table, tokens: [0, 1, 2, 3], into: out)
                return try backend.download(out, offset: 0, count: 4 * 512)
            }
            XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "\(type)")
        }
    }
}
