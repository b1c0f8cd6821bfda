/// A paged KV cache: `blockCount` blocks of `blockSize` positions per layer, reference-counted so
/// sequences (beams) that share a prefix share its blocks. A sequence's block table lists its
/// blocks in order; writing into a block someone else also holds copies it first (copy-on-write).
public final class BlockPool {
    public let blockSize: Int
    public let blockCount: Int
    public let width: Int
    /// [blockCount · blockSize, width] per layer.
    public let keys: [BackendBuffer]
    public let values: [BackendBuffer]
    private var references: [Int]
    private var freeBlocks: [Int32]
    /// The most blocks ever in use at once, for reporting memory.
    public private(set) var peakBlocksInUse = 0
    private let backend: Backend

    /// Bytes of K and V a pool of this shape allocates (f32, over all layers); nil when that overflows.
    public static func allocationBytes(layers: Int, blockSize: Int, blockCount: Int, width: Int) -> Int? {
        let (bytes, overflow) = (blockCount * blockSize).multipliedReportingOverflow(by: width * 8 * layers)
        return overflow ? nil : bytes
    }

    public init(backend: Backend, layers: Int, blockSize: Int, blockCount: Int, width: Int) throws {
        let bytes = Self.allocationBytes(layers: layers, blockSize: blockSize, blockCount: blockCount, width: width)
        if bytes == nil || backend.memoryCapacity.map({ UInt64(bytes!) > $0 }) == true {
            throw ModelError.contextTooLarge(context: blockCount * blockSize, bytes: bytes ?? .max,
                                             available: backend.memoryCapacity ?? 0, backend: backend.name)
        }
        self.backend = backend
        self.blockSize = blockSize
        self.blockCount = blockCount
        self.width = width
        keys = try (0..<layers).map { try backend.makeBuffer(count: blockCount * blockSize * width, label: "pool.k.\($0)") }
        values = try (0..<layers).map { try backend.makeBuffer(count: blockCount * blockSize * width, label: "pool.v.\($0)") }
        references = [Int](repeating: 0, count: blockCount)
        freeBlocks = (0..<Int32(blockCount)).reversed()
    }

    public var blocksInUse: Int { blockCount - freeBlocks.count }
    /// How many tables (and caches) hold `block`; 0 when it is free.
    func referenceCount(_ block: Int32) -> Int { references[Int(block)] }
    /// Bytes of K and V held by `blocks` blocks over all layers.
    public func bytes(blocks: Int) -> Int { 2 * keys.count * blocks * blockSize * width * MemoryLayout<Float>.size }

    func allocate() throws -> Int32 {
        guard let block = freeBlocks.popLast() else { throw BlockPoolError.exhausted(blocks: blockCount) }
        references[Int(block)] = 1
        peakBlocksInUse = max(peakBlocksInUse, blocksInUse)
        return block
    }

    func retain(_ table: [Int32]) {
        for b in table { references[Int(b)] += 1 }
    }

    func release(_ table: [Int32]) {
        for b in table {
            references[Int(b)] -= 1
            if references[Int(b)] == 0 { freeBlocks.append(b) }
        }
    }

    /// Makes room for position `length` (the next one written) in `table`: a new block at a block
    /// boundary, or a private copy of a shared last block.
    func prepareAppend(_ table: inout [Int32], length: Int) throws {
        if length % blockSize == 0 {
            table.append(try allocate())
            return
        }
        let last = table[table.count - 1]
        guard references[Int(last)] > 1 else { return }
        let copy = try allocate()
        let filled = length % blockSize
        for layer in keys.indices {
            try backend.copyRows(keys[layer], sourceRow: Int(last) * blockSize, into: keys[layer],
                                 destinationRow: Int(copy) * blockSize, rows: filled, width: width)
            try backend.copyRows(values[layer], sourceRow: Int(last) * blockSize, into: values[layer],
                                 destinationRow: Int(copy) * blockSize, rows: filled, width: width)
        }
        release([last])
        table[table.count - 1] = copy
    }
}

public enum BlockPoolError: Error, CustomStringConvertible {
    case exhausted(blocks: Int)
    public var description: String {
        switch self {
        case .exhausted(let blocks): return "the paged KV cache ran out of its \(blocks) blocks"
        }
    }
}
