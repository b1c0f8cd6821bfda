import CGPU
import Foundation
import LLM

/// f32 activations resident on the device.
final class OpenCLBuffer: BackendBuffer {
    let memory: CLMemory
    init(memory: CLMemory, count: Int, label: String) {
        self.memory = memory
        super.init(count: count, label: label)
    }
    var handle: cl_mem { memory.handle }
}

/// A weight uploaded once, kept in its GGUF block format (never a dequantized copy).
final class OpenCLWeight: BackendWeight {
    let memory: CLMemory
    let rowBytes: Int
    init(memory: CLMemory, name: String, type: GGMLType, rows: Int, columns: Int, rowBytes: Int) {
        self.memory = memory
        self.rowBytes = rowBytes
        super.init(name: name, type: type, rows: rows, columns: columns)
    }
    var handle: cl_mem { memory.handle }
}

/// The OpenCL backend: hand-written OpenCL C 1.2 kernels (Kernels/opencl, embedded at build
/// time), compiled once per device per process. Weights and activations stay on the device;
/// ops are enqueued on one in-order queue with no host synchronisation between them. Only
/// `download` and `argmax` read back. Nothing falls back to the CPU: a missing platform,
/// device, feature or enough memory is an `OpenCLError`.
public final class OpenCLBackend: Backend {
    public let name = "opencl"
    public let device: OpenCLDeviceInfo
    let runtime: DeviceRuntime
    /// Replaced (after finishing its work) when device timing is switched on or off: profiling
    /// needs a queue created with CL_QUEUE_PROFILING_ENABLE.
    var queue: CLQueue
    /// Set while device timing is on (`--profile`, EventTiming.swift); nil otherwise, and then
    /// no command gets an event.
    var eventTimer: CLEventTimer?
    private var kernels: [String: CLKernel] = [:]
    private var ropeTables: [(RopeParameters, OpenCLBuffer)] = []
    private var argmaxResult: CLMemory?

    /// Which matmul kernel runs. `.automatic` picks by device type and batch (see `matmul`);
    /// the others force one kernel, so tests can check every variant on any device.
    public enum MatmulKernel: Equatable, Sendable {
        case automatic
        /// `matvec_T`: `threadsPerRow` work-items (a power of two) share each output row.
        case vector(threadsPerRow: Int)
        /// `matmul_T`: TILE x TILE local-memory tiles. Not batch-invariant (its sums run in another
        /// order than the mat-vec's), so never chosen automatically; its speed against the
        /// mat-vec on GPUs has not been measured (no GPU machine was lent to this work).
        case tiled
        /// `matmul_rows_T`: one work-item per output row and 8 tokens (columns % 32 == 0, else tiled).
        case rows
    }
    public var matmulKernel: MatmulKernel = .automatic

    /// Which attention kernel runs (contiguous and paged alike).
    public enum AttentionKernel: Equatable, Sendable {
        /// `.perRow` on CPU devices, `.workGroup` elsewhere.
        case automatic
        /// One work-group per (head, row), a tile of positions per step, reductions in local memory.
        case workGroup
        /// One work-item per (head, row), softmax state in registers (head dim % 4 == 0, ≤ 256;
        /// otherwise `.workGroup`).
        case perRow
    }
    public var attentionKernel: AttentionKernel = .automatic

    /// The devices of every OpenCL platform, numbered as `--device` takes them.
    public static func listDevices() throws -> [OpenCLDeviceInfo] {
        try DeviceQuery.allDevices().enumerated().map { try DeviceQuery.info(index: $0.offset, device: $0.element.id, platform: $0.element.platform) }
    }

    /// Opens device `deviceIndex` of `listDevices()`, or the first GPU (else the first device) when nil.
    public init(deviceIndex: Int? = nil) throws {
        let devices = try DeviceQuery.allDevices()
        guard !devices.isEmpty else { throw OpenCLError.noDevice("the OpenCL platforms report no devices") }
        let index: Int
        if let deviceIndex {
            guard devices.indices.contains(deviceIndex) else {
                throw OpenCLError.noDevice("--device \(deviceIndex) is out of range: \(devices.count) device\(devices.count == 1 ? "" : "s") found (0...\(devices.count - 1)); see `llm-gpu devices`")
            }
            index = deviceIndex
        } else {
            index = try devices.indices.first {
                try DeviceQuery.value(devices[$0].id, CL_DEVICE_TYPE, as: cl_device_type.self) & cl_device_type(CL_DEVICE_TYPE_GPU) != 0
            } ?? 0
        }
        runtime = try DeviceRuntime.shared(index: index, device: devices[index].id, platform: devices[index].platform)
        device = runtime.info
        queue = try CLQueue(context: runtime.context, device: runtime.device)
    }

    public var deviceDescription: String {
        "OpenCL: \(device.name) (\(device.platform), \(device.type), \(device.computeUnits) compute units)"
    }

    /// CL_DEVICE_GLOBAL_MEM_SIZE: lets the engine refuse a plan (a huge KV cache) up front.
    public var memoryCapacity: UInt64? { UInt64(device.globalMemoryBytes) }

    /// Edge of the tiled matmul work-group chosen for this device.
    public var matmulTile: Int { runtime.tile }
    /// Bytes of device memory allocated through this process's backends on this device.
    public var allocatedBytes: Int { runtime.ledger.usedBytes }

    /// The weight formats the matmul and embedding kernels read in place from their GGUF blocks:
    /// every format the reference decoder handles.
    public static let weightTypes: Set<GGMLType> = Quantization.decodableWeightTypes

    /// Only ops with an OpenCL kernel here. The switch is exhaustive (every op has a kernel today), so
    /// whoever adds an op to `BackendOp` must decide here whether this backend runs it.
    public func supports(_ op: BackendOp) -> Bool {
        switch op {
        case .matmul(let type), .embedding(let type): return Self.weightTypes.contains(type)
        case .rmsNorm, .rope, .attention, .softmax, .swiglu, .add, .copyRows, .argmax,
             .addBias, .scale, .geglu, .slidingWindowAttention, .attentionSoftcap, .softcap, .moeGating, .gatherRows, .scatterAddRows,
             .layerNorm, .gelu, .copyColumns: return true
        }
    }

    // MARK: Memory

    public func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
        guard rows >= 0, let rowBytes = type.rowBytes(columns) else {
            throw OpenCLError.invalidArgument("weight '\(name)': \(columns) columns do not fill whole \(type) blocks")
        }
        let total = rows * rowBytes
        guard bytes.count >= total else {
            throw OpenCLError.invalidArgument("weight '\(name)' has \(bytes.count) bytes, its shape needs \(total)")
        }
        let flags = cl_mem_flags(CL_MEM_READ_ONLY) | (total > 0 ? cl_mem_flags(CL_MEM_COPY_HOST_PTR) : 0)
        let memory = try CLMemory(context: runtime.context, ledger: runtime.ledger, bytes: total, flags: flags,
                                  host: total > 0 ? UnsafeMutableRawPointer(mutating: bytes.baseAddress!) : nil, label: name)
        return OpenCLWeight(memory: memory, name: name, type: type, rows: rows, columns: columns, rowBytes: rowBytes)
    }

    public func makeBuffer(count: Int, label: String) throws -> BackendBuffer {
        guard count >= 0 else { throw OpenCLError.invalidArgument("buffer '\(label)' of \(count) values") }
        let (bytes, overflow) = count.multipliedReportingOverflow(by: 4)
        guard !overflow else { throw OpenCLError.outOfMemory("'\(label)' of \(count) floats overflows") }
        let memory = try CLMemory(context: runtime.context, ledger: runtime.ledger, bytes: bytes,
                                  flags: cl_mem_flags(CL_MEM_READ_WRITE), label: label)
        var zero: Float = 0
        try enqueue("clEnqueueFillBuffer") { clEnqueueFillBuffer(queue.handle, memory.handle, &zero, 4, 0, memory.bytes, 0, nil, $0) }
        return OpenCLBuffer(memory: memory, count: count, label: label)
    }

    public func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws {
        guard offset >= 0, offset + values.count <= buffer.count else {
            throw OpenCLError.invalidArgument("upload of \(values.count) values at \(offset) past the end of '\(buffer.label)' (\(buffer.count))")
        }
        guard !values.isEmpty else { return }
        // Blocking: the array may be freed as soon as this returns.
        try values.withUnsafeBytes { raw in
            let memory = try cl(buffer).handle
            try enqueue("clEnqueueWriteBuffer") {
                clEnqueueWriteBuffer(queue.handle, memory, cl_bool(CL_TRUE), offset * 4, raw.count, raw.baseAddress, 0, nil, $0)
            }
        }
    }

    public func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] {
        guard offset >= 0, count >= 0, offset + count <= buffer.count else {
            throw OpenCLError.invalidArgument("download of \(count) values at \(offset) past the end of '\(buffer.label)' (\(buffer.count))")
        }
        guard count > 0 else { return [] }
        var result = [Float](repeating: 0, count: count)
        try result.withUnsafeMutableBytes { raw in
            let memory = try cl(buffer).handle
            try enqueue("clEnqueueReadBuffer") {
                clEnqueueReadBuffer(queue.handle, memory, cl_bool(CL_TRUE), offset * 4, raw.count, raw.baseAddress, 0, nil, $0)
            }
        }
        return result
    }

    public func synchronize() throws {
        try check("clFinish", clFinish(queue.handle))
    }

    // MARK: Ops

    public func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws {
        let t = try weight(table)
        guard supports(.embedding(t.type)) else { throw UnsupportedOpError(backend: name, op: .embedding(t.type), context: t.name) }
        guard !tokens.isEmpty, t.columns > 0 else { return }
        for token in tokens where token < 0 || Int(token) >= t.rows {
            throw OpenCLError.invalidArgument("token \(token) outside the \(t.rows) rows of '\(t.name)'")
        }
        try requireCapacity(output, tokens.count * t.columns, "embed")
        // The ids travel in a buffer initialised at creation (no queue wait); OpenCL keeps it alive
        // until the kernel that reads it has run.
        var ids = tokens
        let idBuffer = try hostCopy(&ids, label: "token ids")
        let k = try kernel("embed_\(Self.suffix(t.type))")
        try k.set([.buffer(t.handle), .int(Int32(t.rowBytes)), .buffer(idBuffer.handle), .buffer(cl(output).handle), .int(Int32(t.columns))])
        let local = min(64, k.maxWorkGroupSize)
        try launch(k, global: [roundUp(t.columns, local), tokens.count], local: [local, 1])
    }

    public func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws {
        let w = try self.weight(weight)
        guard supports(.matmul(w.type)) else { throw UnsupportedOpError(backend: name, op: .matmul(w.type), context: w.name) }
        guard rows > 0, w.rows > 0 else { return }
        try requireCapacity(input, rows * w.columns, "matmul input")
        try requireCapacity(output, rows * w.rows, "matmul output")
        let suffix = Self.suffix(w.type), cpuDevice = device.type == "CPU"
        var choice = matmulKernel
        if choice == .automatic {
            // One kernel for every batch size, so a token's outputs never depend on the batch
            // (docs/ARCHITECTURE.md, "Batch invariance"): each kernel reduces a token's row in an
            // order that does not depend on how many tokens the launch has.
            // CPU devices (PoCL runs a work-group as a loop): per-row kernels, no local tiles.
            // GPUs: the wide mat-vec, a token per slice of the launch. The tiled kernel sums in
            // another order, so it runs only when asked for (`matmulKernel = .tiled`).
            if cpuDevice { choice = w.columns % 32 == 0 ? .rows : .vector(threadsPerRow: 1) }
            else { choice = .vector(threadsPerRow: 32) }
        }
        if choice == .rows && w.columns % 32 != 0 { choice = .tiled }
        let common: [CLKernel.Argument] = [.buffer(w.handle), .int(Int32(w.rowBytes)), .buffer(try cl(input).handle),
                                           .buffer(try cl(output).handle), .int(Int32(w.rows)), .int(Int32(w.columns))]
        switch choice {
        case .rows:
            // A work-item per output row and 8 tokens: each block is dequantized once, into registers.
            let k = try kernel("matmul_rows_\(suffix)"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 16)
            try k.set(common + [.int(Int32(rows))])
            try launch(k, global: [roundUp(w.rows, local), (rows + 7) / 8], local: [local, 1])
        case .tiled:
            let k = try kernel("matmul_\(suffix)"), tile = runtime.tile
            try k.set(common + [.int(Int32(rows))])
            try launch(k, global: [roundUp(w.rows, tile), roundUp(rows, tile)], local: [tile, tile])
        case .vector(let threadsPerRow):
            // Mat-vec: `tpr` work-items per output row stride over its units (blocks, or elements
            // for float types) and reduce in local memory; `rpg` rows per work-group.
            let k = try kernel("matvec_\(suffix)")
            // Block types in 32-element units (a K-quant block is 8 of them), float types by element.
            let units = w.type.blockSize == 1 ? w.columns : w.columns / 32
            let limit = floorPowerOfTwo(min(k.maxWorkGroupSize, cpuDevice ? 32 : 128))
            let tpr = min(limit, floorPowerOfTwo(max(threadsPerRow, 1)), ceilPowerOfTwo(max(units, 1)))
            let rpg = max(1, min(limit / tpr, ceilPowerOfTwo(w.rows)))
            try k.set(common + [.local(tpr * rpg * 4)])
            try launch(k, global: [tpr, roundUp(w.rows, rpg), rows], local: [tpr, rpg, 1])
        case .automatic:
            preconditionFailure("resolved above")
        }
    }

    public func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws {
        let g = try self.weight(weight)
        guard g.type == .f32 else { throw OpenCLError.invalidArgument("rmsNorm weight '\(g.name)' is \(g.type); norms must be F32") }
        guard rows > 0, g.columns > 0 else { return }
        try requireCapacity(input, rows * g.columns, "rmsNorm input")
        try requireCapacity(output, rows * g.columns, "rmsNorm output")
        let k = try kernel("rms_norm"), local = rowLocalSize(k, width: g.columns)
        try k.set([.buffer(cl(input).handle), .buffer(g.handle), .buffer(cl(output).handle), .int(Int32(g.columns)),
                   .float(eps), .local(local * 4)])
        try launch(k, global: [local * rows], local: [local])
    }

    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {
        let pairs = parameters.dimensions / 2
        guard rows > 0, heads > 0, pairs > 0 else { return }
        guard parameters.dimensions <= headDim, startPosition >= 0 else {
            throw OpenCLError.invalidArgument("rope over \(parameters.dimensions) of \(headDim) dimensions at \(startPosition)")
        }
        try requireCapacity(buffer, rows * heads * headDim, "rope")
        let table = try ropeTable(parameters)
        let k = try kernel("rope"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), ceilPowerOfTwo(pairs), 64)
        try k.set([.buffer(cl(buffer).handle), .buffer(table.handle), .int(Int32(heads)), .int(Int32(headDim)), .int(Int32(pairs)),
                   .int(Int32(startPosition)), .int(parameters.style == .normal ? 0 : 1)])
        try launch(k, global: [roundUp(pairs, local), heads, rows], local: [local, 1, 1])
    }

    /// Native RoPE with a position per row (one launch, positions in a small buffer).
    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws {
        let pairs = parameters.dimensions / 2
        guard rows > 0, heads > 0, pairs > 0 else { return }
        guard positions.count >= rows, parameters.dimensions <= headDim, positions.prefix(rows).allSatisfy({ $0 >= 0 && $0 <= Int(Int32.max) }) else {
            throw OpenCLError.invalidArgument("rope over \(parameters.dimensions) of \(headDim) dimensions with \(positions.count) positions for \(rows) rows")
        }
        try requireCapacity(buffer, rows * heads * headDim, "rope")
        let table = try ropeTable(parameters)
        var ids = positions.prefix(rows).map { Int32($0) }
        let positionBuffer = try hostCopy(&ids, label: "rope positions")
        let k = try kernel("rope_positions"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), ceilPowerOfTwo(pairs), 64)
        try k.set([.buffer(cl(buffer).handle), .buffer(table.handle), .int(Int32(heads)), .int(Int32(headDim)), .int(Int32(pairs)),
                   .buffer(positionBuffer.handle), .int(parameters.style == .normal ? 0 : 1)])
        try launch(k, global: [roundUp(pairs, local), heads, rows], local: [local, 1, 1])
    }

    public func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                          rows: Int, startPosition: Int, shape: AttentionShape) throws {
        guard rows > 0, shape.heads > 0 else { return }
        guard shape.kvHeads > 0, shape.heads % shape.kvHeads == 0, startPosition >= 0 else {
            throw OpenCLError.invalidArgument("attention with \(shape.heads) heads over \(shape.kvHeads) KV heads at \(startPosition)")
        }
        try requireCapacity(query, rows * shape.queryWidth, "attention query")
        try requireCapacity(output, rows * shape.queryWidth, "attention output")
        try requireCapacity(keys, (startPosition + rows) * shape.kvWidth, "attention keys")
        try requireCapacity(values, (startPosition + rows) * shape.kvWidth, "attention values")
        if usePrivateAttention(shape) {
            let k = try kernel("attention_private")
            try k.set([.buffer(cl(query).handle), .buffer(cl(keys).handle), .buffer(cl(values).handle), .buffer(cl(output).handle),
                       .int(Int32(startPosition)), .int(Int32(shape.heads)), .int(Int32(shape.kvHeads)), .int(Int32(shape.headDim)),
                       .float(shape.scale), .int(Int32(shape.window)), .float(shape.softcap), .int(Int32(rows))])
            let local = min(floorPowerOfTwo(k.maxWorkGroupSize), 8)
            try launch(k, global: [shape.heads, roundUp(rows, local)], local: [1, local])
            return
        }
        let k = try kernel("attention")
        let local = try attentionLocalSize(k, shape)
        try k.set([.buffer(cl(query).handle), .buffer(cl(keys).handle), .buffer(cl(values).handle), .buffer(cl(output).handle),
                   .int(Int32(startPosition)), .int(Int32(shape.heads)), .int(Int32(shape.kvHeads)), .int(Int32(shape.headDim)),
                   .float(shape.scale), .int(Int32(shape.window)), .float(shape.softcap)] + attentionLocals(shape, local))
        try launch(k, global: [shape.heads * local, rows], local: [local, 1])
    }

    /// Native paged attention: the kernel follows each row's block table, nothing is gathered.
    public func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                               rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        guard rows > 0, shape.heads > 0 else { return }
        guard shape.kvHeads > 0, shape.heads % shape.kvHeads == 0, layout.blockSize > 0,
              layout.tables.count >= rows, layout.lengths.count >= rows else {
            throw OpenCLError.invalidArgument("paged attention: \(rows) rows, \(layout.tables.count) tables, \(layout.lengths.count) lengths")
        }
        try requireCapacity(query, rows * shape.queryWidth, "paged attention query")
        try requireCapacity(output, rows * shape.queryWidth, "paged attention output")
        let stride = max(1, layout.tables.prefix(rows).map(\.count).max() ?? 1)
        var tables = [Int32](repeating: 0, count: rows * stride)
        var lengths = [Int32](repeating: 0, count: rows)
        let poolRows = min(keys.count, values.count) / max(shape.kvWidth, 1)
        for r in 0..<rows {
            let length = layout.lengths[r], table = layout.tables[r]
            guard length >= 1, (length + layout.blockSize - 1) / layout.blockSize <= table.count,
                  table.allSatisfy({ $0 >= 0 && (Int($0) + 1) * layout.blockSize <= poolRows }) else {
                throw OpenCLError.invalidArgument("paged attention row \(r): \(length) positions over blocks \(table) of \(layout.blockSize) in a pool of \(poolRows) rows")
            }
            lengths[r] = Int32(length)
            for (i, block) in table.enumerated() { tables[r * stride + i] = block }
        }
        let tableBuffer = try hostCopy(&tables, label: "paged tables")
        let lengthBuffer = try hostCopy(&lengths, label: "paged lengths")
        if usePrivateAttention(shape) {
            let k = try kernel("paged_attention_private")
            try k.set([.buffer(cl(query).handle), .buffer(cl(keys).handle), .buffer(cl(values).handle), .buffer(cl(output).handle),
                       .buffer(tableBuffer.handle), .int(Int32(stride)), .buffer(lengthBuffer.handle), .int(Int32(layout.blockSize)),
                       .int(Int32(shape.heads)), .int(Int32(shape.kvHeads)), .int(Int32(shape.headDim)),
                       .float(shape.scale), .int(Int32(shape.window)), .float(shape.softcap), .int(Int32(rows))])
            let local = min(floorPowerOfTwo(k.maxWorkGroupSize), 8)
            try launch(k, global: [shape.heads, roundUp(rows, local)], local: [1, local])
            return
        }
        let k = try kernel("paged_attention")
        let local = try attentionLocalSize(k, shape)
        try k.set([.buffer(cl(query).handle), .buffer(cl(keys).handle), .buffer(cl(values).handle), .buffer(cl(output).handle),
                   .buffer(tableBuffer.handle), .int(Int32(stride)), .buffer(lengthBuffer.handle), .int(Int32(layout.blockSize)),
                   .int(Int32(shape.heads)), .int(Int32(shape.kvHeads)), .int(Int32(shape.headDim)),
                   .float(shape.scale), .int(Int32(shape.window)), .float(shape.softcap)] + attentionLocals(shape, local))
        try launch(k, global: [shape.heads * local, rows], local: [local, 1])
    }

    /// The per-(head, row) kernel with the softmax state in registers: CPU devices (where the
    /// work-group kernel's barriers dominate), head dims that are multiples of 4 up to 256.
    private func usePrivateAttention(_ shape: AttentionShape) -> Bool {
        guard shape.headDim % 4 == 0, shape.headDim <= 256 else { return false }
        switch attentionKernel {
        case .automatic: return device.type == "CPU"
        case .workGroup: return false
        case .perRow: return true
        }
    }

    /// Positions per tile = work-items; local memory holds q and the running output (headDim
    /// each) and the tile's weights, reduction scratch and physical rows (local size each).
    private func attentionLocalSize(_ k: CLKernel, _ shape: AttentionShape) throws -> Int {
        var local = min(64, floorPowerOfTwo(k.maxWorkGroupSize))
        while local > 1 && (2 * shape.headDim + 3 * local) * 4 > device.localMemoryBytes { local /= 2 }
        guard (2 * shape.headDim + 3 * local) * 4 <= device.localMemoryBytes else {
            throw OpenCLError.unsupportedDevice("head dim \(shape.headDim) needs more local memory than \(device.name) has (\(device.localMemoryBytes) bytes)")
        }
        return local
    }

    private func attentionLocals(_ shape: AttentionShape, _ local: Int) -> [CLKernel.Argument] {
        [.local(shape.headDim * 4), .local(shape.headDim * 4), .local(local * 4), .local(local * 4), .local(local * 4)]
    }

    /// A small read-only buffer initialised from host memory at creation: no queue wait, and
    /// OpenCL keeps it alive until the kernels that read it have run.
    private func hostCopy(_ values: inout [Int32], label: String) throws -> CLMemory {
        try values.withUnsafeMutableBytes { raw in
            try CLMemory(context: runtime.context, ledger: runtime.ledger, bytes: raw.count,
                         flags: cl_mem_flags(CL_MEM_READ_ONLY) | cl_mem_flags(CL_MEM_COPY_HOST_PTR), host: raw.baseAddress, label: label)
        }
    }

    public func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                         rows: Int, width: Int) throws {
        guard rows > 0, width > 0 else { return }
        guard sourceRow >= 0, destinationRow >= 0,
              (sourceRow + rows) * width <= source.count, (destinationRow + rows) * width <= destination.count else {
            throw OpenCLError.invalidArgument("copyRows outside '\(source.label)' or '\(destination.label)'")
        }
        if source === destination {
            if sourceRow == destinationRow { return }
            guard abs(sourceRow - destinationRow) >= rows else {
                throw OpenCLError.invalidArgument("copyRows between overlapping rows of '\(source.label)'")
            }
        }
        let from = try cl(source).handle, to = try cl(destination).handle
        try enqueue("clEnqueueCopyBuffer") {
            clEnqueueCopyBuffer(queue.handle, from, to, sourceRow * width * 4, destinationRow * width * 4, rows * width * 4, 0, nil, $0)
        }
    }

    public func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("swiglu", gate, up, output, count)
    }

    public func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("add", a, b, output, count)
    }

    public func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try elementwise("geglu", gate, up, output, count)
    }

    public func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        let b = try weight(bias)
        guard b.type == .f32 else { throw OpenCLError.invalidArgument("bias '\(b.name)' is \(b.type); biases must be F32") }
        let count = rows * b.columns
        guard count > 0 else { return }
        try requireCapacity(buffer, count, "addBias")
        let k = try kernel("add_bias"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 256)
        try k.set([.buffer(cl(buffer).handle), .buffer(b.handle), .int(Int32(b.columns)), .int(Int32(count))])
        try launch(k, global: [roundUp(count, local)], local: [local])
    }

    public func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        guard count > 0 else { return }
        try requireCapacity(buffer, count, "scale")
        let k = try kernel("scale_values"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 256)
        try k.set([.buffer(cl(buffer).handle), .float(factor), .int(Int32(count))])
        try launch(k, global: [roundUp(count, local)], local: [local])
    }

    /// x = cap · tanh(x / cap) in place (Gemma 2's final logits), with a tanh that saturates
    /// instead of overflowing (common.cl `safe_tanh`).
    public func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        guard count > 0 else { return }
        guard cap > 0, cap.isFinite else { throw OpenCLError.invalidArgument("softcap with cap \(cap) (must be positive and finite)") }
        try requireCapacity(buffer, count, "softcap")
        let k = try kernel("softcap_values"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 256)
        try k.set([.buffer(cl(buffer).handle), .float(cap), .int(Int32(count))])
        try launch(k, global: [roundUp(count, local)], local: [local])
    }

    public func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {
        guard rows > 0, width > 0 else { return }
        try requireCapacity(buffer, rows * width, "softmax")
        let k = try kernel("softmax_rows"), local = rowLocalSize(k, width: width)
        try k.set([.buffer(cl(buffer).handle), .int(Int32(width)), .local(local * 4)])
        try launch(k, global: [local * rows], local: [local])
    }

    /// The most experts `moe_gate` routes over (its per-row scores live in local memory).
    public static let maximumExperts = 256

    /// One work-group per row (moe.cl): scores, a k-pass work-group top-k, the weights. Ids and
    /// weights stay on the device; nothing waits for the queue.
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        guard rows > 0 else { return }
        let k = gating.k
        guard experts >= 1, experts <= Self.maximumExperts, k >= 1, k <= experts else {
            throw OpenCLError.invalidArgument("moeGate: top-\(k) of \(experts) experts (1 ≤ k ≤ experts ≤ \(Self.maximumExperts))")
        }
        if gating.limitsGroups {
            guard experts % gating.groups == 0, experts / gating.groups >= 2, gating.groupsUsed >= 1,
                  k <= gating.groupsUsed * (experts / gating.groups) else {
                throw OpenCLError.invalidArgument("moeGate: \(gating.groupsUsed) of \(gating.groups) groups of \(experts) experts for top-\(k)")
            }
        }
        let bias = try selectionBias.map { try weight($0) }
        if let bias, bias.type != .f32 || bias.columns != experts {
            throw OpenCLError.invalidArgument("moeGate: selection bias '\(bias.name)' is \(bias.type) [\(bias.columns)], needs f32 [\(experts)]")
        }
        try requireCapacity(logits, rows * experts, "moeGate logits")
        try requireCapacity(ids, rows * k, "moeGate ids")
        try requireCapacity(weights, rows * k, "moeGate weights")
        let kernel = try kernel("moe_gate")
        let local = min(floorPowerOfTwo(kernel.maxWorkGroupSize), ceilPowerOfTwo(experts), device.type == "CPU" ? 16 : 64)
        try kernel.set([.buffer(cl(logits).handle), .int(Int32(experts)), .int(Int32(k)),
                        .int(gating.function == .sigmoid ? 1 : 0), .int(gating.normalize ? 1 : 0),
                        .float(ExpertGating.minimumWeightSum), .float(gating.scale),
                        .buffer(cl(ids).handle), .buffer(cl(weights).handle),
                        .buffer(bias?.handle ?? cl(logits).handle), .int(bias == nil ? 0 : 1),
                        .int(Int32(gating.limitsGroups ? gating.groups : 1)), .int(Int32(gating.groupsUsed))])
        try launch(kernel, global: [local * rows], local: [local])
    }

    public func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                          rows: Int, eps: Float) throws {
        let g = try self.weight(weight), b = try bias.map { try self.weight($0) }
        guard g.type == .f32, b.map({ $0.type == .f32 && $0.columns == g.columns }) ?? true else {
            throw OpenCLError.invalidArgument("layerNorm weight '\(g.name)' or its bias is not f32 [\(g.columns)]")
        }
        guard rows > 0, g.columns > 0 else { return }
        try requireCapacity(input, rows * g.columns, "layerNorm input")
        try requireCapacity(output, rows * g.columns, "layerNorm output")
        let k = try kernel("layer_norm"), local = rowLocalSize(k, width: g.columns)
        try k.set([.buffer(cl(input).handle), .buffer(g.handle), .buffer(b?.handle ?? g.handle), .int(b == nil ? 0 : 1),
                   .buffer(cl(output).handle), .int(Int32(g.columns)), .float(eps), .local(local * 4)])
        try launch(k, global: [local * rows], local: [local])
    }

    public func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        guard count > 0 else { return }
        try requireCapacity(input, count, "gelu")
        try requireCapacity(output, count, "gelu")
        let k = try kernel("gelu"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 256)
        try k.set([.buffer(cl(input).handle), .buffer(cl(output).handle), .int(Int32(count))])
        try launch(k, global: [roundUp(count, local)], local: [local])
    }

    public func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                            rows: Int, groups: Int, width: Int) throws {
        guard rows > 0, groups > 0, width > 0 else { return }
        guard from.offset >= 0, to.offset >= 0, from.end(rows: rows, groups: groups, width: width) <= source.count,
              to.end(rows: rows, groups: groups, width: width) <= destination.count, source !== destination else {
            throw OpenCLError.invalidArgument("copyColumns outside '\(source.label)' or '\(destination.label)', or within one buffer")
        }
        let k = try kernel("copy_columns"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 64, ceilPowerOfTwo(width))
        try k.set([.buffer(cl(source).handle), .int(Int32(from.offset)), .int(Int32(from.rowStride)), .int(Int32(from.groupStride)),
                   .buffer(cl(destination).handle), .int(Int32(to.offset)), .int(Int32(to.rowStride)), .int(Int32(to.groupStride)),
                   .int(Int32(width))])
        try launch(k, global: [roundUp(width, local), groups, rows], local: [local, 1, 1])
    }

    public func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        guard !indices.isEmpty, width > 0 else { return }
        let sourceRows = source.count / width
        guard indices.allSatisfy({ $0 >= 0 && Int($0) < sourceRows }) else {
            throw OpenCLError.invalidArgument("gatherRows: an index of \(indices) is outside the \(sourceRows) rows of '\(source.label)'")
        }
        try requireCapacity(destination, indices.count * width, "gatherRows")
        var table = indices
        let tableBuffer = try hostCopy(&table, label: "gather indices")
        let k = try kernel("gather_rows"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 64)
        try k.set([.buffer(cl(source).handle), .buffer(tableBuffer.handle), .buffer(cl(destination).handle), .int(Int32(width))])
        try launch(k, global: [roundUp(width, local), indices.count], local: [local, 1])
    }

    /// Distinct indices (an expert's tokens, always so in the engine) add every row at once;
    /// repeated ones add row by row per column, in order, so the sums round as the oracle's do.
    public func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                               width: Int) throws {
        guard indices.count == factors.count else {
            throw OpenCLError.invalidArgument("scatterAddRows: \(indices.count) indices but \(factors.count) factors")
        }
        guard !indices.isEmpty, width > 0 else { return }
        let destinationRows = destination.count / width
        guard indices.allSatisfy({ $0 >= 0 && Int($0) < destinationRows }) else {
            throw OpenCLError.invalidArgument("scatterAddRows: an index of \(indices) is outside the \(destinationRows) rows of '\(destination.label)'")
        }
        try requireCapacity(source, indices.count * width, "scatterAddRows")
        let count = indices.count
        let distinct = Set(indices).count == count
        // One small buffer: the row indices, then the factors' bit patterns.
        var table = indices + factors.map { Int32(bitPattern: $0.bitPattern) }
        let tableBuffer = try hostCopy(&table, label: "scatter indices")
        let k = try kernel("scatter_add_rows"), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 64)
        let stride = distinct ? count : 1
        try k.set([.buffer(cl(source).handle), .buffer(tableBuffer.handle), .buffer(cl(destination).handle),
                   .int(Int32(width)), .int(Int32(count)), .int(Int32(stride))])
        try launch(k, global: [roundUp(width, local), stride], local: [local, 1])
    }

    public func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] {
        guard rows > 0 else { return [] }
        guard width > 0 else { throw OpenCLError.invalidArgument("argmax over rows of width 0") }
        try requireCapacity(buffer, rows * width, "argmax")
        if argmaxResult == nil || argmaxResult!.bytes < rows * 4 {
            argmaxResult = try CLMemory(context: runtime.context, ledger: runtime.ledger, bytes: max(rows, 64) * 4,
                                        flags: cl_mem_flags(CL_MEM_READ_WRITE), label: "argmax ids")
        }
        let result = argmaxResult!
        let k = try kernel("argmax_rows"), local = rowLocalSize(k, width: width)
        try k.set([.buffer(cl(buffer).handle), .int(Int32(width)), .buffer(result.handle), .local(local * 4), .local(local * 4)])
        try launch(k, global: [local * rows], local: [local])
        var ids = [Int32](repeating: 0, count: rows)
        try ids.withUnsafeMutableBytes { raw in
            try enqueue("clEnqueueReadBuffer") {
                clEnqueueReadBuffer(queue.handle, result.handle, cl_bool(CL_TRUE), 0, raw.count, raw.baseAddress, 0, nil, $0)
            }
        }
        return ids
    }

    // MARK: Helpers

    private func elementwise(_ name: String, _ a: BackendBuffer, _ b: BackendBuffer, _ output: BackendBuffer, _ count: Int) throws {
        guard count > 0 else { return }
        for buffer in [a, b, output] { try requireCapacity(buffer, count, name) }
        let k = try kernel(name), local = min(floorPowerOfTwo(k.maxWorkGroupSize), 256)
        try k.set([.buffer(cl(a).handle), .buffer(cl(b).handle), .buffer(cl(output).handle), .int(Int32(count))])
        try launch(k, global: [roundUp(count, local)], local: [local])
    }

    private func launch(_ kernel: CLKernel, global: [Int], local: [Int]) throws {
        var global = global, local = local
        try enqueue("clEnqueueNDRangeKernel") {
            clEnqueueNDRangeKernel(queue.handle, kernel.handle, cl_uint(global.count), nil, &global, &local, 0, nil, $0)
        }
    }

    /// Every command is enqueued through here. With device timing on and a label set, it gets
    /// an event, kept until its times are read; otherwise none: the normal path creates no events.
    private func enqueue(_ call: StaticString, _ command: (UnsafeMutablePointer<cl_event?>?) -> cl_int) throws {
        guard let timer = eventTimer, let label = timer.label else { return try check(call, command(nil)) }
        var event: cl_event?
        try check(call, command(&event))
        if let event { try timer.record(event, label: label) }
    }

    private func kernel(_ name: String) throws -> CLKernel {
        if let k = kernels[name] { return k }
        let k = try CLKernel(program: runtime.program, name: name, device: runtime.device)
        kernels[name] = k
        return k
    }

    /// A power-of-two work-group for a row reduction: up to 256 work-items, no more than the row needs.
    private func rowLocalSize(_ k: CLKernel, width: Int) -> Int {
        min(floorPowerOfTwo(min(k.maxWorkGroupSize, device.localMemoryBytes / 8)), 256, ceilPowerOfTwo(width))
    }

    /// Angles per position for each pair: positionScale · base^(−2i/dims) / factor[i], computed in
    /// double on the host like the CPU oracle, uploaded once per distinct parameter set.
    private func ropeTable(_ p: RopeParameters) throws -> OpenCLBuffer {
        if let entry = ropeTables.first(where: { $0.0 == p }) { return entry.1 }
        let pairs = p.dimensions / 2
        let table: [Float] = (0..<pairs).map { i in
            var f = Double(p.positionScale) * pow(Double(p.base), -2.0 * Double(i) / Double(p.dimensions))
            if let factors = p.frequencyFactors { f /= Double(factors[i]) }
            return Float(f)
        }
        let buffer = try makeBuffer(count: pairs, label: "rope.freq") as! OpenCLBuffer
        try upload(table, to: buffer, offset: 0)
        ropeTables.append((p, buffer))
        return buffer
    }

    private func requireCapacity(_ buffer: BackendBuffer, _ needed: Int, _ op: String) throws {
        if needed > buffer.count {
            throw OpenCLError.invalidArgument("\(op) needs \(needed) values but '\(buffer.label)' holds \(buffer.count)")
        }
    }

    private func cl(_ buffer: BackendBuffer) throws -> OpenCLBuffer {
        guard let b = buffer as? OpenCLBuffer else {
            throw OpenCLError.invalidArgument("buffer '\(buffer.label)' does not belong to the OpenCL backend")
        }
        return b
    }

    private func weight(_ weight: BackendWeight) throws -> OpenCLWeight {
        guard let w = weight as? OpenCLWeight else {
            throw OpenCLError.invalidArgument("weight '\(weight.name)' does not belong to the OpenCL backend")
        }
        return w
    }

    static func suffix(_ type: GGMLType) -> String {
        switch type {
        case .f32: return "f32"
        case .f16: return "f16"
        case .bf16: return "bf16"
        case .q8_0: return "q8_0"
        case .q4_0: return "q4_0"
        case .q4_1: return "q4_1"
        case .q5_0: return "q5_0"
        case .q5_1: return "q5_1"
        case .q4_K: return "q4_K"
        case .q5_K: return "q5_K"
        case .q6_K: return "q6_K"
        default: return "unsupported"
        }
    }
}

@inline(__always) func roundUp(_ value: Int, _ multiple: Int) -> Int { (value + multiple - 1) / multiple * multiple }
@inline(__always) func floorPowerOfTwo(_ value: Int) -> Int { value < 1 ? 1 : 1 << (Int.bitWidth - 1 - value.leadingZeroBitCount) }
@inline(__always) func ceilPowerOfTwo(_ value: Int) -> Int { value <= 1 ? 1 : 1 << (Int.bitWidth - (value - 1).leadingZeroBitCount) }
