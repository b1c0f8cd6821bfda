@testable import BackendVulkan
import LLM

// Registers the Vulkan backend with the shared conformance suite (ConformanceBackends.all()),
// so every op case of OpConformanceTests also runs on Vulkan against the CPU oracle.
extension ConformanceBackends {
    /// Opened once per process: pipelines are created once (slow on lavapipe) and shared.
    static let vulkan: Result<Backend, Error> = Result {
        do {
            return try VulkanBackend(deviceIndex: vulkanDeviceFromEnvironment)
        } catch let error as VulkanError {
            if case .noDevice(let reason) = error { throw BackendUnavailable(reason: reason + " (install mesa-vulkan-drivers to run these cases)") }
            throw error
        }
    }

    /// `LLM_GPU_VULKAN_DEVICE=N` picks the device the suite runs on (default: the backend's choice).
    static var vulkanDeviceFromEnvironment: Int? {
        ProcessInfo.processInfo.environment["LLM_GPU_VULKAN_DEVICE"].flatMap(Int.init)
    }

    /// The shared Vulkan backend, or XCTSkip with the reason when no Vulkan device exists.
    static func vulkanOrSkip() throws -> VulkanBackend {
        do {
            return try vulkan.get() as! VulkanBackend
        } catch let unavailable as BackendUnavailable {
            throw XCTSkip("vulkan: \(unavailable.reason)")
        }
    }
}

import Foundation
import XCTest
