import XCTest
import LLM
import BackendCPU
import CPUKernels

/// The int8 decode fast path (`CPUBackend(llamaCppActivationRounding: true)`, rows == 1): activations
/// quantized once to Q8 blocks, integer dots in CPUKernels. It must agree with the f32 emulation of
/// the same rounding (ActivationRounding, then the f32 dot): the integer block sums are exact, so
/// only the order of the float scaling differs. Tolerance: |fast − emulated| ≤ 1e-5 · Σ|w·x'|
/// (x' the rounded activations), i.e. f32 rounding of the sum. The scalar, AVX2 and AVX512-VNNI
/// kernels must agree bit for bit.
final class Int8DotTests: XCTestCase {
    private let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q8_0]

    /// Random blocks: f16 scales of either sign, any nibbles / high bits / int8 (−128 included).
    private func randomRow(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SplitMix) -> [UInt8] {
        var out: [UInt8] = []
        func half(_ v: Float) { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out += $0 } }
        for _ in 0..<(rows * columns / 32) {
            half(Float(rng.nextUnit() * 0.02 - 0.01))
            switch type {
            case .q4_1: half(Float(rng.nextUnit() * 0.2 - 0.1)); for _ in 0..<16 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            case .q4_0: for _ in 0..<16 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            case .q5_0: for _ in 0..<20 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            case .q8_0: for _ in 0..<32 { out.append(UInt8(truncatingIfNeeded: rng.next())) }
            default: fatalError()
            }
        }
        return out
    }

    /// llama.cpp's Q8_0/Q8_1 rounding in f32 (what ActivationRounding does inside the backend).
    private func rounded(_ x: [Float]) -> [Float] {
        var y = x
        for start in stride(from: 0, to: x.count, by: 32) {
            let amax = x[start..<(start + 32)].map { abs($0) }.max()!
            let d = amax / 127, id: Float = amax != 0 ? 127 / amax : 0
            let dh = Float(Float16(d))
            for i in start..<(start + 32) { y[i] = dh * (x[i] * id).rounded(.toNearestOrEven) }
        }
        return y
    }

    private func randomInput(_ columns: Int, _ rng: inout SplitMix) -> [Float] {
        var x = (0..<columns).map { _ in Float(rng.nextUnit() * 2 - 1) * 3 }
        // One block of zeros (amax = 0) and one of tiny values, where they fit.
        if columns >= 96 {
            for i in 32..<64 { x[i] = 0 }
            for i in 64..<96 { x[i] *= 1e-6 }
        }
        return x
    }

    private func matmul(_ backend: CPUBackend, _ type: GGMLType, _ bytes: [UInt8], rows: Int, columns: Int, _ input: [Float]) throws -> [Float] {
        try bytes.withUnsafeBytes { raw in
            let weight = try backend.makeWeight(name: "w", type: type, rows: rows, columns: columns, bytes: raw)
            let x = try backend.makeBuffer(count: columns, label: "x")
            let y = try backend.makeBuffer(count: rows, label: "y")
            try backend.upload(input, to: x, offset: 0)
            try backend.matmul(weight, x, into: y, rows: 1)
            return try backend.download(y, offset: 0, count: rows)
        }
    }

    func testFastPathMatchesEmulatedRounding() throws {
        var rng = SplitMix(seed: 88)
        let fast = CPUBackend(threads: 2, llamaCppActivationRounding: true)
        let f32 = CPUBackend(threads: 2)
        for type in types {
            // 257 rows: enough for the fast path to split rows over its two threads.
            for rows in [1, 7, 33, 67, 257] {
                for k in [1, 3, 18] {
                    let columns = 32 * k
                    let bytes = randomRow(type, rows: rows, columns: columns, &rng)
                    let input = randomInput(columns, &rng), xr = rounded(input)
                    let got = try matmul(fast, type, bytes, rows: rows, columns: columns, input)
                    // The emulated path: rounded activations through the f32 decode dot.
                    let want = try matmul(f32, type, bytes, rows: rows, columns: columns, xr)
                    let w = bytes.withUnsafeBytes { Quantization.dequantize(type, $0, count: rows * columns) }
                    for r in 0..<rows {
                        var scale: Float = 0
                        for c in 0..<columns { scale += abs(w[r * columns + c] * xr[c]) }
                        XCTAssertEqual(got[r], want[r], accuracy: 1e-5 * scale + Float.leastNormalMagnitude,
                                       "\(type) \(rows)x\(columns) row \(r)")
                    }
                }
            }
        }
    }

    func testQuantizedActivationsEqualTheF32Rounding() {
        var rng = SplitMix(seed: 5)
        let input = randomInput(32 * 18, &rng), want = rounded(input)
        var blocks = [cpuk_block_q8](repeating: cpuk_block_q8(), count: 18)
        cpuk_quantize_row_q8(input, &blocks, Int64(input.count))
        for (b, block) in blocks.enumerated() {
            let qs = withUnsafeBytes(of: block.qs) { Array($0.bindMemory(to: Int8.self)) }
            XCTAssertEqual(block.sum, Int32(qs.reduce(0) { $0 + Int($1) }))
            for i in 0..<32 { XCTAssertEqual(block.d * Float(qs[i]), want[b * 32 + i], "block \(b) value \(i)") }
        }
    }

    func testScalarAVX2AndVNNIAgreeBitForBit() {
        var rng = SplitMix(seed: 11)
        for type in types {
            let rows = 67, columns = 32 * 18
            let bytes = randomRow(type, rows: rows, columns: columns, &rng)
            var blocks = [cpuk_block_q8](repeating: cpuk_block_q8(), count: 18)
            cpuk_quantize_row_q8(randomInput(columns, &rng), &blocks, Int64(columns))
            let stride = type.rowBytes(columns)!
            var results: [[Float]] = []
            for isa in 0...2 {
                var y = [Float](repeating: 0, count: rows)
                let ok = bytes.withUnsafeBytes {
                    cpuk_vec_dot_rows_isa(Int32(isa), Int32(type.rawValue), $0.baseAddress!, stride, Int64(rows), blocks, 18, &y)
                }
                XCTAssertEqual(ok, 1)
                results.append(y)
            }
            XCTAssertEqual(results[0].map(\.bitPattern), results[1].map(\.bitPattern), "\(type) scalar vs AVX2")
            XCTAssertEqual(results[0].map(\.bitPattern), results[2].map(\.bitPattern), "\(type) scalar vs VNNI")
        }
        print("CPUKernels best ISA on this machine: \(cpuk_best_isa()) (0 scalar, 1 AVX2, 2 AVX512-VNNI)")
    }
}
