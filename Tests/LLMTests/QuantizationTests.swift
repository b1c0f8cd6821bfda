import XCTest
import LLM
import BackendCPU

/// Block formats against hand-computed blocks, and the CPU backend's SIMD dot products
/// against the scalar reference dequantization.
final class QuantizationTests: XCTestCase {
    private func half(_ x: Float) -> [UInt8] {
        let bits = Float16(x).bitPattern
        return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
    }

    func testQ4_0Block() {
        // d = 0.5; qs[j] holds element j in the low nibble and j+16 in the high nibble.
        var block = half(0.5)
        for j in 0..<16 { block.append(UInt8(j) | UInt8(15 - j) << 4) }
        let values = block.withUnsafeBytes { Quantization.dequantize(.q4_0, $0, count: 32) }
        for j in 0..<16 {
            XCTAssertEqual(values[j], 0.5 * Float(j - 8))
            XCTAssertEqual(values[j + 16], 0.5 * Float(15 - j - 8))
        }
    }

    func testQ4_1Block() {
        var block = half(0.25) + half(-1)
        for j in 0..<16 { block.append(UInt8(j) | UInt8(15 - j) << 4) }
        let values = block.withUnsafeBytes { Quantization.dequantize(.q4_1, $0, count: 32) }
        for j in 0..<16 {
            XCTAssertEqual(values[j], 0.25 * Float(j) - 1)
            XCTAssertEqual(values[j + 16], 0.25 * Float(15 - j) - 1)
        }
    }

    func testQ8_0Block() {
        var block = half(0.125)
        for j in 0..<32 { block.append(UInt8(bitPattern: Int8(j * 8 - 128))) }
        let values = block.withUnsafeBytes { Quantization.dequantize(.q8_0, $0, count: 32) }
        for j in 0..<32 { XCTAssertEqual(values[j], 0.125 * Float(j * 8 - 128)) }
    }

    func testF16AndBF16() {
        let f16 = half(1.5) + half(-0.0009765625)
        XCTAssertEqual(f16.withUnsafeBytes { Quantization.dequantize(.f16, $0, count: 2) }, [1.5, -0.0009765625])
        // bf16 is the top half of an f32: 0x3FC0 = 1.5, 0xC040 = -3.
        let bf16: [UInt8] = [0xC0, 0x3F, 0x40, 0xC0]
        XCTAssertEqual(bf16.withUnsafeBytes { Quantization.dequantize(.bf16, $0, count: 2) }, [1.5, -3])
    }

    /// Random blocks of every supported type: the CPU matmul (SIMD, decode and batch paths)
    /// equals a float64 dot over the reference dequantization, to f32 rounding.
    func testCPUMatmulMatchesReferenceForEveryType() throws {
        var rng = SplitMix(seed: 7)
        let backend = CPUBackend(threads: 2)
        for type in [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
            for (rows, columns) in [(1, 32), (7, 64), (33, 96), (67, 352)] {
                let bytes = randomBlocks(type, rows: rows, columns: columns, &rng)
                let reference = bytes.withUnsafeBytes { Quantization.dequantize(type, $0, count: rows * columns) }
                for batch in [1, 3] {
                    let input = (0..<(batch * columns)).map { _ in Float(rng.nextUnit() * 2 - 1) }
                    let got: [Float] = try bytes.withUnsafeBytes { raw in
                        let weight = try backend.makeWeight(name: "w", type: type, rows: rows, columns: columns, bytes: raw)
                        let x = try backend.makeBuffer(count: input.count, label: "x")
                        let y = try backend.makeBuffer(count: batch * rows, label: "y")
                        try backend.upload(input, to: x, offset: 0)
                        try backend.matmul(weight, x, into: y, rows: batch)
                        return try backend.download(y, offset: 0, count: batch * rows)
                    }
                    for b in 0..<batch {
                        for r in 0..<rows {
                            var want = 0.0, scale = 0.0
                            for c in 0..<columns {
                                let term = Double(reference[r * columns + c]) * Double(input[b * columns + c])
                                want += term
                                scale += abs(term)
                            }
                            XCTAssertEqual(Double(got[b * rows + r]), want, accuracy: 1e-5 * max(scale, 1),
                                           "\(type) \(rows)x\(columns) batch \(batch) row \(r)")
                        }
                    }
                }
            }
        }
    }

    /// Valid random blocks: finite f16 scales, any nibbles/bytes.
    private func randomBlocks(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SplitMix) -> [UInt8] {
        var out: [UInt8] = []
        let blocks = rows * columns / type.blockSize
        for _ in 0..<blocks {
            switch type {
            case .f32:
                withUnsafeBytes(of: Float(rng.nextUnit() * 2 - 1)) { out += $0 }
            case .f16:
                out += half(Float(rng.nextUnit() * 2 - 1))
            case .bf16:
                let bits = Float(rng.nextUnit() * 2 - 1).bitPattern >> 16
                out += [UInt8(bits & 0xFF), UInt8(bits >> 8)]
            case .q8_0:
                out += half(Float(rng.nextUnit() * 0.1))
                for _ in 0..<32 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            case .q4_0:
                out += half(Float(rng.nextUnit() * 0.1))
                for _ in 0..<16 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            case .q4_1:
                out += half(Float(rng.nextUnit() * 0.1)) + half(Float(rng.nextUnit() - 0.5))
                for _ in 0..<16 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            default:
                XCTFail("no generator for \(type)")
            }
        }
        return out
    }
}

/// A small deterministic generator (SplitMix64), so failures reproduce.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
