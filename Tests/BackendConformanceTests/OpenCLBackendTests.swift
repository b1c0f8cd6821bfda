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
        XCTAssertFalse(backend.supports(.matmul(.q4_K)))
        let bytes = [UInt8](repeating: 0, count: GGMLType.q4_K.typeSize)
        let w = try makeWeight(backend, "k", .q4_K, rows: 1, columns: 256, bytes: bytes)
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
