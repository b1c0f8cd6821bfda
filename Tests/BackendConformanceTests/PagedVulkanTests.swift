@testable import BackendVulkan
import LLM
import XCTest

// Vulkan specifics of the beam-search ops (the numbers are checked in PagedConformanceTests):
// each call is one recorded dispatch, with no submit and, once the small-table buffers have
// grown to the largest layout, no device allocation.
final class PagedVulkanTests: XCTestCase {
    func testPagedOpsRecordOneDispatchWithoutSubmitOrAllocation() throws {
        let backend = try ConformanceBackends.vulkanOrSkip()
        var rng = SeededRandom(seed: 31)
        let shape = AttentionShape(heads: 4, kvHeads: 2, headDim: 32, scale: 0.2)
        let poolBlocks = 40
        let layout = PagedConformanceTests.layout(poolBlocks: poolBlocks, &rng)
        let rows = layout.lengths.count
        let keys = try makeFilled(backend, rng.floats(poolBlocks * 16 * shape.kvWidth), label: "pool.k")
        let values = try makeFilled(backend, rng.floats(poolBlocks * 16 * shape.kvWidth), label: "pool.v")
        let query = try makeFilled(backend, rng.floats(rows * shape.queryWidth), label: "q")
        let output = try backend.makeBuffer(count: rows * shape.queryWidth, label: "out")
        let rope = RopeParameters(dimensions: 32, base: 10000, style: .neox)
        let beams = PagedLayout(blockSize: 16, tables: [layout.tables[4], layout.tables[5]], lengths: [40, 40])
        func step() throws {
            for _ in 0..<3 {   // layers: the same layout again
                try backend.rope(query, rows: rows, heads: 4, headDim: 32, positions: [5, 0, 300, 17, 17, 1, 33, 2, 9, 4], parameters: rope)
                try backend.pagedAttention(query: query, keys: keys, values: values, into: output, rows: rows, layout: layout, shape: shape)
            }
            try backend.rope(query, rows: 2, heads: 4, headDim: 32, positions: [39, 39], parameters: rope)
            try backend.pagedAttention(query: query, keys: keys, values: values, into: output, rows: 2, layout: beams, shape: shape)
        }
        try step()   // first use: pipelines, descriptor sets, table buffers
        try backend.synchronize()
        let before = backend.statistics, allocations = backend.context.allocationCount
        try step()
        XCTAssertEqual(backend.statistics.dispatches - before.dispatches, 8, "one dispatch per op")
        XCTAssertEqual(backend.statistics.submits, before.submits, "no submit while recording")
        XCTAssertEqual(backend.context.allocationCount, allocations, "no device allocation in a steady-state step")
        try backend.synchronize()
    }
}
