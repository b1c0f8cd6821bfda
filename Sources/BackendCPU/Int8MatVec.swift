import CPUKernels
import LLM

/// The decode mat-vec with int8 activations, as llama.cpp's CPU backend computes it: the activation
/// row is quantized once per matmul to Q8 blocks (the rounding `ActivationRounding` reproduces in
/// f32), then each weight row is dotted with integer SIMD (CPUKernels). Only the order of the
/// final float scaling differs from the f32-emulated path: the integer block sums are exact.
final class Int8MatVec {
    private var blocks: UnsafeMutablePointer<cpuk_block_q8>?
    private var capacity = 0

    deinit { blocks?.deallocate() }

    /// Q5_0 is left to the f32 emulation: with its integer dot, Qwen2.5-Coder's greedy text
    /// departs from the emulated rounding's (which matches llama.cpp's) after two tokens, while
    /// the random-block tests agree; until that is understood, Q5_0 does not take this path.
    static func handles(_ type: GGMLType) -> Bool {
        switch type {
        case .q4_0, .q4_1, .q8_0: return true
        default: return false
        }
    }

    /// y[o] = row o · round(x) for every output row; false (nothing done) for a type without an integer dot.
    func run(_ w: CPUWeight, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, threads: Int) -> Bool {
        let columns = w.columns
        guard Self.handles(w.type), columns % 32 == 0 else { return false }
        let count = columns / 32
        if count > capacity {
            blocks?.deallocate()
            blocks = .allocate(capacity: count)
            capacity = count
        }
        let q = blocks!
        cpuk_quantize_row_q8(x, q, Int64(columns))
        // Rows split over the backend's threads by CPUKernels' own spinning pool: a decode step is
        // ~200 mat-vecs of tens of microseconds, too short to wake libdispatch workers for each.
        return cpuk_vec_dot_rows_parallel(Int32(w.type.rawValue), w.bytes, w.rowStride, Int64(w.rows),
                                          q, Int64(count), y, Int32(threads)) != 0
    }
}
