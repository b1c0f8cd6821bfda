// Reference dequantization of the block formats, in the layouts llama.cpp writes
// (ggml-common.h `block_q4_0` etc.). These scalar loops are the definition every faster
// path (CPU SIMD dots, OpenCL and Vulkan kernels) is checked against.

@inline(__always)
public func halfToFloat(_ bits: UInt16) -> Float {
    Float(Float16(bitPattern: bits))
}

@inline(__always)
public func bfloat16ToFloat(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
}

public enum Quantization {
    /// Weight types the engine can compute with today.
    public static let supportedWeightTypes: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1]

    /// Dequantizes `count` elements (a multiple of the block size) starting at `source`.
    public static func dequantize(_ type: GGMLType, _ source: UnsafeRawPointer, count: Int,
                                  into destination: UnsafeMutablePointer<Float>) {
        let blocks = count / type.blockSize
        switch type {
        case .f32:
            destination.update(from: source.assumingMemoryBound(to: Float.self), count: count)
        case .f16:
            for i in 0..<count { destination[i] = halfToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .bf16:
            for i in 0..<count { destination[i] = bfloat16ToFloat(source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .q8_0:
            // block_q8_0 { half d; int8 qs[32]; }  x = d * q
            for b in 0..<blocks {
                let block = source + b * 34
                let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                for j in 0..<32 {
                    destination[b * 32 + j] = d * Float(block.load(fromByteOffset: 2 + j, as: Int8.self))
                }
            }
        case .q4_0:
            // block_q4_0 { half d; uint8 qs[16]; }  x[j] = d * (lo(qs[j]) - 8), x[j+16] = d * (hi(qs[j]) - 8)
            for b in 0..<blocks {
                let block = source + b * 18
                let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 2 + j, as: UInt8.self)
                    destination[b * 32 + j] = d * Float(Int(q & 0x0F) - 8)
                    destination[b * 32 + j + 16] = d * Float(Int(q >> 4) - 8)
                }
            }
        case .q4_1:
            // block_q4_1 { half d; half m; uint8 qs[16]; }  x = d * q + m
            for b in 0..<blocks {
                let block = source + b * 20
                let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                let m = halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: 4 + j, as: UInt8.self)
                    destination[b * 32 + j] = d * Float(q & 0x0F) + m
                    destination[b * 32 + j + 16] = d * Float(q >> 4) + m
                }
            }
        default:
            preconditionFailure("dequantize(\(type)) called without checking supportedWeightTypes")
        }
    }

    /// Dequantizes a whole tensor into a new array (tests and small tensors such as norms).
    public static func dequantize(_ type: GGMLType, _ bytes: UnsafeRawBufferPointer, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            dequantize(type, bytes.baseAddress!, count: count, into: buffer.baseAddress!)
            initialized = count
        }
    }
}
