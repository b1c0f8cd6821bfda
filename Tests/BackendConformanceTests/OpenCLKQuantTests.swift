import BackendCPU
import BackendOpenCL
import Foundation
import LLM
import XCTest

// OpenCL-specific checks of the Q5_0, Q5_1, Q4_K, Q5_K and Q6_K kernels (issue #7): every matmul
// kernel variant forced in turn on odd shapes, embedding, the gguf-py fixture blocks, and greedy
// decoding of two Q4_K_M models against the CPU backend.
//
// Tolerances (nmse against `CPUBackend(threads: 2)`):
// - matmul 1e-9: f32 sums of ≤ 512 products in another order (measured ≤ 1e-13 on PoCL);
// - embedding 1e-12: one d·sc·q − dmin·m per element, at most a rounding apart (the device may
//   contract to an fma);
// - fixture blocks 1e-12 against gguf-py's dequantization.

private func openCLBackend() throws -> OpenCLBackend {
    switch ConformanceBackends.openCL {
    case .success(let b): return b as! OpenCLBackend
    case .failure(let e as BackendUnavailable): throw XCTSkip(e.reason)
    case .failure(let e): throw e
    }
}

/// Random blocks in llama.cpp's layouts for the formats `randomWeightBytes` does not cover:
/// finite f16 scales in the ranges real models have, random quants, 6-bit scales and mins.
func openCLRandomBlocks(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SeededRandom) -> [UInt8] {
    var bytes: [UInt8] = []
    func appendHalf(_ x: Float) {
        let bits = Float16(x).bitPattern
        bytes.append(UInt8(bits & 0xFF)); bytes.append(UInt8(bits >> 8))
    }
    func appendRandom(_ n: Int) { for _ in 0..<n { bytes.append(rng.byte()) } }
    let blocks = rows * columns / type.blockSize
    for _ in 0..<blocks {
        switch type {
        case .q5_0:
            appendHalf(rng.uniform(-0.1, 0.1)); appendRandom(4 + 16)
        case .q5_1:
            appendHalf(rng.uniform(0.003, 0.05)); appendHalf(rng.uniform(-0.8, 0)); appendRandom(4 + 16)
        case .q4_K:
            appendHalf(rng.uniform(0.0005, 0.005)); appendHalf(rng.uniform(0, 0.005)); appendRandom(12 + 128)
        case .q5_K:
            appendHalf(rng.uniform(0.0003, 0.003)); appendHalf(rng.uniform(0, 0.005)); appendRandom(12 + 32 + 128)
        case .q6_K:
            appendRandom(128 + 64 + 16); appendHalf(rng.uniform(-0.001, 0.001))
        default:
            return randomWeightBytes(type, rows: rows, columns: columns, &rng)
        }
    }
    precondition(bytes.count == rows * (type.rowBytes(columns) ?? -1))
    return bytes
}

final class OpenCLKQuantTests: XCTestCase {
    static let newTypes: [GGMLType] = [.q5_0, .q5_1, .q4_K, .q5_K, .q6_K]

    func testSupportsTheNewWeightTypes() throws {
        let backend = try openCLBackend()
        for type in Self.newTypes + [GGMLType.f32, .f16, .bf16, .q8_0, .q4_0, .q4_1] {
            XCTAssertTrue(backend.supports(.matmul(type)), "matmul \(type)")
            XCTAssertTrue(backend.supports(.embedding(type)), "embedding \(type)")
        }
        XCTAssertEqual(OpenCLBackend.weightTypes, Quantization.decodableWeightTypes)
        for type in [GGMLType.q2_K, .q3_K, .q8_1, .q8_K] { XCTAssertFalse(backend.supports(.matmul(type)), "\(type)") }
    }

    /// Every matmul kernel (forced, and the automatic choice) on every new type: rows 1, 7, 33, 67;
    /// columns 256/512 (K-quants) or 96/352 (Q5_x); batches 1, 3 and 9 (over the tiled threshold).
    func testEveryMatmulKernelOnTheNewTypes() throws {
        let backend = try openCLBackend()
        defer { backend.matmulKernel = .automatic }
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 707)
        let variants: [OpenCLBackend.MatmulKernel] = [.automatic, .vector(threadsPerRow: 1), .vector(threadsPerRow: 8),
                                                      .vector(threadsPerRow: 32), .tiled, .rows]
        for type in Self.newTypes {
            let widths = type.blockSize == 256 ? [256, 512] : [96, 352]
            for outputs in [1, 7, 33, 67] {
                for columns in widths {
                    let bytes = openCLRandomBlocks(type, rows: outputs, columns: columns, &rng)
                    let w = try makeWeight(cpu, "w", type, rows: outputs, columns: columns, bytes: bytes)
                    let wd = try makeWeight(backend, "w", type, rows: outputs, columns: columns, bytes: bytes)
                    for batch in [1, 3, 9] {
                        let x = rng.floats(batch * columns)
                        let want = try cpu.makeBuffer(count: batch * outputs, label: "y")
                        try cpu.matmul(w, makeFilled(cpu, x, label: "x"), into: want, rows: batch)
                        let expected = try download(cpu, want)
                        let input = try makeFilled(backend, x, label: "x")
                        for variant in variants {
                            backend.matmulKernel = variant
                            let output = try backend.makeBuffer(count: batch * outputs, label: "y")
                            try backend.matmul(wd, input, into: output, rows: batch)
                            assertClose(try download(backend, output), expected, tolerance: 1e-9,
                                        "opencl \(variant) matmul \(type) \(outputs)x\(columns) batch \(batch)")
                        }
                    }
                }
            }
        }
    }

    func testEmbeddingOnTheNewTypes() throws {
        let backend = try openCLBackend()
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 708)
        let tokens: [Int32] = [0, 66, 7, 33, 7, 1]
        for type in Self.newTypes {
            for columns in type.blockSize == 256 ? [256, 512] : [96, 352] {
                let bytes = openCLRandomBlocks(type, rows: 67, columns: columns, &rng)
                let want = try cpu.makeBuffer(count: tokens.count * columns, label: "e")
                try cpu.embed(makeWeight(cpu, "t", type, rows: 67, columns: columns, bytes: bytes), tokens: tokens, into: want)
                let got = try backend.makeBuffer(count: tokens.count * columns, label: "e")
                try backend.embed(makeWeight(backend, "t", type, rows: 67, columns: columns, bytes: bytes), tokens: tokens, into: got)
                assertClose(try download(backend, got), try download(cpu, want), tolerance: 1e-12, "opencl embedding \(type) x\(columns)")
            }
        }
    }

    /// The fixture blocks (2048 elements each) against gguf-py's dequantization: through embedding
    /// (get_T) and through a matmul with one-hot inputs on every kernel (deq_T / dot_T).
    func testFixtureBlocksMatchGGUFPy() throws {
        let backend = try openCLBackend()
        defer { backend.matmulKernel = .automatic }
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/quants")
        for (name, type) in [("Q5_0", GGMLType.q5_0), ("Q5_1", .q5_1), ("Q4_K", .q4_K), ("Q5_K", .q5_K), ("Q6_K", .q6_K)] {
            let blockURL = directory.appendingPathComponent("\(name).blocks")
            guard FileManager.default.fileExists(atPath: blockURL.path) else { throw XCTSkip("fixture \(name).blocks is missing") }
            let bytes = [UInt8](try Data(contentsOf: blockURL))
            let reference = try Data(contentsOf: directory.appendingPathComponent("\(name).f32")).withUnsafeBytes {
                Array($0.bindMemory(to: Float.self))
            }
            let columns = 256, rows = reference.count / columns
            XCTAssertEqual(bytes.count, rows * type.rowBytes(columns)!, name)
            let table = try makeWeight(backend, name, type, rows: rows, columns: columns, bytes: bytes)
            let out = try backend.makeBuffer(count: reference.count, label: "e")
            try backend.embed(table, tokens: (0..<rows).map(Int32.init), into: out)
            assertClose(try download(backend, out), reference, tolerance: 1e-12, "opencl embedding of fixture \(name)")

            // Column c of the weight: the matmul of a one-hot row c (8 one-hot rows at once).
            var transposed: [Float] = []
            for c in 0..<columns { for r in 0..<rows { transposed.append(reference[r * columns + c]) } }
            for variant in [OpenCLBackend.MatmulKernel.vector(threadsPerRow: 4), .tiled, .rows] {
                backend.matmulKernel = variant
                var got: [Float] = []
                for c0 in stride(from: 0, to: columns, by: 32) {
                    var x = [Float](repeating: 0, count: 32 * columns)
                    for i in 0..<32 { x[i * columns + c0 + i] = 1 }
                    let y = try backend.makeBuffer(count: 32 * rows, label: "y")
                    try backend.matmul(table, makeFilled(backend, x, label: "x"), into: y, rows: 32)
                    got += try download(backend, y)
                }
                assertClose(got, transposed, tolerance: 1e-12, "opencl \(variant) one-hot matmul of fixture \(name)")
            }
        }
    }
}

/// Greedy decoding of Q4_K_M models (Q4_K, Q5_0/Q8_0 and Q6_K tensors) on OpenCL picks the CPU
/// backend's tokens. Skipped when the model is not in the cache.
final class OpenCLKQuantModelTests: XCTestCase {
    static func cachedModel(_ file: String) throws -> String {
        try BackendConformanceTests.cachedModel(file)
    }

    func greedy(_ backend: Backend, path: String, prompt: String, tokens: Int) throws -> (ids: [Int32], text: String) {
        let model = try Model.load(path: path, backend: backend)
        let session = try InferenceSession(model: model, contextLength: 64)
        var out: [Int32] = [try session.evaluateGreedy(model.tokenizer.encode(prompt))]
        while out.count < tokens { out.append(try session.evaluateGreedy([out.last!])) }
        return (out, model.tokenizer.decode(out))
    }

    func check(_ file: String, expecting prefix: String) throws {
        let path = try Self.cachedModel(file)
        let backend = try openCLBackend()
        let prompt = "The capital of France is"
        let want = try greedy(ConformanceBackends.oracle, path: path, prompt: prompt, tokens: 8)
        let got = try greedy(backend, path: path, prompt: prompt, tokens: 8)
        XCTAssertEqual(got.ids, want.ids, "opencl greedy ids on \(file): \(got.text.debugDescription), cpu \(want.text.debugDescription)")
        XCTAssertTrue(got.text.hasPrefix(prefix), "\(file): \(got.text.debugDescription)")
    }

    func testGemma3Q4KMGreedyMatchesCPU() throws {
        try check("gemma-3-270m-Q4_K_M.gguf", expecting: " the capital of the")
    }

    func testQwen25Q4KMGreedyMatchesCPU() throws {
        try check("qwen2.5-coder-0.5b-instruct-Q4_K_M.gguf", expecting: " Paris")
    }
}
