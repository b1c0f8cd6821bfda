import CGPU
import LLM

/// Device timing for `--profile`: the event of each command enqueued under a label, kept until
/// its CL_PROFILING_COMMAND_START/END are read, then released. Exists only while timing is on.
final class CLEventTimer {
    /// The op kind commands enqueued now belong to; nil: they get no event.
    var label: String?
    private var pending: [(label: String, event: cl_event)] = []
    private var totals: [String: DeviceTime] = [:]

    /// A batch that never reads back (a long prompt) reads its events once this many are
    /// pending, so it does not hold an unbounded number of them; that one wait is the only
    /// synchronization device timing adds.
    static let maximumPending = 16384

    func record(_ event: cl_event, label: String) throws {
        pending.append((label, event))
        if pending.count >= Self.maximumPending { try drain() }
    }

    /// Waits for the pending events, adds each one's END − START to its label and releases it.
    func drain() throws {
        guard !pending.isEmpty else { return }
        let events = pending
        pending.removeAll(keepingCapacity: true)
        defer { for entry in events { clReleaseEvent(entry.event) } }
        var handles: [cl_event?] = events.map(\.event)
        try check("clWaitForEvents", clWaitForEvents(cl_uint(handles.count), &handles))
        for (label, event) in events {
            var start: cl_ulong = 0, end: cl_ulong = 0
            try check("clGetEventProfilingInfo", clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_START),
                                                                         MemoryLayout<cl_ulong>.size, &start, nil))
            try check("clGetEventProfilingInfo", clGetEventProfilingInfo(event, cl_profiling_info(CL_PROFILING_COMMAND_END),
                                                                         MemoryLayout<cl_ulong>.size, &end, nil))
            totals[label, default: DeviceTime()] += DeviceTime(commands: 1, nanoseconds: end > start ? UInt64(end - start) : 0)
        }
    }

    /// The device time per label since the last call.
    func take() throws -> [String: DeviceTime] {
        try drain()
        defer { totals.removeAll() }
        return totals
    }

    deinit { for entry in pending { clReleaseEvent(entry.event) } }
}

extension OpenCLBackend: DeviceTimedBackend {
    public var deviceTimingSource: String { "OpenCL event profiling" }

    /// On: finishes the queue's work and replaces it with one created with
    /// CL_QUEUE_PROFILING_ENABLE (buffers and kernels belong to the context and stay). Off: the
    /// same back to a plain queue, dropping times not yet collected.
    public func setDeviceTiming(_ enabled: Bool) throws {
        guard enabled != (eventTimer != nil) else { return }
        try synchronize()
        if enabled {
            let properties = try DeviceQuery.value(runtime.device, CL_DEVICE_QUEUE_PROPERTIES, as: cl_command_queue_properties.self)
            guard properties & cl_command_queue_properties(CL_QUEUE_PROFILING_ENABLE) != 0 else {
                throw DeviceTimingUnavailable("\(device.name) does not list CL_QUEUE_PROFILING_ENABLE in CL_DEVICE_QUEUE_PROPERTIES")
            }
            queue = try CLQueue(context: runtime.context, device: runtime.device, profiling: true)
            eventTimer = CLEventTimer()
        } else {
            eventTimer = nil
            queue = try CLQueue(context: runtime.context, device: runtime.device)
        }
    }

    public func setDeviceTimingLabel(_ label: String?) { eventTimer?.label = label }

    public func collectDeviceTimes() throws -> [String: DeviceTime] { try eventTimer?.take() ?? [:] }
}
