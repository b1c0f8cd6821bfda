import Foundation

/// Wraps a backend and times every op by kind (`--profile`). On an asynchronous backend each op
/// is followed by `synchronize()`, so the time is the op's own (enqueue to completion) but the
/// run is slower than an unprofiled one: compare shares, not totals, with an unprofiled run.
public final class ProfilingBackend: Backend {
    public let inner: Backend
    public private(set) var entries: [String: (calls: Int, seconds: Double)] = [:]
    private let clock = ContinuousClock()

    public init(_ inner: Backend) {
        self.inner = inner
    }

    public var name: String { inner.name }
    public var deviceDescription: String { inner.deviceDescription }
    public var memoryCapacity: UInt64? { inner.memoryCapacity }
    public func supports(_ op: BackendOp) -> Bool { inner.supports(op) }

    public func reset() { entries.removeAll() }

    /// Op kinds by total time, largest first.
    public var report: [(kind: String, calls: Int, seconds: Double)] {
        entries.map { ($0.key, $0.value.calls, $0.value.seconds) }.sorted { $0.seconds > $1.seconds }
    }

    private func timed<T>(_ kind: @autoclosure () -> String, _ body: () throws -> T) throws -> T {
        let start = clock.now
        let result = try body()
        try inner.synchronize()
        let d = clock.now - start
        let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
        let key = kind()
        entries[key, default: (0, 0)].calls += 1
        entries[key, default: (0, 0)].seconds += seconds
        return result
    }

    public func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
        try inner.makeWeight(name: name, type: type, rows: rows, columns: columns, bytes: bytes)
    }
    public func makeBuffer(count: Int, label: String) throws -> BackendBuffer {
        try inner.makeBuffer(count: count, label: label)
    }
    public func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws {
        try timed("upload") { try inner.upload(values, to: buffer, offset: offset) }
    }
    public func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] {
        try timed("download") { try inner.download(buffer, offset: offset, count: count) }
    }
    public func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws {
        try timed("embed \(table.type)") { try inner.embed(table, tokens: tokens, into: output) }
    }
    public func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws {
        try timed("\(rows == 1 ? "matvec" : "matmul") \(weight.type)") { try inner.matmul(weight, input, into: output, rows: rows) }
    }
    public func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws {
        try timed("rmsNorm") { try inner.rmsNorm(input, weight: weight, into: output, rows: rows, eps: eps) }
    }
    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {
        try timed("rope") { try inner.rope(buffer, rows: rows, heads: heads, headDim: headDim, startPosition: startPosition, parameters: parameters) }
    }
    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws {
        try timed("rope") { try inner.rope(buffer, rows: rows, heads: heads, headDim: headDim, positions: positions, parameters: parameters) }
    }
    public func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                          rows: Int, startPosition: Int, shape: AttentionShape) throws {
        try timed("attention") {
            try inner.attention(query: query, keys: keys, values: values, into: output, rows: rows, startPosition: startPosition, shape: shape)
        }
    }
    public func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                               rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        try timed("attention (paged)") {
            try inner.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
        }
    }
    public func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                         rows: Int, width: Int) throws {
        try timed("copyRows") {
            try inner.copyRows(source, sourceRow: sourceRow, into: destination, destinationRow: destinationRow, rows: rows, width: width)
        }
    }
    public func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try timed("swiglu") { try inner.swiglu(gate: gate, up: up, into: output, count: count) }
    }
    public func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        try timed("addBias") { try inner.addBias(buffer, bias: bias, rows: rows) }
    }
    public func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        try timed("scale") { try inner.scale(buffer, by: factor, count: count) }
    }
    public func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try timed("geglu") { try inner.geglu(gate: gate, up: up, into: output, count: count) }
    }
    public func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        try timed("softcap") { try inner.softcap(buffer, cap: cap, count: count) }
    }
    public func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try timed("add") { try inner.add(a, b, into: output, count: count) }
    }
    public func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {
        try timed("softmax") { try inner.softmax(buffer, rows: rows, width: width) }
    }
    public func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] {
        try timed("argmax") { try inner.argmax(buffer, rows: rows, width: width) }
    }
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        try timed("moeGate") { try inner.moeGate(logits, rows: rows, experts: experts, gating: gating, ids: ids, weights: weights) }
    }
    public func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        try timed("gatherRows") { try inner.gatherRows(source, indices: indices, into: destination, width: width) }
    }
    public func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer,
                               width: Int) throws {
        try timed("scatterAddRows") {
            try inner.scatterAddRows(source, indices: indices, factors: factors, into: destination, width: width)
        }
    }
    public func synchronize() throws { try inner.synchronize() }
}
