import LLM

/// llama.cpp's CPU backend quantizes a matmul's activations to the weight type's `vec_dot_type`
/// before the dot product (ggml-cpu: quantize_row_q8_0 / q8_1 / q8_K, or f16). This reproduces
/// that rounding, in place, row by row, for `CPUBackend(int8Activations: true)`.
enum ActivationRounding {
    static func apply(_ x: UnsafeMutableBufferPointer<Float>, weightType: GGMLType) {
        switch weightType {
        case .q4_0, .q5_0, .q8_0, .q4_1, .q5_1:
            // Q8_0 / Q8_1: blocks of 32, d = amax/127 stored as f16, q = nearest-even(x · 127/amax).
            for start in stride(from: 0, to: x.count, by: 32) {
                var amax: Float = 0
                for i in start..<(start + 32) { amax = max(amax, abs(x[i])) }
                let d = amax / 127, id: Float = amax != 0 ? 127 / amax : 0
                let dh = Float(Float16(d))
                for i in start..<(start + 32) { x[i] = dh * (x[i] * id).rounded(.toNearestOrEven) }
            }
        case .q4_K, .q5_K, .q6_K:
            // Q8_K: super-blocks of 256, iscale = −127/max (max: the value of largest magnitude),
            // q = min(127, nearest-even(iscale · x)), d = 1/iscale kept in f32.
            for start in stride(from: 0, to: x.count, by: 256) {
                var maxValue: Float = 0, amax: Float = 0
                for i in start..<(start + 256) where abs(x[i]) > amax {
                    amax = abs(x[i])
                    maxValue = x[i]
                }
                guard amax > 0 else {
                    for i in start..<(start + 256) { x[i] = 0 }
                    continue
                }
                let iscale = -127 / maxValue, d = 1 / iscale
                for i in start..<(start + 256) { x[i] = d * min(127, (iscale * x[i]).rounded(.toNearestOrEven)) }
            }
        case .f16:
            for i in x.indices { x[i] = Float(Float16(x[i])) }
        default:
            break
        }
    }
}
