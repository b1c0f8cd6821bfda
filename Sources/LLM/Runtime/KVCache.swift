/// Keys and values of every layer, resident on the backend. The host layer owns it: it
/// decides the capacity (the context the user asked for) and how many positions are filled.
///
/// A sliding-window layer (Gemma's local layers) never attends further back than its window, so
/// it keeps a ring of `window + batch` rows instead of `capacity`: position p lives in row
/// p mod ring. The extra `batch` rows let a whole prompt chunk be stored before it is attended
/// to without overwriting keys its first rows still need. Global layers keep every position.
public final class KVCache {
    /// [rows(layer), kvHeads · headDim] per layer, f32.
    public let keys: [BackendBuffer]
    public let values: [BackendBuffer]
    public let capacity: Int
    public let width: Int
    /// Per layer: the ring size of a windowed layer, nil for a layer that keeps every position.
    public let rings: [Int?]
    /// Per layer: its window (0 = global).
    public let windows: [Int]
    /// Positions 0..<count hold valid entries.
    public private(set) var count = 0
    /// One past the highest position written since the last reset: a ring layer may have
    /// overwritten positions below written − ring, which limits how far the cache can rewind.
    private var written = 0

    /// `sharedValues`: values are read from the key rows themselves (MLA's latent cache), so
    /// `values[l]` is `keys[l]` and only one buffer per layer is allocated.
    public init(backend: Backend, layers: Int, capacity: Int, width: Int, windows: [Int] = [], batch: Int = 0,
                sharedValues: Bool = false) throws {
        guard capacity > 0 else { throw ModelError.contextTooSmall(requested: capacity) }
        let windows = (0..<layers).map { $0 < windows.count ? windows[$0] : 0 }
        let rings: [Int?] = windows.map { w in
            w > 0 && w + batch < capacity ? w + batch : nil
        }
        let rows = rings.map { $0 ?? capacity }
        let bytesPerRow = width * MemoryLayout<Float>.size * (sharedValues ? 1 : 2)
        let (total, overflow) = rows.reduce(0, +).multipliedReportingOverflow(by: bytesPerRow)
        if overflow || backend.memoryCapacity.map({ UInt64(total) > $0 }) == true {
            throw ModelError.contextTooLarge(context: capacity, bytes: overflow ? .max : total,
                                             available: backend.memoryCapacity ?? 0, backend: backend.name)
        }
        self.capacity = capacity
        self.width = width
        self.rings = rings
        self.windows = windows
        keys = try (0..<layers).map { try backend.makeBuffer(count: rows[$0] * width, label: "kv.k.\($0)") }
        values = sharedValues ? keys : try (0..<layers).map { try backend.makeBuffer(count: rows[$0] * width, label: "kv.v.\($0)") }
    }

    public var remaining: Int { capacity - count }
    public var byteCount: Int {
        zip(keys, values).reduce(0) { $0 + ($1.0.count + ($1.1 === $1.0 ? 0 : $1.1.count)) * MemoryLayout<Float>.size }
    }

    /// Marks `n` more positions filled (after the forward pass stored them).
    func advance(by n: Int) {
        count += n
        written = max(written, count)
    }

    /// Forgets everything from `position` on (a new prompt, or rewinding).
    public func truncate(to position: Int) {
        count = min(count, max(0, position))
        if count == 0 { written = 0 }
    }

    /// Whether the positions a query at `count` needs are still in every ring (rewinding a
    /// windowed cache further than its slack loses them).
    func canAttend() -> Bool {
        for (ring, window) in zip(rings, windows) {
            guard let ring else { continue }
            if count > 0 && written - ring > count - window { return false }
        }
        return true
    }
}
