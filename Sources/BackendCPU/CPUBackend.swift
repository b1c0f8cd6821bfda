import Foundation
import LLM

final class CPUBuffer: BackendBuffer {
    let pointer: UnsafeMutablePointer<Float>
    /// calloc: zeroed pages arrive lazily, and a failed allocation is an error rather than a trap.
    init?(zeroed count: Int, label: String) {
        guard let raw = calloc(max(count, 1), MemoryLayout<Float>.size) else { return nil }
        pointer = raw.assumingMemoryBound(to: Float.self)
        super.init(count: count, label: label)
    }
    deinit { free(pointer) }
}

public enum CPUBackendError: Error, CustomStringConvertible {
    case outOfMemory(label: String, bytes: Int, physical: UInt64)
    public var description: String {
        switch self {
        case let .outOfMemory(label, bytes, physical):
            return "cannot allocate \(bytes / (1 << 20)) MiB for '\(label)' (this machine has \(physical / (1 << 20)) MiB); lower --context"
        }
    }
}

/// A weight used in place: `bytes` points into the model's memory mapping (or a caller's
/// buffer), which the caller keeps alive for as long as the weight. Nothing is copied.
final class CPUWeight: BackendWeight {
    let bytes: UnsafeRawPointer
    let rowStride: Int
    init(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawPointer) {
        self.bytes = bytes
        self.rowStride = type.rowBytes(columns) ?? 0
        super.init(name: name, type: type, rows: rows, columns: columns)
    }
    @inline(__always) func row(_ r: Int) -> UnsafeRawPointer { bytes + r * rowStride }
}

/// The CPU backend: the fallback where no GPU exists, and the oracle every GPU kernel is
/// checked against. Loops are plain and follow the op definitions in `Backend`; speed comes
/// from SIMD over blocks and from splitting rows over threads. One session uses it at a time.
public final class CPUBackend: Backend {
    public let name = "cpu"
    public let threads: Int
    private let parallel: Parallel
    /// Per-thread scratch: attention scores, dequantized weight tiles.
    private var scratch: [UnsafeMutablePointer<Float>] = []
    private var scratchCapacity = 0

    /// Round activations before each matmul the way llama.cpp's CPU backend does (to the weight
    /// type's `vec_dot_type`: Q8_0/Q8_1 blocks, Q8_K super-blocks, or F16). Off by default: the oracle
    /// keeps f32. Tests turn it on to tell llama.cpp's rounding apart from a real discrepancy.
    public let int8Activations: Bool

    /// Weight bytes streamed by `matmul` since creation (or the last reset): each call reads its
    /// whole weight once. Tests use it to show what a decode step touches (MoE: only k experts).
    public var matmulWeightBytesRead = 0

    /// With `int8Activations`, matmuls of Q4_0/Q4_1/Q5_0/Q8_0 and K-quant weights run on
    /// int8 activations and integer dots (llama.cpp's way, and its speed) instead of the emulation.
    private let int8MatMul = Int8MatMul()

    public init(threads: Int? = nil, int8Activations: Bool = false) {
        let count = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        self.threads = count
        self.parallel = Parallel(threads: count)
        self.int8Activations = int8Activations
    }

    deinit { scratch.forEach { $0.deallocate() } }

    public var memoryCapacity: UInt64? { ProcessInfo.processInfo.physicalMemory }

    public var deviceDescription: String {
        "CPU, \(threads) thread\(threads == 1 ? "" : "s")"
    }

    public func supports(_ op: BackendOp) -> Bool {
        switch op {
        case .matmul(let type), .embedding(let type): return Quantization.decodableWeightTypes.contains(type)
        default: return true
        }
    }

    // MARK: Memory

    public func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
        precondition(bytes.count >= rows * (type.rowBytes(columns) ?? .max), "weight '\(name)' is smaller than its shape")
        return CPUWeight(name: name, type: type, rows: rows, columns: columns, bytes: bytes.baseAddress!)
    }

    public func makeBuffer(count: Int, label: String) throws -> BackendBuffer {
        let physical = ProcessInfo.processInfo.physicalMemory
        let (bytes, overflow) = max(count, 1).multipliedReportingOverflow(by: MemoryLayout<Float>.size)
        // Refuse what cannot fit in RAM up front: with overcommit the allocation would "succeed"
        // and the process would be killed later, when the pages are touched.
        guard !overflow, UInt64(bytes) <= physical, let buffer = CPUBuffer(zeroed: count, label: label) else {
            throw CPUBackendError.outOfMemory(label: label, bytes: overflow ? .max : bytes, physical: physical)
        }
        return buffer
    }

    public func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws {
        precondition(offset >= 0 && offset + values.count <= buffer.count, "upload past the end of '\(buffer.label)'")
        values.withUnsafeBufferPointer { (cpu(buffer) + offset).update(from: $0.baseAddress!, count: values.count) }
    }

    public func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] {
        precondition(offset >= 0 && offset + count <= buffer.count, "download past the end of '\(buffer.label)'")
        return Array(UnsafeBufferPointer(start: cpu(buffer) + offset, count: count))
    }

    public func synchronize() throws {}

    // MARK: Ops

    public func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws {
        let t = weight(table), out = cpu(output)
        for (r, token) in tokens.enumerated() {
            DotKernels.dequantizeRow(t.type, t.row(Int(token)), t.columns, out + r * t.columns)
        }
    }

    public func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws {
        let w = self.weight(weight), y = cpu(output)
        let columns = w.columns, outputs = w.rows
        matmulWeightBytesRead += w.byteCount
        var x = cpu(input)
        if int8Activations, int8MatMul.run(w, x, rows: rows, y, threads: threads) { return }
        if int8Activations {
            let copy = UnsafeMutablePointer<Float>.allocate(capacity: rows * columns)
            copy.update(from: x, count: rows * columns)
            ActivationRounding.apply(UnsafeMutableBufferPointer(start: copy, count: rows * columns), weightType: w.type)
            x = copy
        }
        defer { if int8Activations { x.deallocate() } }
        // Dequantize a tile of weight rows once into per-thread scratch, then reuse it for every
        // token, so dequantization is amortized over a batch. Decode (rows == 1) takes the same
        // path: each output is dotF32(dequantized row, x) whatever the batch, which is what makes
        // the f32 matmul batch-invariant (docs/ARCHITECTURE.md, "Batch invariance").
        let tile = 8
        ensureScratch(tile * columns)
        let tiles = (outputs + tile - 1) / tile
        parallel.forEachIndexed(tiles) { tileIndex, worker in
            let buffer = self.scratch[worker]
            let first = tileIndex * tile, count = min(tile, outputs - first)
            for i in 0..<count {
                DotKernels.dequantizeRow(w.type, w.row(first + i), columns, buffer + i * columns)
            }
            for r in 0..<rows {
                let xr = x + r * columns, yr = y + r * outputs + first
                var i = 0
                // Four weight rows per pass over the token's activations: one load of x feeds four dots.
                while i + 4 <= count {
                    let dots = DotKernels.dotF32x4(buffer + i * columns, columns, xr, columns)
                    yr[i] = dots.0; yr[i + 1] = dots.1; yr[i + 2] = dots.2; yr[i + 3] = dots.3
                    i += 4
                }
                while i < count {
                    yr[i] = DotKernels.dotF32(buffer + i * columns, xr, columns)
                    i += 1
                }
            }
        }
    }

    public func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws {
        let x = cpu(input), y = cpu(output), w = self.weight(weight)
        let width = w.columns, g = w.bytes.assumingMemoryBound(to: Float.self)
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            // Sum in double: the oracle should not lose bits to the order of a long reduction.
            var sum = 0.0
            for i in 0..<width { sum += Double(xr[i]) * Double(xr[i]) }
            let scale = Float(1 / (sum / Double(width) + Double(eps)).squareRoot())
            for i in 0..<width { yr[i] = xr[i] * scale * g[i] }
        }
    }

    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {
        try rope(buffer, rows: rows, heads: heads, headDim: headDim, positions: Array(startPosition..<(startPosition + rows)),
                 parameters: parameters)
    }

    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws {
        let x = cpu(buffer), pairs = parameters.dimensions / 2
        let powers = (0..<pairs).map { parameters.power(pair: $0) }
        // normal: pair (2i, 2i+1); neox: pair (i, i + dims/2)
        let normal = parameters.style == .normal
        // Rows are independent; a prompt batch has hundreds, each with dimensions/2 sines and cosines.
        parallel.forEach(rows, minimumPerThread: 16) { range in
            for r in range {
                for i in 0..<pairs {
                    let theta = parameters.angle(position: positions[r], pair: i, power: powers[i])
                    let c = cos(theta), s = sin(theta)
                    let a = normal ? 2 * i : i, b = normal ? 2 * i + 1 : i + pairs
                    for h in 0..<heads {
                        let head = x + (r * heads + h) * headDim
                        let x0 = head[a], x1 = head[b]
                        head[a] = x0 * c - x1 * s
                        head[b] = x0 * s + x1 * c
                    }
                }
            }
        }
    }

    public func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                          rows: Int, startPosition: Int, shape: AttentionShape) throws {
        attend(query: query, keys: keys, values: values, output: output, rows: rows, shape: shape,
               visible: { startPosition + $0 + 1 }, physicalRow: { _, p in p })
    }

    public func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                               rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        attend(query: query, keys: keys, values: values, output: output, rows: rows, shape: shape,
               visible: { layout.lengths[$0] }, physicalRow: { r, p in layout.physicalRow(r, position: p) })
    }

    /// Softmax attention of row r over its `visible(r)` positions (the last `shape.window` of them
    /// when the window is set), position p of row r stored at
    /// row `physicalRow(r, p)` of keys and values. Query head h reads KV head h / (heads / kvHeads).
    private func attend(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, output: BackendBuffer,
                        rows: Int, shape: AttentionShape, visible: (Int) -> Int, physicalRow: (Int, Int) -> Int) {
        let q = cpu(query), k = cpu(keys), v = cpu(values), out = cpu(output)
        let headDim = shape.headDim, kvWidth = shape.kvWidth, group = shape.heads / shape.kvHeads
        let lengths = (0..<rows).map(visible)
        ensureScratch(lengths.max() ?? 1)
        // A decode step at a short context is a few microseconds of work: waking the other threads
        // would cost more than it saves.
        let work = lengths.reduce(0, +) * shape.heads * headDim
        let threads = work < 1 << 15 ? Parallel(threads: 1) : parallel
        threads.forEachIndexed(rows * shape.heads) { index, worker in
            let r = index / shape.heads, h = index % shape.heads
            let count = visible(r), first = shape.firstVisible(from: count - 1)
            let qh = q + r * shape.queryWidth + h * headDim
            let kvOffset = (h / group) * headDim
            let scores = self.scratch[worker]
            var maxScore = -Float.infinity
            for p in first..<count {
                var s = DotKernels.dotF32(qh, k + physicalRow(r, p) * kvWidth + kvOffset, headDim) * shape.scale
                if shape.softcap > 0 { s = shape.softcap * tanh(s / shape.softcap) }
                scores[p] = s
                maxScore = max(maxScore, s)
            }
            var total: Float = 0
            for p in first..<count {
                let e = exp(scores[p] - maxScore)
                scores[p] = e
                total += e
            }
            let oh = out + r * shape.queryWidth + h * headDim
            oh.update(repeating: 0, count: headDim)
            let inverse = 1 / total
            for p in first..<count {
                let weight = scores[p] * inverse, vp = v + physicalRow(r, p) * kvWidth + kvOffset
                for d in 0..<headDim { oh[d] += weight * vp[d] }
            }
        }
    }

    public func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                         rows: Int, width: Int) throws {
        precondition((sourceRow + rows) * width <= source.count && (destinationRow + rows) * width <= destination.count,
                     "copyRows outside '\(source.label)' or '\(destination.label)'")
        (cpu(destination) + destinationRow * width).update(from: cpu(source) + sourceRow * width, count: rows * width)
    }

    public func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        let g = cpu(gate), u = cpu(up), y = cpu(output)
        parallel.forEach(count, granularity: 64, minimumPerThread: 4096) { range in
            for i in range {
                let x = g[i]
                y[i] = x / (1 + exp(-x)) * u[i]
            }
        }
    }

    public func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        let x = cpu(buffer), b = weight(bias), width = b.columns
        let values = b.bytes.assumingMemoryBound(to: Float.self)
        for r in 0..<rows {
            let row = x + r * width
            for i in 0..<width { row[i] += values[i] }
        }
    }

    public func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        let x = cpu(buffer)
        for i in 0..<count { x[i] = cap * tanh(x[i] / cap) }
    }

    public func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        let x = cpu(buffer)
        for i in 0..<count { x[i] *= factor }
    }

    /// GELU with the tanh approximation, as ggml's gelu: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    /// llama.cpp's CPU GELU (its GGML_GELU_FP16 build, the default): the tanh GELU of x rounded to
    /// f16, itself rounded to f16, read from a table over every f16 value; 0 for x ≤ −10, x for x ≥ 10.
    private static let geluF16Table: [Float] = (0...Int(UInt16.max)).map { bits in
        let x = Float(Float16(bitPattern: UInt16(bits)))
        return Float(Float16(0.5 * x * (1 + tanh(0.797_884_56 * x * (1 + 0.044_715 * x * x)))))
    }

    public func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        let g = cpu(gate), u = cpu(up), y = cpu(output)
        if int8Activations {
            // Rounds as llama.cpp does, and a table read is ~10x cheaper than tanh (Gemma 3's prompt
            // spent 15% of its time here).
            Self.geluF16Table.withUnsafeBufferPointer { table in
                parallel.forEach(count, granularity: 64, minimumPerThread: 4096) { range in
                    for i in range {
                        let x = g[i]
                        y[i] = x <= -10 ? 0 : x >= 10 ? x * u[i] : table[Int(Float16(x).bitPattern)] * u[i]
                    }
                }
            }
            return
        }
        let c: Float = 0.797_884_56   // √(2/π)
        parallel.forEach(count, granularity: 64, minimumPerThread: 4096) { range in
            for i in range {
                let x = g[i]
                y[i] = 0.5 * x * (1 + tanh(c * (x + 0.044715 * x * x * x))) * u[i]
            }
        }
    }

    public func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        let x = cpu(a), z = cpu(b), y = cpu(output)
        for i in 0..<count { y[i] = x[i] + z[i] }
    }

    public func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {
        let x = cpu(buffer)
        for r in 0..<rows {
            let row = x + r * width
            var maxValue = -Float.infinity
            for i in 0..<width { maxValue = max(maxValue, row[i]) }
            var total: Float = 0
            for i in 0..<width {
                row[i] = exp(row[i] - maxValue)
                total += row[i]
            }
            for i in 0..<width { row[i] /= total }
        }
    }

    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        let x = cpu(logits), idOut = cpu(ids), wOut = cpu(weights), k = gating.k
        precondition(k >= 1 && k <= experts && rows * experts <= logits.count && rows * k <= min(ids.count, weights.count),
                     "moeGate: k \(k) of \(experts) experts over \(rows) rows does not fit the buffers")
        let bias = selectionBias.map { b -> UnsafePointer<Float> in
            precondition(b.type == .f32 && b.columns == experts, "moeGate: selection bias '\(b.name)' is not f32 [\(experts)]")
            return weight(b).bytes.assumingMemoryBound(to: Float.self)
        }
        precondition(!gating.limitsGroups || (experts % gating.groups == 0 && experts / gating.groups >= 2
                                               && gating.groupsUsed >= 1 && k <= gating.groupsUsed * experts / gating.groups),
                     "moeGate: \(gating.groupsUsed) of \(gating.groups) groups cannot hold top-\(k) of \(experts) experts")
        var scores = [Float](repeating: 0, count: experts), selection = scores
        for r in 0..<rows {
            let row = x + r * experts
            switch gating.function {
            case .softmax:
                var maxValue = -Float.infinity
                for e in 0..<experts { maxValue = max(maxValue, row[e]) }
                var total: Float = 0
                for e in 0..<experts {
                    scores[e] = exp(row[e] - maxValue)
                    total += scores[e]
                }
                for e in 0..<experts { scores[e] /= total }
            case .sigmoid:
                for e in 0..<experts { scores[e] = 1 / (1 + exp(-row[e])) }
            }
            // The bias and the group limit steer the choice only; the weights stay p.
            for e in 0..<experts { selection[e] = bias.map { scores[e] + $0[e] } ?? scores[e] }
            let eligible = gating.eligible(selection)
            // Top-k by selection: k is small (2–8), so k passes over the experts beat a sort.
            var chosen = [Int](), sum: Float = 0
            for _ in 0..<k {
                var best = -1
                for e in 0..<experts where eligible[e] && !chosen.contains(e) && (best < 0 || selection[e] > selection[best]) { best = e }
                chosen.append(best)
                sum += scores[best]
            }
            let divisor = gating.normalize ? max(sum, ExpertGating.minimumWeightSum) : 1
            for (j, e) in chosen.enumerated() {
                idOut[r * k + j] = Float(e)
                wOut[r * k + j] = scores[e] / divisor * gating.scale
            }
        }
    }

    public func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                          rows: Int, eps: Float) throws {
        let x = cpu(input), y = cpu(output), w = self.weight(weight)
        let width = w.columns, g = w.bytes.assumingMemoryBound(to: Float.self)
        let b = bias.map { self.weight($0).bytes.assumingMemoryBound(to: Float.self) }
        precondition(rows * width <= min(input.count, output.count) && (bias?.columns ?? width) == width,
                     "layerNorm of \(rows)×\(width) over '\(input.label)'")
        for r in 0..<rows {
            let xr = x + r * width, yr = y + r * width
            // ggml_norm: the mean and the variance of the centred values, each summed in double.
            var sum = 0.0
            for i in 0..<width { sum += Double(xr[i]) }
            let mean = Float(sum / Double(width))
            var squares = 0.0
            for i in 0..<width {
                let v = xr[i] - mean
                squares += Double(v * v)
            }
            let scale = 1 / (Float(squares / Double(width)) + eps).squareRoot()
            for i in 0..<width {
                let v = (xr[i] - mean) * scale * g[i]
                yr[i] = b.map { v + $0[i] } ?? v
            }
        }
    }

    public func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        let x = cpu(input), y = cpu(output)
        precondition(count <= min(input.count, output.count), "gelu of \(count) values over '\(input.label)'")
        if int8Activations {
            Self.geluF16Table.withUnsafeBufferPointer { table in
                parallel.forEach(count, granularity: 64, minimumPerThread: 4096) { range in
                    for i in range {
                        let v = x[i]
                        y[i] = v <= -10 ? 0 : v >= 10 ? v : table[Int(Float16(v).bitPattern)]
                    }
                }
            }
            return
        }
        let c: Float = 0.797_884_56   // √(2/π)
        parallel.forEach(count, granularity: 64, minimumPerThread: 4096) { range in
            for i in range {
                let v = x[i]
                y[i] = 0.5 * v * (1 + tanh(c * (v + 0.044715 * v * v * v)))
            }
        }
    }

    public func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                            rows: Int, groups: Int, width: Int) throws {
        precondition(from.end(rows: rows, groups: groups, width: width) <= source.count
                     && to.end(rows: rows, groups: groups, width: width) <= destination.count,
                     "copyColumns outside '\(source.label)' or '\(destination.label)'")
        let src = cpu(source), dst = cpu(destination)
        for r in 0..<rows {
            for g in 0..<groups { (dst + to.at(r, g)).update(from: src + from.at(r, g), count: width) }
        }
    }

    public func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        let src = cpu(source), dst = cpu(destination)
        precondition(indices.count * width <= destination.count && indices.allSatisfy { ($0 + 1) * Int32(width) <= source.count },
                     "gatherRows outside '\(source.label)' or '\(destination.label)'")
        for (i, r) in indices.enumerated() { (dst + i * width).update(from: src + Int(r) * width, count: width) }
    }

    public func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                               width: Int) throws {
        let src = cpu(source), dst = cpu(destination)
        precondition(indices.count == factors.count && indices.count * width <= source.count
                     && indices.allSatisfy { ($0 + 1) * Int32(width) <= destination.count },
                     "scatterAddRows outside '\(source.label)' or '\(destination.label)'")
        for (i, r) in indices.enumerated() {
            let from = src + i * width, to = dst + Int(r) * width, f = factors[i]
            for c in 0..<width { to[c] += f * from[c] }
        }
    }

    public func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] {
        let x = cpu(buffer)
        return (0..<rows).map { r in
            let row = x + r * width
            var best = 0
            for i in 1..<width where row[i] > row[best] { best = i }
            return Int32(best)
        }
    }

    // MARK: Helpers

    @inline(__always) private func cpu(_ buffer: BackendBuffer) -> UnsafeMutablePointer<Float> {
        (buffer as! CPUBuffer).pointer
    }

    @inline(__always) private func weight(_ weight: BackendWeight) -> CPUWeight {
        weight as! CPUWeight
    }

    private func ensureScratch(_ floats: Int) {
        guard floats > scratchCapacity || scratch.count < threads else { return }
        scratch.forEach { $0.deallocate() }
        scratchCapacity = max(floats, scratchCapacity * 2, 4096)
        scratch = (0..<threads).map { _ in .allocate(capacity: scratchCapacity) }
    }
}
