/// Keys and values of every layer, resident on the backend. The host layer owns it: it
/// decides the capacity (the context the user asked for) and how many positions are filled.
public final class KVCache {
    /// [capacity, kvHeads · headDim] per layer, f32. Row p holds position p.
    public let keys: [BackendBuffer]
    public let values: [BackendBuffer]
    public let capacity: Int
    public let width: Int
    /// Positions 0..<count hold valid entries.
    public private(set) var count = 0

    public init(backend: Backend, layers: Int, capacity: Int, width: Int) throws {
        guard capacity > 0 else { throw ModelError.contextTooSmall(requested: capacity) }
        let (perLayer, o1) = capacity.multipliedReportingOverflow(by: width * MemoryLayout<Float>.size * 2)
        let (total, o2) = perLayer.multipliedReportingOverflow(by: layers)
        if o1 || o2 || backend.memoryCapacity.map({ UInt64(total) > $0 }) == true {
            throw ModelError.contextTooLarge(context: capacity, bytes: (o1 || o2) ? .max : total,
                                             available: backend.memoryCapacity ?? 0, backend: backend.name)
        }
        self.capacity = capacity
        self.width = width
        keys = try (0..<layers).map { try backend.makeBuffer(count: capacity * width, label: "kv.k.\($0)") }
        values = try (0..<layers).map { try backend.makeBuffer(count: capacity * width, label: "kv.v.\($0)") }
    }

    public var remaining: Int { capacity - count }
    public var byteCount: Int { 2 * keys.count * capacity * width * MemoryLayout<Float>.size }

    /// Marks `n` more positions filled (after the forward pass stored them).
    func advance(by n: Int) { count += n }

    /// Forgets everything from `position` on (a new prompt, or rewinding).
    public func truncate(to position: Int) { count = min(count, max(0, position)) }
}
