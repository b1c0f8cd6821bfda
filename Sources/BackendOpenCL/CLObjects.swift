import CGPU
import Foundation

// Each OpenCL handle is owned by exactly one final class that releases it in deinit.
// OpenCL itself keeps a released object alive until enqueued work that uses it finishes.

final class CLContext {
    let handle: cl_context
    init(device: cl_device_id) throws {
        var device: cl_device_id? = device
        handle = try checked("clCreateContext") { clCreateContext(nil, 1, &device, nil, nil, $0) }
    }
    deinit { clReleaseContext(handle) }
}

final class CLQueue {
    let handle: cl_command_queue
    /// An in-order queue: ops run in the order they are enqueued, with no host waits between them.
    /// `profiling`: CL_QUEUE_PROFILING_ENABLE, so events carry device start and end times.
    init(context: CLContext, device: cl_device_id, profiling: Bool = false) throws {
        let properties = profiling ? cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE) : 0
        handle = try checked("clCreateCommandQueue") { clCreateCommandQueue(context.handle, device, properties, $0) }
    }
    deinit { clReleaseCommandQueue(handle) }
}

final class CLProgram {
    let handle: cl_program
    let context: CLContext
    init(context: CLContext, device: cl_device_id, deviceName: String, source: String, options: String) throws {
        self.context = context
        handle = try source.withCString { text in
            var strings: UnsafePointer<CChar>? = text
            var length = strlen(text)
            return try checked("clCreateProgramWithSource") { clCreateProgramWithSource(context.handle, 1, &strings, &length, $0) }
        }
        var device: cl_device_id? = device
        let status = clBuildProgram(handle, 1, &device, options, nil, nil)
        if status == CL_BUILD_PROGRAM_FAILURE {
            throw OpenCLError.buildFailed(device: deviceName, log: (try? buildLog(device!)) ?? "(no build log)")
        }
        try check("clBuildProgram", status)
    }
    deinit { clReleaseProgram(handle) }

    func buildLog(_ device: cl_device_id) throws -> String {
        var size = 0
        try check("clGetProgramBuildInfo", clGetProgramBuildInfo(handle, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), 0, nil, &size))
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check("clGetProgramBuildInfo", clGetProgramBuildInfo(handle, device, cl_program_build_info(CL_PROGRAM_BUILD_LOG), size, &bytes, nil))
        return String(cString: bytes)
    }
}

final class CLKernel {
    let handle: cl_kernel
    let name: String
    /// CL_KERNEL_WORK_GROUP_SIZE: the largest local size this kernel can launch with on the device.
    let maxWorkGroupSize: Int
    let program: CLProgram

    init(program: CLProgram, name: String, device: cl_device_id) throws {
        self.program = program
        self.name = name
        let kernel = try checked("clCreateKernel") { clCreateKernel(program.handle, name, $0) }
        handle = kernel
        var size = 0
        let status = clGetKernelWorkGroupInfo(kernel, device, cl_kernel_work_group_info(CL_KERNEL_WORK_GROUP_SIZE),
                                              MemoryLayout<Int>.size, &size, nil)
        if status != CL_SUCCESS { clReleaseKernel(kernel); try check("clGetKernelWorkGroupInfo", status) }
        maxWorkGroupSize = max(1, size)
    }
    deinit { clReleaseKernel(handle) }

    enum Argument {
        case buffer(cl_mem)
        case int(Int32)
        case float(Float)
        /// `bytes` of local memory.
        case local(Int)
    }

    func set(_ arguments: [Argument]) throws {
        for (index, argument) in arguments.enumerated() {
            let i = cl_uint(index), status: cl_int
            switch argument {
            case .buffer(var mem): status = clSetKernelArg(handle, i, MemoryLayout<cl_mem>.size, &mem)
            case .int(var value): status = clSetKernelArg(handle, i, 4, &value)
            case .float(var value): status = clSetKernelArg(handle, i, 4, &value)
            case .local(let bytes): status = clSetKernelArg(handle, i, bytes, nil)
            }
            try check("clSetKernelArg", status)
        }
    }
}

/// A device allocation, counted against the device's memory while it lives.
final class CLMemory {
    let handle: cl_mem
    let bytes: Int
    private let ledger: MemoryLedger

    init(context: CLContext, ledger: MemoryLedger, bytes: Int, flags: cl_mem_flags,
         host: UnsafeMutableRawPointer? = nil, label: String) throws {
        let size = max(bytes, 4)
        try ledger.reserve(size, label: label)
        self.ledger = ledger
        self.bytes = size
        do {
            handle = try checked("clCreateBuffer") { clCreateBuffer(context.handle, flags, size, host, $0) }
        } catch {
            ledger.release(size)
            throw error
        }
    }
    deinit {
        clReleaseMemObject(handle)
        ledger.release(bytes)
    }
}

/// Tracks bytes allocated on one device, so an allocation past CL_DEVICE_GLOBAL_MEM_SIZE or
/// CL_DEVICE_MAX_MEM_ALLOC_SIZE is a clear error before the driver is asked.
final class MemoryLedger: @unchecked Sendable {
    let globalBytes: Int
    let maxAllocation: Int
    let device: String
    private var used = 0
    private let lock = NSLock()

    init(globalBytes: Int, maxAllocation: Int, device: String) {
        self.globalBytes = globalBytes
        self.maxAllocation = maxAllocation
        self.device = device
    }

    var usedBytes: Int { lock.lock(); defer { lock.unlock() }; return used }

    func reserve(_ bytes: Int, label: String) throws {
        if bytes > maxAllocation {
            throw OpenCLError.outOfMemory("'\(label)' needs \(bytes) bytes in one buffer, but \(device) allows at most \(maxAllocation) (CL_DEVICE_MAX_MEM_ALLOC_SIZE)")
        }
        lock.lock(); defer { lock.unlock() }
        if used + bytes > globalBytes {
            throw OpenCLError.outOfMemory("'\(label)' needs \(bytes) bytes, but only \(globalBytes - used) of \(globalBytes) remain on \(device) (CL_DEVICE_GLOBAL_MEM_SIZE)")
        }
        used += bytes
    }

    func release(_ bytes: Int) {
        lock.lock(); defer { lock.unlock() }
        used -= bytes
    }
}
