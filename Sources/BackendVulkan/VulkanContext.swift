import CGPU
import Foundation
import LLM

/// One VkBuffer with its own VkDeviceMemory. `mapped` is set when the memory is host-visible
/// and coherent (lavapipe and other UMA devices): uploads and downloads then use it directly.
struct DeviceAllocation {
    let buffer: VkBuffer
    let memory: VkDeviceMemory
    let size: Int
    let mapped: UnsafeMutableRawPointer?
    let label: String
}

/// A storage-buffer binding of a dispatch: the allocation from offset 0, read or written, either
/// whole or only the first `bytes` an op touches (so a large buffer, a [batch, vocab] logits
/// buffer say, can still be bound when the op uses less than maxStorageBufferRange of it).
struct Binding {
    let allocation: DeviceAllocation
    let writes: Bool
    var bytes: Int
    static func read(_ a: DeviceAllocation, bytes: Int? = nil) -> Binding {
        Binding(allocation: a, writes: false, bytes: min(bytes ?? a.size, a.size))
    }
    static func write(_ a: DeviceAllocation, bytes: Int? = nil) -> Binding {
        Binding(allocation: a, writes: true, bytes: min(bytes ?? a.size, a.size))
    }
}

/// The device, its queue and everything created once and reused: pipelines (lazily, one per
/// SPIR-V module), descriptor set layouts and pipeline layouts (one per binding count),
/// descriptor sets (cached per tuple of bound buffers), one command buffer and one fence.
///
/// Submission model: ops are recorded into the command buffer with a memory barrier only
/// where an op touches a buffer an earlier unbarriered op wrote (or writes one it read);
/// `flush()` submits once and waits — called when results are needed (download, argmax,
/// synchronize) or before the host writes memory a recorded command still uses.
final class VulkanContext {
    let instance: VkInstance
    let physicalDevice: VkPhysicalDevice
    let device: VkDevice
    let queue: VkQueue
    let info: VulkanDeviceInfo
    let maxWorkGroupCount: (UInt32, UInt32, UInt32)
    private let memoryTypes: [VkMemoryType]
    /// CPU / integrated devices: device memory is host memory, so map it instead of staging.
    let unifiedMemory: Bool

    private let commandPool: VkCommandPool
    private let commandBuffer: VkCommandBuffer
    private let fence: VkFence
    private var setLayouts: [Int: VkDescriptorSetLayout] = [:]
    private var pipelineLayouts: [Int: VkPipelineLayout] = [:]
    private var pipelines: [String: VkPipeline] = [:]
    private var shaderModules: [VkShaderModule] = []
    private var descriptorPools: [VkDescriptorPool] = []
    private var descriptorSets: [SetKey: (set: VkDescriptorSet, pool: VkDescriptorPool)] = [:]

    private struct SetKey: Hashable {
        var buffers: [VkBuffer]
        var sizes: [Int]
    }

    // Recording state.
    private var recording = false
    private var referenced: Set<VkBuffer> = []
    private var unbarrieredWrites: Set<VkBuffer> = []
    private var unbarrieredReads: Set<VkBuffer> = []
    /// Dispatches and submits since creation (for benchmarks and tests).
    private(set) var dispatchCount = 0
    private(set) var submitCount = 0
    /// Device allocations made since creation (tests check that steady-state steps make none).
    private(set) var allocationCount = 0

    // Device timing (`--profile`): nil while off, and then nothing extra is recorded.
    private(set) var timestamps: TimestampQueries?
    /// The op kind commands recorded now belong to; only labelled commands are timed.
    var timingLabel: String?
    /// The compute queue family's timestampValidBits (0: it cannot write timestamps).
    let timestampValidBits: UInt32
    /// VkPhysicalDeviceLimits: nanoseconds per timestamp tick, and whether every graphics and
    /// compute queue supports timestamps.
    let timestampPeriod: Float
    let timestampComputeAndGraphics: Bool

    static let pushConstantBytes: UInt32 = 128

    init(deviceIndex: Int?) throws {
        let instance = try VulkanInstance.create()
        var ok = false
        defer { if !ok { vkDestroyInstance(instance, nil) } }

        let devices = try VulkanInstance.physicalDevices(instance)
        if devices.isEmpty {
            throw VulkanError.noDevice("the Vulkan loader reports no physical device; install a driver (e.g. mesa-vulkan-drivers for lavapipe)")
        }
        let infos = devices.enumerated().map { VulkanInstance.info($1, index: $0) }
        let chosen: Int
        if let deviceIndex {
            guard deviceIndex >= 0, deviceIndex < devices.count else {
                throw VulkanError.deviceIndexOutOfRange(requested: deviceIndex, available: devices.count)
            }
            chosen = deviceIndex
        } else {
            // Best type first; CPU devices (lavapipe) are kept: they are the only device on many CI hosts.
            guard let best = infos.filter(\.hasComputeQueue).min(by: { $0.rank < $1.rank }) else {
                throw VulkanError.noComputeQueue(device: infos.map(\.name).joined(separator: ", "))
            }
            chosen = best.index
        }
        let physicalDevice = devices[chosen]
        let info = infos[chosen]
        guard let family = VulkanInstance.computeQueueFamily(physicalDevice) else {
            throw VulkanError.noComputeQueue(device: info.name)
        }

        var properties = VkPhysicalDeviceProperties()
        vkGetPhysicalDeviceProperties(physicalDevice, &properties)
        maxWorkGroupCount = properties.limits.maxComputeWorkGroupCount
        var familyCount: UInt32 = 0
        vkGetPhysicalDeviceQueueFamilyProperties(physicalDevice, &familyCount, nil)
        var families = [VkQueueFamilyProperties](repeating: VkQueueFamilyProperties(), count: Int(familyCount))
        vkGetPhysicalDeviceQueueFamilyProperties(physicalDevice, &familyCount, &families)
        timestampValidBits = Int(family) < families.count ? families[Int(family)].timestampValidBits : 0
        timestampPeriod = properties.limits.timestampPeriod
        timestampComputeAndGraphics = properties.limits.timestampComputeAndGraphics != 0
        var memory = VkPhysicalDeviceMemoryProperties()
        vkGetPhysicalDeviceMemoryProperties(physicalDevice, &memory)
        memoryTypes = withUnsafeBytes(of: memory.memoryTypes) { raw in
            Array(raw.bindMemory(to: VkMemoryType.self).prefix(Int(memory.memoryTypeCount)))
        }
        unifiedMemory = info.type == "cpu" || info.type == "integrated"

        var device: VkDevice?
        var priority: Float = 1
        try withUnsafePointer(to: &priority) { priorityPointer in
            var queueInfo = VkDeviceQueueCreateInfo()
            queueInfo.sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO
            queueInfo.queueFamilyIndex = family
            queueInfo.queueCount = 1
            queueInfo.pQueuePriorities = priorityPointer
            try withUnsafePointer(to: &queueInfo) { queuePointer in
                var deviceInfo = VkDeviceCreateInfo()
                deviceInfo.sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO
                deviceInfo.queueCreateInfoCount = 1
                deviceInfo.pQueueCreateInfos = queuePointer
                try vkCheck(vkCreateDevice(physicalDevice, &deviceInfo, nil, &device), "vkCreateDevice")
            }
        }
        guard let device else { throw VulkanError.call("vkCreateDevice", result: "null device") }
        var deviceOK = false
        defer { if !deviceOK { vkDestroyDevice(device, nil) } }

        var queue: VkQueue?
        vkGetDeviceQueue(device, family, 0, &queue)

        var poolInfo = VkCommandPoolCreateInfo()
        poolInfo.sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO
        poolInfo.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT.rawValue
        poolInfo.queueFamilyIndex = family
        var pool: VkCommandPool?
        try vkCheck(vkCreateCommandPool(device, &poolInfo, nil, &pool), "vkCreateCommandPool")

        var allocateInfo = VkCommandBufferAllocateInfo()
        allocateInfo.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO
        allocateInfo.commandPool = pool
        allocateInfo.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY
        allocateInfo.commandBufferCount = 1
        var commandBuffer: VkCommandBuffer?
        let allocated = vkAllocateCommandBuffers(device, &allocateInfo, &commandBuffer)
        if allocated != VK_SUCCESS { vkDestroyCommandPool(device, pool, nil) }
        try vkCheck(allocated, "vkAllocateCommandBuffers")

        var fenceInfo = VkFenceCreateInfo()
        fenceInfo.sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO
        var fence: VkFence?
        let fenced = vkCreateFence(device, &fenceInfo, nil, &fence)
        if fenced != VK_SUCCESS { vkDestroyCommandPool(device, pool, nil) }
        try vkCheck(fenced, "vkCreateFence")

        self.instance = instance
        self.physicalDevice = physicalDevice
        self.device = device
        self.queue = queue!
        self.info = info
        self.commandPool = pool!
        self.commandBuffer = commandBuffer!
        self.fence = fence!
        ok = true
        deviceOK = true
    }

    deinit {
        vkDeviceWaitIdle(device)
        timestamps = nil
        for pipeline in pipelines.values { vkDestroyPipeline(device, pipeline, nil) }
        for module in shaderModules { vkDestroyShaderModule(device, module, nil) }
        for layout in pipelineLayouts.values { vkDestroyPipelineLayout(device, layout, nil) }
        for layout in setLayouts.values { vkDestroyDescriptorSetLayout(device, layout, nil) }
        for pool in descriptorPools { vkDestroyDescriptorPool(device, pool, nil) }
        vkDestroyFence(device, fence, nil)
        vkDestroyCommandPool(device, commandPool, nil)
        vkDestroyDevice(device, nil)
        vkDestroyInstance(instance, nil)
    }

    // MARK: Memory

    enum MemoryKind {
        /// Buffers the kernels use: device-local (and mapped on UMA devices).
        case device
        /// Host-visible, coherent: staging for uploads and read-back.
        case host
    }

    func allocate(bytes requested: Int, kind: MemoryKind, label: String) throws -> DeviceAllocation {
        let size = max(16, (requested + 15) & ~15)
        if size > info.maxMemoryAllocationSize {
            throw VulkanError.tooLarge(what: "buffer '\(label)'", bytes: size, limit: info.maxMemoryAllocationSize,
                                       limitName: "maxMemoryAllocationSize")
        }
        var bufferInfo = VkBufferCreateInfo()
        bufferInfo.sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO
        bufferInfo.size = VkDeviceSize(size)
        bufferInfo.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT.rawValue | VK_BUFFER_USAGE_TRANSFER_SRC_BIT.rawValue
            | VK_BUFFER_USAGE_TRANSFER_DST_BIT.rawValue
        bufferInfo.sharingMode = VK_SHARING_MODE_EXCLUSIVE
        var buffer: VkBuffer?
        try vkCheck(vkCreateBuffer(device, &bufferInfo, nil, &buffer), "vkCreateBuffer('\(label)', \(size) bytes)")
        guard let buffer else { throw VulkanError.call("vkCreateBuffer", result: "null buffer") }
        var bound = false
        defer { if !bound { vkDestroyBuffer(device, buffer, nil) } }

        var requirements = VkMemoryRequirements()
        vkGetBufferMemoryRequirements(device, buffer, &requirements)
        let hostVisible = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT.rawValue | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT.rawValue
        let deviceLocal = VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT.rawValue
        let preferences: [UInt32]
        switch kind {
        case .device:
            preferences = unifiedMemory ? [deviceLocal | hostVisible, hostVisible, deviceLocal, 0] : [deviceLocal, 0]
        case .host:
            preferences = [hostVisible | VK_MEMORY_PROPERTY_HOST_CACHED_BIT.rawValue, hostVisible]
        }
        guard let typeIndex = preferences.lazy.compactMap({ self.memoryType(bits: requirements.memoryTypeBits, flags: $0) }).first else {
            throw VulkanError.noMemoryType("buffer '\(label)' (\(kind))")
        }
        var allocateInfo = VkMemoryAllocateInfo()
        allocateInfo.sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO
        allocateInfo.allocationSize = requirements.size
        allocateInfo.memoryTypeIndex = UInt32(typeIndex)
        var memory: VkDeviceMemory?
        try vkCheck(vkAllocateMemory(device, &allocateInfo, nil, &memory), "vkAllocateMemory('\(label)', \(requirements.size) bytes)")
        guard let memory else { throw VulkanError.call("vkAllocateMemory", result: "null memory") }
        let bindResult = vkBindBufferMemory(device, buffer, memory, 0)
        if bindResult != VK_SUCCESS { vkFreeMemory(device, memory, nil) }
        try vkCheck(bindResult, "vkBindBufferMemory('\(label)')")
        bound = true

        var mapped: UnsafeMutableRawPointer?
        if memoryTypes[typeIndex].propertyFlags & hostVisible == hostVisible {
            let mapResult = vkMapMemory(device, memory, 0, VkDeviceSize(size), 0, &mapped)
            if mapResult != VK_SUCCESS {
                vkDestroyBuffer(device, buffer, nil)
                vkFreeMemory(device, memory, nil)
            }
            try vkCheck(mapResult, "vkMapMemory('\(label)')")
        }
        allocationCount += 1
        return DeviceAllocation(buffer: buffer, memory: memory, size: size, mapped: mapped, label: label)
    }

    private func memoryType(bits: UInt32, flags: UInt32) -> Int? {
        memoryTypes.indices.first { bits & (1 << UInt32($0)) != 0 && memoryTypes[$0].propertyFlags & flags == flags }
    }

    /// Frees an allocation, first finishing recorded work that uses it and dropping its descriptor sets.
    func release(_ allocation: DeviceAllocation) {
        if referenced.contains(allocation.buffer) { try? flush() }
        let stale = descriptorSets.filter { $0.key.buffers.contains(allocation.buffer) }
        for (key, entry) in stale {
            var set: VkDescriptorSet? = entry.set
            vkFreeDescriptorSets(device, entry.pool, 1, &set)
            descriptorSets[key] = nil
        }
        if allocation.mapped != nil { vkUnmapMemory(device, allocation.memory) }
        vkDestroyBuffer(device, allocation.buffer, nil)
        vkFreeMemory(device, allocation.memory, nil)
    }

    // MARK: Pipelines and descriptors

    private func setLayout(bindings: Int) throws -> VkDescriptorSetLayout {
        if let layout = setLayouts[bindings] { return layout }
        let entries = (0..<bindings).map { i -> VkDescriptorSetLayoutBinding in
            var b = VkDescriptorSetLayoutBinding()
            b.binding = UInt32(i)
            b.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            b.descriptorCount = 1
            b.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
            return b
        }
        var layout: VkDescriptorSetLayout?
        try entries.withUnsafeBufferPointer { pointer in
            var info = VkDescriptorSetLayoutCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
            info.bindingCount = UInt32(bindings)
            info.pBindings = pointer.baseAddress
            try vkCheck(vkCreateDescriptorSetLayout(device, &info, nil, &layout), "vkCreateDescriptorSetLayout")
        }
        setLayouts[bindings] = layout!
        return layout!
    }

    private func pipelineLayout(bindings: Int) throws -> VkPipelineLayout {
        if let layout = pipelineLayouts[bindings] { return layout }
        var setLayout: VkDescriptorSetLayout? = try self.setLayout(bindings: bindings)
        var range = VkPushConstantRange(stageFlags: VK_SHADER_STAGE_COMPUTE_BIT.rawValue, offset: 0, size: Self.pushConstantBytes)
        var info = VkPipelineLayoutCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
        info.setLayoutCount = 1
        var layout: VkPipelineLayout?
        try withUnsafePointer(to: &setLayout) { setPointer in
            try withUnsafePointer(to: &range) { rangePointer in
                info.pSetLayouts = setPointer
                info.pushConstantRangeCount = 1
                info.pPushConstantRanges = rangePointer
                try vkCheck(vkCreatePipelineLayout(device, &info, nil, &layout), "vkCreatePipelineLayout")
            }
        }
        pipelineLayouts[bindings] = layout!
        return layout!
    }

    /// The compute pipeline of SPIR-V module `name`, created on first use (creation is slow on lavapipe).
    private func pipeline(_ name: String, bindings: Int) throws -> VkPipeline {
        if let pipeline = pipelines[name] { return pipeline }
        guard let encoded = VulkanShaders.modules[name], let code = Data(base64Encoded: encoded) else {
            throw VulkanError.unsupported("kernel '\(name)' (not in the embedded SPIR-V)")
        }
        var module: VkShaderModule?
        try code.withUnsafeBytes { raw in
            var info = VkShaderModuleCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
            info.codeSize = raw.count
            info.pCode = raw.baseAddress!.assumingMemoryBound(to: UInt32.self)
            try vkCheck(vkCreateShaderModule(device, &info, nil, &module), "vkCreateShaderModule(\(name))")
        }
        shaderModules.append(module!)
        let layout = try pipelineLayout(bindings: bindings)
        var pipeline: VkPipeline?
        try "main".withCString { entry in
            var stage = VkPipelineShaderStageCreateInfo()
            stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
            stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
            stage.module = module
            stage.pName = entry
            var info = VkComputePipelineCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
            info.stage = stage
            info.layout = layout
            try vkCheck(vkCreateComputePipelines(device, nil, 1, &info, nil, &pipeline), "vkCreateComputePipelines(\(name))")
        }
        pipelines[name] = pipeline!
        return pipeline!
    }

    private func descriptorSet(_ bindings: [Binding]) throws -> VkDescriptorSet {
        let key = SetKey(buffers: bindings.map(\.allocation.buffer), sizes: bindings.map(\.bytes))
        if let entry = descriptorSets[key] { return entry.set }
        for b in bindings where b.bytes > info.maxStorageBufferRange {
            throw VulkanError.tooLarge(what: "binding buffer '\(b.allocation.label)'", bytes: b.bytes,
                                       limit: info.maxStorageBufferRange, limitName: "maxStorageBufferRange")
        }
        var layout: VkDescriptorSetLayout? = try setLayout(bindings: bindings.count)
        var set: VkDescriptorSet?
        var pool = descriptorPools.last
        var result = VK_ERROR_OUT_OF_POOL_MEMORY
        if let current = pool { result = allocateSet(pool: current, layout: &layout, into: &set) }
        if result == VK_ERROR_OUT_OF_POOL_MEMORY || result == VK_ERROR_FRAGMENTED_POOL {
            pool = try makeDescriptorPool()
            result = allocateSet(pool: pool!, layout: &layout, into: &set)
        }
        try vkCheck(result, "vkAllocateDescriptorSets")

        let infos = bindings.map { VkDescriptorBufferInfo(buffer: $0.allocation.buffer, offset: 0, range: VkDeviceSize(max($0.bytes, 4))) }
        infos.withUnsafeBufferPointer { infoPointer in
            let writes = (0..<bindings.count).map { i -> VkWriteDescriptorSet in
                var w = VkWriteDescriptorSet()
                w.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                w.dstSet = set
                w.dstBinding = UInt32(i)
                w.descriptorCount = 1
                w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                w.pBufferInfo = infoPointer.baseAddress! + i
                return w
            }
            vkUpdateDescriptorSets(device, UInt32(writes.count), writes, 0, nil)
        }
        descriptorSets[key] = (set!, pool!)
        return set!
    }

    private func allocateSet(pool: VkDescriptorPool, layout: inout VkDescriptorSetLayout?, into set: inout VkDescriptorSet?) -> VkResult {
        withUnsafePointer(to: &layout) { layoutPointer in
            var info = VkDescriptorSetAllocateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO
            info.descriptorPool = pool
            info.descriptorSetCount = 1
            info.pSetLayouts = layoutPointer
            return vkAllocateDescriptorSets(device, &info, &set)
        }
    }

    private func makeDescriptorPool() throws -> VkDescriptorPool {
        let sets: UInt32 = 1024
        var size = VkDescriptorPoolSize(type: VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount: sets * 4)
        var info = VkDescriptorPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO
        info.flags = VK_DESCRIPTOR_POOL_CREATE_FREE_DESCRIPTOR_SET_BIT.rawValue
        info.maxSets = sets
        var pool: VkDescriptorPool?
        try withUnsafePointer(to: &size) { sizePointer in
            info.poolSizeCount = 1
            info.pPoolSizes = sizePointer
            try vkCheck(vkCreateDescriptorPool(device, &info, nil, &pool), "vkCreateDescriptorPool")
        }
        descriptorPools.append(pool!)
        return pool!
    }

    // MARK: Recording

    private func begin() throws {
        guard !recording else { return }
        var info = VkCommandBufferBeginInfo()
        info.sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO
        info.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT.rawValue
        try vkCheck(vkBeginCommandBuffer(commandBuffer, &info), "vkBeginCommandBuffer")
        recording = true
        timestamps?.startBatch()
    }

    /// Records `command`, bracketed by timestamps when device timing is on and a label is set.
    private func timed(_ command: () -> Void) throws {
        guard let timestamps else { return command() }
        guard let label = timingLabel else {
            timestamps.breakChain()
            return command()
        }
        try timestamps.time(commandBuffer, label: label, command)
    }

    /// Inserts a barrier when this command depends on an unbarriered earlier one (RAW, WAW, WAR).
    private func track(reads: [VkBuffer], writes: [VkBuffer]) {
        let hazard = reads.contains(where: unbarrieredWrites.contains)
            || writes.contains(where: { unbarrieredWrites.contains($0) || unbarrieredReads.contains($0) })
        if hazard {
            let stages = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue | VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue
            var barrier = VkMemoryBarrier()
            barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
            barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
            barrier.dstAccessMask = VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
                | VK_ACCESS_TRANSFER_READ_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
            vkCmdPipelineBarrier(commandBuffer, stages, stages, 0, 1, &barrier, 0, nil, 0, nil)
            unbarrieredWrites.removeAll(keepingCapacity: true)
            unbarrieredReads.removeAll(keepingCapacity: true)
        }
        unbarrieredReads.formUnion(reads)
        unbarrieredWrites.formUnion(writes)
        referenced.formUnion(reads)
        referenced.formUnion(writes)
    }

    /// Records one dispatch of module `name` over `bindings` (set 0, bindings 0...n-1 in order).
    func dispatch(_ name: String, _ bindings: [Binding], push: [UInt32], groups: (Int, Int, Int)) throws {
        guard groups.0 > 0, groups.1 > 0, groups.2 > 0 else { return }
        let limit = maxWorkGroupCount
        guard groups.0 <= Int(limit.0), groups.1 <= Int(limit.1), groups.2 <= Int(limit.2) else {
            throw VulkanError.unsupported("\(name) with \(groups) workgroups (device limit \(limit))")
        }
        precondition(push.count * 4 <= Int(Self.pushConstantBytes))
        let pipeline = try self.pipeline(name, bindings: bindings.count)
        let layout = try pipelineLayout(bindings: bindings.count)
        var set: VkDescriptorSet? = try descriptorSet(bindings)
        try begin()
        track(reads: bindings.filter { !$0.writes }.map(\.allocation.buffer), writes: bindings.filter(\.writes).map(\.allocation.buffer))
        vkCmdBindPipeline(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline)
        vkCmdBindDescriptorSets(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, layout, 0, 1, &set, 0, nil)
        push.withUnsafeBytes { raw in
            vkCmdPushConstants(commandBuffer, layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0, UInt32(raw.count), raw.baseAddress)
        }
        try timed { vkCmdDispatch(commandBuffer, UInt32(groups.0), UInt32(groups.1), UInt32(groups.2)) }
        dispatchCount += 1
    }

    func copy(from source: DeviceAllocation, offset sourceOffset: Int, to destination: DeviceAllocation, offset destinationOffset: Int, bytes: Int) throws {
        guard bytes > 0 else { return }
        try begin()
        track(reads: [source.buffer], writes: [destination.buffer])
        var region = VkBufferCopy(srcOffset: VkDeviceSize(sourceOffset), dstOffset: VkDeviceSize(destinationOffset), size: VkDeviceSize(bytes))
        try timed { vkCmdCopyBuffer(commandBuffer, source.buffer, destination.buffer, 1, &region) }
    }

    func fillZero(_ allocation: DeviceAllocation) throws {
        try begin()
        track(reads: [], writes: [allocation.buffer])
        try timed { vkCmdFillBuffer(commandBuffer, allocation.buffer, 0, VkDeviceSize(allocation.size), 0) }
    }

    /// Writes `bytes` (a multiple of 4) into the buffer in command order (vkCmdUpdateBuffer, ≤ 64 KiB per command).
    func update(_ allocation: DeviceAllocation, offset: Int, bytes: UnsafeRawBufferPointer) throws {
        try begin()
        track(reads: [], writes: [allocation.buffer])
        try timed {
            var done = 0
            while done < bytes.count {
                let piece = min(65536, bytes.count - done)
                vkCmdUpdateBuffer(commandBuffer, allocation.buffer, VkDeviceSize(offset + done), VkDeviceSize(piece), bytes.baseAddress! + done)
                done += piece
            }
        }
    }

    /// Submits what was recorded and waits for it.
    func flush() throws {
        guard recording else { return }
        // Make device writes visible to host reads of mapped memory.
        var barrier = VkMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        barrier.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue
        barrier.dstAccessMask = VK_ACCESS_HOST_READ_BIT.rawValue
        vkCmdPipelineBarrier(commandBuffer,
                             VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT.rawValue | VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue,
                             VK_PIPELINE_STAGE_HOST_BIT.rawValue, 0, 1, &barrier, 0, nil, 0, nil)
        recording = false
        referenced.removeAll(keepingCapacity: true)
        unbarrieredReads.removeAll(keepingCapacity: true)
        unbarrieredWrites.removeAll(keepingCapacity: true)
        try vkCheck(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer")
        var commandBuffer: VkCommandBuffer? = self.commandBuffer
        try withUnsafePointer(to: &commandBuffer) { pointer in
            var submit = VkSubmitInfo()
            submit.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            submit.commandBufferCount = 1
            submit.pCommandBuffers = pointer
            try vkCheck(vkQueueSubmit(queue, 1, &submit, self.fence), "vkQueueSubmit")
        }
        submitCount += 1
        var fence: VkFence? = self.fence
        try vkCheck(vkWaitForFences(device, 1, &fence, VkBool32(1), UInt64.max), "vkWaitForFences")
        try vkCheck(vkResetFences(device, 1, &fence), "vkResetFences")
        try vkCheck(vkResetCommandBuffer(self.commandBuffer, 0), "vkResetCommandBuffer")
        try timestamps?.read()
    }

    // MARK: Device timing

    /// Turns timestamp queries on or off, finishing recorded work first.
    func setTimestamps(_ enabled: Bool) throws {
        guard enabled != (timestamps != nil) else { return }
        try flush()
        guard enabled else {
            timestamps = nil
            return
        }
        guard timestampValidBits > 0 else {
            throw DeviceTimingUnavailable("\(info.name)'s compute queue family has timestampValidBits 0"
                + (timestampComputeAndGraphics ? "" : " (and timestampComputeAndGraphics is false)"))
        }
        timestamps = TimestampQueries(device: device, validBits: timestampValidBits, nanosecondsPerTick: timestampPeriod)
    }

    /// Device time per label since the last call; submits first if timed commands are still
    /// only recorded (ProfilingBackend calls this after a result was read, when nothing is).
    func collectDeviceTimes() throws -> [String: DeviceTime] {
        guard let timestamps else { return [:] }
        if timestamps.hasPending { try flush() }
        return timestamps.take()
    }

    /// Whether recorded, unsubmitted commands use this buffer.
    func isReferenced(_ allocation: DeviceAllocation) -> Bool { referenced.contains(allocation.buffer) }
}
