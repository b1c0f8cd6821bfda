import CPUKernels
import LLM

/// Quantized matmuls with int8 activations, as llama.cpp's CPU backend computes them: each
/// activation row is quantized once per matmul (to Q8 blocks of 32, or Q8_K super-blocks of 256 for
/// the K-quants: the rounding `ActivationRounding` reproduces in f32), then each weight row is
/// dotted with integer SIMD (CPUKernels). Only the order of the float scaling and additions differs
/// from the f32-emulated path: the integer block sums are exact.
final class Int8MatMul {
    private var activations: UnsafeMutableRawPointer?
    private var capacity = 0

    deinit { activations?.deallocate() }

    /// y[t·w.rows + o] = row o · round(x row t) for every output row o and each of `rows` activation
    /// rows; false (nothing done) for a type without an integer dot.
    func run(_ w: CPUWeight, _ x: UnsafePointer<Float>, rows: Int, _ y: UnsafeMutablePointer<Float>, threads: Int) -> Bool {
        let columns = w.columns, type = Int32(w.type.rawValue)
        let block = Int(cpuk_activation_block(type))
        guard block != 0, columns % block == 0 else { return false }
        let count = columns / block
        let rowBytes = count * (block == 32 ? MemoryLayout<cpuk_block_q8>.stride : MemoryLayout<cpuk_block_q8k>.stride)
        if rows * rowBytes > capacity {
            activations?.deallocate()
            activations = .allocate(byteCount: rows * rowBytes, alignment: 64)
            capacity = rows * rowBytes
        }
        let q = activations!
        for r in 0..<rows {
            let source = x + r * columns, target = q + r * rowBytes
            if block == 32 {
                cpuk_quantize_row_q8(source, target.assumingMemoryBound(to: cpuk_block_q8.self), Int64(columns))
            } else {
                cpuk_quantize_row_q8k(source, target.assumingMemoryBound(to: cpuk_block_q8k.self), Int64(columns))
            }
        }
        if rows == 1 {
            // Rows split over the backend's threads by CPUKernels' own spinning pool: a decode step
            // is ~200 mat-vecs of tens of microseconds, too short to wake libdispatch workers for each.
            return cpuk_vec_dot_rows_parallel(type, w.bytes, w.rowStride, Int64(w.rows), q, Int64(count), y, Int32(threads)) != 0
        }
        return cpuk_gemm_parallel(type, w.bytes, w.rowStride, Int64(w.rows), q, rowBytes, Int64(rows), Int64(count),
                                  y, Int64(w.rows), Int32(threads)) != 0
    }
}
