import Foundation
import XCTest

/// llm-gpu does not link libOpenCL or libvulkan: CGPU opens them with dlopen on first use.
/// These tests play a machine without the loaders by pointing CGPU's override variables
/// (LLM_GPU_OPENCL_LIBRARY, LLM_GPU_VULKAN_LIBRARY) at files that do not exist: the GPU
/// backends must fail with one clear line naming the loader, and the CPU backend must still run.
final class LoaderTests: XCTestCase {
    private typealias Result = LLMGPUExecutable.Result

    private static let missingOpenCL = "/nonexistent-llm-gpu-test/libOpenCL.so.1"
    private static let missingVulkan = "/nonexistent-llm-gpu-test/libvulkan.so.1"

    /// Runs llm-gpu with both loaders pointed at missing files.
    private func runWithoutLoaders(_ arguments: [String]) throws -> Result {
        var environment = ProcessInfo.processInfo.environment
        environment["LLM_GPU_OPENCL_LIBRARY"] = Self.missingOpenCL
        environment["LLM_GPU_VULKAN_LIBRARY"] = Self.missingVulkan
        return try LLMGPUExecutable.run(arguments, environment: environment)
    }

    private func assertOneLineError(_ result: Result, mentions fragments: [String], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(result.status, 1, "exit status; stderr: \(result.stderr)", file: file, line: line)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, "stderr should be one line: \(result.stderr)", file: file, line: line)
        XCTAssertTrue(result.stderr.hasPrefix("error: "), result.stderr, file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(result.stderr.contains(fragment), "'\(fragment)' not in: \(result.stderr)", file: file, line: line)
        }
    }

    private var model: String { Fixtures.tiny("tiny-llama-f32.gguf") }

    func testOpenCLWithoutLoaderIsOneLineError() throws {
        let result = try runWithoutLoaders(["run", "--model", model, "--prompt", "hi", "--backend", "opencl", "--max-tokens", "4"])
        assertOneLineError(result, mentions: ["OpenCL", "\(Self.missingOpenCL) could not be loaded", "ocl-icd-libopencl1"])
    }

    func testVulkanWithoutLoaderIsOneLineError() throws {
        let result = try runWithoutLoaders(["run", "--model", model, "--prompt", "hi", "--backend", "vulkan", "--max-tokens", "4"])
        assertOneLineError(result, mentions: ["Vulkan", "\(Self.missingVulkan) could not be loaded", "libvulkan1"])
    }

    func testCPUWithoutLoadersRuns() throws {
        let result = try runWithoutLoaders(["run", "--model", model, "--prompt", "hi", "--backend", "cpu", "--max-tokens", "4"])
        XCTAssertEqual(result.status, 0, "stderr: \(result.stderr)")
        XCTAssertFalse(result.stderr.contains("error:"), result.stderr)
    }

    /// `llm-gpu devices` reports both loaders as missing and still exits 0.
    func testDevicesWithoutLoadersExplainsWhy() throws {
        let result = try runWithoutLoaders(["devices"])
        XCTAssertEqual(result.status, 0, "stderr: \(result.stderr)")
        XCTAssertTrue(result.stdout.contains("\(Self.missingOpenCL) could not be loaded"), result.stdout)
        XCTAssertTrue(result.stdout.contains("\(Self.missingVulkan) could not be loaded"), result.stdout)
    }
}
