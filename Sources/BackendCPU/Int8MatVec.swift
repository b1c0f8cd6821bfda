import CPUKernels
import LLM

/// The decode mat-vec with int8 activations, as llama.cpp's CPU backend computes it: the activation
/// row is quantized once per matmul (to Q8 blocks of 32, or Q8_K super-blocks of 256 for the
/// K-quants: the rounding `ActivationRounding` reproduces in f32), then each weight row is dotted
/// with integer SIMD (CPUKernels). Only the order of the final float scaling differs from the
/// f32-emulated path: the integer block sums are exact.
final class Int8MatVec {
    private var activations: UnsafeMutableRawPointer?
    private var capacity = 0

    deinit { activations?.deallocate() }

    static func handles(_ type: GGMLType) -> Bool {
        cpuk_activation_block(Int32(type.rawValue)) != 0
    }

    /// y[o] = row o · round(x) for every output row; false (nothing done) for a type without an integer dot.
    func run(_ w: CPUWeight, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, threads: Int) -> Bool {
        let columns = w.columns, type = Int32(w.type.rawValue)
        let block = Int(cpuk_activation_block(type))
        guard block != 0, columns % block == 0 else { return false }
        let count = columns / block
        let bytes = count * (block == 32 ? MemoryLayout<cpuk_block_q8>.stride : MemoryLayout<cpuk_block_q8k>.stride)
        if bytes > capacity {
            activations?.deallocate()
            activations = .allocate(byteCount: bytes, alignment: 64)
            capacity = bytes
        }
        let q = activations!
        if block == 32 {
            cpuk_quantize_row_q8(x, q.assumingMemoryBound(to: cpuk_block_q8.self), Int64(columns))
        } else {
            cpuk_quantize_row_q8k(x, q.assumingMemoryBound(to: cpuk_block_q8k.self), Int64(columns))
        }
        // Rows split over the backend's threads by CPUKernels' own spinning pool: a decode step is
        // ~200 mat-vecs of tens of microseconds, too short to wake libdispatch workers for each.
        return cpuk_vec_dot_rows_parallel(type, w.bytes, w.rowStride, Int64(w.rows), q, Int64(count), y, Int32(threads)) != 0
    }
}
