import CGPU

/// Everything that can go wrong in the OpenCL backend, with the call and the status by name.
/// There is never a silent fallback to the CPU: each case is reported to the caller.
public enum OpenCLError: Error, CustomStringConvertible, Equatable {
    /// An OpenCL call returned a status other than CL_SUCCESS.
    case callFailed(call: String, status: Int32)
    /// The ICD loader found no OpenCL platform (no driver installed).
    case noPlatform
    /// No device, or no device at the requested index.
    case noDevice(String)
    /// The device lacks something the kernels need.
    case unsupportedDevice(String)
    /// An allocation larger than the device allows (CL_DEVICE_MAX_MEM_ALLOC_SIZE) or more than it has.
    case outOfMemory(String)
    /// The kernels did not compile; the build log is attached.
    case buildFailed(device: String, log: String)
    /// An op was called with arguments outside its contract.
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .callFailed(let call, let status):
            return "\(call) failed: \(openCLStatusName(status)) (\(status))"
        case .noPlatform:
            return "no OpenCL platform found (install an OpenCL driver, e.g. pocl-opencl-icd, or use --backend cpu)"
        case .noDevice(let why): return "no OpenCL device: \(why)"
        case .unsupportedDevice(let why): return "unsupported OpenCL device: \(why)"
        case .outOfMemory(let why): return "OpenCL device memory: \(why)"
        case .buildFailed(let device, let log): return "OpenCL kernels failed to build for \(device):\n\(log)"
        case .invalidArgument(let why): return "OpenCL backend: \(why)"
        }
    }
}

/// Throws `OpenCLError.callFailed` unless `status` is CL_SUCCESS. Every CL call goes through this.
@inline(__always)
func check(_ call: StaticString, _ status: cl_int) throws {
    if status != CL_SUCCESS { throw OpenCLError.callFailed(call: "\(call)", status: status) }
}

/// For the creating calls that report their status through an out parameter.
@inline(__always)
func checked<T>(_ call: StaticString, _ body: (UnsafeMutablePointer<cl_int>) -> T?) throws -> T {
    var status: cl_int = CL_SUCCESS
    let result = body(&status)
    try check(call, status)
    guard let result else { throw OpenCLError.callFailed(call: "\(call)", status: CL_INVALID_VALUE) }
    return result
}

/// The CL_* name of an OpenCL status code.
public func openCLStatusName(_ status: Int32) -> String {
    switch status {
    case 0: return "CL_SUCCESS"
    case -1: return "CL_DEVICE_NOT_FOUND"
    case -2: return "CL_DEVICE_NOT_AVAILABLE"
    case -3: return "CL_COMPILER_NOT_AVAILABLE"
    case -4: return "CL_MEM_OBJECT_ALLOCATION_FAILURE"
    case -5: return "CL_OUT_OF_RESOURCES"
    case -6: return "CL_OUT_OF_HOST_MEMORY"
    case -7: return "CL_PROFILING_INFO_NOT_AVAILABLE"
    case -8: return "CL_MEM_COPY_OVERLAP"
    case -9: return "CL_IMAGE_FORMAT_MISMATCH"
    case -10: return "CL_IMAGE_FORMAT_NOT_SUPPORTED"
    case -11: return "CL_BUILD_PROGRAM_FAILURE"
    case -12: return "CL_MAP_FAILURE"
    case -13: return "CL_MISALIGNED_SUB_BUFFER_OFFSET"
    case -14: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST"
    case -15: return "CL_COMPILE_PROGRAM_FAILURE"
    case -16: return "CL_LINKER_NOT_AVAILABLE"
    case -17: return "CL_LINK_PROGRAM_FAILURE"
    case -18: return "CL_DEVICE_PARTITION_FAILED"
    case -19: return "CL_KERNEL_ARG_INFO_NOT_AVAILABLE"
    case -30: return "CL_INVALID_VALUE"
    case -31: return "CL_INVALID_DEVICE_TYPE"
    case -32: return "CL_INVALID_PLATFORM"
    case -33: return "CL_INVALID_DEVICE"
    case -34: return "CL_INVALID_CONTEXT"
    case -35: return "CL_INVALID_QUEUE_PROPERTIES"
    case -36: return "CL_INVALID_COMMAND_QUEUE"
    case -37: return "CL_INVALID_HOST_PTR"
    case -38: return "CL_INVALID_MEM_OBJECT"
    case -39: return "CL_INVALID_IMAGE_FORMAT_DESCRIPTOR"
    case -40: return "CL_INVALID_IMAGE_SIZE"
    case -41: return "CL_INVALID_SAMPLER"
    case -42: return "CL_INVALID_BINARY"
    case -43: return "CL_INVALID_BUILD_OPTIONS"
    case -44: return "CL_INVALID_PROGRAM"
    case -45: return "CL_INVALID_PROGRAM_EXECUTABLE"
    case -46: return "CL_INVALID_KERNEL_NAME"
    case -47: return "CL_INVALID_KERNEL_DEFINITION"
    case -48: return "CL_INVALID_KERNEL"
    case -49: return "CL_INVALID_ARG_INDEX"
    case -50: return "CL_INVALID_ARG_VALUE"
    case -51: return "CL_INVALID_ARG_SIZE"
    case -52: return "CL_INVALID_KERNEL_ARGS"
    case -53: return "CL_INVALID_WORK_DIMENSION"
    case -54: return "CL_INVALID_WORK_GROUP_SIZE"
    case -55: return "CL_INVALID_WORK_ITEM_SIZE"
    case -56: return "CL_INVALID_GLOBAL_OFFSET"
    case -57: return "CL_INVALID_EVENT_WAIT_LIST"
    case -58: return "CL_INVALID_EVENT"
    case -59: return "CL_INVALID_OPERATION"
    case -60: return "CL_INVALID_GL_OBJECT"
    case -61: return "CL_INVALID_BUFFER_SIZE"
    case -62: return "CL_INVALID_MIP_LEVEL"
    case -63: return "CL_INVALID_GLOBAL_WORK_SIZE"
    case -64: return "CL_INVALID_PROPERTY"
    case -65: return "CL_INVALID_IMAGE_DESCRIPTOR"
    case -66: return "CL_INVALID_COMPILER_OPTIONS"
    case -67: return "CL_INVALID_LINKER_OPTIONS"
    case -68: return "CL_INVALID_DEVICE_PARTITION_COUNT"
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR"
    default: return "CL_UNKNOWN_STATUS"
    }
}
