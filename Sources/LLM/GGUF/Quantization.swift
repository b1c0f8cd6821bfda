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
    /// Every format the reference decoder (and so the CPU backend) handles.
    public static let decodableWeightTypes: Set<GGMLType> = [.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1,
                                                             .q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

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
        case .q5_0, .q5_1:
            // block_q5_0 { half d; u32 qh; uint8 qs[16] }, block_q5_1 { half d; half m; u32 qh; uint8 qs[16] }:
            // bit j of qh is the 5th bit of element j, bit j+16 that of element j+16.
            let hasMin = type == .q5_1, size = type.typeSize, qhOffset = hasMin ? 4 : 2
            for b in 0..<blocks {
                let block = source + b * size
                let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                let m = hasMin ? halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) : 0
                let qh = block.loadUnaligned(fromByteOffset: qhOffset, as: UInt32.self)
                for j in 0..<16 {
                    let q = block.load(fromByteOffset: qhOffset + 4 + j, as: UInt8.self)
                    let lo = Int(q & 0x0F) | Int((qh >> UInt32(j)) & 1) << 4
                    let hi = Int(q >> 4) | Int((qh >> UInt32(j + 16)) & 1) << 4
                    destination[b * 32 + j] = hasMin ? d * Float(lo) + m : d * Float(lo - 16)
                    destination[b * 32 + j + 16] = hasMin ? d * Float(hi) + m : d * Float(hi - 16)
                }
            }
        case .q4_K, .q5_K:
            // block_q4_K { half d; half dmin; u8 scales[12]; u8 qs[128] }, block_q5_K adds u8 qh[32] before qs.
            // Eight sub-blocks of 32 with 6-bit scale and min each; x = d·sc·q − dmin·m.
            let five = type == .q5_K, size = type.typeSize
            for b in 0..<blocks {
                let block = source + b * size
                let d = halfToFloat(block.loadUnaligned(as: UInt16.self))
                let dmin = halfToFloat(block.loadUnaligned(fromByteOffset: 2, as: UInt16.self))
                let scales = block + 4, qh = block + 16, qs = block + (five ? 48 : 16)
                let out = destination + b * 256
                for pair in 0..<4 {
                    let (sc1, m1) = kScaleMin(2 * pair, scales), (sc2, m2) = kScaleMin(2 * pair + 1, scales)
                    for l in 0..<32 {
                        let q = qs.load(fromByteOffset: 32 * pair + l, as: UInt8.self)
                        var lo = Int(q & 0x0F), hi = Int(q >> 4)
                        if five {
                            let h = qh.load(fromByteOffset: l, as: UInt8.self)
                            lo |= Int((h >> UInt8(2 * pair)) & 1) << 4
                            hi |= Int((h >> UInt8(2 * pair + 1)) & 1) << 4
                        }
                        out[64 * pair + l] = d * Float(sc1) * Float(lo) - dmin * Float(m1)
                        out[64 * pair + 32 + l] = d * Float(sc2) * Float(hi) - dmin * Float(m2)
                    }
                }
            }
        case .q6_K:
            // block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; half d }: 16 sub-blocks of 16,
            // x = d·scale·(q − 32) with q's low 4 bits in ql and high 2 bits in qh.
            for b in 0..<blocks {
                let block = source + b * 210
                let d = halfToFloat(block.loadUnaligned(fromByteOffset: 208, as: UInt16.self))
                for half in 0..<2 {
                    let ql = block + 64 * half, qh = block + 128 + 32 * half, sc = block + 192 + 8 * half
                    let out = destination + b * 256 + 128 * half
                    for l in 0..<32 {
                        let h = Int(qh.load(fromByteOffset: l, as: UInt8.self))
                        let a = Int(ql.load(fromByteOffset: l, as: UInt8.self)), c = Int(ql.load(fromByteOffset: l + 32, as: UInt8.self))
                        let q1 = (a & 0x0F) | ((h >> 0) & 3) << 4
                        let q2 = (c & 0x0F) | ((h >> 2) & 3) << 4
                        let q3 = (a >> 4) | ((h >> 4) & 3) << 4
                        let q4 = (c >> 4) | ((h >> 6) & 3) << 4
                        let s = l / 16
                        func scale(_ k: Int) -> Float { Float(sc.load(fromByteOffset: k, as: Int8.self)) }
                        out[l] = d * scale(s) * Float(q1 - 32)
                        out[l + 32] = d * scale(s + 2) * Float(q2 - 32)
                        out[l + 64] = d * scale(s + 4) * Float(q3 - 32)
                        out[l + 96] = d * scale(s + 6) * Float(q4 - 32)
                    }
                }
            }
        default:
            preconditionFailure("dequantize(\(type)) called without checking decodableWeightTypes")
        }
    }

    /// The 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block (ggml's get_scale_min_k4):
    /// sub-blocks 0–3 keep theirs in the low 6 bits of bytes j and j+4; 4–7 split theirs between a
    /// nibble of byte j+4 and the top 2 bits of bytes j−4 and j.
    @inline(__always)
    public static func kScaleMin(_ j: Int, _ scales: UnsafeRawPointer) -> (UInt8, UInt8) {
        func byte(_ i: Int) -> UInt8 { scales.load(fromByteOffset: i, as: UInt8.self) }
        if j < 4 { return (byte(j) & 63, byte(j + 4) & 63) }
        return ((byte(j + 4) & 0x0F) | ((byte(j - 4) >> 6) << 4), (byte(j + 4) >> 4) | ((byte(j) >> 6) << 4))
    }

    /// Dequantizes a whole tensor into a new array (tests and small tensors such as norms).
    public static func dequantize(_ type: GGMLType, _ bytes: UnsafeRawBufferPointer, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            dequantize(type, bytes.baseAddress!, count: count, into: buffer.baseAddress!)
            initialized = count
        }
    }
}
