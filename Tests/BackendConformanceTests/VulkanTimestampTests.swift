@testable import BackendVulkan
import Foundation
import LLM
import XCTest

// Vulkan timestamp queries (`--profile`): pool capacity within one command buffer, and that
// timing adds no submits.
final class VulkanTimestampTests: XCTestCase {
    /// One batch recording more timed commands than a query pool holds takes more pools instead
    /// of submitting early, and every command is read back under its label.
    func testPoolsGrowWithinOneBatch() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        try vk.setDeviceTiming(true)
        defer { try? vk.setDeviceTiming(false) }
        let x = try makeFilled(vk, [Float](repeating: 1, count: 64), label: "x")
        let y = try vk.makeBuffer(count: 64, label: "y")
        try vk.synchronize()
        let commands = Int(TimestampQueries.poolQueries) + 1000   // n + 1 timestamps: more than one pool
        let before = vk.statistics.submits
        vk.setDeviceTimingLabel("add")
        for _ in 0..<commands { try vk.add(x, x, into: y, count: 64) }
        vk.setDeviceTimingLabel("swiglu")
        try vk.swiglu(gate: x, up: y, into: y, count: 64)
        vk.setDeviceTimingLabel(nil)
        try vk.add(y, x, into: y, count: 64)   // unlabelled: not timed
        XCTAssertEqual(vk.statistics.submits, before, "filling a query pool must not submit")
        XCTAssertGreaterThanOrEqual(vk.context.timestamps?.poolCount ?? 0, 2)

        let times = try vk.collectDeviceTimes()
        XCTAssertEqual(vk.statistics.submits, before + 1, "collecting submits the recorded batch once")
        XCTAssertEqual(Set(times.keys), ["add", "swiglu"])
        XCTAssertEqual(times["add"]?.commands, commands)
        XCTAssertEqual(times["swiglu"]?.commands, 1)
        XCTAssertGreaterThan(times["add"]?.nanoseconds ?? 0, 0)
        // y = x + x, then silu(x) · y, then + x: timing changes nothing in what runs.
        let want = Float(2 / (1 + exp(-1.0)) + 1)
        for value in try download(vk, y) { XCTAssertEqual(value, want, accuracy: 1e-5) }
        XCTAssertEqual(try vk.collectDeviceTimes(), [:], "times are handed out once")

        // The next batch reuses the pools.
        let pools = vk.context.timestamps?.poolCount
        vk.setDeviceTimingLabel("add")
        try vk.add(x, x, into: y, count: 64)
        vk.setDeviceTimingLabel(nil)
        XCTAssertEqual(try vk.collectDeviceTimes()["add"]?.commands, 1)
        XCTAssertEqual(vk.context.timestamps?.poolCount, pools)
    }

    /// A profiled decode step is still one submit, as an unprofiled one.
    func testProfiledDecodeSubmitsAsOften() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        var submits: [Int] = []
        for profile in [false, true] {
            let backend: Backend = profile ? ProfilingBackend(vk) : vk
            let before = vk.statistics.submits
            _ = try ProfilingConformanceTests.decode(backend, steps: 4)
            submits.append(vk.statistics.submits - before)
        }
        XCTAssertEqual(submits[0], submits[1], "submits without and with profiling")
    }
}
