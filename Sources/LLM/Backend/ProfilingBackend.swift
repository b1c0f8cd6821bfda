import Foundation

/// Wraps a backend and times every op by kind (`--profile`), in one of two ways:
///
/// - device timestamps, when the backend can time its own work (`DeviceTimedBackend`: OpenCL
///   event profiling, Vulkan timestamp queries). Before each op the backend is told the op's
///   kind; nothing is synchronized, so the run is pipelined as an unprofiled one, and the times
///   are the device's execution times, read after each `download`, `argmax` and `synchronize`.
/// - the host clock otherwise (the CPU backend, a GPU without timestamps): each op is followed
///   by `synchronize()`, so the time is the op's own (enqueue to completion) but an asynchronous
///   backend runs slower than unprofiled: compare shares, not totals, with an unprofiled run.
///
/// Either way the report also has the wall time from the first op to the last result, so the
/// gap between it and the summed op times (host work, launch overhead, idle device) shows.
public final class ProfilingBackend: Backend {
    /// How the ops were timed.
    public enum Timing: Equatable, Sendable {
        /// The device's own clock (`source` says which mechanism); ops are not synchronized.
        case device(source: String)
        /// The host clock, each op synchronized. `unavailable` says why device timestamps were
        /// not used when the backend has them in principle (nil: the backend has none, e.g. CPU,
        /// or they were not asked for).
        case host(unavailable: String?)
    }

    public let inner: Backend
    public let timing: Timing
    private let deviceTimer: DeviceTimedBackend?
    private var calls: [String: Int] = [:]
    private var hostSeconds: [String: Double] = [:]
    private var deviceTimes: [String: DeviceTime] = [:]
    /// Ops enqueued since the device times were last collected.
    private var uncollected = false
    private var firstOp: ContinuousClock.Instant?
    private var lastResult: ContinuousClock.Instant?
    private let clock = ContinuousClock()

    /// Uses device timestamps when `deviceTimestamps` and the backend can provide them, else the
    /// host clock (`timing` says which, and why).
    public init(_ inner: Backend, deviceTimestamps: Bool = true) {
        self.inner = inner
        var timer: DeviceTimedBackend?
        var timing = Timing.host(unavailable: nil)
        if deviceTimestamps, let candidate = inner as? DeviceTimedBackend {
            do {
                try candidate.setDeviceTiming(true)
                timer = candidate
                timing = .device(source: candidate.deviceTimingSource)
            } catch let error as DeviceTimingUnavailable {
                timing = .host(unavailable: error.reason)
            } catch {
                timing = .host(unavailable: "\(error)")
            }
        }
        self.deviceTimer = timer
        self.timing = timing
    }

    deinit {
        // The backend may outlive the wrapper (a shared test backend): leave it untimed.
        try? deviceTimer?.setDeviceTiming(false)
    }

    public var name: String { inner.name }
    public var deviceDescription: String { inner.deviceDescription }
    public var memoryCapacity: UInt64? { inner.memoryCapacity }
    public func supports(_ op: BackendOp) -> Bool { inner.supports(op) }

    /// Forgets what was measured (device work still in flight is waited for and dropped).
    public func reset() {
        if deviceTimer != nil, uncollected {
            try? inner.synchronize()
            _ = try? deviceTimer?.collectDeviceTimes()
        }
        uncollected = false
        calls.removeAll()
        hostSeconds.removeAll()
        deviceTimes.removeAll()
        firstOp = nil
        lastResult = nil
    }

    /// What was measured since creation or `reset()`, op kinds by time, largest first. With
    /// device timestamps, work still in flight is waited for first.
    public func report() throws -> ProfileReport {
        if deviceTimer != nil, uncollected {
            try inner.synchronize()
            try collect()
        }
        let entries = calls.map { kind, count -> ProfileReport.Entry in
            if deviceTimer != nil {
                let time = deviceTimes[kind] ?? DeviceTime()
                return .init(kind: kind, calls: count, seconds: time.seconds, deviceCommands: time.commands)
            }
            return .init(kind: kind, calls: count, seconds: hostSeconds[kind] ?? 0, deviceCommands: nil)
        }.sorted { ($0.seconds, $1.kind) > ($1.seconds, $0.kind) }
        var wall = 0.0
        if let firstOp, let lastResult { wall = Self.seconds(lastResult - firstOp) }
        return ProfileReport(timing: timing, entries: entries, wallSeconds: wall)
    }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }

    /// Runs one op under `kind`. `collects`: the op waits for the device (download, argmax),
    /// so the device times of everything before it can be read without an extra wait.
    private func timed<T>(_ kind: @autoclosure () -> String, collects: Bool = false, _ body: () throws -> T) throws -> T {
        let key = kind()
        let start = clock.now
        if firstOp == nil { firstOp = start }
        calls[key, default: 0] += 1
        if let deviceTimer {
            deviceTimer.setDeviceTimingLabel(key)
            let result: T
            do {
                result = try body()
            } catch {
                deviceTimer.setDeviceTimingLabel(nil)
                throw error
            }
            deviceTimer.setDeviceTimingLabel(nil)
            uncollected = true
            if collects { try collect() }
            return result
        }
        let result = try body()
        try inner.synchronize()
        let end = clock.now
        hostSeconds[key, default: 0] += Self.seconds(end - start)
        lastResult = end
        return result
    }

    private func collect() throws {
        guard let deviceTimer else { return }
        for (kind, time) in try deviceTimer.collectDeviceTimes() { deviceTimes[kind, default: DeviceTime()] += time }
        uncollected = false
        lastResult = clock.now
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
        try timed("download", collects: true) { try inner.download(buffer, offset: offset, count: count) }
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
        try timed("argmax", collects: true) { try inner.argmax(buffer, rows: rows, width: width) }
    }
    public func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, selectionBias: BackendWeight?,
                        ids: BackendBuffer, weights: BackendBuffer) throws {
        try timed("moeGate") {
            try inner.moeGate(logits, rows: rows, experts: experts, gating: gating, selectionBias: selectionBias, ids: ids, weights: weights)
        }
    }
    public func layerNorm(_ input: BackendBuffer, weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer,
                          rows: Int, eps: Float) throws {
        try timed("layerNorm") { try inner.layerNorm(input, weight: weight, bias: bias, into: output, rows: rows, eps: eps) }
    }
    public func gelu(_ input: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try timed("gelu") { try inner.gelu(input, into: output, count: count) }
    }
    public func copyColumns(_ source: BackendBuffer, _ from: ColumnBlock, into destination: BackendBuffer, _ to: ColumnBlock,
                            rows: Int, groups: Int, width: Int) throws {
        try timed("copyColumns") {
            try inner.copyColumns(source, from, into: destination, to, rows: rows, groups: groups, width: width)
        }
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
    public func synchronize() throws {
        try inner.synchronize()
        if deviceTimer != nil, uncollected { try collect() }
    }
}

/// `ProfilingBackend.report()`: time per op kind and the wall time around it.
public struct ProfileReport: Sendable {
    public struct Entry: Sendable, Equatable {
        /// "matvec Q4_1", "attention", "rmsNorm", ...
        public var kind: String
        /// Calls of the op.
        public var calls: Int
        /// Device execution time (device timing), or enqueue-to-completion host time.
        public var seconds: Double
        /// Device timing: the commands (kernels, copies, writes) the device ran for these calls;
        /// 0 for an op that is host work only (reading mapped memory). nil with host timing.
        public var deviceCommands: Int?
    }
    public var timing: ProfilingBackend.Timing
    /// By time, largest first.
    public var entries: [Entry]
    /// From the first op to the last result (the end of the last op, with host timing).
    public var wallSeconds: Double
    /// The sum of the op times: device busy time, with device timing.
    public var totalSeconds: Double { entries.reduce(0) { $0 + $1.seconds } }
    public func entry(_ kind: String) -> Entry? { entries.first { $0.kind == kind } }
}
