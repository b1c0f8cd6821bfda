import CGPU
import Foundation
import LLM

/// An f32 activation buffer in device memory.
final class VulkanBuffer: BackendBuffer {
    let context: VulkanContext
    let allocation: DeviceAllocation
    init(context: VulkanContext, allocation: DeviceAllocation, count: Int, label: String) {
        self.context = context
        self.allocation = allocation
        super.init(count: count, label: label)
    }
    deinit { context.release(allocation) }
}

/// A weight in its GGUF block format. Usually one allocation; a tensor larger than
/// maxStorageBufferRange (or maxMemoryAllocationSize) is split into row ranges, each its own
/// buffer, and every op runs once per range.
final class VulkanWeight: BackendWeight {
    struct Chunk {
        let allocation: DeviceAllocation
        let firstRow: Int
        let rows: Int
    }
    let context: VulkanContext
    let chunks: [Chunk]
    let rowBytes: Int
    init(context: VulkanContext, chunks: [Chunk], name: String, type: GGMLType, rows: Int, columns: Int) {
        self.context = context
        self.chunks = chunks
        self.rowBytes = type.rowBytes(columns) ?? 0
        super.init(name: name, type: type, rows: rows, columns: columns)
    }
    deinit { chunks.forEach { context.release($0.allocation) } }
}

/// A scratch allocation owned by the backend that grows on demand (token ids, argmax results,
/// staging).
private final class GrowingBuffer {
    let context: VulkanContext
    let kind: VulkanContext.MemoryKind
    let label: String
    private(set) var allocation: DeviceAllocation?
    init(context: VulkanContext, kind: VulkanContext.MemoryKind, label: String) {
        self.context = context
        self.kind = kind
        self.label = label
    }
    func ensure(bytes: Int) throws -> DeviceAllocation {
        if let allocation, allocation.size >= bytes { return allocation }
        if let old = allocation { context.release(old) }   // finishes recorded work that uses it first
        allocation = nil
        let fresh = try context.allocate(bytes: max(bytes, 4096), kind: kind, label: label)
        allocation = fresh
        return fresh
    }
    deinit { allocation.map(context.release) }
}

/// A small device buffer of uint32 tables (block tables, positions) written in command order
/// with vkCmdUpdateBuffer, so uploading one needs no host sync inside a step. The last contents
/// are remembered: every layer of a forward step passes the same layout, so a step uploads once
/// and the other layers bind the same words. A rewrite while earlier recorded dispatches still
/// read the buffer gets a WAR barrier from the context's hazard tracking. Grows (finishing the
/// recorded work that uses the old buffer) only when a table is larger than any before.
private final class CommandOrderedTable {
    private let buffer: GrowingBuffer
    private var current: [UInt32]?
    init(context: VulkanContext, label: String) {
        buffer = GrowingBuffer(context: context, kind: .device, label: label)
    }
    func upload(_ words: [UInt32], context: VulkanContext) throws -> DeviceAllocation {
        let bytes = max(words.count, 1) * 4
        let before = buffer.allocation?.buffer
        let allocation = try buffer.ensure(bytes: max(bytes, 16 * 1024))
        if allocation.buffer == before, words == current { return allocation }
        try words.withUnsafeBytes { try context.update(allocation, offset: 0, bytes: $0) }
        current = words
        return allocation
    }
}

/// The Vulkan compute backend: GLSL kernels from Kernels/vulkan (SPIR-V embedded at build
/// time), weights resident on the device in their block formats, ops recorded into one
/// command buffer and submitted when the host needs a result. See docs/VULKAN.md.
public final class VulkanBackend: Backend {
    public let name = "vulkan"
    let context: VulkanContext
    private let tokens: GrowingBuffer
    private let results: GrowingBuffer
    private let staging: GrowingBuffer
    private var inverseFrequencies: [String: DeviceAllocation] = [:]
    private let pagedTables: CommandOrderedTable
    private let ropePositions: CommandOrderedTable
    /// gatherRows/scatterAddRows: the row indices (an expert's tokens: the gather and the
    /// scatter-add after it pass the same list, so the second binds the words already there) and
    /// the scatter factors.
    private let moeIndices: CommandOrderedTable
    private let moeFactors: CommandOrderedTable
    /// Uploads up to this size are recorded in command order (vkCmdUpdateBuffer); larger ones
    /// finish the recorded work and write the memory directly.
    private let inlineUploadLimit = 256 * 1024
    /// Tests lower this to force weights to split into several buffers.
    var weightChunkLimit: Int?
    /// Matmuls reduce each row within one subgroup (subgroupAdd) where the device supports it
    /// and subgroups fit a 64-invocation workgroup; else the shared-memory variant. Tests flip it.
    var subgroupMatmul: Bool

    /// Opens device `deviceIndex` (vkEnumeratePhysicalDevices order, as `llm-gpu devices`
    /// lists it) or, when nil, the best one: discrete, integrated, virtual, then CPU.
    public init(deviceIndex: Int? = nil) throws {
        context = try VulkanContext(deviceIndex: deviceIndex)
        tokens = GrowingBuffer(context: context, kind: .device, label: "tokens")
        results = GrowingBuffer(context: context, kind: .host, label: "argmax")
        staging = GrowingBuffer(context: context, kind: .host, label: "staging")
        pagedTables = CommandOrderedTable(context: context, label: "paged.tables")
        ropePositions = CommandOrderedTable(context: context, label: "rope.positions")
        moeIndices = CommandOrderedTable(context: context, label: "moe.indices")
        moeFactors = CommandOrderedTable(context: context, label: "moe.factors")
        let info = context.info
        subgroupMatmul = info.subgroupArithmetic && info.subgroupSize >= 1 && info.subgroupSize <= 64
    }

    deinit {
        try? context.flush()
        inverseFrequencies.values.forEach(context.release)
    }

    /// Every Vulkan device the loader reports, for `llm-gpu devices`.
    public static func devices() throws -> [VulkanDeviceInfo] {
        let instance = try VulkanInstance.create()
        defer { vkDestroyInstance(instance, nil) }
        return try VulkanInstance.physicalDevices(instance).enumerated().map { VulkanInstance.info($1, index: $0) }
    }

    public var device: VulkanDeviceInfo { context.info }

    public var deviceDescription: String {
        let i = context.info
        return "\(i.name) (Vulkan \(i.apiVersion), \(i.type), subgroup \(i.subgroupSize))"
    }

    /// The largest device-local heap (on lavapipe: system memory as the driver reports it).
    public var memoryCapacity: UInt64? {
        let heaps = context.info.heaps
        return (heaps.filter(\.deviceLocal).map(\.bytes).max() ?? heaps.map(\.bytes).max()).map(UInt64.init)
    }

    /// Dispatches recorded and command buffers submitted so far.
    public var statistics: (dispatches: Int, submits: Int) { (context.dispatchCount, context.submitCount) }

    /// Exactly the ops implemented here. The switch is exhaustive, so an op added to `BackendOp`
    /// later must be answered here (false until someone writes its shader).
    public func supports(_ op: BackendOp) -> Bool {
        switch op {
        case .matmul(let type), .embedding(let type): return Self.kernelSuffix(type) != nil
        case .rmsNorm, .rope(.normal), .rope(.neox), .attention, .slidingWindowAttention, .softmax, .swiglu, .geglu,
             .add, .addBias, .scale, .copyRows, .argmax, .moeGating, .gatherRows, .scatterAddRows,
             .attentionSoftcap, .softcap, .layerNorm, .gelu, .copyColumns:
            return true
        }
    }

    static func kernelSuffix(_ type: GGMLType) -> String? {
        switch type {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .q8_0: return "q8_0"
        case .q4_0: return "q4_0"
        case .q4_1: return "q4_1"
        case .q5_0: return "q5_0"
        case .q5_1: return "q5_1"
        case .q4_K: return "q4_k"
        case .q5_K: return "q5_k"
        case .q6_K: return "q6_k"
        default: return nil
        }
    }

    // MARK: Memory

    public func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
        guard Self.kernelSuffix(type) != nil else {
            throw VulkanError.unsupported("weight type \(type) (tensor '\(name)')")
        }
        guard let rowBytes = type.rowBytes(columns), rows > 0, bytes.count >= rows * rowBytes else {
            throw VulkanError.invalidArgument("weight '\(name)' has \(bytes.count) bytes, too few for \(rows)×\(columns) \(type)")
        }
        let limit = min(weightChunkLimit ?? .max, context.info.maxStorageBufferRange, context.info.maxMemoryAllocationSize) & ~15
        let rowsPerChunk = limit / rowBytes
        guard rowsPerChunk > 0 else {
            throw VulkanError.tooLarge(what: "one row of weight '\(name)'", bytes: rowBytes, limit: limit, limitName: "maxStorageBufferRange")
        }
        var chunks: [VulkanWeight.Chunk] = []
        do {
            var first = 0
            while first < rows {
                let count = min(rowsPerChunk, rows - first)
                let label = rows > rowsPerChunk ? "\(name)[\(first)..<\(first + count)]" : name
                let allocation = try context.allocate(bytes: count * rowBytes, kind: .device, label: label)
                chunks.append(.init(allocation: allocation, firstRow: first, rows: count))
                try write(UnsafeRawBufferPointer(rebasing: bytes[(first * rowBytes)..<((first + count) * rowBytes)]), to: allocation, offset: 0)
                first += count
            }
        } catch {
            chunks.forEach { context.release($0.allocation) }
            throw error
        }
        return VulkanWeight(context: context, chunks: chunks, name: name, type: type, rows: rows, columns: columns)
    }

    public func makeBuffer(count: Int, label: String) throws -> BackendBuffer {
        guard count >= 0 else { throw VulkanError.invalidArgument("buffer '\(label)' with \(count) values") }
        let allocation = try context.allocate(bytes: count * 4, kind: .device, label: label)
        let buffer = VulkanBuffer(context: context, allocation: allocation, count: count, label: label)
        try context.fillZero(allocation)
        return buffer
    }

    public func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws {
        let b = vk(buffer)
        guard offset >= 0, offset + values.count <= b.count else {
            throw VulkanError.invalidArgument("upload of \(values.count) values at \(offset) past the end of '\(b.label)' (\(b.count))")
        }
        guard !values.isEmpty else { return }
        try values.withUnsafeBytes { raw in
            if raw.count <= inlineUploadLimit {
                try context.update(b.allocation, offset: offset * 4, bytes: raw)
            } else {
                try write(raw, to: b.allocation, offset: offset * 4)
            }
        }
    }

    /// Host bytes into device memory now (not in command order): waits for recorded work
    /// first, then writes mapped memory or goes through the staging buffer.
    private func write(_ bytes: UnsafeRawBufferPointer, to allocation: DeviceAllocation, offset: Int) throws {
        guard bytes.count > 0 else { return }
        if let mapped = allocation.mapped {
            if context.isReferenced(allocation) { try context.flush() }
            (mapped + offset).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        } else {
            try context.flush()
            let stage = try staging.ensure(bytes: bytes.count)
            stage.mapped!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            try context.copy(from: stage, offset: 0, to: allocation, offset: offset, bytes: (bytes.count + 3) & ~3)
            try context.flush()
        }
    }

    public func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] {
        let b = vk(buffer)
        guard offset >= 0, count >= 0, offset + count <= b.count else {
            throw VulkanError.invalidArgument("download of \(count) values at \(offset) past the end of '\(b.label)' (\(b.count))")
        }
        var source = b.allocation, sourceOffset = offset * 4
        if source.mapped == nil {
            let stage = try staging.ensure(bytes: count * 4)
            try context.copy(from: b.allocation, offset: offset * 4, to: stage, offset: 0, bytes: count * 4)
            source = stage
            sourceOffset = 0
        }
        try context.flush()
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            if count > 0 {
                UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: source.mapped! + sourceOffset, byteCount: count * 4)
            }
            initialized = count
        }
    }

    public func synchronize() throws { try context.flush() }

    // MARK: Ops

    public func embed(_ table: BackendWeight, tokens ids: [Int32], into output: BackendBuffer) throws {
        let t = weight(table), out = vk(output)
        guard !ids.isEmpty else { return }
        guard ids.count * t.columns <= out.count else {
            throw VulkanError.invalidArgument("embed of \(ids.count) tokens into '\(out.label)' (\(out.count) values)")
        }
        if let bad = ids.first(where: { $0 < 0 || Int($0) >= t.rows }) {
            throw VulkanError.invalidArgument("token \(bad) outside embedding table '\(t.name)' (\(t.rows) rows)")
        }
        let tokenBuffer = try tokens.ensure(bytes: ids.count * 4)
        try ids.withUnsafeBytes { try context.update(tokenBuffer, offset: 0, bytes: $0) }
        let kernel = "embed_" + Self.kernelSuffix(t.type)!
        for chunk in t.chunks {
            try context.dispatch(kernel, [.read(chunk.allocation), .read(tokenBuffer), .write(out.allocation)],
                                 push: [UInt32(t.columns), UInt32(t.rowBytes), UInt32(chunk.firstRow), UInt32(chunk.rows)],
                                 groups: (ceil(t.columns, 64), ids.count, 1))
        }
    }

    public func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws {
        let w = self.weight(weight), x = vk(input), y = vk(output)
        guard rows > 0 else { return }
        guard rows * w.columns <= x.count, rows * w.rows <= y.count else {
            throw VulkanError.invalidArgument("matmul '\(w.name)' (\(w.rows)×\(w.columns)) over \(rows) rows of '\(x.label)' into '\(y.label)'")
        }
        let tokensPerGroup = rows == 1 ? 1 : 8
        let kernel = (rows == 1 ? "matvec_" : "matmul_") + (subgroupMatmul ? "sg_" : "") + Self.kernelSuffix(w.type)!
        // Output rows per 64-invocation workgroup: one per subgroup (the reported size is the
        // largest a driver uses, so real subgroups are never fewer), or 4 × 16 lanes.
        let rowsPerGroup = subgroupMatmul ? max(1, 64 / context.info.subgroupSize) : 4
        for chunk in w.chunks {
            // x and y bound only as far as these rows reach: a logits buffer sized for a whole
            // prompt batch may exceed maxStorageBufferRange while one row of it does not.
            try context.dispatch(kernel, [.read(chunk.allocation), .read(x.allocation, bytes: rows * w.columns * 4),
                                          .write(y.allocation, bytes: rows * w.rows * 4)],
                                 push: [UInt32(w.columns), UInt32(chunk.rows), UInt32(rows), UInt32(w.rowBytes),
                                        UInt32(w.rows), UInt32(chunk.firstRow)],
                                 groups: (ceil(chunk.rows, rowsPerGroup), ceil(rows, tokensPerGroup), 1))
        }
    }

    public func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws {
        let w = self.weight(weight), x = vk(input), y = vk(output)
        let width = w.columns
        guard w.type == .f32, w.rows == 1, w.chunks.count == 1 else {
            throw VulkanError.unsupported("rmsNorm with a \(w.type) [\(w.rows), \(w.columns)] weight (needs f32 [1, width])")
        }
        guard rows * width <= x.count, rows * width <= y.count else {
            throw VulkanError.invalidArgument("rmsNorm of \(rows)×\(width) over '\(x.label)' into '\(y.label)'")
        }
        try context.dispatch("rmsnorm", [.read(w.chunks[0].allocation), .read(x.allocation), .write(y.allocation)],
                             push: [UInt32(width), eps.bitPattern], groups: (rows, 1, 1))
    }

    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {
        let x = vk(buffer), pairs = parameters.dimensions / 2
        guard parameters.dimensions <= headDim, parameters.dimensions % 2 == 0, rows * heads * headDim <= x.count else {
            throw VulkanError.invalidArgument("rope over \(rows)×\(heads)×\(headDim) of '\(x.label)' with \(parameters.dimensions) dimensions")
        }
        guard pairs > 0, rows > 0 else { return }
        guard startPosition >= 0 else { throw VulkanError.invalidArgument("rope at position \(startPosition)") }
        let frequencies = try inverseFrequencyTable(parameters)
        try context.dispatch("rope", [.write(x.allocation), .read(frequencies)],
                             push: [UInt32(rows), UInt32(heads), UInt32(headDim), UInt32(startPosition), UInt32(pairs),
                                    parameters.style == .neox ? 1 : 0, 1],
                             groups: (ceil(rows * heads * pairs, 64), 1, 1))
    }

    /// RoPE with a position per row. Consecutive positions (a prompt chunk) and equal ones (every
    /// beam at the same step) go through `rope` with the position in push constants (step 1 or
    /// 0); any other list is written in command order to a small positions buffer that
    /// `rope_positions` reads.
    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws {
        let x = vk(buffer), pairs = parameters.dimensions / 2
        guard parameters.dimensions <= headDim, parameters.dimensions % 2 == 0, rows * heads * headDim <= x.count,
              rows >= 0, positions.count >= rows else {
            throw VulkanError.invalidArgument("rope over \(rows)×\(heads)×\(headDim) of '\(x.label)' with \(parameters.dimensions) dimensions and \(positions.count) positions")
        }
        guard pairs > 0, rows > 0 else { return }
        let used = positions[0..<rows]
        if let bad = used.first(where: { $0 < 0 || $0 > Int(UInt32.max) }) {
            throw VulkanError.invalidArgument("rope at position \(bad)")
        }
        let first = used[0]
        let step: Int? = used.indices.allSatisfy({ used[$0] == first + $0 }) ? 1
            : used.allSatisfy({ $0 == first }) ? 0 : nil
        let frequencies = try inverseFrequencyTable(parameters)
        if let step {
            try context.dispatch("rope", [.write(x.allocation), .read(frequencies)],
                                 push: [UInt32(rows), UInt32(heads), UInt32(headDim), UInt32(first), UInt32(pairs),
                                        parameters.style == .neox ? 1 : 0, UInt32(step)],
                                 groups: (ceil(rows * heads * pairs, 64), 1, 1))
            return
        }
        let table = try ropePositions.upload(used.map { UInt32($0) }, context: context)
        try context.dispatch("rope_positions", [.write(x.allocation), .read(frequencies), .read(table)],
                             push: [UInt32(rows), UInt32(heads), UInt32(headDim), 0, UInt32(pairs),
                                    parameters.style == .neox ? 1 : 0, 0],
                             groups: (ceil(rows * heads * pairs, 64), 1, 1))
    }

    /// θ(position, i) = position · invFreq[i], with invFreq[i] = scale · base^(−2i/dims) / factor[i]
    /// computed in double on the host, so the kernel does one multiply per angle.
    private func inverseFrequencyTable(_ p: RopeParameters) throws -> DeviceAllocation {
        let key = "\(p.dimensions)/\(p.base)/\(p.positionScale)/\(p.frequencyFactors.map { $0.map(\.bitPattern) } ?? [])"
        if let table = inverseFrequencies[key] { return table }
        let pairs = p.dimensions / 2
        let table = (0..<pairs).map { i -> Float in
            var f = Double(p.positionScale) * pow(Double(p.base), -2.0 * Double(i) / Double(p.dimensions))
            if let factors = p.frequencyFactors { f /= Double(factors[i]) }
            return Float(f)
        }
        let allocation = try context.allocate(bytes: pairs * 4, kind: .device, label: "rope.invFreq")
        inverseFrequencies[key] = allocation
        try table.withUnsafeBytes { try context.update(allocation, offset: 0, bytes: $0) }
        return allocation
    }

    public func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                          rows: Int, startPosition: Int, shape: AttentionShape) throws {
        let q = vk(query), k = vk(keys), v = vk(values), o = vk(output)
        guard shape.headDim <= 256 else { throw VulkanError.unsupported("attention with head dimension \(shape.headDim) (at most 256)") }
        guard shape.kvHeads > 0, shape.heads % shape.kvHeads == 0 else {
            throw VulkanError.invalidArgument("attention with \(shape.heads) heads over \(shape.kvHeads) KV heads")
        }
        guard rows * shape.queryWidth <= q.count, rows * shape.queryWidth <= o.count,
              (startPosition + rows) * shape.kvWidth <= min(k.count, v.count) else {
            throw VulkanError.invalidArgument("attention over \(rows) rows at \(startPosition) outside its buffers")
        }
        guard rows > 0 else { return }
        try context.dispatch("attention", [.read(q.allocation), .read(k.allocation), .read(v.allocation), .write(o.allocation)],
                             push: [UInt32(startPosition), UInt32(shape.heads), UInt32(shape.kvHeads), UInt32(shape.headDim),
                                    shape.scale.bitPattern, 0, UInt32(max(shape.window, 0)), max(shape.softcap, 0).bitPattern],
                             groups: (shape.heads, rows, 1))
    }

    /// The fused attention kernel reading keys and values through block tables (`attention_paged`,
    /// attention.comp with PAGED): one record per row, [length, block ids…] padded to the longest
    /// table in use, written in command order (see `CommandOrderedTable`). No gathers, no
    /// allocations after the first call with the largest layout.
    public func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                               rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        let q = vk(query), k = vk(keys), v = vk(values), o = vk(output)
        guard shape.headDim <= 256 else { throw VulkanError.unsupported("attention with head dimension \(shape.headDim) (at most 256)") }
        guard shape.kvHeads > 0, shape.heads % shape.kvHeads == 0 else {
            throw VulkanError.invalidArgument("attention with \(shape.heads) heads over \(shape.kvHeads) KV heads")
        }
        let blockSize = layout.blockSize
        guard rows >= 0, blockSize > 0, layout.tables.count >= rows, layout.lengths.count >= rows,
              rows * shape.queryWidth <= q.count, rows * shape.queryWidth <= o.count else {
            throw VulkanError.invalidArgument("paged attention over \(rows) rows outside its buffers or layout")
        }
        guard rows > 0 else { return }
        let poolRows = min(k.count, v.count) / shape.kvWidth
        var stride = 0
        for r in 0..<rows {
            let length = layout.lengths[r]
            guard length >= 0, ceil(length, blockSize) <= layout.tables[r].count else {
                throw VulkanError.invalidArgument("paged attention row \(r): length \(length) needs more than its \(layout.tables[r].count) blocks")
            }
            stride = max(stride, ceil(length, blockSize))
        }
        var words = [UInt32](repeating: 0, count: rows * (stride + 1))
        for r in 0..<rows {
            let length = layout.lengths[r], table = layout.tables[r], record = r * (stride + 1)
            words[record] = UInt32(length)
            for b in 0..<ceil(length, blockSize) {
                let id = Int(table[b]), used = min(blockSize, length - b * blockSize)
                guard id >= 0, id * blockSize + used <= poolRows else {
                    throw VulkanError.invalidArgument("paged attention row \(r): block \(id) outside the pool '\(k.label)' (\(poolRows) rows)")
                }
                words[record + 1 + b] = UInt32(id)
            }
        }
        let tables = try pagedTables.upload(words, context: context)
        try context.dispatch("attention_paged",
                             [.read(q.allocation), .read(k.allocation), .read(v.allocation), .write(o.allocation), .read(tables)],
                             push: [UInt32(blockSize), UInt32(shape.heads), UInt32(shape.kvHeads), UInt32(shape.headDim),
                                    shape.scale.bitPattern, UInt32(stride), UInt32(max(shape.window, 0)),
                                    max(shape.softcap, 0).bitPattern],
                             groups: (shape.heads, rows, 1))
    }

    /// A transfer command (vkCmdCopyBuffer), not a shader: it has no maxStorageBufferRange limit,
    /// so it also fills logits buffers larger than a storage binding may be.
    public func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                         rows: Int, width: Int) throws {
        let s = vk(source), d = vk(destination)
        guard sourceRow >= 0, destinationRow >= 0, (sourceRow + rows) * width <= s.count, (destinationRow + rows) * width <= d.count else {
            throw VulkanError.invalidArgument("copyRows outside '\(s.label)' or '\(d.label)'")
        }
        if s === d, abs(sourceRow - destinationRow) < rows {
            throw VulkanError.invalidArgument("copyRows between overlapping rows of '\(s.label)'")
        }
        try context.copy(from: s.allocation, offset: sourceRow * width * 4, to: d.allocation, offset: destinationRow * width * 4,
                         bytes: rows * width * 4)
    }

    public func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("swiglu", vk(gate), vk(up), vk(output), count: count)
    }

    public func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("add", vk(a), vk(b), vk(output), count: count)
    }

    public func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("geglu", vk(gate), vk(up), vk(output), count: count)
    }

    /// buffer[r, i] += bias[i]: the f32 [1, width] bias bound directly as the second operand.
    public func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        let x = vk(buffer), b = weight(bias), width = b.columns
        guard b.type == .f32, b.rows == 1, b.chunks.count == 1, width > 0 else {
            throw VulkanError.unsupported("addBias with a \(b.type) [\(b.rows), \(b.columns)] bias (needs f32 [1, width])")
        }
        guard rows >= 0, rows * width <= x.count else {
            throw VulkanError.invalidArgument("addBias of \(rows)×\(width) over '\(x.label)'")
        }
        guard rows > 0 else { return }
        let count = rows * width
        try context.dispatch("add_bias", [.read(x.allocation), .read(b.chunks[0].allocation), .write(x.allocation)],
                             push: [UInt32(count), UInt32(width), 0], groups: (min(ceil(count, 256), 4096), 1, 1))
    }

    public func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        let x = vk(buffer)
        guard count >= 0, count <= x.count else { throw VulkanError.invalidArgument("scale of \(count) values over '\(x.label)'") }
        guard count > 0 else { return }
        try context.dispatch("scale", [.read(x.allocation), .read(x.allocation), .write(x.allocation)],
                             push: [UInt32(count), 1, factor.bitPattern], groups: (min(ceil(count, 256), 4096), 1, 1))
    }

    /// x = cap · tanh(x / cap) in place (Gemma 2's final-logit soft-capping): elementwise.comp
    /// with OP_SOFTCAP, the cap in the factor push constant.
    public func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        let x = vk(buffer)
        guard count >= 0, count <= x.count else { throw VulkanError.invalidArgument("softcap of \(count) values over '\(x.label)'") }
        guard cap > 0 else { throw VulkanError.invalidArgument("softcap with cap \(cap) (must be > 0)") }
        guard count > 0 else { return }
        try context.dispatch("softcap", [.read(x.allocation), .read(x.allocation), .write(x.allocation)],
                             push: [UInt32(count), 1, cap.bitPattern], groups: (min(ceil(count, 256), 4096), 1, 1))
    }

    private func elementwise(_ kernel: String, _ a: VulkanBuffer, _ b: VulkanBuffer, _ out: VulkanBuffer, count: Int) throws {
        guard count >= 0, count <= min(a.count, b.count, out.count) else {
            throw VulkanError.invalidArgument("\(kernel) of \(count) values over '\(a.label)', '\(b.label)' into '\(out.label)'")
        }
        guard count > 0 else { return }
        try context.dispatch(kernel, [.read(a.allocation), .read(b.allocation), .write(out.allocation)],
                             push: [UInt32(count), 1, 0], groups: (min(ceil(count, 256), 4096), 1, 1))
    }

    public func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {
        let x = vk(buffer)
        guard rows * width <= x.count else { throw VulkanError.invalidArgument("softmax of \(rows)×\(width) over '\(x.label)'") }
        guard width > 0 else { return }
        try context.dispatch("softmax", [.write(x.allocation, bytes: rows * width * 4)], push: [UInt32(width)], groups: (rows, 1, 1))
    }

    // MARK: Mixture of experts

    /// The most experts `moe_gate` routes over (its per-row scores live in shared memory).
    public static let maximumExperts = 256

    /// One workgroup per row (moe.comp, MOE_GATE): scores, a rank-based top-k, the weights.
    /// Ids and weights stay on the device; nothing is submitted.
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        let x = vk(logits), i = vk(ids), w = vk(weights), k = gating.k
        guard experts >= 1, experts <= Self.maximumExperts, k >= 1, k <= experts else {
            throw VulkanError.unsupported("moeGate: top-\(k) of \(experts) experts (1 ≤ k ≤ experts ≤ \(Self.maximumExperts))")
        }
        if gating.limitsGroups {
            guard experts % gating.groups == 0, experts / gating.groups >= 2, gating.groupsUsed >= 1,
                  k <= gating.groupsUsed * (experts / gating.groups) else {
                throw VulkanError.invalidArgument("moeGate: \(gating.groupsUsed) of \(gating.groups) groups of \(experts) experts for top-\(k)")
            }
        }
        let bias = selectionBias.map(weight)
        if let bias, bias.type != .f32 || bias.columns != experts || bias.chunks.count != 1 {
            throw VulkanError.invalidArgument("moeGate: selection bias '\(bias.name)' is \(bias.type) [\(bias.columns)], needs f32 [\(experts)]")
        }
        guard rows >= 0, rows * experts <= x.count, rows * k <= min(i.count, w.count) else {
            throw VulkanError.invalidArgument("moeGate of \(rows)×\(experts) top-\(k) over '\(x.label)' into '\(i.label)', '\(w.label)'")
        }
        guard rows > 0 else { return }
        try context.dispatch("moe_gate", [.read(x.allocation, bytes: rows * experts * 4), .write(i.allocation, bytes: rows * k * 4),
                                          .write(w.allocation, bytes: rows * k * 4),
                                          .read(bias?.chunks[0].allocation ?? x.allocation)],
                             push: [UInt32(experts), UInt32(k), gating.function == .sigmoid ? 1 : 0, gating.normalize ? 1 : 0,
                                    ExpertGating.minimumWeightSum.bitPattern, gating.scale.bitPattern, bias == nil ? 0 : 1,
                                    UInt32(gating.limitsGroups ? gating.groups : 1), UInt32(gating.groupsUsed)],
                             groups: (rows, 1, 1))
    }

    public func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                          rows: Int, eps: Float) throws {
        let g = self.weight(weight), b = bias.map(self.weight), x = vk(input), y = vk(output)
        let width = g.columns
        guard g.type == .f32, g.rows == 1, g.chunks.count == 1,
              b.map({ $0.type == .f32 && $0.columns == width && $0.chunks.count == 1 }) ?? true else {
            throw VulkanError.unsupported("layerNorm with a \(g.type) [\(g.rows), \(g.columns)] weight or a mismatched bias (needs f32 [1, width])")
        }
        guard rows * width <= x.count, rows * width <= y.count else {
            throw VulkanError.invalidArgument("layerNorm of \(rows)×\(width) over '\(x.label)' into '\(y.label)'")
        }
        guard rows > 0 else { return }
        try context.dispatch("layernorm", [.read(g.chunks[0].allocation), .read((b ?? g).chunks[0].allocation), .read(x.allocation),
                                           .write(y.allocation)],
                             push: [UInt32(width), eps.bitPattern, b == nil ? 0 : 1], groups: (rows, 1, 1))
    }

    public func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("gelu", vk(input), vk(input), vk(output), count: count)
    }

    public func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                            rows: Int, groups: Int, width: Int) throws {
        let s = vk(source), d = vk(destination)
        guard rows > 0, groups > 0, width > 0 else { return }
        guard from.offset >= 0, to.offset >= 0, from.end(rows: rows, groups: groups, width: width) <= s.count,
              to.end(rows: rows, groups: groups, width: width) <= d.count, s !== d else {
            throw VulkanError.invalidArgument("copyColumns outside '\(s.label)' or '\(d.label)', or within one buffer")
        }
        try context.dispatch("copy_columns", [.read(s.allocation), .write(d.allocation)],
                             push: [from.offset, from.rowStride, from.groupStride, to.offset, to.rowStride, to.groupStride, width].map { UInt32($0) },
                             groups: (ceil(width, 64), groups, rows))
    }

    public func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        let s = vk(source), d = vk(destination)
        guard width >= 0, indices.count * width <= d.count else {
            throw VulkanError.invalidArgument("gatherRows of \(indices.count)×\(width) into '\(d.label)'")
        }
        guard !indices.isEmpty, width > 0 else { return }
        let sourceRows = s.count / width
        if let bad = indices.first(where: { $0 < 0 || Int($0) >= sourceRows }) {
            throw VulkanError.invalidArgument("gatherRows: index \(bad) outside the \(sourceRows) rows of '\(s.label)'")
        }
        let table = try moeIndices.upload(indices.map { UInt32($0) }, context: context)
        try context.dispatch("gather_rows", [.read(s.allocation), .read(table), .write(d.allocation, bytes: indices.count * width * 4)],
                             push: [UInt32(width), UInt32(indices.count), 0], groups: (ceil(width, 64), indices.count, 1))
    }

    /// Distinct indices (an expert's tokens, always so in the engine) add every row at once;
    /// repeated ones add row by row per column, in order, so the sums round as the oracle's do.
    public func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                               width: Int) throws {
        let s = vk(source), d = vk(destination)
        guard indices.count == factors.count else {
            throw VulkanError.invalidArgument("scatterAddRows: \(indices.count) indices but \(factors.count) factors")
        }
        guard width >= 0, indices.count * width <= s.count else {
            throw VulkanError.invalidArgument("scatterAddRows of \(indices.count)×\(width) from '\(s.label)'")
        }
        guard !indices.isEmpty, width > 0 else { return }
        let destinationRows = d.count / width
        if let bad = indices.first(where: { $0 < 0 || Int($0) >= destinationRows }) {
            throw VulkanError.invalidArgument("scatterAddRows: index \(bad) outside the \(destinationRows) rows of '\(d.label)'")
        }
        let count = indices.count, stride = Set(indices).count == count ? count : 1
        let table = try moeIndices.upload(indices.map { UInt32($0) }, context: context)
        let scales = try moeFactors.upload(factors.map(\.bitPattern), context: context)
        try context.dispatch("scatter_add_rows", [.read(s.allocation, bytes: count * width * 4), .read(table), .write(d.allocation),
                                                  .read(scales)],
                             push: [UInt32(width), UInt32(count), UInt32(stride)], groups: (ceil(width, 64), stride, 1))
    }

    public func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] {
        let x = vk(buffer)
        guard rows * width <= x.count, width > 0 else { throw VulkanError.invalidArgument("argmax of \(rows)×\(width) over '\(x.label)'") }
        guard rows > 0 else { return [] }
        let result = try results.ensure(bytes: rows * 4)
        try context.dispatch("argmax", [.read(x.allocation, bytes: rows * width * 4), .write(result)], push: [UInt32(width)], groups: (rows, 1, 1))
        try context.flush()
        let ids = result.mapped!.bindMemory(to: UInt32.self, capacity: rows)
        return (0..<rows).map { Int32(bitPattern: ids[$0]) }
    }

    // MARK: Helpers

    private func vk(_ buffer: BackendBuffer) -> VulkanBuffer {
        guard let b = buffer as? VulkanBuffer, b.context === context else {
            preconditionFailure("buffer '\(buffer.label)' does not belong to this Vulkan backend")
        }
        return b
    }

    private func weight(_ weight: BackendWeight) -> VulkanWeight {
        guard let w = weight as? VulkanWeight, w.context === context else {
            preconditionFailure("weight '\(weight.name)' does not belong to this Vulkan backend")
        }
        return w
    }
}

@inline(__always) private func ceil(_ a: Int, _ b: Int) -> Int { (a + b - 1) / b }
