import BackendCPU
@testable import BackendVulkan
import LLM
import XCTest

// Vulkan specifics of the mixture-of-experts ops (the numbers against the CPU oracle are in
// MoEConformanceTests): one recorded dispatch per op, no submit and, in steady state, no device
// allocation; index and factor tables rewritten many times inside one command buffer (an MoE
// layer's experts, each with its own token list) must each be seen by their own dispatch; a
// table larger than the small-table buffer grows it mid-recording; bad arguments throw.
final class VulkanMoETests: XCTestCase {
    /// One MoE layer as ExpertDispatch runs it, with the matmuls left out: gate, then per expert a
    /// gather of its tokens and a weighted scatter-add of them into the residual, all recorded
    /// before a single submit.
    func layer(_ b: Backend, h: BackendBuffer, x: BackendBuffer, gathered: BackendBuffer, logits: BackendBuffer,
               ids: BackendBuffer, weights: BackendBuffer, groups: [[Int32]], factors: [[Float]], rows: Int, width: Int) throws {
        try b.moeGate(logits, rows: rows, experts: 12, gating: ExpertGating(function: .softmax, k: 3, normalize: true),
                      ids: ids, weights: weights)
        for (tokens, scales) in zip(groups, factors) {
            try b.gatherRows(h, indices: tokens, into: gathered, width: width)
            try b.scatterAddRows(gathered, indices: tokens, factors: scales, into: x, width: width)
        }
    }

    func testExpertLoopRecordsWithoutSubmitOrAllocationAndMatchesCPU() throws {
        let vk = try ConformanceBackends.vulkanOrSkip(), cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 61)
        let rows = 10, width = 48
        let groups: [[Int32]] = [[0, 3, 4, 9], [1, 2], [5], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [7, 8, 6], [9, 0]]
        let factors = groups.map { rng.floats($0.count, 0, 1) }
        let hValues = rng.floats(rows * width), xValues = rng.floats(rows * width), logitValues = rng.floats(rows * 12, -3, 3)
        var results: [[Float]] = []
        for b in [vk as Backend, cpu as Backend] {
            let h = try makeFilled(b, hValues, label: "h"), x = try makeFilled(b, xValues, label: "x")
            let logits = try makeFilled(b, logitValues, label: "logits")
            let gathered = try b.makeBuffer(count: rows * width, label: "gathered")
            let ids = try b.makeBuffer(count: rows * 3, label: "ids"), weights = try b.makeBuffer(count: rows * 3, label: "weights")
            try layer(b, h: h, x: x, gathered: gathered, logits: logits, ids: ids, weights: weights,
                      groups: groups, factors: factors, rows: rows, width: width)
            if b === vk {
                try b.synchronize()
                let before = vk.statistics, allocations = vk.context.allocationCount
                // Again: steady state, on top of the first pass's x.
                try layer(b, h: h, x: x, gathered: gathered, logits: logits, ids: ids, weights: weights,
                          groups: groups, factors: factors, rows: rows, width: width)
                XCTAssertEqual(vk.statistics.dispatches - before.dispatches, 1 + 2 * groups.count, "one dispatch per op")
                XCTAssertEqual(vk.statistics.submits, before.submits, "no submit while recording")
                XCTAssertEqual(vk.context.allocationCount, allocations, "no device allocation in a steady-state layer")
            } else {
                try layer(b, h: h, x: x, gathered: gathered, logits: logits, ids: ids, weights: weights,
                          groups: groups, factors: factors, rows: rows, width: width)
            }
            results.append(try download(b, x) + download(b, ids) + download(b, weights))
        }
        assertClose(results[0], results[1], tolerance: 1e-12, "vulkan expert loop (x, ids, weights)")
        XCTAssertEqual(Array(results[0][(rows * width)..<(rows * width + rows * 3)]),
                       Array(results[1][(rows * width)..<(rows * width + rows * 3)]), "vulkan expert loop ids")
    }

    /// 5000 indices: more than the 16 KiB table holds, so it grows while gathers that read the old
    /// one are still recorded (they are finished first).
    func testTablesGrowMidRecording() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        var rng = SeededRandom(seed: 62)
        let source = rng.floats(64 * 3)
        let small: [Int32] = [5, 63, 0, 5]
        let large = (0..<5000).map { Int32(($0 * 37) % 64) }
        let a = try vk.makeBuffer(count: small.count * 3, label: "a"), b = try vk.makeBuffer(count: large.count * 3, label: "b")
        let src = try makeFilled(vk, source, label: "src")
        try vk.gatherRows(src, indices: small, into: a, width: 3)
        try vk.gatherRows(src, indices: large, into: b, width: 3)
        XCTAssertEqual(try download(vk, a), small.flatMap { source[Int($0) * 3..<Int($0) * 3 + 3] })
        XCTAssertEqual(try download(vk, b), large.flatMap { source[Int($0) * 3..<Int($0) * 3 + 3] })

        let destination = try makeFilled(vk, [Float](repeating: 1, count: 64), label: "dst")
        let ones = try makeFilled(vk, [Float](repeating: 1, count: large.count), label: "ones")
        try vk.scatterAddRows(ones, indices: large, factors: [Float](repeating: 0.5, count: large.count), into: destination, width: 1)
        let counts = (0..<64).map { r in Float(large.filter { $0 == r }.count) }
        XCTAssertEqual(try download(vk, destination), counts.map { 1 + 0.5 * $0 })
    }

    func testBadArgumentsThrow() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let logits = try vk.makeBuffer(count: 2 * 300, label: "logits")
        let ids = try vk.makeBuffer(count: 16, label: "ids"), weights = try vk.makeBuffer(count: 16, label: "weights")
        XCTAssertThrowsError(try vk.moeGate(logits, rows: 2, experts: 300, gating: ExpertGating(function: .softmax, k: 2, normalize: false),
                                            ids: ids, weights: weights), "more experts than moe_gate holds")
        XCTAssertThrowsError(try vk.moeGate(logits, rows: 1, experts: 4, gating: ExpertGating(function: .softmax, k: 5, normalize: false),
                                            ids: ids, weights: weights), "k above the expert count")
        XCTAssertThrowsError(try vk.moeGate(logits, rows: 9, experts: 8, gating: ExpertGating(function: .softmax, k: 2, normalize: false),
                                            ids: ids, weights: weights), "ids too small")
        let rows = try vk.makeBuffer(count: 4 * 8, label: "rows")
        XCTAssertThrowsError(try vk.gatherRows(rows, indices: [0, 4], into: rows, width: 8), "index past the source")
        XCTAssertThrowsError(try vk.gatherRows(rows, indices: [-1], into: rows, width: 8), "negative index")
        XCTAssertThrowsError(try vk.scatterAddRows(rows, indices: [1, 2], factors: [1], into: rows, width: 8), "factor count")
        XCTAssertThrowsError(try vk.scatterAddRows(rows, indices: [0, 4], factors: [1, 1], into: rows, width: 8), "index past the destination")
        try vk.synchronize()
    }
}
