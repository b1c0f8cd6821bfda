import Foundation

/// Device time spent on the commands of one op kind: how many commands (kernels, copies,
/// fills, writes) the device ran for it and their summed execution time by its own clock.
public struct DeviceTime: Equatable, Sendable {
    public var commands: Int
    public var nanoseconds: UInt64

    public init(commands: Int = 0, nanoseconds: UInt64 = 0) {
        self.commands = commands
        self.nanoseconds = nanoseconds
    }

    public var seconds: Double { Double(nanoseconds) * 1e-9 }

    public static func += (a: inout DeviceTime, b: DeviceTime) {
        a.commands += b.commands
        a.nanoseconds += b.nanoseconds
    }
}

/// A backend that can time its own work on the device: OpenCL event profiling, Vulkan timestamp
/// queries. `ProfilingBackend` uses it so that `--profile` neither synchronizes after every op
/// nor counts host time: work is enqueued as in a normal run, each command is attributed to the
/// label set when it was enqueued, and the device's start/end times are read once the work has
/// finished (after `download`, `argmax` or `synchronize`).
///
/// Timing is off until `setDeviceTiming(true)`; a backend with it off enqueues exactly as
/// before (no events, no queries).
public protocol DeviceTimedBackend: Backend {
    /// Where the times come from, for the report header ("OpenCL event profiling").
    var deviceTimingSource: String { get }
    /// Turns device timing on or off. Throws `DeviceTimingUnavailable` when the device cannot
    /// time its work (a Vulkan queue family with timestampValidBits 0, say).
    func setDeviceTiming(_ enabled: Bool) throws
    /// The op kind that commands enqueued from now on belong to; nil: they are not timed.
    func setDeviceTimingLabel(_ label: String?)
    /// Waits for the labelled work enqueued so far and returns its device time per label,
    /// accumulated since the previous call (which it clears).
    func collectDeviceTimes() throws -> [String: DeviceTime]
}

/// The device cannot time its own work; `--profile` then falls back to host timing and says why.
public struct DeviceTimingUnavailable: Error, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "device timestamps are unavailable: \(reason)" }
}
