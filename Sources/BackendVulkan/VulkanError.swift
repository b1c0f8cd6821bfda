import CGPU

/// Everything the Vulkan backend can fail with. A failed Vulkan call names the call and the
/// VkResult (`vkAllocateMemory failed: VK_ERROR_OUT_OF_DEVICE_MEMORY`); there is never a
/// silent fallback to another backend.
public enum VulkanError: Error, CustomStringConvertible, Equatable {
    /// A Vulkan call returned something other than VK_SUCCESS.
    case call(String, result: String)
    /// The loader works but reports no physical device (no ICD such as mesa-vulkan-drivers).
    case noDevice(String)
    /// `--device N` names no device.
    case deviceIndexOutOfRange(requested: Int, available: Int)
    /// The chosen device has no queue family with compute support.
    case noComputeQueue(device: String)
    /// An allocation or binding larger than the device allows.
    case tooLarge(what: String, bytes: Int, limit: Int, limitName: String)
    /// A shape the kernels do not handle (e.g. head dimension above 256).
    case unsupported(String)
    /// No memory type fits the request.
    case noMemoryType(String)
    /// Invalid arguments to an op (ranges outside a buffer).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case let .call(name, result):
            return "\(name) failed: \(result)"
        case let .noDevice(reason):
            return "no Vulkan device: \(reason)"
        case let .deviceIndexOutOfRange(requested, available):
            return "Vulkan device \(requested) does not exist (\(available) device\(available == 1 ? "" : "s"); see `llm-gpu devices`)"
        case let .noComputeQueue(device):
            return "Vulkan device '\(device)' has no compute queue"
        case let .tooLarge(what, bytes, limit, limitName):
            return "\(what) needs \(bytes) bytes, more than the device's \(limitName) (\(limit) bytes)"
        case let .unsupported(reason):
            return "the vulkan backend does not support \(reason)"
        case let .noMemoryType(reason):
            return "no suitable Vulkan memory type: \(reason)"
        case let .invalidArgument(reason):
            return "vulkan backend: \(reason)"
        }
    }
}

/// Throws `VulkanError.call` unless `result` is VK_SUCCESS.
@inline(__always)
func vkCheck(_ result: VkResult, _ call: @autoclosure () -> String) throws {
    guard result == VK_SUCCESS else { throw VulkanError.call(call(), result: vkResultName(result)) }
}

func vkResultName(_ result: VkResult) -> String {
    switch result {
    case VK_SUCCESS: return "VK_SUCCESS"
    case VK_NOT_READY: return "VK_NOT_READY"
    case VK_TIMEOUT: return "VK_TIMEOUT"
    case VK_INCOMPLETE: return "VK_INCOMPLETE"
    case VK_ERROR_OUT_OF_HOST_MEMORY: return "VK_ERROR_OUT_OF_HOST_MEMORY"
    case VK_ERROR_OUT_OF_DEVICE_MEMORY: return "VK_ERROR_OUT_OF_DEVICE_MEMORY"
    case VK_ERROR_INITIALIZATION_FAILED: return "VK_ERROR_INITIALIZATION_FAILED"
    case VK_ERROR_DEVICE_LOST: return "VK_ERROR_DEVICE_LOST"
    case VK_ERROR_MEMORY_MAP_FAILED: return "VK_ERROR_MEMORY_MAP_FAILED"
    case VK_ERROR_LAYER_NOT_PRESENT: return "VK_ERROR_LAYER_NOT_PRESENT"
    case VK_ERROR_EXTENSION_NOT_PRESENT: return "VK_ERROR_EXTENSION_NOT_PRESENT"
    case VK_ERROR_FEATURE_NOT_PRESENT: return "VK_ERROR_FEATURE_NOT_PRESENT"
    case VK_ERROR_INCOMPATIBLE_DRIVER: return "VK_ERROR_INCOMPATIBLE_DRIVER"
    case VK_ERROR_TOO_MANY_OBJECTS: return "VK_ERROR_TOO_MANY_OBJECTS"
    case VK_ERROR_FORMAT_NOT_SUPPORTED: return "VK_ERROR_FORMAT_NOT_SUPPORTED"
    case VK_ERROR_FRAGMENTED_POOL: return "VK_ERROR_FRAGMENTED_POOL"
    case VK_ERROR_OUT_OF_POOL_MEMORY: return "VK_ERROR_OUT_OF_POOL_MEMORY"
    case VK_ERROR_INVALID_EXTERNAL_HANDLE: return "VK_ERROR_INVALID_EXTERNAL_HANDLE"
    case VK_ERROR_FRAGMENTATION: return "VK_ERROR_FRAGMENTATION"
    case VK_ERROR_UNKNOWN: return "VK_ERROR_UNKNOWN"
    default: return "VkResult(\(result.rawValue))"
    }
}
