import BackendCPU
import BackendOpenCL
import Foundation
import LLM
import XCTest

/// One backend under test. `make` returns the (process-wide) instance, or throws
/// `BackendUnavailable` when the backend cannot exist on this machine (no driver installed).
/// Any other failure to open it is a test failure, not a skip.
struct ConformanceBackend {
    let name: String
    let make: () throws -> Backend
}

enum ConformanceBackends {
    /// Every backend checked against the CPU oracle. Add a backend with one line here.
    static func all() -> [ConformanceBackend] {
        [
            ConformanceBackend(name: "opencl", make: { try openCL.get() }),
            ConformanceBackend(name: "vulkan", make: { try vulkan.get() }),
        ]
    }

    /// Opened once per process: the kernels compile once, and every test shares the device.
    static let openCL: Result<Backend, Error> = Result {
        do {
            return try OpenCLBackend(deviceIndex: openCLDeviceFromEnvironment)
        } catch OpenCLError.noPlatform {
            throw BackendUnavailable(reason: "no OpenCL platform installed (install pocl-opencl-icd to run these cases)")
        } catch let error as OpenCLError {
            // No loader (libOpenCL.so.1) or no device: this machine cannot run OpenCL at all.
            if case .noDevice = error { throw BackendUnavailable(reason: "\(error)") }
            throw error
        }
    }

    /// `LLM_GPU_OPENCL_DEVICE=N` picks the device the suite runs on (default: the backend's choice).
    static var openCLDeviceFromEnvironment: Int? {
        ProcessInfo.processInfo.environment["LLM_GPU_OPENCL_DEVICE"].flatMap(Int.init)
    }

    /// The oracle: the CPU backend with 2 threads.
    static let oracle = CPUBackend(threads: 2)
}

extension XCTestCase {
    /// Runs `body` once per available backend with the CPU oracle. Throws XCTSkip (with the
    /// reasons) only when no backend at all could run.
    func forEachBackend(_ body: (_ backend: Backend, _ oracle: CPUBackend) throws -> Void) throws {
        var skipped: [String] = []
        var ran = 0
        for candidate in ConformanceBackends.all() {
            let backend: Backend
            do {
                backend = try candidate.make()
            } catch let unavailable as BackendUnavailable {
                skipped.append("\(candidate.name): \(unavailable.reason)")
                continue
            }
            try body(backend, ConformanceBackends.oracle)
            ran += 1
        }
        if ran == 0 { throw XCTSkip(skipped.joined(separator: "; ")) }
    }

    /// `forEachBackend` over the backends that implement `op` (ops added after a backend was
    /// written are skipped on it, and say so, rather than failing).
    func forEachBackend(supporting op: BackendOp, _ body: (_ backend: Backend, _ oracle: CPUBackend) throws -> Void) throws {
        var ran = 0
        try forEachBackend { backend, oracle in
            guard backend.supports(op) else {
                print("note: \(backend.name) does not support \(op); its case is skipped")
                return
            }
            try body(backend, oracle)
            ran += 1
        }
        if ran == 0 { throw XCTSkip("no backend here supports \(op)") }
    }
}

/// A backend that cannot exist here (its driver is not installed): its cases are skipped.
struct BackendUnavailable: Error {
    let reason: String
}

/// Normalized squared error Σ(a−b)² / Σb², in double. When b is all zeros, Σ(a−b)².
func nmse(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var error = 0.0, norm = 0.0
    for i in a.indices {
        let d = Double(a[i]) - Double(b[i])
        error += d * d
        norm += Double(b[i]) * Double(b[i])
    }
    if error.isNaN { return .infinity }
    return norm > 0 ? error / norm : error
}

func assertClose(_ got: [Float], _ want: [Float], tolerance: Double, _ what: @autoclosure () -> String,
                 file: StaticString = #filePath, line: UInt = #line) {
    guard got.count == want.count else {
        XCTFail("\(what()): \(got.count) values, expected \(want.count)", file: file, line: line)
        return
    }
    let e = nmse(got, want)
    if ProcessInfo.processInfo.environment["LLM_GPU_PRINT_NMSE"] != nil { print("nmse \(e) (tolerance \(tolerance)): \(what())") }
    XCTAssert(e <= tolerance, "\(what()): nmse \(e) > \(tolerance)", file: file, line: line)
}

/// A real model from llm-gpu's cache (ModelCache), or XCTSkip naming where it was looked for.
func cachedModel(_ file: String) throws -> String {
    let path = ModelCache.path(file)
    guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("\(file) is not in the cache (\(path))") }
    return path
}

/// SplitMix64: deterministic inputs, the same on every machine.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    mutating func uniform(_ lo: Float = -1, _ hi: Float = 1) -> Float {
        lo + (hi - lo) * Float(next() >> 40) / Float(1 << 24)
    }
    mutating func floats(_ count: Int, _ lo: Float = -1, _ hi: Float = 1) -> [Float] {
        (0..<count).map { _ in uniform(lo, hi) }
    }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next() >> 32) }
}

/// Random bytes in `type`'s GGUF block layout: valid f16 scales, random quants.
func randomWeightBytes(_ type: GGMLType, rows: Int, columns: Int, _ rng: inout SeededRandom) -> [UInt8] {
    var bytes: [UInt8] = []
    func appendHalf(_ x: Float) {
        let bits = Float16(x).bitPattern
        bytes.append(UInt8(bits & 0xFF)); bytes.append(UInt8(bits >> 8))
    }
    let count = rows * columns
    switch type {
    case .f32:
        for _ in 0..<count { withUnsafeBytes(of: rng.uniform()) { bytes.append(contentsOf: $0) } }
    case .f16:
        for _ in 0..<count { appendHalf(rng.uniform()) }
    case .bf16:
        for _ in 0..<count {
            let bits = UInt16(rng.uniform().bitPattern >> 16)
            bytes.append(UInt8(bits & 0xFF)); bytes.append(UInt8(bits >> 8))
        }
    case .q8_0:
        for _ in 0..<(count / 32) {
            appendHalf(rng.uniform(0.001, 0.02))
            for _ in 0..<32 { bytes.append(UInt8(bitPattern: Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127))) }
        }
    case .q4_0:
        for _ in 0..<(count / 32) {
            appendHalf(rng.uniform(-0.1, 0.1))
            for _ in 0..<16 { bytes.append(rng.byte()) }
        }
    case .q4_1:
        for _ in 0..<(count / 32) {
            appendHalf(rng.uniform(0.005, 0.1))
            appendHalf(rng.uniform(-0.8, 0))
            for _ in 0..<16 { bytes.append(rng.byte()) }
        }
    default:
        preconditionFailure("no generator for \(type)")
    }
    precondition(bytes.count == rows * (type.rowBytes(columns) ?? -1))
    return bytes
}

/// Makes a weight from `bytes`. The CPU backend uses a weight's bytes in place, so they are
/// copied to memory that lives for the rest of the test process (test data is small).
func makeWeight(_ backend: Backend, _ name: String, _ type: GGMLType, rows: Int, columns: Int, bytes: [UInt8]) throws -> BackendWeight {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
    bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
    return try backend.makeWeight(name: name, type: type, rows: rows, columns: columns,
                                  bytes: UnsafeRawBufferPointer(rebasing: storage[0..<bytes.count]))
}

/// A buffer holding `values` (plus `extra` zeros after them).
func makeFilled(_ backend: Backend, _ values: [Float], label: String, extra: Int = 0) throws -> BackendBuffer {
    let buffer = try backend.makeBuffer(count: values.count + extra, label: label)
    try backend.upload(values, to: buffer, offset: 0)
    return buffer
}

func download(_ backend: Backend, _ buffer: BackendBuffer, count: Int? = nil) throws -> [Float] {
    try backend.download(buffer, offset: 0, count: count ?? buffer.count)
}
