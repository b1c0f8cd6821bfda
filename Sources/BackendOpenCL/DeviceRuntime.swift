import CGPU
import Foundation

/// What is built once per device and shared by every backend on it for the life of the
/// process: the context, the compiled program, the memory ledger and the launch limits.
final class DeviceRuntime: @unchecked Sendable {
    let device: cl_device_id
    let info: OpenCLDeviceInfo
    let context: CLContext
    let program: CLProgram
    let ledger: MemoryLedger
    /// Edge of the tiled matmul's work-group (TILE x TILE work-items), fitted to the device.
    let tile: Int

    /// Kernel files in the order they are concatenated into one program.
    static let kernelFiles = ["common.cl", "quant.cl", "matmul.cl", "attention.cl", "ops.cl", "moe.cl"]
    /// Local memory the kernels need at the least (attention with head dim 256 and 64 work-items, tiles of 16).
    static let minimumLocalMemory = 8 * 1024

    private static let lock = NSLock()
    nonisolated(unsafe) private static var cache: [UInt: DeviceRuntime] = [:]

    /// The runtime for `device`, building the kernels the first time this process asks.
    static func shared(index: Int, device: cl_device_id, platform: cl_platform_id) throws -> DeviceRuntime {
        lock.lock(); defer { lock.unlock() }
        let key = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(device)))
        if let runtime = cache[key] { return runtime }
        let runtime = try DeviceRuntime(index: index, device: device, platform: platform)
        cache[key] = runtime
        return runtime
    }

    static func source() throws -> String {
        try kernelFiles.map { name -> String in
            guard let text = OpenCLKernelSources.files[name] else {
                throw OpenCLError.invalidArgument("kernel file \(name) was not embedded at build time")
            }
            return "// ---- \(name)\n" + text
        }.joined(separator: "\n")
    }

    private init(index: Int, device: cl_device_id, platform: cl_platform_id) throws {
        let info = try DeviceQuery.info(index: index, device: device, platform: platform)
        let label = "device \(index) (\(info.name))"
        guard info.available else { throw OpenCLError.unsupportedDevice("\(label) reports CL_DEVICE_AVAILABLE = false") }
        guard info.compilerAvailable else {
            throw OpenCLError.unsupportedDevice("\(label) has no OpenCL C compiler (CL_DEVICE_COMPILER_AVAILABLE = false)")
        }
        let cVersion = DeviceQuery.version(info.openCLCVersion), apiVersion = DeviceQuery.version(info.deviceVersion)
        guard cVersion >= (1, 2), apiVersion >= (1, 2) else {
            throw OpenCLError.unsupportedDevice("\(label) supports \(info.deviceVersion) / \(info.openCLCVersion); the kernels need OpenCL 1.2")
        }
        guard info.localMemoryBytes >= Self.minimumLocalMemory else {
            throw OpenCLError.unsupportedDevice("\(label) has \(info.localMemoryBytes) bytes of local memory; the kernels need \(Self.minimumLocalMemory)")
        }
        self.device = device
        self.info = info
        self.ledger = MemoryLedger(globalBytes: info.globalMemoryBytes, maxAllocation: info.maxAllocationBytes, device: label)
        self.context = try CLContext(device: device)
        let source = try Self.source()
        // The largest tile whose work-group and local staging (2 * TILE * 33 floats) fit the device;
        // rebuilt smaller if the compiled kernel reports a lower work-group limit.
        var tile = 16
        while tile > 1 && (tile * tile > info.maxWorkGroupSize || 2 * tile * 33 * 4 > info.localMemoryBytes) { tile /= 2 }
        while true {
            let program = try CLProgram(context: context, device: device, deviceName: label, source: source,
                                        options: "-cl-std=CL1.2 -DTILE=\(tile)")
            let probe = try CLKernel(program: program, name: "matmul_f32", device: device)
            if probe.maxWorkGroupSize >= tile * tile || tile == 1 {
                self.program = program
                break
            }
            tile /= 2
        }
        self.tile = tile
    }
}
