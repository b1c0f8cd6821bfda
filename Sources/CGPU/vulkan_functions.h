// Every Vulkan entry point the Swift code calls, as an X-macro table for loader.c.
// Hand-maintained: a call added in Swift without a line here fails to link ("undefined
// reference to vkFoo"), since llm-gpu no longer links libvulkan. Copy the prototype from
// <vulkan/vulkan_core.h> exactly: loader.c defines each function against the header's
// declaration, so a wrong parameter list is a compile error. All of these are core 1.0/1.1
// commands, which the loader exports by name (dlsym), device-level ones included.
//
//   VK_FN(return type, name, (parameters), (arguments), what to do when the loader or symbol is missing)
//   VK_VOID_FN(name, (parameters), (arguments), what to do when missing)
//
// The fallbacks: instance creation and enumeration report VK_ERROR_INITIALIZATION_FAILED, so
// callers take their "no Vulkan" path; other calls cannot be reached without an instance and
// report the same error, or do nothing (zeroing any count they would have written).

#define VK_FAIL return VK_ERROR_INITIALIZATION_FAILED;
#define VK_NOTHING return;

// Instance and physical devices
VK_FN(VkResult, vkCreateInstance,
      (const VkInstanceCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkInstance *pInstance),
      (pCreateInfo, pAllocator, pInstance), VK_FAIL)
VK_VOID_FN(vkDestroyInstance, (VkInstance instance, const VkAllocationCallbacks *pAllocator), (instance, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkEnumeratePhysicalDevices,
      (VkInstance instance, uint32_t *pPhysicalDeviceCount, VkPhysicalDevice *pPhysicalDevices),
      (instance, pPhysicalDeviceCount, pPhysicalDevices),
      { if (pPhysicalDeviceCount) *pPhysicalDeviceCount = 0; return VK_ERROR_INITIALIZATION_FAILED; })
VK_VOID_FN(vkGetPhysicalDeviceProperties,
           (VkPhysicalDevice physicalDevice, VkPhysicalDeviceProperties *pProperties), (physicalDevice, pProperties), VK_NOTHING)
VK_VOID_FN(vkGetPhysicalDeviceProperties2,
           (VkPhysicalDevice physicalDevice, VkPhysicalDeviceProperties2 *pProperties), (physicalDevice, pProperties), VK_NOTHING)
VK_VOID_FN(vkGetPhysicalDeviceMemoryProperties,
           (VkPhysicalDevice physicalDevice, VkPhysicalDeviceMemoryProperties *pMemoryProperties),
           (physicalDevice, pMemoryProperties), VK_NOTHING)
VK_VOID_FN(vkGetPhysicalDeviceQueueFamilyProperties,
           (VkPhysicalDevice physicalDevice, uint32_t *pQueueFamilyPropertyCount, VkQueueFamilyProperties *pQueueFamilyProperties),
           (physicalDevice, pQueueFamilyPropertyCount, pQueueFamilyProperties),
           { if (pQueueFamilyPropertyCount) *pQueueFamilyPropertyCount = 0; return; })

// Device and queue
VK_FN(VkResult, vkCreateDevice,
      (VkPhysicalDevice physicalDevice, const VkDeviceCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkDevice *pDevice),
      (physicalDevice, pCreateInfo, pAllocator, pDevice), VK_FAIL)
VK_VOID_FN(vkDestroyDevice, (VkDevice device, const VkAllocationCallbacks *pAllocator), (device, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkDeviceWaitIdle, (VkDevice device), (device), VK_FAIL)
VK_VOID_FN(vkGetDeviceQueue,
           (VkDevice device, uint32_t queueFamilyIndex, uint32_t queueIndex, VkQueue *pQueue),
           (device, queueFamilyIndex, queueIndex, pQueue), VK_NOTHING)
VK_FN(VkResult, vkQueueSubmit,
      (VkQueue queue, uint32_t submitCount, const VkSubmitInfo *pSubmits, VkFence fence),
      (queue, submitCount, pSubmits, fence), VK_FAIL)

// Memory and buffers
VK_FN(VkResult, vkAllocateMemory,
      (VkDevice device, const VkMemoryAllocateInfo *pAllocateInfo, const VkAllocationCallbacks *pAllocator, VkDeviceMemory *pMemory),
      (device, pAllocateInfo, pAllocator, pMemory), VK_FAIL)
VK_VOID_FN(vkFreeMemory, (VkDevice device, VkDeviceMemory memory, const VkAllocationCallbacks *pAllocator), (device, memory, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkMapMemory,
      (VkDevice device, VkDeviceMemory memory, VkDeviceSize offset, VkDeviceSize size, VkMemoryMapFlags flags, void **ppData),
      (device, memory, offset, size, flags, ppData), VK_FAIL)
VK_VOID_FN(vkUnmapMemory, (VkDevice device, VkDeviceMemory memory), (device, memory), VK_NOTHING)
VK_FN(VkResult, vkCreateBuffer,
      (VkDevice device, const VkBufferCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkBuffer *pBuffer),
      (device, pCreateInfo, pAllocator, pBuffer), VK_FAIL)
VK_VOID_FN(vkDestroyBuffer, (VkDevice device, VkBuffer buffer, const VkAllocationCallbacks *pAllocator), (device, buffer, pAllocator), VK_NOTHING)
VK_VOID_FN(vkGetBufferMemoryRequirements,
           (VkDevice device, VkBuffer buffer, VkMemoryRequirements *pMemoryRequirements),
           (device, buffer, pMemoryRequirements), VK_NOTHING)
VK_FN(VkResult, vkBindBufferMemory,
      (VkDevice device, VkBuffer buffer, VkDeviceMemory memory, VkDeviceSize memoryOffset),
      (device, buffer, memory, memoryOffset), VK_FAIL)

// Shaders, pipelines and descriptors
VK_FN(VkResult, vkCreateShaderModule,
      (VkDevice device, const VkShaderModuleCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkShaderModule *pShaderModule),
      (device, pCreateInfo, pAllocator, pShaderModule), VK_FAIL)
VK_VOID_FN(vkDestroyShaderModule,
           (VkDevice device, VkShaderModule shaderModule, const VkAllocationCallbacks *pAllocator),
           (device, shaderModule, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkCreateDescriptorSetLayout,
      (VkDevice device, const VkDescriptorSetLayoutCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator,
       VkDescriptorSetLayout *pSetLayout),
      (device, pCreateInfo, pAllocator, pSetLayout), VK_FAIL)
VK_VOID_FN(vkDestroyDescriptorSetLayout,
           (VkDevice device, VkDescriptorSetLayout descriptorSetLayout, const VkAllocationCallbacks *pAllocator),
           (device, descriptorSetLayout, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkCreatePipelineLayout,
      (VkDevice device, const VkPipelineLayoutCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator,
       VkPipelineLayout *pPipelineLayout),
      (device, pCreateInfo, pAllocator, pPipelineLayout), VK_FAIL)
VK_VOID_FN(vkDestroyPipelineLayout,
           (VkDevice device, VkPipelineLayout pipelineLayout, const VkAllocationCallbacks *pAllocator),
           (device, pipelineLayout, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkCreateComputePipelines,
      (VkDevice device, VkPipelineCache pipelineCache, uint32_t createInfoCount, const VkComputePipelineCreateInfo *pCreateInfos,
       const VkAllocationCallbacks *pAllocator, VkPipeline *pPipelines),
      (device, pipelineCache, createInfoCount, pCreateInfos, pAllocator, pPipelines), VK_FAIL)
VK_VOID_FN(vkDestroyPipeline,
           (VkDevice device, VkPipeline pipeline, const VkAllocationCallbacks *pAllocator),
           (device, pipeline, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkCreateDescriptorPool,
      (VkDevice device, const VkDescriptorPoolCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator,
       VkDescriptorPool *pDescriptorPool),
      (device, pCreateInfo, pAllocator, pDescriptorPool), VK_FAIL)
VK_VOID_FN(vkDestroyDescriptorPool,
           (VkDevice device, VkDescriptorPool descriptorPool, const VkAllocationCallbacks *pAllocator),
           (device, descriptorPool, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkAllocateDescriptorSets,
      (VkDevice device, const VkDescriptorSetAllocateInfo *pAllocateInfo, VkDescriptorSet *pDescriptorSets),
      (device, pAllocateInfo, pDescriptorSets), VK_FAIL)
VK_FN(VkResult, vkFreeDescriptorSets,
      (VkDevice device, VkDescriptorPool descriptorPool, uint32_t descriptorSetCount, const VkDescriptorSet *pDescriptorSets),
      (device, descriptorPool, descriptorSetCount, pDescriptorSets), VK_FAIL)
VK_VOID_FN(vkUpdateDescriptorSets,
           (VkDevice device, uint32_t descriptorWriteCount, const VkWriteDescriptorSet *pDescriptorWrites,
            uint32_t descriptorCopyCount, const VkCopyDescriptorSet *pDescriptorCopies),
           (device, descriptorWriteCount, pDescriptorWrites, descriptorCopyCount, pDescriptorCopies), VK_NOTHING)

// Command pools and buffers
VK_FN(VkResult, vkCreateCommandPool,
      (VkDevice device, const VkCommandPoolCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkCommandPool *pCommandPool),
      (device, pCreateInfo, pAllocator, pCommandPool), VK_FAIL)
VK_VOID_FN(vkDestroyCommandPool,
           (VkDevice device, VkCommandPool commandPool, const VkAllocationCallbacks *pAllocator),
           (device, commandPool, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkAllocateCommandBuffers,
      (VkDevice device, const VkCommandBufferAllocateInfo *pAllocateInfo, VkCommandBuffer *pCommandBuffers),
      (device, pAllocateInfo, pCommandBuffers), VK_FAIL)
VK_FN(VkResult, vkBeginCommandBuffer,
      (VkCommandBuffer commandBuffer, const VkCommandBufferBeginInfo *pBeginInfo), (commandBuffer, pBeginInfo), VK_FAIL)
VK_FN(VkResult, vkEndCommandBuffer, (VkCommandBuffer commandBuffer), (commandBuffer), VK_FAIL)
VK_FN(VkResult, vkResetCommandBuffer,
      (VkCommandBuffer commandBuffer, VkCommandBufferResetFlags flags), (commandBuffer, flags), VK_FAIL)

// Commands
VK_VOID_FN(vkCmdBindPipeline,
           (VkCommandBuffer commandBuffer, VkPipelineBindPoint pipelineBindPoint, VkPipeline pipeline),
           (commandBuffer, pipelineBindPoint, pipeline), VK_NOTHING)
VK_VOID_FN(vkCmdBindDescriptorSets,
           (VkCommandBuffer commandBuffer, VkPipelineBindPoint pipelineBindPoint, VkPipelineLayout layout, uint32_t firstSet,
            uint32_t descriptorSetCount, const VkDescriptorSet *pDescriptorSets, uint32_t dynamicOffsetCount,
            const uint32_t *pDynamicOffsets),
           (commandBuffer, pipelineBindPoint, layout, firstSet, descriptorSetCount, pDescriptorSets, dynamicOffsetCount,
            pDynamicOffsets), VK_NOTHING)
VK_VOID_FN(vkCmdPushConstants,
           (VkCommandBuffer commandBuffer, VkPipelineLayout layout, VkShaderStageFlags stageFlags, uint32_t offset, uint32_t size,
            const void *pValues),
           (commandBuffer, layout, stageFlags, offset, size, pValues), VK_NOTHING)
VK_VOID_FN(vkCmdDispatch,
           (VkCommandBuffer commandBuffer, uint32_t groupCountX, uint32_t groupCountY, uint32_t groupCountZ),
           (commandBuffer, groupCountX, groupCountY, groupCountZ), VK_NOTHING)
VK_VOID_FN(vkCmdCopyBuffer,
           (VkCommandBuffer commandBuffer, VkBuffer srcBuffer, VkBuffer dstBuffer, uint32_t regionCount, const VkBufferCopy *pRegions),
           (commandBuffer, srcBuffer, dstBuffer, regionCount, pRegions), VK_NOTHING)
VK_VOID_FN(vkCmdFillBuffer,
           (VkCommandBuffer commandBuffer, VkBuffer dstBuffer, VkDeviceSize dstOffset, VkDeviceSize size, uint32_t data),
           (commandBuffer, dstBuffer, dstOffset, size, data), VK_NOTHING)
VK_VOID_FN(vkCmdUpdateBuffer,
           (VkCommandBuffer commandBuffer, VkBuffer dstBuffer, VkDeviceSize dstOffset, VkDeviceSize dataSize, const void *pData),
           (commandBuffer, dstBuffer, dstOffset, dataSize, pData), VK_NOTHING)
VK_VOID_FN(vkCmdPipelineBarrier,
           (VkCommandBuffer commandBuffer, VkPipelineStageFlags srcStageMask, VkPipelineStageFlags dstStageMask,
            VkDependencyFlags dependencyFlags, uint32_t memoryBarrierCount, const VkMemoryBarrier *pMemoryBarriers,
            uint32_t bufferMemoryBarrierCount, const VkBufferMemoryBarrier *pBufferMemoryBarriers,
            uint32_t imageMemoryBarrierCount, const VkImageMemoryBarrier *pImageMemoryBarriers),
           (commandBuffer, srcStageMask, dstStageMask, dependencyFlags, memoryBarrierCount, pMemoryBarriers,
            bufferMemoryBarrierCount, pBufferMemoryBarriers, imageMemoryBarrierCount, pImageMemoryBarriers), VK_NOTHING)

// Synchronisation
VK_FN(VkResult, vkCreateFence,
      (VkDevice device, const VkFenceCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkFence *pFence),
      (device, pCreateInfo, pAllocator, pFence), VK_FAIL)
VK_VOID_FN(vkDestroyFence, (VkDevice device, VkFence fence, const VkAllocationCallbacks *pAllocator), (device, fence, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkResetFences, (VkDevice device, uint32_t fenceCount, const VkFence *pFences), (device, fenceCount, pFences), VK_FAIL)
VK_FN(VkResult, vkWaitForFences,
      (VkDevice device, uint32_t fenceCount, const VkFence *pFences, VkBool32 waitAll, uint64_t timeout),
      (device, fenceCount, pFences, waitAll, timeout), VK_FAIL)

// Timestamp queries (`--profile`)
VK_FN(VkResult, vkCreateQueryPool,
      (VkDevice device, const VkQueryPoolCreateInfo *pCreateInfo, const VkAllocationCallbacks *pAllocator, VkQueryPool *pQueryPool),
      (device, pCreateInfo, pAllocator, pQueryPool), VK_FAIL)
VK_VOID_FN(vkDestroyQueryPool,
           (VkDevice device, VkQueryPool queryPool, const VkAllocationCallbacks *pAllocator), (device, queryPool, pAllocator), VK_NOTHING)
VK_FN(VkResult, vkGetQueryPoolResults,
      (VkDevice device, VkQueryPool queryPool, uint32_t firstQuery, uint32_t queryCount, size_t dataSize, void *pData,
       VkDeviceSize stride, VkQueryResultFlags flags),
      (device, queryPool, firstQuery, queryCount, dataSize, pData, stride, flags), VK_FAIL)
VK_VOID_FN(vkCmdResetQueryPool,
           (VkCommandBuffer commandBuffer, VkQueryPool queryPool, uint32_t firstQuery, uint32_t queryCount),
           (commandBuffer, queryPool, firstQuery, queryCount), VK_NOTHING)
VK_VOID_FN(vkCmdWriteTimestamp,
           (VkCommandBuffer commandBuffer, VkPipelineStageFlagBits pipelineStage, VkQueryPool queryPool, uint32_t query),
           (commandBuffer, pipelineStage, queryPool, query), VK_NOTHING)

#undef VK_FAIL
#undef VK_NOTHING
