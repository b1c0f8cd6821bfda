import XCTest
import LLM
import BackendCPU
import CPUKernels

/// The int8 decode fast path (`CPUBackend(int8Activations: true)`, rows == 1): activations
/// quantized once to Q8 blocks (Q8_K super-blocks for the K-quants), integer dots in CPUKernels. It must agree with the f32 emulation of
/// the same rounding (ActivationRounding, then the f32 dot): the integer block sums are exact, so
/// only the order of the float scaling differs. Tolerance: |fast − emulated| ≤ 1e-5 · Σ|w·x'|
/// (x' the rounded activations), i.e. f32 rounding of the sum. The scalar, AVX2 and AVX512-VNNI
/// kernels must agree bit for bit.
final class Int8DotTests: XCTestCase {
    private let types: [GGMLType] = [.q4_0, .q4_1, .q5_0, .q8_0, .q4_K, .q5_K, .q6_K]

    private func isK(_ type: GGMLType) -> Bool { type.blockSize == 256 }

    /// Random blocks: f16 scales of either sign, any nibbles / high bits / 6-bit scales and mins /
    /// int8 (−128 included).
    private func randomRow(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SplitMix) -> [UInt8] {
        var out: [UInt8] = []
        func half(_ v: Float) { withUnsafeBytes(of: Float16(v).bitPattern.littleEndian) { out += $0 } }
        func bytes(_ n: Int) { for _ in 0..<n { out.append(UInt8(truncatingIfNeeded: rng.next())) } }
        for _ in 0..<(rows * columns / type.blockSize) {
            let d = Float(rng.nextUnit() * 0.02 - 0.01)
            switch type {
            case .q4_1: half(d); half(Float(rng.nextUnit() * 0.2 - 0.1)); bytes(16)
            case .q4_0: half(d); bytes(16)
            case .q5_0: half(d); bytes(20)
            case .q5_1: half(d); half(Float(rng.nextUnit() * 0.2 - 0.1)); bytes(20)
            case .f16: half(Float(rng.nextUnit() * 2 - 1))
            case .f32: withUnsafeBytes(of: Float(rng.nextUnit() * 2 - 1).bitPattern.littleEndian) { out += $0 }
            case .q8_0: half(d); bytes(32)
            case .q4_K: half(d / 16); half(Float(rng.nextUnit() * 0.004)); bytes(12 + 128)
            case .q5_K: half(d / 16); half(Float(rng.nextUnit() * 0.004)); bytes(12 + 32 + 128)
            case .q6_K: bytes(128 + 64 + 16); half(d / 32)
            default: fatalError()
            }
        }
        return out
    }

    /// llama.cpp's activation rounding in f32 (what ActivationRounding does inside the backend).
    private func rounded(_ x: [Float], for type: GGMLType) -> [Float] {
        if isK(type) { return roundedQ8K(x) }
        var y = x
        for start in stride(from: 0, to: x.count, by: 32) {
            let amax = x[start..<(start + 32)].map { abs($0) }.max()!
            let d = amax / 127, id: Float = amax != 0 ? 127 / amax : 0
            let dh = Float(Float16(d))
            for i in start..<(start + 32) { y[i] = dh * (x[i] * id).rounded(.toNearestOrEven) }
        }
        return y
    }

    /// Q8_K, written out from ggml's quantize_row_q8_K_ref: per 256, iscale = −127/(value of largest
    /// magnitude), q = min(127, nearest(iscale·x)), d = 1/iscale.
    private func roundedQ8K(_ x: [Float]) -> [Float] {
        var y = x
        for start in stride(from: 0, to: x.count, by: 256) {
            let block = x[start..<(start + 256)]
            let peak = block.max { abs($0) < abs($1) }!
            guard peak != 0 else { for i in block.indices { y[i] = 0 }; continue }
            let iscale = -127 / peak, d = 1 / iscale
            for i in block.indices { y[i] = d * min(127, (iscale * x[i]).rounded(.toNearestOrEven)) }
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

    /// `tokens` activation rows (input is [tokens, columns]) through a [rows, columns] weight: [tokens, rows].
    private func matmul(_ backend: CPUBackend, _ type: GGMLType, _ bytes: [UInt8], rows: Int, columns: Int, _ input: [Float],
                        tokens: Int = 1) throws -> [Float] {
        try bytes.withUnsafeBytes { raw in
            let weight = try backend.makeWeight(name: "w", type: type, rows: rows, columns: columns, bytes: raw)
            let x = try backend.makeBuffer(count: tokens * columns, label: "x")
            let y = try backend.makeBuffer(count: tokens * rows, label: "y")
            try backend.upload(input, to: x, offset: 0)
            try backend.matmul(weight, x, into: y, rows: tokens)
            return try backend.download(y, offset: 0, count: tokens * rows)
        }
    }

    /// Prompt batches (CPUKernels' cpuk_gemm_parallel: from 8 tokens a VNNI kernel over 4-row tiles
    /// and token pairs for the 32-value types, (row, token) dots otherwise) against the emulation,
    /// with row counts off the tile, odd token counts and odd block counts (the kernel pads to block
    /// pairs).
    func testBatchMatchesEmulatedRounding() throws {
        var rng = SplitMix(seed: 91)
        let fast = CPUBackend(threads: 2, int8Activations: true)
        let f32 = CPUBackend(threads: 2)
        for type in types {
            for rows in [1, 6, 37, 70] {
                for tokens in [2, 3, 8, 9] {
                    for k in isK(type) ? [1, 2] : [1, 5, 6] {
                        let columns = type.blockSize * k
                        let bytes = randomRow(type, rows: rows, columns: columns, &rng)
                        var input: [Float] = [], xr: [Float] = []
                        for _ in 0..<tokens {
                            let row = randomInput(columns, &rng)
                            input += row
                            xr += rounded(row, for: type)
                        }
                        let got = try matmul(fast, type, bytes, rows: rows, columns: columns, input, tokens: tokens)
                        let want = try matmul(f32, type, bytes, rows: rows, columns: columns, xr, tokens: tokens)
                        let w = bytes.withUnsafeBytes { Quantization.dequantize(type, $0, count: rows * columns) }
                        for t in 0..<tokens {
                            for r in 0..<rows {
                                var scale: Float = 0
                                for c in 0..<columns { scale += abs(w[r * columns + c] * xr[t * columns + c]) }
                                XCTAssertEqual(got[t * rows + r], want[t * rows + r], accuracy: 1e-5 * scale + Float.leastNormalMagnitude,
                                               "\(type) \(rows)x\(columns), \(tokens) tokens: token \(t) row \(r)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testFastPathMatchesEmulatedRounding() throws {
        var rng = SplitMix(seed: 88)
        let fast = CPUBackend(threads: 2, int8Activations: true)
        let f32 = CPUBackend(threads: 2)
        for type in types {
            // 257 rows: enough for the fast path to split rows over its two threads.
            for rows in [1, 7, 33, 67, 257] {
                for k in isK(type) ? [1, 3] : [1, 3, 18] {
                    let columns = type.blockSize * k
                    let bytes = randomRow(type, rows: rows, columns: columns, &rng)
                    let input = randomInput(columns, &rng), xr = rounded(input, for: type)
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

    /// Batch invariance of the matmul (docs/ARCHITECTURE.md): each token's outputs are the bits it
    /// gets alone (rows == 1, the decode kernels), whatever the batch size (1 to 33: below and
    /// above the VNNI batch kernel's 8, odd counts for its token pairs), the token's row in the
    /// batch and the thread count, in both modes, for every weight type the CPU reads (the int8
    /// dots, the emulated-rounding types Q5_1 and F16, and F32). Row counts are off the 4-row
    /// tiles, block counts odd (the VNNI kernel pads to block pairs).
    func testBatchEqualsDecodeBitForBit() throws {
        var rng = SplitMix(seed: 17)
        let backends = [true, false].flatMap { int8 in
            [1, 2].map { CPUBackend(threads: $0, int8Activations: int8) }
        }
        for type in types + [.q5_1, .f16, .f32] {
            let rows = 37, columns = isK(type) ? 768 : 160, tokens = 33
            let bytes = randomRow(type, rows: rows, columns: columns, &rng)
            let input = (0..<tokens).flatMap { _ in randomInput(columns, &rng) }
            for backend in backends {
                let label = "\(type), \(backend.int8Activations ? "int8" : "f32"), \(backend.threads) threads"
                let alone = try (0..<tokens).map { t in
                    try matmul(backend, type, bytes, rows: rows, columns: columns, Array(input[(t * columns)..<((t + 1) * columns)]))
                }
                for n in 1...tokens {
                    let first = (7 * n) % (tokens - n + 1) // the batch starts at varying tokens
                    let batch = try matmul(backend, type, bytes, rows: rows, columns: columns,
                                           Array(input[(first * columns)..<((first + n) * columns)]), tokens: n)
                    for t in 0..<n where Array(batch[(t * rows)..<((t + 1) * rows)]).map(\.bitPattern) != alone[first + t].map(\.bitPattern) {
                        XCTFail("\(label): token \(first + t) at row \(t) of a batch of \(n) differs from decode")
                        break
                    }
                }
            }
        }
    }

    func testQuantizedActivationsEqualTheF32Rounding() {
        var rng = SplitMix(seed: 5)
        let input = randomInput(32 * 18, &rng), want = rounded(input, for: .q8_0)
        var blocks = [cpuk_block_q8](repeating: cpuk_block_q8(), count: 18)
        cpuk_quantize_row_q8(input, &blocks, Int64(input.count))
        for (b, block) in blocks.enumerated() {
            let qs = withUnsafeBytes(of: block.qs) { Array($0.bindMemory(to: Int8.self)) }
            XCTAssertEqual(block.sum, Int32(qs.reduce(0) { $0 + Int($1) }))
            for i in 0..<32 { XCTAssertEqual(block.d * Float(qs[i]), want[b * 32 + i], "block \(b) value \(i)") }
        }
    }

    func testQ8KActivationsEqualTheF32Rounding() {
        var rng = SplitMix(seed: 6)
        var input = randomInput(256 * 3, &rng)
        for i in 256..<512 { input[i] = 0 }           // amax = 0
        input[600] = -7                                // the largest magnitude negative: iscale > 0
        let want = roundedQ8K(input)
        var blocks = [cpuk_block_q8k](repeating: cpuk_block_q8k(), count: 3)
        cpuk_quantize_row_q8k(input, &blocks, Int64(input.count))
        for (b, block) in blocks.enumerated() {
            let qs = withUnsafeBytes(of: block.qs) { Array($0.bindMemory(to: Int8.self)) }
            let bsums = withUnsafeBytes(of: block.bsums) { Array($0.bindMemory(to: Int16.self)) }
            for g in 0..<16 { XCTAssertEqual(Int(bsums[g]), qs[(16 * g)..<(16 * g + 16)].reduce(0) { $0 + Int($1) }) }
            for i in 0..<256 { XCTAssertEqual(block.d * Float(qs[i]), want[b * 256 + i], "super-block \(b) value \(i)") }
        }
    }

    func testScalarAVX2AndVNNIAgreeBitForBit() {
        var rng = SplitMix(seed: 11)
        for type in types {
            let rows = 67, columns = 32 * 18 * (isK(type) ? 8 : 1), count = columns / type.blockSize
            let bytes = randomRow(type, rows: rows, columns: columns, &rng)
            let input = randomInput(columns, &rng)
            var blocks = [cpuk_block_q8](repeating: cpuk_block_q8(), count: columns / 32)
            var superBlocks = [cpuk_block_q8k](repeating: cpuk_block_q8k(), count: columns / 256)
            cpuk_quantize_row_q8(input, &blocks, Int64(columns))
            cpuk_quantize_row_q8k(input, &superBlocks, Int64(columns))
            let stride = type.rowBytes(columns)!
            var results: [[Float]] = []
            for isa in 0...2 {
                var y = [Float](repeating: 0, count: rows)
                let ok = bytes.withUnsafeBytes { w in
                    isK(type)
                        ? cpuk_vec_dot_rows_isa(Int32(isa), Int32(type.rawValue), w.baseAddress!, stride, Int64(rows), superBlocks, Int64(count), &y)
                        : cpuk_vec_dot_rows_isa(Int32(isa), Int32(type.rawValue), w.baseAddress!, stride, Int64(rows), blocks, Int64(count), &y)
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
