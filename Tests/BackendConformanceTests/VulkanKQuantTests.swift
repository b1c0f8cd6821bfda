@testable import BackendVulkan
import BackendCPU
import Foundation
import LLM
import XCTest

// Vulkan specifics of issue #7 and the qwen2/gemma3 ops: the matmul variant this device does
// not pick (KQuantConformanceTests covers the one it does), sliding-window attention through
// the paged kernel, and greedy decoding of real Q4_K_M models against the CPU backend.
final class VulkanKQuantTests: XCTestCase {
    /// Both matmul variants (shared-memory and, where supported, subgroup) on the new formats.
    func testBothMatmulVariantsOnKQuants() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        let original = vk.subgroupMatmul
        defer { vk.subgroupMatmul = original }
        var rng = SeededRandom(seed: 73)
        for subgroup in [false, true] where subgroup == false || vk.device.subgroupArithmetic {
            vk.subgroupMatmul = subgroup
            for type in [GGMLType.q5_0, .q5_1, .q4_K, .q5_K, .q6_K] {
                for (outputs, columns, rows) in [(33, 512, 1), (67, 256, 3), (7, 512, 11)] {
                    let bytes = kquantRandomBlocks(type, rows: outputs, columns: columns, &rng)
                    let x = rng.floats(rows * columns)
                    var results: [[Float]] = []
                    for b in [vk, cpu as Backend] {
                        let w = try makeWeight(b, "w", type, rows: outputs, columns: columns, bytes: bytes)
                        let output = try b.makeBuffer(count: rows * outputs, label: "y")
                        try b.matmul(w, makeFilled(b, x, label: "x"), into: output, rows: rows)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-9, "subgroup \(subgroup) matmul \(type) \(outputs)x\(columns) rows \(rows)")
                }
            }
        }
    }

    /// attention_paged with a window: each row sees the last `window` of its `length` positions.
    func testPagedSlidingWindowAttention() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 74)
        let poolBlocks = 40
        let layout = PagedConformanceTests.layout(poolBlocks: poolBlocks, &rng)
        let rows = layout.lengths.count
        for (heads, kvHeads, headDim, window) in [(4, 2, 64, 16), (3, 3, 40, 1), (6, 2, 32, 100), (2, 1, 24, 512)] {
            let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot(), window: window)
            let poolRows = poolBlocks * PagedConformanceTests.blockSize
            let q = rng.floats(rows * shape.queryWidth, -2, 2)
            let k = rng.floats(poolRows * shape.kvWidth, -2, 2), v = rng.floats(poolRows * shape.kvWidth)
            var results: [[Float]] = []
            for b in [vk, cpu as Backend] {
                let output = try b.makeBuffer(count: rows * shape.queryWidth, label: "o")
                try b.pagedAttention(query: makeFilled(b, q, label: "q"), keys: makeFilled(b, k, label: "k"),
                                     values: makeFilled(b, v, label: "v"), into: output, rows: rows, layout: layout, shape: shape)
                results.append(try download(b, output))
            }
            assertClose(results[0], results[1], tolerance: 1e-9, "paged window \(window) attention \(heads):\(kvHeads)x\(headDim)")
        }
    }

    // MARK: Models

    static func cachedModel(_ file: String) throws -> String {
        try BackendConformanceTests.cachedModel(file)
    }

    /// Greedy ids of "The capital of France is", 8 tokens.
    static func greedy(_ backend: Backend, path: String) throws -> (ids: [Int32], text: String) {
        let model = try Model.load(path: path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 64)
        var ids: [Int32] = []
        var next = try session.evaluateGreedy(model.tokenizer.encode("The capital of France is"))
        while true {
            ids.append(next)
            if ids.count == 8 { break }
            next = try session.evaluateGreedy([next])
        }
        return (ids, model.tokenizer.decode(ids))
    }

    func checkGreedy(_ file: String, expectedPrefix: String) throws {
        let path = try Self.cachedModel(file)
        let vk = try ConformanceBackends.vulkanOrSkip()
        let want = try Self.greedy(ConformanceBackends.oracle, path: path)
        XCTAssert(want.text.hasPrefix(expectedPrefix), "cpu on \(file): \(want.text.debugDescription)")
        let got = try Self.greedy(vk, path: path)
        XCTAssertEqual(got.ids, want.ids, "vulkan greedy ids on \(file): \(got.text.debugDescription) vs cpu \(want.text.debugDescription)")
    }

    /// Gemma 3 270M Q4_K_M: Q4_K/Q6_K/Q5_0 weights, GeGLU, scaled embeddings, sliding-window layers.
    func testGemma3Q4KMGreedyMatchesCPU() throws {
        try checkGreedy("gemma-3-270m-Q4_K_M.gguf", expectedPrefix: " the capital of the")
    }

    /// Qwen2.5-Coder 0.5B Q4_K_M: Q4_K/Q6_K/Q5_0 weights and q/k/v biases.
    func testQwen25Q4KMGreedyMatchesCPU() throws {
        try checkGreedy("qwen2.5-coder-0.5b-instruct-Q4_K_M.gguf", expectedPrefix: " Paris")
    }
}
