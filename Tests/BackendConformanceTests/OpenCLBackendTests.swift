import BackendOpenCL
import LLM
import XCTest

/// OpenCL-specific behaviour: device listing, selection and its errors. Skipped only when no
/// OpenCL platform is installed.
final class OpenCLBackendTests: XCTestCase {
    func backend() throws -> OpenCLBackend {
        switch ConformanceBackends.openCL {
        case .success(let b): return b as! OpenCLBackend
        case .failure(let e as BackendUnavailable): throw XCTSkip(e.reason)
        case .failure(let e): throw e
        }
    }

    func testListDevicesDescribesTheOpenedDevice() throws {
        let backend = try backend()
        let devices = try OpenCLBackend.listDevices()
        XCTAssertFalse(devices.isEmpty)
        XCTAssertEqual(devices.map(\.index), Array(devices.indices))
        let opened = try XCTUnwrap(devices.first { $0.index == backend.device.index })
        XCTAssertEqual(opened.name, backend.device.name)
        XCTAssertGreaterThan(opened.globalMemoryBytes, 0)
        XCTAssertGreaterThan(opened.computeUnits, 0)
        XCTAssertTrue(opened.openCLCVersion.hasPrefix("OpenCL C"), opened.openCLCVersion)
        XCTAssertTrue(backend.deviceDescription.contains(opened.name))
        XCTAssertGreaterThanOrEqual(backend.matmulTile, 1)
    }

    func testDeviceIndexOutOfRangeIsAClearError() throws {
        _ = try backend()
        let count = try OpenCLBackend.listDevices().count
        XCTAssertThrowsError(try OpenCLBackend(deviceIndex: count)) { error in
            guard case OpenCLError.noDevice(let why) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(why.contains("out of range"), why)
        }
    }

    func testStatusNamesInErrors() {
        let error = OpenCLError.callFailed(call: "clEnqueueNDRangeKernel", status: -5)
        XCTAssertEqual(error.description, "clEnqueueNDRangeKernel failed: CL_OUT_OF_RESOURCES (-5)")
        XCTAssertEqual(openCLStatusName(-54), "CL_INVALID_WORK_GROUP_SIZE")
    }

    func testAllocationPastTheDeviceLimitsIsRefused() throws {
        let backend = try backend()
        let tooBig = backend.device.maxAllocationBytes / 4 + 1
        XCTAssertThrowsError(try backend.makeBuffer(count: tooBig, label: "huge")) { error in
            guard case OpenCLError.outOfMemory(let why) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(why.contains("CL_DEVICE_MAX_MEM_ALLOC_SIZE"), why)
        }
        XCTAssertEqual(backend.memoryCapacity, UInt64(backend.device.globalMemoryBytes))
    }

    func testUnsupportedWeightTypeIsAnError() throws {
        let backend = try backend()
        XCTAssertFalse(backend.supports(.matmul(.q2_K)))
        let bytes = [UInt8](repeating: 0, count: GGMLType.q2_K.typeSize)
        let w = try makeWeight(backend, "k", .q2_K, rows: 1, columns: 256, bytes: bytes)
        let x = try backend.makeBuffer(count: 256, label: "x"), y = try backend.makeBuffer(count: 1, label: "y")
        XCTAssertThrowsError(try backend.matmul(w, x, into: y, rows: 1)) { XCTAssertTrue($0 is UnsupportedOpError, "\($0)") }
    }

    func testBuffersOfAnotherBackendAreRejected() throws {
        let backend = try backend()
        let foreign = try ConformanceBackends.oracle.makeBuffer(count: 4, label: "cpu")
        let mine = try backend.makeBuffer(count: 4, label: "cl")
        XCTAssertThrowsError(try backend.add(foreign, mine, into: mine, count: 4))
    }
}

/// Every matmul kernel variant on every weight type, forced in turn, so the GPU variants are
/// checked on CPU devices (PoCL) and vice versa. Tolerance as in `OpConformanceTests.testMatmul`.
final class OpenCLMatmulVariantTests: XCTestCase {
    func testEveryMatmulKernelMatchesTheOracle() throws {
        let backend: OpenCLBackend
        switch ConformanceBackends.openCL {
        case .success(let b): backend = b as! OpenCLBackend
        case .failure(let e as BackendUnavailable): throw XCTSkip(e.reason)
        case .failure(let e): throw e
        }
        defer { backend.matmulKernel = .automatic }
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 11)
        let variants: [OpenCLBackend.MatmulKernel] = [.vector(threadsPerRow: 1), .vector(threadsPerRow: 8),
                                                      .vector(threadsPerRow: 32), .tiled, .rows]
        for type in OpConformanceTests.floatTypes + OpConformanceTests.blockTypes {
            for (outputs, columns, rows) in [(33, 96, 1), (67, 96, 3), (5, 576, 9), (130, 576, 37)] + (type.blockSize == 1 ? [(33, 340, 4)] : []) {
                let bytes = randomWeightBytes(type, rows: outputs, columns: columns, &rng)
                let x = rng.floats(rows * columns)
                let w = try makeWeight(cpu, "w", type, rows: outputs, columns: columns, bytes: bytes)
                let want = try cpu.makeBuffer(count: rows * outputs, label: "y")
                try cpu.matmul(w, makeFilled(cpu, x, label: "x"), into: want, rows: rows)
                let expected = try download(cpu, want)
                let wd = try makeWeight(backend, "w", type, rows: outputs, columns: columns, bytes: bytes)
                let input = try makeFilled(backend, x, label: "x")
                for variant in variants {
                    backend.matmulKernel = variant
                    let output = try backend.makeBuffer(count: rows * outputs, label: "y")
                    try backend.matmul(wd, input, into: output, rows: rows)
                    assertClose(try download(backend, output), expected, tolerance: 1e-9,
                                "opencl \(variant) matmul \(type) \(outputs)x\(columns) rows \(rows)")
                }
            }
        }
    }
}

/// Both attention kernels, forced in turn, contiguous (GQA, odd head counts, long context) and
/// paged. Tolerance as in `OpConformanceTests.testAttention`.
final class OpenCLAttentionVariantTests: XCTestCase {
    func testEveryAttentionKernelMatchesTheOracle() throws {
        let backend: OpenCLBackend
        switch ConformanceBackends.openCL {
        case .success(let b): backend = b as! OpenCLBackend
        case .failure(let e as BackendUnavailable): throw XCTSkip(e.reason)
        case .failure(let e): throw e
        }
        defer { backend.attentionKernel = .automatic }
        let cpu = ConformanceBackends.oracle
        var rng = SeededRandom(seed: 12)
        for (heads, kvHeads, headDim) in [(5, 5, 40), (6, 2, 96), (4, 1, 64), (2, 1, 6)] {
            let shape = AttentionShape(heads: heads, kvHeads: kvHeads, headDim: headDim, scale: 1 / Float(headDim).squareRoot())
            for (rows, start) in [(1, 0), (7, 17), (3, 300), (20, 0)] {
                let positions = start + rows
                let q = rng.floats(rows * shape.queryWidth, -2, 2)
                let k = rng.floats(positions * shape.kvWidth, -2, 2), v = rng.floats(positions * shape.kvWidth)
                // Paged: the same keys in blocks of 16 laid out in reverse order in the pool.
                let blockSize = 16, blocks = (positions + blockSize - 1) / blockSize
                var pk = [Float](repeating: 0, count: blocks * blockSize * shape.kvWidth), pv = pk
                for p in 0..<positions {
                    let physical = (blocks - 1 - p / blockSize) * blockSize + p % blockSize
                    for i in 0..<shape.kvWidth {
                        pk[physical * shape.kvWidth + i] = k[p * shape.kvWidth + i]
                        pv[physical * shape.kvWidth + i] = v[p * shape.kvWidth + i]
                    }
                }
                let table = (0..<blocks).map { Int32(blocks - 1 - $0) }
                let layout = PagedLayout(blockSize: blockSize, tables: Array(repeating: table, count: rows),
                                         lengths: (0..<rows).map { start + $0 + 1 })

                let want = try cpu.makeBuffer(count: rows * shape.queryWidth, label: "o")
                try cpu.attention(query: makeFilled(cpu, q, label: "q"), keys: makeFilled(cpu, k, label: "k"),
                                  values: makeFilled(cpu, v, label: "v"), into: want, rows: rows, startPosition: start, shape: shape)
                let expected = try download(cpu, want)
                for variant in [OpenCLBackend.AttentionKernel.workGroup, .perRow] {
                    backend.attentionKernel = variant
                    let query = try makeFilled(backend, q, label: "q")
                    let output = try backend.makeBuffer(count: rows * shape.queryWidth, label: "o")
                    try backend.attention(query: query, keys: makeFilled(backend, k, label: "k"), values: makeFilled(backend, v, label: "v"),
                                          into: output, rows: rows, startPosition: start, shape: shape)
                    assertClose(try download(backend, output), expected, tolerance: 1e-9,
                                "opencl \(variant) attention \(heads):\(kvHeads)x\(headDim) rows \(rows) at \(start)")
                    let paged = try backend.makeBuffer(count: rows * shape.queryWidth, label: "o")
                    try backend.pagedAttention(query: query, keys: makeFilled(backend, pk, label: "pk"), values: makeFilled(backend, pv, label: "pv"),
                                               into: paged, rows: rows, layout: layout, shape: shape)
                    assertClose(try download(backend, paged), expected, tolerance: 1e-9,
                                "opencl \(variant) paged attention \(heads):\(kvHeads)x\(headDim) rows \(rows) at \(start)")
                }
            }
        }
    }
}
