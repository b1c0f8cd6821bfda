import CGPU

/// What `llm-gpu devices` shows for one Vulkan physical device.
public struct VulkanDeviceInfo: Sendable, Encodable {
    public struct Heap: Sendable, Encodable {
        public var bytes: Int
        public var deviceLocal: Bool
    }
    /// The index `--device` takes: the position in vkEnumeratePhysicalDevices order.
    public var index: Int
    public var name: String
    /// "discrete", "integrated", "virtual", "cpu" or "other".
    public var type: String
    public var apiVersion: String
    public var heaps: [Heap]
    public var maxStorageBufferRange: Int
    public var maxMemoryAllocationSize: Int
    public var subgroupSize: Int
    /// Subgroup arithmetic (subgroupAdd) in compute shaders: the matmul kernels reduce with it.
    public var subgroupArithmetic: Bool
    public var hasComputeQueue: Bool

    /// One line for listings.
    public var summary: String {
        let heapText = heaps.map { "\($0.bytes >> 20) MiB\($0.deviceLocal ? " device-local" : "")" }.joined(separator: ", ")
        return "[\(index)] \(name) (\(type), Vulkan \(apiVersion)), heaps: \(heapText); maxStorageBufferRange \(maxStorageBufferRange >> 20) MiB, "
            + "maxMemoryAllocationSize \(maxMemoryAllocationSize >> 20) MiB, subgroup \(subgroupSize)"
            + (hasComputeQueue ? "" : ", no compute queue")
    }

    /// Preference when no index is given: discrete, integrated, virtual, then CPU (lavapipe).
    var rank: Int {
        switch type {
        case "discrete": return 0
        case "integrated": return 1
        case "virtual": return 2
        case "cpu": return 3
        default: return 4
        }
    }
}

/// Instance creation and device enumeration, shared by the backend and `llm-gpu devices`.
enum VulkanInstance {
    static func create() throws -> VkInstance {
        guard cgpu_vulkan_loader_available() != 0 else {
            throw VulkanError.noDevice("\(String(cString: cgpu_vulkan_loader_error())); install libvulkan1 and a driver such as mesa-vulkan-drivers, or use --backend cpu")
        }
        var instance: VkInstance?
        let result: VkResult = "llm-gpu".withCString { appName in
            var app = VkApplicationInfo()
            app.sType = VK_STRUCTURE_TYPE_APPLICATION_INFO
            app.pApplicationName = appName
            app.pEngineName = appName
            app.apiVersion = cgpu_vk_make_api_version(0, 1, 1, 0)
            return withUnsafePointer(to: &app) { appPointer in
                var info = VkInstanceCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO
                info.pApplicationInfo = appPointer
                return vkCreateInstance(&info, nil, &instance)
            }
        }
        if result == VK_ERROR_INCOMPATIBLE_DRIVER {
            throw VulkanError.noDevice("the Vulkan loader found no driver (VK_ERROR_INCOMPATIBLE_DRIVER); install a Vulkan ICD, e.g. mesa-vulkan-drivers")
        }
        try vkCheck(result, "vkCreateInstance")
        guard let instance else { throw VulkanError.call("vkCreateInstance", result: "null instance") }
        return instance
    }

    static func physicalDevices(_ instance: VkInstance) throws -> [VkPhysicalDevice] {
        var count: UInt32 = 0
        let first = vkEnumeratePhysicalDevices(instance, &count, nil)
        if first == VK_ERROR_INITIALIZATION_FAILED { return [] }
        try vkCheck(first, "vkEnumeratePhysicalDevices")
        var devices = [VkPhysicalDevice?](repeating: nil, count: Int(count))
        try vkCheck(vkEnumeratePhysicalDevices(instance, &count, &devices), "vkEnumeratePhysicalDevices")
        return devices.prefix(Int(count)).compactMap { $0 }
    }

    static func computeQueueFamily(_ device: VkPhysicalDevice) -> UInt32? {
        var count: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(device, &count, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(count))
        vkGetPhysicalDeviceQueueFamilyProperties(device, &count, &families)
        let compute = VK_QUEUE_COMPUTE_BIT.rawValue, graphics = VK_QUEUE_GRAPHICS_BIT.rawValue
        // Prefer a compute-only family (async compute on discrete GPUs), else any with compute.
        if let i = families.firstIndex(where: { $0.queueFlags & compute != 0 && $0.queueFlags & graphics == 0 && $0.queueCount > 0 }) {
            return UInt32(i)
        }
        return families.firstIndex(where: { $0.queueFlags & compute != 0 && $0.queueCount > 0 }).map(UInt32.init)
    }

    static func info(_ device: VkPhysicalDevice, index: Int) -> VulkanDeviceInfo {
        var properties = VkPhysicalDeviceProperties()
        vkGetPhysicalDeviceProperties(device, &properties)
        let name = withUnsafeBytes(of: properties.deviceName) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        let type: String
        switch properties.deviceType {
        case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: type = "discrete"
        case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: type = "integrated"
        case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: type = "virtual"
        case VK_PHYSICAL_DEVICE_TYPE_CPU: type = "cpu"
        default: type = "other"
        }
        let api = properties.apiVersion
        var subgroupSize = 0
        var subgroupArithmetic = false
        var maxAllocation = Int(UInt32.max)  // Vulkan 1.0 devices: no query; 4 GiB is the common cap
        if cgpu_vk_api_version_major(api) > 1 || cgpu_vk_api_version_minor(api) >= 1 {
            var subgroup = VkPhysicalDeviceSubgroupProperties()
            subgroup.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_SUBGROUP_PROPERTIES
            var maintenance3 = VkPhysicalDeviceMaintenance3Properties()
            maintenance3.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_MAINTENANCE_3_PROPERTIES
            var properties2 = VkPhysicalDeviceProperties2()
            properties2.sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PROPERTIES_2
            withUnsafeMutablePointer(to: &maintenance3) { m in
                subgroup.pNext = UnsafeMutableRawPointer(m)
                withUnsafeMutablePointer(to: &subgroup) { s in
                    properties2.pNext = UnsafeMutableRawPointer(s)
                    vkGetPhysicalDeviceProperties2(device, &properties2)
                }
            }
            subgroupSize = Int(subgroup.subgroupSize)
            subgroupArithmetic = subgroup.supportedOperations & VK_SUBGROUP_FEATURE_ARITHMETIC_BIT.rawValue != 0
                && subgroup.supportedStages & VK_SHADER_STAGE_COMPUTE_BIT.rawValue != 0
            maxAllocation = Int(maintenance3.maxMemoryAllocationSize)
        }
        var memory = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(device, &memory)
        let heaps = withUnsafeBytes(of: memory.memoryHeaps) { raw in
            Array(raw.bindMemory(to: VkMemoryHeap.self).prefix(Int(memory.memoryHeapCount)))
        }.map {
            VulkanDeviceInfo.Heap(bytes: Int($0.size), deviceLocal: $0.flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT.rawValue != 0)
        }
        return VulkanDeviceInfo(
            index: index, name: name, type: type,
            apiVersion: "\(cgpu_vk_api_version_major(api)).\(cgpu_vk_api_version_minor(api))",
            heaps: heaps,
            maxStorageBufferRange: Int(properties.limits.maxStorageBufferRange),
            maxMemoryAllocationSize: maxAllocation,
            subgroupSize: subgroupSize,
            subgroupArithmetic: subgroupArithmetic,
            hasComputeQueue: computeQueueFamily(device) != nil)
    }
}
