import CGPU
import LLM

/// Device timing for `--profile`: timestamps at BOTTOM_OF_PIPE (written once every command
/// recorded before them has finished) around each command recorded under a label. A command's
/// time is from the timestamp before it to the one after it; consecutive timed commands share
/// the timestamp between them (the end of one is the start of the next, as it would be with a
/// pair each), so a batch of n timed commands writes n + 1 timestamps, not 2n: on lavapipe each
/// one costs a flush of the rasterizer threads. Queries come from pools of `poolQueries`; a
/// batch takes as many pools as it needs (a prompt chunk records thousands of commands), each
/// reset in the command buffer before its first use, and keeps them for the next batches.
/// Results are read with vkGetQueryPoolResults once the batch's fence has signalled.
final class TimestampQueries {
    static let poolQueries: UInt32 = 4096

    private let device: VkDevice
    /// timestampValidBits of the queue family: only those bits of a timestamp count.
    private let mask: UInt64
    /// VkPhysicalDeviceLimits.timestampPeriod: nanoseconds per tick.
    private let nanosecondsPerTick: Double
    private var pools: [VkQueryPool] = []
    /// Queries written by the batch being recorded, numbered across its pools (query q is
    /// query q % poolQueries of pool q / poolQueries).
    private var written = 0
    /// The last timestamp written, while no untimed command has been recorded after it: the
    /// start of the next timed command.
    private var chainEnd: Int?
    /// Each timed command of the batch: its label and the queries before and after it.
    private var commands: [(label: String, start: Int, end: Int)] = []
    private var totals: [String: DeviceTime] = [:]

    init(device: VkDevice, validBits: UInt32, nanosecondsPerTick: Float) {
        self.device = device
        mask = validBits >= 64 ? .max : (UInt64(1) << UInt64(validBits)) - 1
        self.nanosecondsPerTick = Double(nanosecondsPerTick)
    }

    deinit { for pool in pools { vkDestroyQueryPool(device, pool, nil) } }

    /// Pools created so far (tests check that a long batch grows past one).
    var poolCount: Int { pools.count }
    /// Whether the batch being recorded has timed commands not read yet.
    var hasPending: Bool { !commands.isEmpty }

    /// A new command buffer: its queries start at the first pool again (anything recorded in a
    /// batch that was never submitted is dropped).
    func startBatch() {
        written = 0
        chainEnd = nil
        commands.removeAll(keepingCapacity: true)
    }

    /// Records `command`, timed under `label`.
    func time(_ commandBuffer: VkCommandBuffer, label: String, _ command: () -> Void) throws {
        let start = try chainEnd ?? writeTimestamp(commandBuffer)
        command()
        let end = try writeTimestamp(commandBuffer)
        commands.append((label, start, end))
        chainEnd = end
    }

    /// An untimed command was recorded: the next timed one needs its own start.
    func breakChain() { chainEnd = nil }

    private func writeTimestamp(_ commandBuffer: VkCommandBuffer) throws -> Int {
        let pool = written / Int(Self.poolQueries), query = UInt32(written % Int(Self.poolQueries))
        if query == 0 {
            if pool == pools.count { pools.append(try makePool()) }
            vkCmdResetQueryPool(commandBuffer, pools[pool], 0, Self.poolQueries)
        }
        vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pools[pool], query)
        written += 1
        return written - 1
    }

    /// After the batch's fence: adds each command's (end − start) & mask, in nanoseconds, to its label.
    func read() throws {
        defer { startBatch() }
        guard written > 0 else { return }
        var values = [UInt64](repeating: 0, count: written)
        let flags = VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue
        try values.withUnsafeMutableBytes { raw in
            for (index, first) in stride(from: 0, to: written, by: Int(Self.poolQueries)).enumerated() {
                let count = min(Int(Self.poolQueries), written - first)
                try vkCheck(vkGetQueryPoolResults(device, pools[index], 0, UInt32(count), count * 8, raw.baseAddress! + first * 8, 8, flags),
                            "vkGetQueryPoolResults")
            }
        }
        for command in commands {
            // Modulo 2^validBits: a counter that wrapped between the two still gives the interval.
            let ticks = ((values[command.end] & mask) &- (values[command.start] & mask)) & mask
            let nanoseconds = UInt64((Double(ticks) * nanosecondsPerTick).rounded())
            totals[command.label, default: DeviceTime()] += DeviceTime(commands: 1, nanoseconds: nanoseconds)
        }
    }

    /// The device time per label read since the last call.
    func take() -> [String: DeviceTime] {
        defer { totals.removeAll() }
        return totals
    }

    private func makePool() throws -> VkQueryPool {
        var info = VkQueryPoolCreateInfo()
        info.sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO
        info.queryType = VK_QUERY_TYPE_TIMESTAMP
        info.queryCount = Self.poolQueries
        var pool: VkQueryPool?
        try vkCheck(vkCreateQueryPool(device, &info, nil, &pool), "vkCreateQueryPool")
        guard let pool else { throw VulkanError.call("vkCreateQueryPool", result: "null pool") }
        return pool
    }
}

extension VulkanBackend: DeviceTimedBackend {
    public var deviceTimingSource: String { "Vulkan timestamp queries" }

    /// On: finishes recorded work and starts bracketing each labelled command with timestamps.
    /// Throws `DeviceTimingUnavailable` when the compute queue family has timestampValidBits 0.
    public func setDeviceTiming(_ enabled: Bool) throws { try context.setTimestamps(enabled) }

    public func setDeviceTimingLabel(_ label: String?) { context.timingLabel = label }

    public func collectDeviceTimes() throws -> [String: DeviceTime] { try context.collectDeviceTimes() }
}
