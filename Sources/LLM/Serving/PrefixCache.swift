/// Full KV blocks of earlier prompts, keyed by the tokens they hold and every token before them,
/// so a request that starts with the same tokens (a shared system prompt) reuses their keys and
/// values instead of computing them. A block's KV depends only on its token prefix (positions are
/// absolute, and batching does not change a token's numbers), which is what makes the reuse exact.
///
/// The key of block i is a hash chain, h_i = H(h_{i−1}, tokens of block i), h_{−1} = `root`; each
/// entry also keeps its parent's key and its own tokens, so a hash collision is detected, not served.
/// The cache holds one pool reference per entry; an entry no sequence uses (reference count 1) is
/// idle and is evicted least recently used, deepest first among equals (its children are then
/// unreachable anyway), when the pool needs blocks.
final class PrefixCache {
    static let root: UInt64 = 0xCBF2_9CE4_8422_2325

    private struct Entry {
        var block: Int32
        var parent: UInt64
        var tokens: [Int32]
        var depth: Int
        var lastUsed: UInt64
    }

    let pool: BlockPool
    private var entries: [UInt64: Entry] = [:]
    private var clock: UInt64 = 0

    init(pool: BlockPool) {
        self.pool = pool
    }

    /// FNV-1a (64-bit) over the parent key's bytes and the block's token ids.
    static func chain(_ parent: UInt64, _ tokens: ArraySlice<Int32>) -> UInt64 {
        var h = root
        func mix(_ byte: UInt8) {
            h ^= UInt64(byte)
            h = h &* 0x0000_0100_0000_01B3
        }
        for i in 0..<8 { mix(UInt8(truncatingIfNeeded: parent >> (8 * i))) }
        for t in tokens {
            let u = UInt32(bitPattern: t)
            for i in 0..<4 { mix(UInt8(truncatingIfNeeded: u >> (8 * i))) }
        }
        return h
    }

    /// The chain keys of every full block of `tokens`.
    static func keys(_ tokens: [Int32], blockSize: Int) -> [UInt64] {
        var keys: [UInt64] = []
        var parent = root
        for b in 0..<(tokens.count / blockSize) {
            parent = chain(parent, tokens[(b * blockSize)..<((b + 1) * blockSize)])
            keys.append(parent)
        }
        return keys
    }

    var blockCount: Int { entries.count }
    /// Entries no sequence holds: they would be freed by eviction.
    var idleCount: Int { entries.values.reduce(0) { $0 + (pool.referenceCount($1.block) == 1 ? 1 : 0) } }

    /// The cached blocks of the longest run of `keys` (with `tokens`) from the start, at most `limit`,
    /// each retained once for the caller's table.
    func lookup(keys: [UInt64], tokens: [Int32], limit: Int) -> [Int32] {
        clock += 1
        var table: [Int32] = []
        var parent = Self.root
        let size = pool.blockSize
        for (i, key) in keys.prefix(limit).enumerated() {
            guard var entry = entries[key], entry.parent == parent,
                  entry.tokens.elementsEqual(tokens[(i * size)..<((i + 1) * size)]) else { break }
            entry.lastUsed = clock
            entries[key] = entry
            table.append(entry.block)
            parent = key
        }
        pool.retain(table)
        return table
    }

    /// Records `block` as holding block `index` of `tokens` (chain keys `keys`). An existing entry
    /// for the same prefix wins: two sequences may have computed the same block at once.
    func insert(keys: [UInt64], tokens: [Int32], index: Int, block: Int32) {
        let key = keys[index]
        clock += 1
        if entries[key] != nil {
            entries[key]!.lastUsed = clock
            return
        }
        let size = pool.blockSize
        pool.retain([block])
        entries[key] = Entry(block: block, parent: index == 0 ? Self.root : keys[index - 1],
                             tokens: Array(tokens[(index * size)..<((index + 1) * size)]), depth: index, lastUsed: clock)
    }

    /// Frees the least recently used idle block; false when none is idle.
    func evict() -> Bool {
        var victim: (key: UInt64, entry: Entry)?
        for (key, entry) in entries where pool.referenceCount(entry.block) == 1 {
            if let v = victim, (v.entry.lastUsed, -v.entry.depth) <= (entry.lastUsed, -entry.depth) { continue }
            victim = (key, entry)
        }
        guard let victim else { return false }
        entries[victim.key] = nil
        pool.release([victim.entry.block])
        return true
    }

    /// Drops every entry (shutdown).
    func removeAll() {
        for entry in entries.values { pool.release([entry.block]) }
        entries.removeAll()
    }
}
