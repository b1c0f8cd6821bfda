import LLM

// Dot products of one weight row (in its GGUF block format) with f32 activations, and SIMD
// dequantization of a row. Activations stay f32: this backend is the oracle, so it does not
// round them to 8 bits as llama.cpp's CPU path does. Block layouts: ggml-common.h.

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
    /// Σ a[i]·b[i] over `count` f32 values.
    @inline(__always)
    static func dotF32(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc0 = SIMD16<Float>(), acc1 = SIMD16<Float>()
        var i = 0
        while i + 32 <= count {
            acc0 += load16(a + i) * load16(b + i)
            acc1 += load16(a + i + 16) * load16(b + i + 16)
            i += 32
        }
        while i + 16 <= count {
            acc0 += load16(a + i) * load16(b + i)
            i += 16
        }
        var sum = (acc0 + acc1).sum()
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

    /// Σ row[i]·x[i] for a row of `columns` elements of `type`.
    static func dot(_ type: GGMLType, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ columns: Int) -> Float {
        switch type {
        case .f32: return dotF32(row.assumingMemoryBound(to: Float.self), x, columns)
        case .f16: return dotF16(row, x, columns)
        case .bf16: return dotBF16(row, x, columns)
        case .q8_0: return dotQ8_0(row, x, columns / 32)
        case .q4_0: return dotQ4_0(row, x, columns / 32)
        case .q4_1: return dotQ4_1(row, x, columns / 32)
        default: return dotViaDequantize(type, row, x, columns)
        }
    }

    static func dotF16(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let w = floats(row.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<Float16>.self))
            acc += w * load16(x + i)
            i += 16
        }
        var sum = acc.sum()
        while i < count {
            sum += halfAt(row, 2 * i) * x[i]
            i += 1
        }
        return sum
    }

    static func dotBF16(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ count: Int) -> Float {
        var acc = SIMD16<Float>()
        var i = 0
        while i + 16 <= count {
            let halves = row.loadUnaligned(fromByteOffset: 2 * i, as: SIMD16<UInt16>.self)
            var bits = SIMD16<UInt32>()
            for lane in 0..<16 { bits[lane] = UInt32(halves[lane]) &<< 16 }
            acc += unsafeBitCast(bits, to: SIMD16<Float>.self) * load16(x + i)
            i += 16
        }
        var sum = acc.sum()
        while i < count {
            sum += bfloat16ToFloat(row.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) * x[i]
            i += 1
        }
        return sum
    }

    /// block_q8_0 { half d; int8 qs[32] }: Σ d · Σ q·x
    static func dotQ8_0(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var acc = SIMD16<Float>()
        for b in 0..<blocks {
            let block = row + b * 34
            let lo = floats(block.loadUnaligned(fromByteOffset: 2, as: SIMD16<Int8>.self))
            let hi = floats(block.loadUnaligned(fromByteOffset: 18, as: SIMD16<Int8>.self))
            let xs = x + b * 32
            acc += SIMD16(repeating: halfAt(block)) * (lo * load16(xs) + hi * load16(xs + 16))
        }
        return acc.sum()
    }

    /// block_q4_0 { half d; uint8 qs[16] }: element j is the lo nibble of qs[j], j+16 the hi nibble,
    /// each minus 8; so Σ = d·Σ q·x − 8d·Σ x (the offset folded out of the inner product).
    static func dotQ4_0(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var accD = SIMD16<Float>(), accM = SIMD16<Float>()
        for b in 0..<blocks {
            let block = row + b * 18
            let q = block.loadUnaligned(fromByteOffset: 2, as: SIMD16<UInt8>.self)
            let xs = x + b * 32
            let x0 = load16(xs), x1 = load16(xs + 16)
            let d = halfAt(block)
            accD += SIMD16(repeating: d) * (floats(q & 0x0F) * x0 + floats(q &>> 4) * x1)
            accM += SIMD16(repeating: -8 * d) * (x0 + x1)
        }
        return (accD + accM).sum()
    }

    /// block_q4_1 { half d; half m; uint8 qs[16] }: x = d·q + m, so Σ = d·Σq·x + m·Σx.
    static func dotQ4_1(_ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ blocks: Int) -> Float {
        var accD = SIMD16<Float>(), accM = SIMD16<Float>()
        for b in 0..<blocks {
            let block = row + b * 20
            let q = block.loadUnaligned(fromByteOffset: 4, as: SIMD16<UInt8>.self)
            let xs = x + b * 32
            let x0 = load16(xs), x1 = load16(xs + 16)
            accD += SIMD16(repeating: halfAt(block)) * (floats(q & 0x0F) * x0 + floats(q &>> 4) * x1)
            accM += SIMD16(repeating: halfAt(block, 2)) * (x0 + x1)
        }
        return (accD + accM).sum()
    }

    /// Formats without a fused dot (Q5_0, Q5_1, the K-quants): each block is dequantized into a
    /// stack buffer by the reference decoder, then dotted with x.
    static func dotViaDequantize(_ type: GGMLType, _ row: UnsafeRawPointer, _ x: UnsafePointer<Float>, _ columns: Int) -> Float {
        let block = type.blockSize, bytes = type.typeSize
        return withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { buffer in
            let values = buffer.baseAddress!
            var sum: Float = 0
            for b in 0..<(columns / block) {
                Quantization.dequantize(type, row + b * bytes, count: block, into: values)
                sum += dotF32(values, x + b * block, block)
            }
            return sum
        }
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
        default:
            Quantization.dequantize(type, row, count: columns, into: out)
        }
    }
}
