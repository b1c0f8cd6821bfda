import LLM

// SIMD dequantization of a weight row (in its GGUF block format) and the f32 dots the CPU
// backend's f32 matmul and attention use. Activations stay f32: this backend is the oracle, so it
// does not round them to 8 bits as llama.cpp's CPU path does. Block layouts: ggml-common.h.

@inline(__always)
private func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> {
    UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self)
}

@inline(__always)
private func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}

// Lane conversions written as plain loops: once inlined, LLVM turns each into one widening
// move and one convert. The standard library's generic SIMD conversion initializers are not
// inlined here and cost a call per block (measured 2× slower on the Q4_1 dot).
@inline(__always)
private func floats(_ v: SIMD16<UInt8>) -> SIMD16<Float> {
    var r = SIMD16<Float>()
    for i in 0..<16 { r[i] = Float(v[i]) }
    return r
}

@inline(__always)
private func floats(_ v: SIMD16<Int8>) -> SIMD16<Float> {
    var r = SIMD16<Float>()
    for i in 0..<16 { r[i] = Float(v[i]) }
    return r
}

@inline(__always)
private func floats(_ v: SIMD16<Float16>) -> SIMD16<Float> {
    var r = SIMD16<Float>()
    for i in 0..<16 { r[i] = Float(v[i]) }
    return r
}

@inline(__always)
private func halfAt(_ p: UnsafeRawPointer, _ offset: Int = 0) -> Float {
    halfToFloat(p.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
}

enum DotKernels {
    /// Σ a[i]·b[i] over `count` f32 values: 16 lanes, lane l summing elements l, l + 16, ... in
    /// order, the lanes' `sum()`, then the tail in order. This is the one order of every f32 dot
    /// on the CPU (dotF32x4 does the same per row), so a result never depends on which is used.
    @inline(__always)
    static func dotF32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            acc += load16(a + i) * load16(b + i)
            i += 16
        }
        var sum = acc.sum()
        while i < count {
            sum += a[i] * b[i]
            i += 1
        }
        return sum
    }

    /// Four dots at once: rows w, w + stride, w + 2·stride, w + 3·stride, each with x.
    @inline(__always)
    static func dotF32x4(_ w: UnsafePointer<Float>, _ stride: Int, _ x: UnsafePointer<Float>, _ count: Int)
        -> (Float, Float, Float, Float) {
        var a0 = SIMD16<Float>(), a1 = SIMD16<Float>(), a2 = SIMD16<Float>(), a3 = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let xv = load16(x + i)
            a0 += load16(w + i) * xv
            a1 += load16(w + stride + i) * xv
            a2 += load16(w + 2 * stride + i) * xv
            a3 += load16(w + 3 * stride + i) * xv
            i += 16
        }
        var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
        while i < count {
            s0 += w[i] * x[i]
            s1 += w[stride + i] * x[i]
            s2 += w[2 * stride + i] * x[i]
            s3 += w[3 * stride + i] * x[i]
            i += 1
        }
        return (s0, s1, s2, s3)
    }

    private static let laneShifts = SIMD16<UInt32>(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)

    /// 16 · bit j of qh in lane j (elements 0..<16), and 16 · bit j + 16 (elements 16..<32), as floats:
    /// one variable shift of the broadcast word per half, no per-lane loop over bits.
    @inline(__always)
    static func q5HighBits(_ qh: UInt32) -> (SIMD16<Float>, SIMD16<Float>) {
        let word = SIMD16<UInt32>(repeating: qh)
        let lo = (word &>> laneShifts) & 1, hi = (word &>> (laneShifts &+ 16)) & 1
        var l = SIMD16<Float>(), h = SIMD16<Float>()
        for j in 0..<16 {
            l[j] = Float(lo[j])
            h[j] = Float(hi[j])
        }
        return (l * 16, h * 16)
    }

    /// Dequantizes one row of `columns` elements into `out` (SIMD paths for the block formats).
    static func dequantizeRow(_ type: GGMLType, _ row: UnsafeRawPointer, _ columns: Int, _ out: UnsafeMutablePointer<Float>) {
        switch type {
        case .q8_0:
            for b in 0..<(columns / 32) {
                let block = row + b * 34
                let d = SIMD16<Float>(repeating: halfAt(block))
                store16(d * floats(block.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self)), out + b * 32)
                store16(d * floats(block.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self)), out + b * 32 + 16)
            }
        case .q4_0:
            for b in 0..<(columns / 32) {
                let block = row + b * 18
                let q = block.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
                let d = SIMD16<Float>(repeating: halfAt(block)), eight = SIMD16<Float>(repeating: 8)
                store16(d * (floats(q & 0x0F) - eight), out + b * 32)
                store16(d * (floats(q &>> 4) - eight), out + b * 32 + 16)
            }
        case .q4_1:
            for b in 0..<(columns / 32) {
                let block = row + b * 20
                let q = block.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
                let d = SIMD16<Float>(repeating: halfAt(block)), m = SIMD16<Float>(repeating: halfAt(block, 2))
                store16(d * floats(q & 0x0F) + m, out + b * 32)
                store16(d * floats(q &>> 4) + m, out + b * 32 + 16)
            }
        case .q4_K:
            for b in 0..<(columns / 256) { dequantizeQ4_K(row + b * 144, out + b * 256) }
        case .q6_K:
            for b in 0..<(columns / 256) { dequantizeQ6_K(row + b * 210, out + b * 256) }
        case .q5_0:
            for b in 0..<(columns / 32) { dequantizeQ5_0(row + b * 22, out + b * 32) }
        default:
            Quantization.dequantize(type, row, count: columns, into: out)
        }
    }

    // SIMD decoders of the K-quant and Q5_0 blocks most Q4_K_M files use; the same arithmetic,
    // in the same order, as Quantization's reference decoders (so the results are identical).

    /// block_q4_K: eight sub-blocks of 32; x = (d·sc)·q − dmin·m.
    static func dequantizeQ4_K(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = halfAt(block), dmin = halfAt(block, 2), scales = block + 4
        for pair in 0..<4 {
            let (sc1, m1) = Quantization.kScaleMin(2 * pair, scales), (sc2, m2) = Quantization.kScaleMin(2 * pair + 1, scales)
            let d1 = SIMD16<Float>(repeating: d * Float(sc1)), o1 = SIMD16<Float>(repeating: dmin * Float(m1))
            let d2 = SIMD16<Float>(repeating: d * Float(sc2)), o2 = SIMD16<Float>(repeating: dmin * Float(m2))
            for half in 0..<2 {
                let q = block.loadUnaligned(fromByteOffset: 16 + 32 * pair + 16 * half, as: SIMD16<UInt8>.self)
                store16(d1 * floats(q & 0x0F) - o1, out + 64 * pair + 16 * half)
                store16(d2 * floats(q &>> 4) - o2, out + 64 * pair + 32 + 16 * half)
            }
        }
    }

    /// block_q6_K: sixteen sub-blocks of 16; x = (d·scale)·(q − 32), q split over ql (4 bits) and qh (2 bits).
    static func dequantizeQ6_K(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = halfAt(block, 208)
        let three = SIMD16<UInt8>(repeating: 3), offset = SIMD16<Float>(repeating: 32)
        for half in 0..<2 {
            let ql = block + 64 * half, qh = block + 128 + 32 * half, sc = block + 192 + 8 * half
            for part in 0..<2 {   // l in 0..<16 and 16..<32: scale index s = part
                let l = 16 * part
                let a = ql.loadUnaligned(fromByteOffset: l, as: SIMD16<UInt8>.self)
                let c = ql.loadUnaligned(fromByteOffset: l + 32, as: SIMD16<UInt8>.self)
                let h = qh.loadUnaligned(fromByteOffset: l, as: SIMD16<UInt8>.self)
                func scale(_ k: Int) -> SIMD16<Float> { SIMD16(repeating: d * Float(sc.load(fromByteOffset: k, as: Int8.self))) }
                let o = out + 128 * half + l
                store16(scale(part) * (floats((a & 0x0F) | ((h & three) &<< 4)) - offset), o)
                store16(scale(part + 2) * (floats((c & 0x0F) | (((h &>> 2) & three) &<< 4)) - offset), o + 32)
                store16(scale(part + 4) * (floats((a &>> 4) | (((h &>> 4) & three) &<< 4)) - offset), o + 64)
                store16(scale(part + 6) * (floats((c &>> 4) | (((h &>> 6) & three) &<< 4)) - offset), o + 96)
            }
        }
    }

    /// block_q5_0: x = d·(q − 16), the 5th bit of element j in bit j of qh.
    static func dequantizeQ5_0(_ block: UnsafeRawPointer, _ out: UnsafeMutablePointer<Float>) {
        let d = SIMD16<Float>(repeating: halfAt(block)), sixteen = SIMD16<Float>(repeating: 16)
        let (hlo, hhi) = q5HighBits(block.loadUnaligned(fromByteOffset: 2, as: UInt32.self))
        let q = block.loadUnaligned(fromByteOffset: 6, as: SIMD16<UInt8>.self)
        // (q + 16·bit) − 16 is exact in f32 for these small integers, so this equals the reference.
        store16(d * ((floats(q & 0x0F) + hlo) - sixteen), out)
        store16(d * ((floats(q &>> 4) + hhi) - sixteen), out + 16)
    }
}
