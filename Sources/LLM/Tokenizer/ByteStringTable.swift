/// An append-only set of byte strings, each with a dense id in insertion order, looked up
/// by raw bytes. Tokens are compared as bytes, never as Swift `String`s: `String` equality
/// is canonical equivalence, which would merge e.g. precomposed and decomposed "é" — two
/// different tokens. Lookups take a pointer and length so the tokenizers' inner loops
/// can probe substrings without allocating.
struct ByteStringTable: Sendable {
    private var storage: [UInt8] = []
    /// String `i` is `storage[offsets[i] ..< offsets[i + 1]]`.
    private var offsets: [Int] = [0]
    private var hashes: [UInt64] = []
    /// Open addressing, linear probing; -1 marks an empty slot.
    private var slots: [Int32]
    private var mask: Int

    init(capacity: Int = 16) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        slots = [Int32](repeating: -1, count: size)
        mask = size - 1
        hashes.reserveCapacity(capacity)
        offsets.reserveCapacity(capacity + 1)
    }

    var count: Int { offsets.count - 1 }

    func length(of id: Int32) -> Int { offsets[Int(id) + 1] - offsets[Int(id)] }

    func bytes(of id: Int32) -> ArraySlice<UInt8> { storage[offsets[Int(id)] ..< offsets[Int(id) + 1]] }

    func withBytes<R>(of id: Int32, _ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
        let start = offsets[Int(id)], end = offsets[Int(id) + 1]
        return try storage.withUnsafeBufferPointer { all in
            try body(UnsafeBufferPointer(rebasing: all[start ..< end]))
        }
    }

    func find(_ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let h = Self.hash(key)
        return storage.withUnsafeBufferPointer { all in
            var slot = Int(truncatingIfNeeded: h) & mask
            while true {
                let id = slots[slot]
                if id < 0 { return nil }
                if hashes[Int(id)] == h && equal(all, Int(id), key) { return id }
                slot = (slot + 1) & mask
            }
        }
    }

    func find<C: Collection>(_ key: C) -> Int32? where C.Element == UInt8 {
        if let r = key.withContiguousStorageIfAvailable({ find($0) }) { return r }
        return Array(key).withUnsafeBufferPointer { find($0) }
    }

    /// Returns the id of `key`, adding it first if it is new.
    @discardableResult
    mutating func insert<C: Collection>(_ key: C) -> (id: Int32, inserted: Bool) where C.Element == UInt8 {
        if let id = find(key) { return (id, false) }
        let id = Int32(count)
        storage.append(contentsOf: key)
        offsets.append(storage.count)
        let h = storage.withUnsafeBufferPointer { Self.hash(UnsafeBufferPointer(rebasing: $0[offsets[Int(id)]...])) }
        hashes.append(h)
        if count * 2 > slots.count { grow() } else { place(id, hash: h) }
        return (id, true)
    }

    private func equal(_ all: UnsafeBufferPointer<UInt8>, _ id: Int, _ key: UnsafeBufferPointer<UInt8>) -> Bool {
        let start = offsets[id]
        guard offsets[id + 1] - start == key.count else { return false }
        for k in 0..<key.count where all[start + k] != key[k] { return false }
        return true
    }

    private mutating func place(_ id: Int32, hash: UInt64) {
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] >= 0 { slot = (slot + 1) & mask }
        slots[slot] = id
    }

    private mutating func grow() {
        slots = [Int32](repeating: -1, count: slots.count * 2)
        mask = slots.count - 1
        for id in 0..<count { place(Int32(id), hash: hashes[id]) }
    }

    /// FNV-1a, then a final mix so that linear probing sees well-spread low bits.
    private static func hash(_ key: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in key { h = (h ^ UInt64(b)) &* 0x0000_0100_0000_01B3 }
        h ^= h >> 29
        h = h &* 0xbf58_476d_1ce4_e5b9
        return h ^ (h >> 32)
    }
}
