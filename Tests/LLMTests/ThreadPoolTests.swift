import XCTest
import CPUKernels

/// CPUKernels' thread pool: every parallel op of the CPU backend runs on it. Threads claim chunks
/// from one counter, so each chunk must run exactly once, in every job, whatever the timing; a
/// parallel call from inside a job must run serially rather than wait for the pool it is part of.
final class ThreadPoolTests: XCTestCase {
    /// Each task adds 1 to its own slot; after 2,000 jobs of 1–17 tasks every slot ran once per job.
    func testEveryTaskRunsExactlyOncePerJob() {
        var slots = [Int32](repeating: 0, count: 17)
        var jobs = [Int32](repeating: 0, count: 17)
        for job in 0..<2000 {
            let tasks = 1 + job % 17
            for t in 0..<tasks { jobs[t] += 1 }
            slots.withUnsafeMutableBufferPointer { buffer in
                cpuk_parallel(Int32(tasks), { context, task in
                    context!.assumingMemoryBound(to: Int32.self)[Int(task)] += 1
                }, buffer.baseAddress)
            }
        }
        XCTAssertEqual(slots, jobs)
    }

    /// A job whose tasks start jobs of their own: the inner ones run serially on the task's thread.
    func testNestedCallsRunSeriallyWithoutDeadlock() {
        var slots = [Int32](repeating: 0, count: 4 * 8)
        slots.withUnsafeMutableBufferPointer { buffer in
            cpuk_parallel(4, { context, outer in
                // The inner job's context: this outer task's 8 slots.
                let base = context!.assumingMemoryBound(to: Int32.self) + Int(outer) * 8
                cpuk_parallel(8, { inner, task in
                    inner!.assumingMemoryBound(to: Int32.self)[Int(task)] += 1
                }, base)
            }, buffer.baseAddress)
        }
        XCTAssertEqual(slots, [Int32](repeating: 1, count: 32))
    }
}
