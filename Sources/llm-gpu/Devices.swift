import ArgumentParser
import BackendOpenCL
import BackendVulkan
import Foundation
import LLM

/// `llm-gpu devices`: the GPU devices this machine offers, numbered as `--device` takes them.
struct Devices: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the OpenCL (and Vulkan) devices: name, platform, memory, compute units, versions.")

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        var openCL: [OpenCLDeviceInfo] = []
        var openCLProblem: String?
        do {
            openCL = try OpenCLBackend.listDevices()
        } catch {
            openCLProblem = "\(error)"
        }
        // MARK: Vulkan devices (issue #4)
        var vulkan: [VulkanDeviceInfo] = []
        var vulkanProblem: String?
        do {
            vulkan = try VulkanBackend.devices()
        } catch {
            vulkanProblem = "\(error)"
        }

        if json {
            try printJSON(DevicesOutput(opencl: openCL, openclError: openCLProblem, vulkan: vulkan, vulkanError: vulkanProblem))
            return
        }
        print("OpenCL (--backend opencl --device N):")
        if let openCLProblem { print("  none: \(openCLProblem)") }
        else if openCL.isEmpty { print("  none") }
        for d in openCL {
            print("  [\(d.index)] \(d.name)")
            print("      platform: \(d.platform), type: \(d.type), vendor: \(d.vendor)")
            print("      memory: \(mebibytes(d.globalMemoryBytes)) MiB (largest buffer \(mebibytes(d.maxAllocationBytes)) MiB, local \(d.localMemoryBytes / 1024) KiB)")
            print("      compute units: \(d.computeUnits), max work-group: \(d.maxWorkGroupSize)")
            print("      \(d.openCLCVersion) (\(d.deviceVersion))")
        }
        print("Vulkan (--backend vulkan --device N):")
        if let vulkanProblem { print("  none: \(vulkanProblem)") }
        else if vulkan.isEmpty { print("  none") }
        for d in vulkan {
            print("  [\(d.index)] \(d.name)")
            print("      type: \(d.type), Vulkan \(d.apiVersion)\(d.hasComputeQueue ? "" : ", no compute queue")")
            let heaps = d.heaps.map { "\(mebibytes($0.bytes)) MiB\($0.deviceLocal ? " device-local" : "")" }.joined(separator: ", ")
            print("      memory heaps: \(heaps)")
            print("      maxStorageBufferRange: \(mebibytes(d.maxStorageBufferRange)) MiB, maxMemoryAllocationSize: \(mebibytes(d.maxMemoryAllocationSize)) MiB")
            print("      subgroup size: \(d.subgroupSize)")
        }
    }

    private func mebibytes(_ bytes: Int) -> Int { bytes / (1 << 20) }
}

struct DevicesOutput: Encodable {
    var opencl: [OpenCLDeviceInfo]
    var openclError: String?
    var vulkan: [VulkanDeviceInfo]
    var vulkanError: String?
    enum CodingKeys: String, CodingKey { case opencl, openclError = "opencl_error", vulkan, vulkanError = "vulkan_error" }
}

/// `--backend opencl`: the backend on device `index` (default: the first GPU, else the first device).
func makeOpenCLBackend(device index: Int?) throws -> Backend {
    try OpenCLBackend(deviceIndex: index)
}
