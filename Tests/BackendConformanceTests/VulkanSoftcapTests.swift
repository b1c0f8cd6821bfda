@testable import BackendVulkan
import LLM
import XCTest

// Gemma 2 soft-capping on Vulkan against the CPU oracle: attention scores capped inside
// attention.comp (contiguous and PAGED) and the elementwise `softcap` op (OP_SOFTCAP).
final class VulkanSoftcapTests: XCTestCase {
    func testSupportsSoftcapOps() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        XCTAssertTrue(vk.supports(.attentionSoftcap) && vk.supports(.softcap))
    }

    func testAttentionSoftcapMatchesOracle() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 71)
        for (heads, kvHeads, headDim, window) in [(4, 2, 64, 0), (6, 2, 96, 5), (2, 1, 256, 0)] {
            // scale 1: scores reach well past the cap, so capping changes the result
            let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1, window: window, softcap: 5)
            for (rows, start) in [(1, 0), (5, 9), (3, 130)] {
                let positions = start + rows
                let q = rng.floats(rows * shape.queryWidth, -2, 2)
                let k = rng.floats(positions * shape.kvWidth, -2, 2), v = rng.floats(positions * shape.kvWidth)
                var results: [[Float]] = []
                for (b, s) in [(vk as Backend, shape), (cpu as Backend, shape), (cpu as Backend, AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1, window: window))] {
                    let keys = try makeFilled(b, k, label: "k"), values = try makeFilled(b, v, label: "v")
                    let query = try makeFilled(b, q, label: "q")
                    let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
                    try b.attention(query: query, keys: keys, values: values, into: output, rows: rows, startPosition: start, shape: s)
                    results.append(try download(b, output))
                }
                assertClose(results[0], results[1], tolerance: 1e-9, "vulkan attention softcap \(heads):\(kvHeads)x\(headDim) w\(window) rows \(rows) at \(start)")
                if rows > 1 || start > 0 { XCTAssertGreaterThan(nmse(results[2], results[1]), 1e-6, "the cap changes the result") }
            }
        }
    }

    func testPagedAttentionSoftcapMatchesOracle() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 72)
        let poolBlocks = 40
        let layout = PagedConformanceTests.layout(poolBlocks: poolBlocks, &rng)
        let rows = layout.lengths.count
        for window in [0, 7] {
            let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: 64, scale: 1, window: window, softcap: 4)
            let poolRows = poolBlocks * PagedConformanceTests.blockSize
            let k = rng.floats(poolRows * shape.kvWidth, -2, 2), v = rng.floats(poolRows * shape.kvWidth)
            let q = rng.floats(rows * shape.queryWidth, -2, 2)
            var results: [[Float]] = []
            for b in [vk as Backend, cpu as Backend] {
                let keys = try makeFilled(b, k, label: "pool.k"), values = try makeFilled(b, v, label: "pool.v")
                let query = try makeFilled(b, q, label: "q")
                let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "out")
                try b.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
                results.append(try download(b, output))
            }
            assertClose(results[0], results[1], tolerance: 1e-9, "vulkan pagedAttention softcap window \(window)")
        }
    }

    func testSoftcapMatchesOracleAndSaturates() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 73)
        for (count, cap) in [(1, 30), (1000, 30), (70_001, 0.5)] as [(Int, Float)] {
            var x = rng.floats(count, -100, 100)
            if count > 1 { x[0] = 1e30; x[1] = -1e30; x[2] = 3e38; x[3] = .infinity; x[4] = -.infinity; x[5] = 0 }
            var results: [[Float]] = []
            for b in [vk as Backend, cpu as Backend] {
                let buffer = try makeFilled(b, x + [Float](repeating: 7, count: 5), label: "x")
                try b.softcap(buffer, cap: cap, count: count)
                results.append(try download(b, buffer))
            }
            XCTAssertFalse(results[0].contains { $0.isNaN }, "no NaN")
            XCTAssertEqual(Array(results[0][count...]), [Float](repeating: 7, count: 5), "values past count untouched")
            assertClose(results[0], results[1], tolerance: 1e-10, "vulkan softcap \(count) cap \(cap)")
            if count > 1 {
                XCTAssertEqual(results[0][0], cap); XCTAssertEqual(results[0][1], -cap)
                XCTAssertEqual(results[0][3], cap); XCTAssertEqual(results[0][4], -cap); XCTAssertEqual(results[0][5], 0)
            }
        }
    }
}
