import Foundation
import LLM
import XCTest

// `--profile` on the GPU backends (ProfilingBackend over a DeviceTimedBackend): op times come
// from the device (OpenCL event profiling, Vulkan timestamp queries), nothing is synchronized
// per op, and the run computes exactly what an unprofiled one does.
final class ProfilingConformanceTests: XCTestCase {
    static let model = "tiny-llama-q4_1"

    /// What a short greedy run produced and how long it took on the host clock.
    struct Decode {
        var ids: [Int32] = []
        /// The last row of logits after the prompt and after each decode step.
        var logits: [[Float]] = []
        var seconds = 0.0
    }

    /// The 24-token prompt in one batch (matmul kernels), then `steps` greedy decode steps
    /// (mat-vec). Each step downloads its logits and takes the next id with `argmax`, so both
    /// read-back paths run. The clock starts after loading, at the first op.
    static func decode(_ backend: Backend, steps: Int = 6) throws -> Decode {
        let path = ModelConformanceTests.fixtures.appendingPathComponent("\(model).gguf").path
        let model = try Model.load(path: path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 64)
        let prompt = try ModelConformanceTests.ids(Self.model, "prompt_ids")
        let vocab = model.config.vocabularySize
        let clock = ContinuousClock(), start = clock.now
        var result = Decode()
        var logits = try session.evaluate(prompt, logits: .last)
        for step in 0...steps {
            result.logits.append(try backend.download(logits, offset: 0, count: vocab))
            let next = try backend.argmax(logits, rows: 1, width: vocab)[0]
            result.ids.append(next)
            if step < steps { logits = try session.evaluate([next], logits: .last) }
        }
        let elapsed = clock.now - start
        result.seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return result
    }

    /// The op kinds a dense llama prompt and decode must show device time for.
    static let expectedKinds = ["matmul Q4_1", "matvec Q4_1", "embed Q4_1", "attention", "rmsNorm", "rope", "swiglu", "add",
                                "copyRows", "argmax"]

    func testDeviceTimestampsTimeEveryOpKindWithoutChangingResults() throws {
        try forEachBackend { backend, _ in
            let plain = try Self.decode(backend)
            let profiler = ProfilingBackend(backend)
            guard case .device(let source) = profiler.timing else {
                return XCTFail("\(backend.name): profiling fell back to \(profiler.timing)")
            }
            XCTAssertEqual(source, (backend as? DeviceTimedBackend)?.deviceTimingSource)
            let profiled = try Self.decode(profiler)
            let report = try profiler.report()

            XCTAssertEqual(profiled.ids, plain.ids, "\(backend.name): token ids with and without profiling")
            XCTAssertEqual(profiled.logits, plain.logits, "\(backend.name): logits with and without profiling (bit for bit)")

            for kind in Self.expectedKinds {
                guard let entry = report.entry(kind) else {
                    XCTFail("\(backend.name): no '\(kind)' in \(report.entries.map(\.kind))")
                    continue
                }
                XCTAssertGreaterThan(entry.deviceCommands ?? 0, 0, "\(backend.name) \(kind): device commands")
            }
            for entry in report.entries where entry.deviceCommands != 0 {
                XCTAssertNotNil(entry.deviceCommands, "\(backend.name) \(entry.kind): a device-timed entry")
                XCTAssertGreaterThan(entry.seconds, 0, "\(backend.name) \(entry.kind): device time")
            }
            // 6 steps × (7 mat-vecs a layer × 4 layers + the tied head), plus the prompt's head on its last row.
            XCTAssertEqual(report.entry("matvec Q4_1")?.calls, 6 * 29 + 1, "\(backend.name): mat-vec calls")
            // Device intervals do not overlap and lie inside the run, so their sum cannot exceed it.
            XCTAssertGreaterThan(report.totalSeconds, 0)
            XCTAssertLessThanOrEqual(report.totalSeconds, report.wallSeconds, "\(backend.name): device time ≤ the profiler's wall time")
            XCTAssertLessThanOrEqual(report.wallSeconds, profiled.seconds, "\(backend.name): the profiler's wall time ≤ the run's")
        }
    }

    /// Host timing stays available on a GPU backend (and is what a device without timestamps gets).
    func testHostTimingOnAGPUBackend() throws {
        try forEachBackend { backend, _ in
            let plain = try Self.decode(backend, steps: 2)
            let profiler = ProfilingBackend(backend, deviceTimestamps: false)
            XCTAssertEqual(profiler.timing, .host(unavailable: nil))
            let profiled = try Self.decode(profiler, steps: 2)
            XCTAssertEqual(profiled.ids, plain.ids)
            let report = try profiler.report()
            XCTAssertTrue(report.entries.allSatisfy { $0.deviceCommands == nil && $0.seconds > 0 }, "\(report.entries)")
            XCTAssertLessThanOrEqual(report.totalSeconds, report.wallSeconds)
        }
    }

    /// When the profiler goes away the backend is untimed again: a label is ignored and nothing
    /// is collected.
    func testTimingEndsWithTheProfiler() throws {
        try forEachBackend { backend, _ in
            guard let timed = backend as? DeviceTimedBackend else { return XCTFail("\(backend.name) has no device timing") }
            do {
                let profiler = ProfilingBackend(backend)
                let x = try makeFilled(profiler, [1, 2, 3], label: "x")
                try profiler.add(x, x, into: x, count: 3)
                XCTAssertEqual(try profiler.download(x, offset: 0, count: 3), [2, 4, 6])
                XCTAssertEqual(try profiler.report().entry("add")?.deviceCommands, 1)
            }
            let x = try makeFilled(backend, [1, 2, 3], label: "x")
            timed.setDeviceTimingLabel("add")
            try backend.add(x, x, into: x, count: 3)
            timed.setDeviceTimingLabel(nil)
            try backend.synchronize()
            XCTAssertEqual(try timed.collectDeviceTimes(), [:], "\(backend.name): timed after the profiler was released")
        }
    }
}
