import BackendCPU
import LLM
import XCTest

/// Batch invariance (BatchInvariance) on every backend: the CPU in both modes with 1 and 2
/// threads, OpenCL and Vulkan (PoCL and lavapipe where no GPU is installed), over the tiny
/// random-weight models and the real SmolLM2.
final class BatchInvarianceTests: XCTestCase {
    /// The GPU backends have no MoE kernels yet (docs/ARCHITECTURE.md): the dense models only there.
    /// `batchSizes` nil: every size from 1 to 33. lavapipe runs each dispatch slowly (the whole
    /// Vulkan case took 40 s with every size), so it gets the sizes around kernel and chunk edges.
    private func tiny(_ backend: Backend, other: Backend? = nil, _ label: String, moe: Bool = true, batchSizes: [Int]? = nil) throws {
        for name in BatchInvariance.tinyModels where moe || !name.contains("moe") {
            let model = try Model.load(path: BatchInvariance.tinyPath(name), backend: backend)
            let second = try other.map { try Model.load(path: BatchInvariance.tinyPath(name), backend: $0) }
            var check = BatchInvariance(sequences: BatchInvariance.tinySequences(vocab: model.config.vocabularySize))
            if let batchSizes { check.batchSizes = batchSizes }
            try check.check(model, other: second, "\(name) on \(label)")
        }
    }

    /// SmolLM2 with fewer batch sizes (each is a pass over the 40 tokens): below, at and above the
    /// int8 batch kernel's 8-token threshold, and a chunk boundary inside a paged block.
    private func smolLM2(_ backend: Backend, other: Backend? = nil, _ label: String, short: Bool = false) throws {
        let path = try BatchInvariance.smolLM2Path()
        let model = try Model.load(path: path, backend: backend)
        let second = try other.map { try Model.load(path: path, backend: $0) }
        let vocab = model.config.vocabularySize
        // `short` (lavapipe: 87 s at full length) halves the sequences and the batch sizes.
        let lengths = short ? [20, 9, 5] : [40, 19, 9]
        var check = BatchInvariance(sequences: lengths.enumerated().map { BatchInvariance.tokens($0.element, vocab: vocab, seed: 11 + UInt64($0.offset)) })
        check.batchSizes = short ? [7, 8, 20] : [2, 7, 8, 9, 33]
        try check.check(model, other: second, "SmolLM2 on \(label)")
    }

    func testCPUInt8() throws {
        try tiny(CPUBackend(threads: 1, int8Activations: true),
                 other: CPUBackend(threads: 2, int8Activations: true), "CPU int8, threads 1 and 2")
    }

    func testCPUF32() throws {
        try tiny(CPUBackend(threads: 1), other: CPUBackend(threads: 2), "CPU f32, threads 1 and 2")
    }

    func testSmolLM2CPUInt8() throws {
        try smolLM2(CPUBackend(threads: 1, int8Activations: true),
                    other: CPUBackend(threads: 2, int8Activations: true), "CPU int8, threads 1 and 2")
    }

    func testSmolLM2CPUF32() throws {
        try smolLM2(CPUBackend(threads: 2), "CPU f32")
    }

    private func openCL() throws -> Backend {
        do {
            return try ConformanceBackends.openCL.get()
        } catch let unavailable as BackendUnavailable {
            throw XCTSkip("opencl: \(unavailable.reason)")
        }
    }

    func testOpenCL() throws {
        let backend = try openCL()
        try tiny(backend, "OpenCL (\(backend.deviceDescription))", moe: false)
    }

    func testVulkan() throws {
        let backend = try ConformanceBackends.vulkanOrSkip()
        try tiny(backend, "Vulkan (\(backend.deviceDescription))", moe: false, batchSizes: [1, 2, 3, 7, 8, 9, 16, 17, 33])
    }

    func testSmolLM2OpenCL() throws {
        let backend = try openCL()
        try smolLM2(backend, "OpenCL (\(backend.deviceDescription))")
    }

    func testSmolLM2Vulkan() throws {
        let backend = try ConformanceBackends.vulkanOrSkip()
        try smolLM2(backend, "Vulkan (\(backend.deviceDescription))", short: true)
    }
}
