// Ops for a paged KV cache (beam search): keys and values live in fixed-size blocks of a shared
// pool, and each sequence names its blocks in a block table, so beams that share a prefix share
// its blocks. Both ops have portable default implementations built from the core ops, so every
// backend runs them; a backend overrides them with native kernels to avoid the gathers.

/// Where each row's keys and values are: row r sees `lengths[r]` positions, position p of it at
/// physical row `tables[r][p / blockSize] · blockSize + p % blockSize` of the pool buffers.
public struct PagedLayout: Sendable, Equatable {
    public var blockSize: Int
    public var tables: [[Int32]]
    public var lengths: [Int]

    public init(blockSize: Int, tables: [[Int32]], lengths: [Int]) {
        self.blockSize = blockSize
        self.tables = tables
        self.lengths = lengths
    }

    @inline(__always)
    public func physicalRow(_ row: Int, position p: Int) -> Int {
        Int(tables[row][p / blockSize]) * blockSize + p % blockSize
    }
}

extension Backend {
    /// RoPE where row r sits at `positions[r]` (beams: every row at the same position).
    /// Default: consecutive positions use `rope`; others rotate one row at a time through a scratch row.
    public func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, positions: [Int],
                     parameters: RopeParameters) throws {
        if let first = positions.first, positions.enumerated().allSatisfy({ $0.element == first + $0.offset }) {
            return try rope(buffer, rows: rows, heads: heads, headDim: headDim, startPosition: first, parameters: parameters)
        }
        let width = heads * headDim
        let scratch = try makeBuffer(count: width, label: "rope.row")
        for r in 0..<rows {
            try copyRows(buffer, sourceRow: r, into: scratch, destinationRow: 0, rows: 1, width: width)
            try rope(scratch, rows: 1, heads: heads, headDim: headDim, startPosition: positions[r], parameters: parameters)
            try copyRows(scratch, sourceRow: 0, into: buffer, destinationRow: r, rows: 1, width: width)
        }
    }

    /// Causal attention of row r over the `layout.lengths[r]` positions its block table names.
    /// Default: rows with the same table are gathered once into contiguous scratch and handed to
    /// `attention`; storage stays paged and shared, only this scratch is contiguous.
    public func pagedAttention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer,
                               rows: Int, layout: PagedLayout, shape: AttentionShape) throws {
        var start = 0
        while start < rows {
            // A run of rows with one table and consecutive lengths is one causal attention call.
            var end = start + 1
            while end < rows && layout.tables[end] == layout.tables[start] && layout.lengths[end] == layout.lengths[end - 1] + 1 {
                end += 1
            }
            let length = layout.lengths[end - 1], count = end - start
            let k = try makeBuffer(count: length * shape.kvWidth, label: "paged.k")
            let v = try makeBuffer(count: length * shape.kvWidth, label: "paged.v")
            var p = 0
            while p < length {
                let run = min(layout.blockSize - p % layout.blockSize, length - p)
                let physical = layout.physicalRow(start, position: p)
                try copyRows(keys, sourceRow: physical, into: k, destinationRow: p, rows: run, width: shape.kvWidth)
                try copyRows(values, sourceRow: physical, into: v, destinationRow: p, rows: run, width: shape.kvWidth)
                p += run
            }
            let q = try makeBuffer(count: count * shape.queryWidth, label: "paged.q")
            let o = try makeBuffer(count: count * shape.queryWidth, label: "paged.o")
            try copyRows(query, sourceRow: start, into: q, destinationRow: 0, rows: count, width: shape.queryWidth)
            try attention(query: q, keys: k, values: v, into: o, rows: count, startPosition: layout.lengths[start] - 1, shape: shape)
            try copyRows(o, sourceRow: 0, into: output, destinationRow: start, rows: count, width: shape.queryWidth)
            start = end
        }
    }
}
