import CGPU
import Foundation

/// One OpenCL device as `llm-gpu devices` lists it.
public struct OpenCLDeviceInfo: Sendable, Equatable, Codable {
    /// Position in the list across all platforms: the `--device` number.
    public var index: Int
    public var name: String
    public var vendor: String
    public var platform: String
    /// "GPU", "CPU", "accelerator" or "other".
    public var type: String
    public var globalMemoryBytes: Int
    public var maxAllocationBytes: Int
    public var localMemoryBytes: Int
    public var computeUnits: Int
    public var maxWorkGroupSize: Int
    /// CL_DEVICE_VERSION, e.g. "OpenCL 3.0 PoCL ...".
    public var deviceVersion: String
    /// CL_DEVICE_OPENCL_C_VERSION, e.g. "OpenCL C 1.2 PoCL".
    public var openCLCVersion: String
    public var extensions: [String]
    public var available: Bool
    public var compilerAvailable: Bool
}

enum DeviceQuery {
    /// Every device of every platform, in platform order. Throws `.noPlatform` when none is installed.
    static func allDevices() throws -> [(id: cl_device_id, platform: cl_platform_id)] {
        guard cgpu_opencl_loader_available() != 0 else {
            throw OpenCLError.noDevice("\(String(cString: cgpu_opencl_loader_error())); install ocl-icd-libopencl1 and a driver such as pocl-opencl-icd, or use --backend cpu")
        }
        var count: cl_uint = 0
        let status = clGetPlatformIDs(0, nil, &count)
        if status == CL_PLATFORM_NOT_FOUND_KHR || (status == CL_SUCCESS && count == 0) { throw OpenCLError.noPlatform }
        try check("clGetPlatformIDs", status)
        var platforms = [cl_platform_id?](repeating: nil, count: Int(count))
        try check("clGetPlatformIDs", clGetPlatformIDs(count, &platforms, nil))
        var result: [(cl_device_id, cl_platform_id)] = []
        for case let platform? in platforms {
            var deviceCount: cl_uint = 0
            let s = clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), 0, nil, &deviceCount)
            if s == CL_DEVICE_NOT_FOUND || deviceCount == 0 { continue }
            try check("clGetDeviceIDs", s)
            var devices = [cl_device_id?](repeating: nil, count: Int(deviceCount))
            try check("clGetDeviceIDs", clGetDeviceIDs(platform, cl_device_type(CL_DEVICE_TYPE_ALL), deviceCount, &devices, nil))
            for case let device? in devices { result.append((device, platform)) }
        }
        return result
    }

    static func string(_ device: cl_device_id, _ parameter: Int32) throws -> String {
        var size = 0
        try check("clGetDeviceInfo", clGetDeviceInfo(device, cl_device_info(parameter), 0, nil, &size))
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check("clGetDeviceInfo", clGetDeviceInfo(device, cl_device_info(parameter), size, &bytes, nil))
        return String(cString: bytes).trimmingCharacters(in: .whitespaces)
    }

    static func value<T: FixedWidthInteger>(_ device: cl_device_id, _ parameter: Int32, as: T.Type) throws -> T {
        var value: T = 0
        try check("clGetDeviceInfo", clGetDeviceInfo(device, cl_device_info(parameter), MemoryLayout<T>.size, &value, nil))
        return value
    }

    static func platformName(_ platform: cl_platform_id) throws -> String {
        var size = 0
        try check("clGetPlatformInfo", clGetPlatformInfo(platform, cl_platform_info(CL_PLATFORM_NAME), 0, nil, &size))
        var bytes = [CChar](repeating: 0, count: size + 1)
        try check("clGetPlatformInfo", clGetPlatformInfo(platform, cl_platform_info(CL_PLATFORM_NAME), size, &bytes, nil))
        return String(cString: bytes)
    }

    static func info(index: Int, device: cl_device_id, platform: cl_platform_id) throws -> OpenCLDeviceInfo {
        let type = try value(device, CL_DEVICE_TYPE, as: cl_device_type.self)
        let typeName: String
        if type & cl_device_type(CL_DEVICE_TYPE_GPU) != 0 { typeName = "GPU" }
        else if type & cl_device_type(CL_DEVICE_TYPE_CPU) != 0 { typeName = "CPU" }
        else if type & cl_device_type(CL_DEVICE_TYPE_ACCELERATOR) != 0 { typeName = "accelerator" }
        else { typeName = "other" }
        return OpenCLDeviceInfo(
            index: index,
            name: try string(device, CL_DEVICE_NAME),
            vendor: try string(device, CL_DEVICE_VENDOR),
            platform: try platformName(platform),
            type: typeName,
            globalMemoryBytes: Int(try value(device, CL_DEVICE_GLOBAL_MEM_SIZE, as: cl_ulong.self)),
            maxAllocationBytes: Int(try value(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, as: cl_ulong.self)),
            localMemoryBytes: Int(try value(device, CL_DEVICE_LOCAL_MEM_SIZE, as: cl_ulong.self)),
            computeUnits: Int(try value(device, CL_DEVICE_MAX_COMPUTE_UNITS, as: cl_uint.self)),
            maxWorkGroupSize: Int(try value(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, as: Int.self)),
            deviceVersion: try string(device, CL_DEVICE_VERSION),
            openCLCVersion: try string(device, CL_DEVICE_OPENCL_C_VERSION),
            extensions: try string(device, CL_DEVICE_EXTENSIONS).split(separator: " ").map(String.init),
            available: try value(device, CL_DEVICE_AVAILABLE, as: cl_bool.self) != 0,
            compilerAvailable: try value(device, CL_DEVICE_COMPILER_AVAILABLE, as: cl_bool.self) != 0
        )
    }

    /// (major, minor) from "OpenCL C 1.2 ..." or "OpenCL 3.0 ...".
    static func version(_ text: String) -> (Int, Int) {
        let words = text.split(separator: " ")
        for word in words {
            let parts = word.split(separator: ".")
            if parts.count >= 2, let major = Int(parts[0]), let minor = Int(parts[1].prefix { $0.isNumber }) {
                return (major, minor)
            }
        }
        return (0, 0)
    }
}
