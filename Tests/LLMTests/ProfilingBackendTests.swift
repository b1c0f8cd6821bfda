import BackendCPU
import LLM
import XCTest

/// What `--profile` asks of a backend, checked without a GPU: device-timed backends get a label
/// per op and no synchronization; the others are synchronized after every op.
final class ProfilingBackendTests: XCTestCase {
    /// Greedy prompt and `steps` decode steps of a tiny model through `backend`.
    private func decode(_ backend: Backend, steps: Int = 3) throws -> [Int32] {
        let model = try Model.load(path: Fixtures.tiny("tiny-llama-q8_0.gguf"), backend: backend)
        let session = try InferenceSession(model: model, contextLength: 32)
        var ids = [try session.evaluateGreedy([1, 20, 30, 40])]
        for _ in 0..<steps { ids.append(try session.evaluateGreedy([ids.last!])) }
        return ids
    }

    func testDeviceTimedBackendRunsUnsynchronizedAndIsReadByLabel() throws {
        let want = try decode(CPUBackend(threads: 1))
        let fake = FakeDeviceTimedBackend()
        let profiler = ProfilingBackend(fake)
        XCTAssertEqual(profiler.timing, .device(source: "fake timestamps"))
        XCTAssertEqual(try decode(profiler), want)
        XCTAssertEqual(fake.synchronizations, 0, "a device-timed run must not be synchronized per op")
        XCTAssertEqual(fake.unlabelledOps, [], "every op runs under its label")
        XCTAssertNil(fake.label, "the label is cleared after each op")
        XCTAssertGreaterThanOrEqual(fake.collections, 4, "times are read after each argmax")

        let report = try profiler.report()
        XCTAssertEqual(fake.synchronizations, 0, "nothing was in flight after the last argmax")
        XCTAssertEqual(report.entry("argmax")?.calls, 4)
        XCTAssertEqual(report.entry("matvec Q8_0")?.calls, 3 * 29 + 1, "3 steps of 7 × 4 layers + the head, and the prompt's head")
        XCTAssertEqual(report.entry("matmul Q8_0")?.calls, 28, "the 4-token prompt, batched")
        for entry in report.entries {
            // The fake device takes 1 µs per op: each kind's time is its calls, exactly attributed.
            XCTAssertEqual(entry.deviceCommands, entry.calls, entry.kind)
            XCTAssertEqual(entry.seconds, Double(entry.calls) * 1e-6, accuracy: 1e-12, entry.kind)
        }
        XCTAssertGreaterThan(report.wallSeconds, 0)
    }

    func testHostTimingSynchronizesEveryOp() throws {
        let fake = FakeDeviceTimedBackend()
        let profiler = ProfilingBackend(fake, deviceTimestamps: false)
        XCTAssertEqual(profiler.timing, .host(unavailable: nil))
        XCTAssertFalse(fake.timing)
        _ = try decode(profiler)
        let report = try profiler.report()
        XCTAssertEqual(fake.synchronizations, report.entries.reduce(0) { $0 + $1.calls })
        XCTAssertTrue(report.entries.allSatisfy { $0.deviceCommands == nil })
        XCTAssertLessThanOrEqual(report.totalSeconds, report.wallSeconds)
    }

    func testDeviceWithoutTimestampsFallsBackToTheHostClockAndSaysWhy() throws {
        let fake = FakeDeviceTimedBackend()
        fake.unavailable = "timestampValidBits is 0"
        let profiler = ProfilingBackend(fake)
        XCTAssertEqual(profiler.timing, .host(unavailable: "timestampValidBits is 0"))
        _ = try decode(profiler, steps: 1)
        XCTAssertGreaterThan(fake.synchronizations, 0)
        XCTAssertEqual(ProfilingBackend(CPUBackend(threads: 1)).timing, .host(unavailable: nil))
    }

    func testReportWaitsForWorkInFlightAndResetDropsIt() throws {
        let fake = FakeDeviceTimedBackend()
        let profiler = ProfilingBackend(fake)
        let x = try profiler.makeBuffer(count: 4, label: "x")
        try profiler.add(x, x, into: x, count: 4)
        XCTAssertEqual(try profiler.report().entry("add")?.deviceCommands, 1)
        XCTAssertEqual(fake.synchronizations, 1, "report() waits for the add")
        try profiler.add(x, x, into: x, count: 4)
        profiler.reset()
        XCTAssertEqual(try profiler.report().entries.count, 0)
        try profiler.scale(x, by: 2, count: 4)
        let report = try profiler.report()
        XCTAssertEqual(report.entries.map(\.kind), ["scale"], "the add before reset() is not counted after it")
    }

    func testTimingIsTurnedOffWithTheProfiler() throws {
        let fake = FakeDeviceTimedBackend()
        do {
            let profiler = ProfilingBackend(fake)
            XCTAssertTrue(fake.timing)
            _ = profiler
        }
        XCTAssertFalse(fake.timing)
    }
}

/// A CPU backend posing as a device with timestamps: each op adds one command of 1 µs to the
/// label set when it runs. It counts synchronizations and collections, and ops run unlabelled.
final class FakeDeviceTimedBackend: DeviceTimedBackend {
    private let cpu = CPUBackend(threads: 1)
    var unavailable: String?
    private(set) var timing = false
    private(set) var label: String?
    private(set) var synchronizations = 0
    private(set) var collections = 0
    private(set) var unlabelledOps: [String] = []
    private var times: [String: DeviceTime] = [:]

    var deviceTimingSource: String { "fake timestamps" }
    func setDeviceTiming(_ enabled: Bool) throws {
        if enabled, let unavailable { throw DeviceTimingUnavailable(unavailable) }
        timing = enabled
    }
    func setDeviceTimingLabel(_ label: String?) { self.label = label }
    func collectDeviceTimes() throws -> [String: DeviceTime] {
        collections += 1
        defer { times.removeAll() }
        return times
    }

    private func op<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
        if timing {
            if let label { times[label, default: DeviceTime()] += DeviceTime(commands: 1, nanoseconds: 1000) }
            else { unlabelledOps.append(name) }
        }
        return try body()
    }

    var name: String { "fake" }
    var deviceDescription: String { "fake device" }
    func supports(_ op: BackendOp) -> Bool { cpu.supports(op) }
    func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
        try cpu.makeWeight(name: name, type: type, rows: rows, columns: columns, bytes: bytes)
    }
    func makeBuffer(count: Int, label: String) throws -> BackendBuffer { try cpu.makeBuffer(count: count, label: label) }
    func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws {
        try op("upload") { try cpu.upload(values, to: buffer, offset: offset) }
    }
    func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] {
        try op("download") { try cpu.download(buffer, offset: offset, count: count) }
    }
    func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws {
        try op("embed") { try cpu.embed(table, tokens: tokens, into: output) }
    }
    func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws {
        try op("matmul") { try cpu.matmul(weight, input, into: output, rows: rows) }
    }
    func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws {
        try op("rmsNorm") { try cpu.rmsNorm(input, weight: weight, into: output, rows: rows, eps: eps) }
    }
    func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {
        try op("rope") { try cpu.rope(buffer, rows: rows, heads: heads, headDim: headDim, startPosition: startPosition, parameters: parameters) }
    }
    func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int], parameters: RopeParameters) throws {
        try op("rope") { try cpu.rope(buffer, rows: rows, heads: heads, headDim: headDim, positions: positions, parameters: parameters) }
    }
    func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                        rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        try op("pagedAttention") {
            try cpu.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
        }
    }
    func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                   rows: Int, startPosition: Int, shape: AttentionShape) throws {
        try op("attention") {
            try cpu.attention(query: query, keys: keys, values: values, into: output, rows: rows, startPosition: startPosition, shape: shape)
        }
    }
    func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int,
                  rows: Int, width: Int) throws {
        try op("copyRows") {
            try cpu.copyRows(source, sourceRow: sourceRow, into: destination, destinationRow: destinationRow, rows: rows, width: width)
        }
    }
    func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try op("swiglu") { try cpu.swiglu(gate: gate, up: up, into: output, count: count) }
    }
    func addBias(_ buffer: BackendBuffer, bias: BackendWeight, rows: Int) throws {
        try op("addBias") { try cpu.addBias(buffer, bias: bias, rows: rows) }
    }
    func scale(_ buffer: BackendBuffer, by factor: Float, count: Int) throws {
        try op("scale") { try cpu.scale(buffer, by: factor, count: count) }
    }
    func softcap(_ buffer: BackendBuffer, cap: Float, count: Int) throws {
        try op("softcap") { try cpu.softcap(buffer, cap: cap, count: count) }
    }
    func geglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try op("geglu") { try cpu.geglu(gate: gate, up: up, into: output, count: count) }
    }
    func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {
        try op("add") { try cpu.add(a, b, into: output, count: count) }
    }
    func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {
        try op("softmax") { try cpu.softmax(buffer, rows: rows, width: width) }
    }
    func moeGate(_ logits: BackendBuffer, rows: Int, experts: Int, gating: ExpertGating, ids: BackendBuffer, weights: BackendBuffer) throws {
        try op("moeGate") { try cpu.moeGate(logits, rows: rows, experts: experts, gating: gating, ids: ids, weights: weights) }
    }
    func gatherRows(_ source: BackendBuffer, indices: [Int32], into destination: BackendBuffer, width: Int) throws {
        try op("gatherRows") { try cpu.gatherRows(source, indices: indices, into: destination, width: width) }
    }
    func scatterAddRows(_ source: BackendBuffer, indices: [Int32], factors: [Float], into destination: BackendBuffer, width: Int) throws {
        try op("scatterAddRows") { try cpu.scatterAddRows(source, indices: indices, factors: factors, into: destination, width: width) }
    }
    func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] {
        try op("argmax") { try cpu.argmax(buffer, rows: rows, width: width) }
    }
    func synchronize() throws {
        synchronizations += 1
        try cpu.synchronize()
    }
}
