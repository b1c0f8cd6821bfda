@testable import BackendVulkan
import BackendCPU
import Foundation
import LLM
import XCTest

// Vulkan-specific cases: the op cases themselves run through OpConformanceTests once Vulkan is
// in ConformanceBackends.all(). Here: the submission model, split weights, typed errors, and
// model-level agreement with the CPU backend.
//
// Tolerances (nmse = Σ(a−b)²/Σb²), model level: the Vulkan forward pass differs from the CPU's
// only in f32 summation order and in exp/sin/cos ulps, which the 2–4 layers of the tiny models
// amplify little: logits nmse ≤ 1e-8 for every row of the 24-token prompt.
final class VulkanBackendTests: XCTestCase {
    private var fixtures: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")
    }

    // MARK: Submission model

    /// A whole decode step is recorded into one command buffer: no submit until the host reads.
    func testOpsAreBatchedIntoOneSubmit() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        var rng = SeededRandom(seed: 41)
        let x = try makeFilled(vk, rng.floats(64), label: "x")
        let y = try vk.makeBuffer(count: 64, label: "y")
        try vk.synchronize()
        let before = vk.statistics
        for _ in 0..<10 {
            try vk.add(x, x, into: y, count: 64)
            try vk.swiglu(gate: y, up: x, into: y, count: 64)
            try vk.softmax(y, rows: 2, width: 32)
        }
        XCTAssertEqual(vk.statistics.submits, before.submits, "ops must not submit on their own")
        XCTAssertEqual(vk.statistics.dispatches, before.dispatches + 30)
        _ = try vk.argmax(y, rows: 2, width: 32)
        XCTAssertEqual(vk.statistics.submits, before.submits + 1, "argmax submits once")
    }

    /// Uploads are ordered with recorded work: an op recorded before an upload sees the old values.
    func testUploadIsOrderedWithRecordedOps() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let a = try makeFilled(vk, [1, 2, 3, 4], label: "a")
        let out1 = try vk.makeBuffer(count: 4, label: "out1"), out2 = try vk.makeBuffer(count: 4, label: "out2")
        try vk.add(a, a, into: out1, count: 4)
        try vk.upload([10, 20, 30, 40], to: a, offset: 0)
        try vk.add(a, a, into: out2, count: 4)
        XCTAssertEqual(try vk.download(out1, offset: 0, count: 4), [2, 4, 6, 8])
        XCTAssertEqual(try vk.download(out2, offset: 0, count: 4), [20, 40, 60, 80])
        // Large uploads take the direct path and must still wait for recorded readers.
        let big = try makeFilled(vk, [Float](repeating: 1, count: 100_000), label: "big")
        let sum = try vk.makeBuffer(count: 100_000, label: "sum")
        try vk.add(big, big, into: sum, count: 100_000)
        try vk.upload([Float](repeating: 5, count: 100_000), to: big, offset: 0)
        XCTAssertEqual(try vk.download(sum, offset: 99_990, count: 10), [Float](repeating: 2, count: 10))
        XCTAssertEqual(try vk.download(big, offset: 0, count: 3), [5, 5, 5])
    }

    // MARK: Weights split over several buffers

    /// A weight larger than one binding may cover is split into row ranges; matmul and embed
    /// cover every range. Forced here with a small chunk limit.
    func testSplitWeightMatchesCPU() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        vk.weightChunkLimit = 4096
        defer { vk.weightChunkLimit = nil }
        var rng = SeededRandom(seed: 42)
        for type in [GGMLType.q4_1, .f16] {
            let rows = 301, columns = 96
            let bytes = randomWeightBytes(type, rows: rows, columns: columns, &rng)
            let x = rng.floats(3 * columns)
            let tokens: [Int32] = [0, 300, 150, 299, 7]
            var products: [[Float]] = [], embeddings: [[Float]] = []
            for b in [vk, cpu as Backend] {
                let w = try makeWeight(b, "w", type, rows: rows, columns: columns, bytes: bytes)
                if let split = w as? VulkanWeight { XCTAssertGreaterThan(split.chunks.count, 1) }
                let input = try makeFilled(b, x, label: "x")
                let output = try b.makeBuffer(count: 3 * rows, label: "y")
                try b.matmul(w, input, into: output, rows: 3)
                products.append(try download(b, output))
                let e = try b.makeBuffer(count: tokens.count * columns, label: "e")
                try b.embed(w, tokens: tokens, into: e)
                embeddings.append(try download(b, e))
            }
            assertClose(products[0], products[1], tolerance: 1e-9, "split matmul \(type)")
            assertClose(embeddings[0], embeddings[1], tolerance: 1e-12, "split embed \(type)")
        }
    }

    /// The shared-memory matmul variant (used where subgroup arithmetic is missing) against the
    /// CPU; the suite's matmul cases cover the variant this device picks.
    func testSharedMemoryMatmulVariantMatchesCPU() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let cpu = ConformanceBackends.oracle
        let original = vk.subgroupMatmul
        defer { vk.subgroupMatmul = original }
        var rng = SeededRandom(seed: 43)
        for subgroup in [false, true] where subgroup == false || vk.device.subgroupArithmetic {
            vk.subgroupMatmul = subgroup
            for type in [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
                for (outputs, columns, rows) in [(33, type.blockSize == 1 ? 340 : 96, 1), (67, type.blockSize == 1 ? 7 : 32, 3), (130, 576, 19)] {
                    let bytes = randomWeightBytes(type, rows: outputs, columns: columns, &rng)
                    let x = rng.floats(rows * columns)
                    var results: [[Float]] = []
                    for b in [vk, cpu as Backend] {
                        let w = try makeWeight(b, "w", type, rows: outputs, columns: columns, bytes: bytes)
                        let input = try makeFilled(b, x, label: "x")
                        let output = try b.makeBuffer(count: rows * outputs, label: "y")
                        try b.matmul(w, input, into: output, rows: rows)
                        results.append(try download(b, output))
                    }
                    assertClose(results[0], results[1], tolerance: 1e-9, "subgroup \(subgroup) matmul \(type) \(outputs)x\(columns) rows \(rows)")
                }
            }
        }
    }

    // MARK: Errors

    func testErrorsAreTypedAndNamed() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        XCTAssertThrowsError(try VulkanBackend(deviceIndex: 99)) { error in
            XCTAssertEqual(error as? VulkanError, .deviceIndexOutOfRange(requested: 99, available: (try? VulkanBackend.devices().count) ?? 0))
        }
        XCTAssertThrowsError(try vk.makeBuffer(count: vk.device.maxMemoryAllocationSize / 2 + 1, label: "huge")) { error in
            XCTAssert("\(error)".contains("maxMemoryAllocationSize"), "\(error)")
        }
        let shape = AttentionShape(heads: 1, kvHeads: 1, headDim: 512, scale: 1)
        let q = try vk.makeBuffer(count: 512, label: "q")
        XCTAssertThrowsError(try vk.attention(query: q, keys: q, values: q, into: q, rows: 1, startPosition: 0, shape: shape))
        XCTAssertEqual("\(VulkanError.call("vkAllocateMemory", result: "VK_ERROR_OUT_OF_DEVICE_MEMORY"))",
                       "vkAllocateMemory failed: VK_ERROR_OUT_OF_DEVICE_MEMORY")
        XCTAssertFalse(vk.supports(.matmul(.q2_K)))
        XCTAssertTrue(vk.supports(.matmul(.q4_K)))
        XCTAssertTrue(vk.supports(.moeGating) && vk.supports(.gatherRows) && vk.supports(.scatterAddRows))
        XCTAssertTrue(vk.supports(.matmul(.q4_1)))
    }

    func testDeviceListing() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let devices = try VulkanBackend.devices()
        XCTAssertFalse(devices.isEmpty)
        XCTAssert(devices.contains { $0.name == vk.device.name })
        XCTAssertGreaterThan(vk.device.maxStorageBufferRange, 0)
        XCTAssertFalse(vk.deviceDescription.isEmpty)
    }

    // MARK: Model level

    /// Vulkan logits equal the CPU backend's for the 24-token prompt of the tiny models.
    func testTinyModelLogitsMatchCPU() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        for name in ["tiny-llama-f32", "tiny-llama-q8_0", "tiny-llama-q4_1"] {
            let dir = fixtures.appendingPathComponent("tiny")
            let prompt = try promptIDs(dir.appendingPathComponent(name + ".tokens.txt"))
            XCTAssertEqual(prompt.count, 24)
            var logits: [[Float]] = []
            for backend in [vk, CPUBackend(threads: 2) as Backend] {
                let model = try Model.load(path: dir.appendingPathComponent(name + ".gguf").path, backend: backend)
                let session = try InferenceSession(model: model, contextLength: 64)
                let vocab = model.config.vocabularySize
                let out = try session.evaluate(prompt, logits: .all)
                var all = try backend.download(out, offset: 0, count: prompt.count * vocab)
                // then two decode steps through the KV cache (startPosition > 0, mat-vec kernels)
                for token: Int32 in [5, 17] {
                    all += try backend.download(try session.evaluate([token], logits: .last), offset: 0, count: vocab)
                }
                logits.append(all)
            }
            let vocab = logits[0].count / 26
            for r in 0..<26 {
                let row = { (l: [Float]) in Array(l[(r * vocab)..<((r + 1) * vocab)]) }
                assertClose(row(logits[0]), row(logits[1]), tolerance: 1e-8, "\(name) logits row \(r)")
            }
        }
    }

    /// Greedy decoding of SmolLM2 on Vulkan produces the CPU backend's 16 tokens.
    func testSmolLM2GreedyMatchesCPU() throws {
        let vk = try ConformanceBackends.vulkanOrSkip()
        let path = smolLM2Path()
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("SmolLM2 not in the cache (\(path)); scripts/fetch-model") }
        let prompt: [Int32] = [504, 3575, 282, 4649, 314]   // "The capital of France is"
        var runs: [[Int32]] = []
        for backend in [vk, CPUBackend(threads: 2) as Backend] {
            let model = try Model.load(path: path, backend: backend)
            let session = try InferenceSession(model: model, contextLength: 64)
            var ids: [Int32] = []
            var next = try session.evaluateGreedy(prompt)
            for _ in 0..<16 {
                ids.append(next)
                if ids.count == 16 { break }
                next = try session.evaluateGreedy([next])
            }
            runs.append(ids)
        }
        XCTAssertEqual(runs[0], runs[1])
    }

    private func promptIDs(_ url: URL) throws -> [Int32] {
        let text = try String(contentsOf: url, encoding: .utf8)
        guard let line = text.split(separator: "\n").first(where: { $0.hasPrefix("prompt_ids:") }) else {
            throw VulkanError.invalidArgument("no prompt_ids in \(url.path)")
        }
        return line.dropFirst("prompt_ids:".count).split(separator: " ").compactMap { Int32($0) }
    }

    private func smolLM2Path() -> String {
        ModelCache.path(ModelCache.defaultModelFile)
    }
}
