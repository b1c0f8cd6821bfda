/// Multi-head latent attention (deepseek2) in the absorbed form llama.cpp runs (Model/DeepSeek2.swift
/// has the formulas), built from ordinary ops so every backend runs it:
/// 1. q = W_q_b·RMSNorm(W_q_a·h) (or W_q·h), per head [nope | rope]; ckv = W_kv_a_mqa·h = [c | k_pe].
/// 2. c is RMS-normalized and k_pe rotated in place in ckv: the cache row. q's rope parts are
///    rotated in a side buffer and placed after each head's absorbed part.
/// 3. Per head: q_abs_h = k_b_h · q_nope_h (a matmul over that head's nope columns), so the
///    query row is [q_abs_h | q_pe_h] per head: the standard attention op, MQA over the cache rows
///    with keys = values = the cached [c | k_pe], scale 1/√(nope + rope). The first kvLoraRank
///    values of each head's output are softmax·c (the rest, softmax·k_pe, are not used).
/// 4. Per head: o_h = v_b_h · (softmax·c)_h; x += W_o·concat(o_h) happens in the caller.
/// Each per-head matmul reads a contiguous copy of that head's columns, so in int8 mode the
/// activations round in the same 32-value blocks as llama.cpp's batched mul_mat.
final class LatentAttention {
    private let backend: Backend
    private let shape: LatentAttentionShape
    private let heads: Int
    private let qa, qFull, latent, kPE, qPE, headIn, headOut, output: BackendBuffer

    init(backend: Backend, config c: ModelConfig, shape s: LatentAttentionShape, rows: Int) throws {
        func make(_ width: Int, _ label: String) throws -> BackendBuffer {
            try backend.makeBuffer(count: rows * max(width, 1), label: label)
        }
        self.backend = backend
        self.shape = s
        self.heads = c.heads
        qa = try make(s.qLoraRank, "mla.q_a")
        qFull = try make(c.heads * s.queryKeyDim, "mla.q")
        latent = try make(s.kvLoraRank, "mla.c")
        kPE = try make(s.ropeDim, "mla.k_pe")
        qPE = try make(c.heads * s.ropeDim, "mla.q_pe")
        headIn = try make(max(s.nopeDim, s.kvLoraRank), "mla.head.in")
        headOut = try make(max(s.kvLoraRank, s.valueDim), "mla.head.out")
        output = try make(c.heads * s.valueDim, "mla.o")
    }

    static let requiredOps: [BackendOp] = [.copyColumns]

    /// Writes concat_h(o_h) ([rows, heads · valueDim]) and returns it; `query`, `cacheRow` and
    /// `attention` are the session's q ([rows, heads · cacheRow]), k ([rows, cacheRow]) and
    /// attention ([rows, heads · cacheRow]) buffers.
    func run(_ w: LatentAttentionWeights, layer l: Int, input h: BackendBuffer, placement: KVPlacement,
             query: BackendBuffer, cacheRow kv: BackendBuffer, attention: BackendBuffer, rows n: Int,
             attentionShape: AttentionShape, rope: RopeParameters, eps: Float) throws -> BackendBuffer {
        let b = backend, s = shape, H = heads, qk = s.queryKeyDim, row = s.cacheRow
        if let qA = w.qA, let qANorm = w.qANorm {
            try b.matmul(qA, h, into: qa, rows: n)
            try b.rmsNorm(qa, weight: qANorm, into: qa, rows: n, eps: eps)
            try b.matmul(w.qB, qa, into: qFull, rows: n)
        } else {
            try b.matmul(w.qB, h, into: qFull, rows: n)
        }
        try b.matmul(w.kvA, h, into: kv, rows: n)

        // The cache row: [RMSNorm(c) | rope(k_pe)].
        let kvRow = ColumnBlock(offset: 0, rowStride: row)
        try b.copyColumns(kv, kvRow, into: latent, ColumnBlock(offset: 0, rowStride: s.kvLoraRank), rows: n, groups: 1, width: s.kvLoraRank)
        try b.rmsNorm(latent, weight: w.kvANorm, into: latent, rows: n, eps: eps)
        try b.copyColumns(latent, ColumnBlock(offset: 0, rowStride: s.kvLoraRank), into: kv, kvRow, rows: n, groups: 1, width: s.kvLoraRank)
        let pe = ColumnBlock(offset: s.kvLoraRank, rowStride: row)
        try b.copyColumns(kv, pe, into: kPE, ColumnBlock(offset: 0, rowStride: s.ropeDim), rows: n, groups: 1, width: s.ropeDim)
        try placement.rope(b, kPE, rows: n, heads: 1, headDim: s.ropeDim, parameters: rope)
        try b.copyColumns(kPE, ColumnBlock(offset: 0, rowStride: s.ropeDim), into: kv, pe, rows: n, groups: 1, width: s.ropeDim)

        // The query: per head [k_b_h · q_nope_h | rope(q_pe_h)].
        let peSide = ColumnBlock(offset: 0, rowStride: H * s.ropeDim, groupStride: s.ropeDim)
        try b.copyColumns(qFull, ColumnBlock(offset: s.nopeDim, rowStride: H * qk, groupStride: qk), into: qPE, peSide,
                          rows: n, groups: H, width: s.ropeDim)
        try placement.rope(b, qPE, rows: n, heads: H, headDim: s.ropeDim, parameters: rope)
        try b.copyColumns(qPE, peSide, into: query, ColumnBlock(offset: s.kvLoraRank, rowStride: H * row, groupStride: row),
                          rows: n, groups: H, width: s.ropeDim)
        for head in 0..<H {
            try b.copyColumns(qFull, ColumnBlock(offset: head * qk, rowStride: H * qk), into: headIn,
                              ColumnBlock(offset: 0, rowStride: s.nopeDim), rows: n, groups: 1, width: s.nopeDim)
            try b.matmul(w.kB[head], headIn, into: headOut, rows: n)
            try b.copyColumns(headOut, ColumnBlock(offset: 0, rowStride: s.kvLoraRank), into: query,
                              ColumnBlock(offset: head * row, rowStride: H * row), rows: n, groups: 1, width: s.kvLoraRank)
        }

        // Keys and values are the same cache row.
        try placement.store(b, layer: l, keys: kv, values: kv, rows: n)
        try placement.attend(b, layer: l, query: query, into: attention, rows: n, shape: attentionShape)

        for head in 0..<H {
            try b.copyColumns(attention, ColumnBlock(offset: head * row, rowStride: H * row), into: headIn,
                              ColumnBlock(offset: 0, rowStride: s.kvLoraRank), rows: n, groups: 1, width: s.kvLoraRank)
            try b.matmul(w.vB[head], headIn, into: headOut, rows: n)
            try b.copyColumns(headOut, ColumnBlock(offset: 0, rowStride: s.valueDim), into: output,
                              ColumnBlock(offset: head * s.valueDim, rowStride: H * s.valueDim), rows: n, groups: 1, width: s.valueDim)
        }
        return output
    }
}
