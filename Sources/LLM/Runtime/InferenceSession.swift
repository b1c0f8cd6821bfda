/// Which rows of logits a forward pass should produce.
public enum LogitsRequest: Sendable {
    /// Only the last token's (decoding).
    case last
    /// One row per input token (`logits`).
    case all
    /// Rows for input tokens `from` ..< count only (`perplexity` scores the second half of a window).
    case tail(from: Int)
    /// Rows for the given input rows, in that order (continuous batching: each sequence's last row).
    /// One forward chunk only: `evaluate` refuses it for more than `batchSize` tokens.
    case rows([Int])
}

/// Runs the model's forward pass on its backend, appending to a KV cache. This is the one
/// place the decoder graph is written; every backend executes it through `Backend` ops.
public final class InferenceSession {
    public let model: Model
    public let cache: KVCache
    /// Tokens per forward chunk: prompts are evaluated in batches of at most this many.
    public let batchSize: Int

    private let backend: Backend
    private let scratch: Scratch
    /// Mixture-of-experts layers run through the host-side dispatcher (Runtime/ExpertDispatch.swift).
    private let experts: ExpertDispatch?
    /// Multi-head latent attention (deepseek2, Runtime/LatentAttention.swift).
    private let latent: LatentAttention?

    /// Called once per MoE layer and batch with the router logits and the chosen experts
    /// (`llm-gpu experts`). Setting it makes each MoE layer download its router logits.
    public var routingObserver: ((RoutingEvent) -> Void)? {
        get { experts?.observer }
        set { experts?.observer = newValue }
    }

    /// `contextLength` is the KV cache capacity in tokens.
    public convenience init(model: Model, contextLength: Int, batchSize: Int = 256) throws {
        guard contextLength > 0 else { throw ModelError.contextTooSmall(requested: contextLength) }
        try self.init(model: model, contextLength: contextLength, rows: max(1, min(batchSize, contextLength)))
    }

    /// `rows` is the scratch height: the most tokens (or beams) one `runGraph` call takes.
    init(model: Model, contextLength: Int, rows: Int) throws {
        let c = model.config
        self.model = model
        self.backend = model.backend
        self.batchSize = rows
        if c.positionEncoding == .learned, contextLength > c.trainedContext {
            throw ModelError.contextBeyondPositions(context: contextLength, positions: c.trainedContext)
        }
        // MLA caches one latent row per token and reads the values from it (sharedValues).
        self.cache = try KVCache(backend: model.backend, layers: c.layers, capacity: contextLength,
                                 width: c.kvHeads * c.headDim, windows: c.layerWindows, batch: rows,
                                 sharedValues: c.latentAttention != nil)
        self.scratch = try Scratch(backend: model.backend, config: c, rows: rows)
        self.experts = try c.moe.map { try ExpertDispatch(backend: model.backend, config: c, moe: $0, rows: rows) }
        self.latent = try c.latentAttention.map { try LatentAttention(backend: model.backend, config: c, shape: $0, rows: rows) }
        try checkSupport()
    }

    /// Tokens evaluated so far (the next token's position).
    public var position: Int { cache.count }

    public func reset() { cache.truncate(to: 0) }

    /// Appends `tokens` at the current position and returns their logits on the device:
    /// `[1, vocab]` for `.last`, `[tokens.count, vocab]` for `.all`, `[tokens.count − k, vocab]` for `.tail(from: k)`.
    public func evaluate(_ tokens: [Int32], logits request: LogitsRequest) throws -> BackendBuffer {
        guard !tokens.isEmpty else { throw ModelError.emptyPrompt }
        guard tokens.count <= cache.remaining else {
            throw ModelError.promptTooLong(tokens: cache.count + tokens.count, context: cache.capacity)
        }
        let vocab = model.config.vocabularySize
        for t in tokens where t < 0 || Int(t) >= vocab {
            throw ModelError.tokenOutOfRange(token: Int(t), vocabularySize: vocab)
        }
        guard cache.canAttend() else { throw ModelError.rewoundTooFar(position: cache.count) }
        // `.tail(from: k)` over several chunks is computed as `.all` rows k..< per chunk.
        if case .rows(let rows) = request {
            guard tokens.count <= batchSize, rows.allSatisfy({ (0..<tokens.count).contains($0) }) else {
                throw ModelError.invalidLogitRows(rows: rows, tokens: tokens.count, batchSize: batchSize)
            }
            try forward(tokens, logits: request)
            return scratch.logits
        }
        let firstRow: Int? = switch request {
        case .rows: nil
        case .last: nil
        case .all: 0
        case .tail(let from): min(max(from, 0), tokens.count - 1)
        }
        let rowsWanted = firstRow.map { tokens.count - $0 } ?? 1
        let combined = firstRow != nil && tokens.count > batchSize
            ? try backend.makeBuffer(count: rowsWanted * vocab, label: "logits.rows") : nil
        var start = 0
        while start < tokens.count {
            let chunk = Array(tokens[start..<min(start + batchSize, tokens.count)])
            let end = start + chunk.count
            let wanted: LogitsRequest?
            if let firstRow {
                wanted = end <= firstRow ? nil : .tail(from: max(firstRow - start, 0))
            } else {
                wanted = end == tokens.count ? .last : nil
            }
            try forward(chunk, logits: wanted)
            if let combined, case .tail(let from)? = wanted {
                try backend.copyRows(scratch.logits, sourceRow: 0, into: combined, destinationRow: start + from - firstRow!,
                                     rows: chunk.count - from, width: vocab)
            }
            start = end
        }
        return combined ?? scratch.logits
    }

    /// The greedy next token after `tokens`: only the id crosses back from the device.
    public func evaluateGreedy(_ tokens: [Int32]) throws -> Int32 {
        let logits = try evaluate(tokens, logits: .last)
        return try backend.argmax(logits, rows: 1, width: model.config.vocabularySize)[0]
    }

    // MARK: The decoder graph

    private func forward(_ tokens: [Int32], logits request: LogitsRequest?) throws {
        let placement = KVPlacement.contiguous(cache: cache, start: cache.count)
        try runGraph(tokens, placement: placement, logits: request)
        cache.advance(by: tokens.count)
    }

    /// Runs `tokens` (one row each) through the decoder; `placement` says where their keys and
    /// values go and which cached positions each row attends to. Logits land in `scratch.logits`.
    func runGraph(_ tokens: [Int32], placement: KVPlacement, logits request: LogitsRequest?) throws {
        let c = model.config, w = model.weights, s = scratch, b = backend
        let n = tokens.count

        // Normalization: RMSNorm, or LayerNorm with its bias (gpt2).
        func norm(_ input: BackendBuffer, _ weight: BackendWeight, bias: BackendWeight?, into output: BackendBuffer, rows: Int) throws {
            switch c.normalization {
            case .rms: try b.rmsNorm(input, weight: weight, into: output, rows: rows, eps: c.normEps)
            case .layer: try b.layerNorm(input, weight: weight, bias: bias, into: output, rows: rows, eps: c.normEps)
            }
        }

        try b.embed(w.tokenEmbedding, tokens: tokens, into: s.x)
        if let factor = c.embeddingScale { try b.scale(s.x, by: factor, count: n * c.dim) }
        if let positions = w.positionEmbedding {
            // gpt2: x += position_embd[position of each row].
            try b.embed(positions, tokens: placement.positions(rows: n).map { Int32($0) }, into: s.h)
            try b.add(s.x, s.h, into: s.x, count: n * c.dim)
        }
        for (l, layer) in w.layers.enumerated() {
            // Attention block: x += [postNorm] Wo · attention(rope(norm_q(Wq h + bq)), rope(norm_k(Wk h + bk)), Wv h + bv) [+ bo],
            // h = norm(x); the bracketed pieces exist only in some families.
            let shape = c.attentionShape(layer: l), rope = c.rope(layer: l)
            try norm(s.x, layer.attentionNorm, bias: layer.attentionNormBias, into: s.h, rows: n)
            let attended: BackendBuffer
            if let mla = layer.latent, let latent {
                attended = try latent.run(mla, layer: l, input: s.h, placement: placement, query: s.q, cacheRow: s.k,
                                          attention: s.attention, rows: n, attentionShape: shape, rope: rope, eps: c.normEps)
            } else {
                guard let wq = layer.wq, let wk = layer.wk, let wv = layer.wv else {
                    preconditionFailure("layer \(l) has neither q/k/v projections nor latent attention")
                }
                try b.matmul(wq, s.h, into: s.q, rows: n)
                try b.matmul(wk, s.h, into: s.k, rows: n)
                try b.matmul(wv, s.h, into: s.v, rows: n)
                if let bias = layer.qBias { try b.addBias(s.q, bias: bias, rows: n) }
                if let bias = layer.kBias { try b.addBias(s.k, bias: bias, rows: n) }
                if let bias = layer.vBias { try b.addBias(s.v, bias: bias, rows: n) }
                // q/k norms: per head (gemma3, qwen3: rows viewed as [n · heads, headDim]) or over the
                // whole projection (olmoe: a [heads · headDim] weight); the weight's width says which.
                if let norm = layer.qNorm {
                    try b.rmsNorm(s.q, weight: norm, into: s.q, rows: n * c.heads * c.headDim / norm.columns, eps: c.normEps)
                }
                if let norm = layer.kNorm {
                    try b.rmsNorm(s.k, weight: norm, into: s.k, rows: n * c.kvHeads * c.headDim / norm.columns, eps: c.normEps)
                }
                if c.positionEncoding == .rope {
                    try placement.rope(b, s.q, rows: n, heads: c.heads, headDim: c.headDim, parameters: rope)
                    try placement.rope(b, s.k, rows: n, heads: c.kvHeads, headDim: c.headDim, parameters: rope)
                }
                try placement.store(b, layer: l, keys: s.k, values: s.v, rows: n)
                try placement.attend(b, layer: l, query: s.q, into: s.attention, rows: n, shape: shape)
                attended = s.attention
            }
            try b.matmul(layer.wo, attended, into: s.h, rows: n)
            if let bias = layer.oBias { try b.addBias(s.h, bias: bias, rows: n) }
            if let norm = layer.postAttentionNorm { try b.rmsNorm(s.h, weight: norm, into: s.h, rows: n, eps: c.normEps) }
            try b.add(s.x, s.h, into: s.x, count: n * c.dim)

            // Feed-forward block: x += [postNorm] Wdown · (act(Wgate h) · Wup h), h = norm(x)
            try norm(s.x, layer.ffnNorm, bias: layer.ffnNormBias, into: s.h, rows: n)
            if let moe = layer.moe, let experts {
                // Mixture of experts: the dispatcher adds Σ_k w_k · expert_k(h) into x itself.
                try experts.run(moe, index: l, input: s.h, residual: s.x, rows: n)
                continue
            }
            guard let ffnUp = layer.ffnUp, let ffnDown = layer.ffnDown else {
                preconditionFailure("layer \(l) has neither a dense FFN nor experts")
            }
            try b.matmul(ffnUp, s.h, into: s.up, rows: n)
            if let bias = layer.ffnUpBias { try b.addBias(s.up, bias: bias, rows: n) }
            switch c.ffnActivation {
            case .gelu:
                // gpt2: ungated, Wdown · gelu(Wup h + b_up) + b_down.
                try b.gelu(s.up, into: s.gate, count: n * c.ffnDim)
            case .silu, .geluTanh:
                guard let ffnGate = layer.ffnGate else { preconditionFailure("layer \(l) has a gated FFN without ffn_gate") }
                try b.matmul(ffnGate, s.h, into: s.gate, rows: n)
                if c.ffnActivation == .silu {
                    try b.swiglu(gate: s.gate, up: s.up, into: s.gate, count: n * c.ffnDim)
                } else {
                    try b.geglu(gate: s.gate, up: s.up, into: s.gate, count: n * c.ffnDim)
                }
            }
            try b.matmul(ffnDown, s.gate, into: s.h, rows: n)
            if let bias = layer.ffnDownBias { try b.addBias(s.h, bias: bias, rows: n) }
            if let norm = layer.postFFNNorm { try b.rmsNorm(s.h, weight: norm, into: s.h, rows: n, eps: c.normEps) }
            try b.add(s.x, s.h, into: s.x, count: n * c.dim)
        }

        let logitRows: Int
        switch request {
        case nil:
            return
        case .all?, .tail(from: 0)?:
            try norm(s.x, w.outputNorm, bias: w.outputNormBias, into: s.h, rows: n)
            try b.matmul(w.output, s.h, into: s.logits, rows: n)
            logitRows = n
        case .tail(let from)?:
            // Only rows from..<n are projected: the vocabulary matmul is the largest in small models.
            try b.copyRows(s.x, sourceRow: from, into: s.h, destinationRow: 0, rows: n - from, width: c.dim)
            try norm(s.h, w.outputNorm, bias: w.outputNormBias, into: s.h, rows: n - from)
            try b.matmul(w.output, s.h, into: s.logits, rows: n - from)
            logitRows = n - from
        case .rows(let rows)?:
            // Consecutive selected rows move as one copy into h, then only they are projected.
            var i = 0
            while i < rows.count {
                var run = 1
                while i + run < rows.count && rows[i + run] == rows[i] + run { run += 1 }
                try b.copyRows(s.x, sourceRow: rows[i], into: s.h, destinationRow: i, rows: run, width: c.dim)
                i += run
            }
            try b.rmsNorm(s.h, weight: w.outputNorm, into: s.h, rows: rows.count, eps: c.normEps)
            try b.matmul(w.output, s.h, into: s.logits, rows: rows.count)
            logitRows = rows.count
        case .last?:
            // Only the last row is projected to the vocabulary: the largest matmul shrinks n-fold.
            try b.copyRows(s.x, sourceRow: n - 1, into: s.h, destinationRow: 0, rows: 1, width: c.dim)
            try norm(s.h, w.outputNorm, bias: w.outputNormBias, into: s.h, rows: 1)
            try b.matmul(w.output, s.h, into: s.logits, rows: 1)
            logitRows = 1
        }
        if let cap = c.finalLogitSoftcap { try b.softcap(s.logits, cap: cap, count: logitRows * c.vocabularySize) }
    }

    /// The logits buffer the last `runGraph` wrote ([rows, vocab]).
    var logitsBuffer: BackendBuffer { scratch.logits }

    private func checkSupport() throws {
        let c = model.config, layer = model.weights.layers.first
        var needed: [BackendOp] = [.attention, .copyRows, .add, .argmax]
        needed.append(c.normalization == .rms ? .rmsNorm : .layerNorm)
        if c.positionEncoding == .rope || c.latentAttention != nil { needed.append(.rope(c.rope.style)) }
        if c.latentAttention != nil { needed += [.rmsNorm] + LatentAttention.requiredOps }
        switch c.ffnActivation {
        case .silu: needed.append(.swiglu)
        case .geluTanh: needed.append(.geglu)
        case .gelu: needed.append(.gelu)
        }
        if c.moe != nil { needed.append(.swiglu) }
        if c.embeddingScale != nil { needed.append(.scale) }
        if layer?.qBias != nil || layer?.oBias != nil || layer?.ffnUpBias != nil { needed.append(.addBias) }
        if c.layerWindows.contains(where: { $0 > 0 }) { needed.append(.slidingWindowAttention) }
        if c.attentionSoftcap != nil { needed.append(.attentionSoftcap) }
        if c.finalLogitSoftcap != nil { needed.append(.softcap) }
        if c.moe != nil { needed += ExpertDispatch.requiredOps }
        for op in needed where !backend.supports(op) {
            throw UnsupportedOpError(backend: backend.name, op: op, context: c.architecture)
        }
    }
}

/// Where a batch's keys and values go and what each row attends to.
enum KVPlacement {
    /// One sequence in a contiguous cache: row r at position start + r.
    case contiguous(cache: KVCache, start: Int)
    /// Rows in a paged pool: row r at `positions[r]`, its keys/values stored at that position of its table.
    case paged(pool: BlockPool, layout: PagedLayout, positions: [Int])

    /// The position of each of `rows` rows.
    func positions(rows: Int) -> [Int] {
        switch self {
        case let .contiguous(_, start): return Array(start..<(start + rows))
        case let .paged(_, _, positions): return Array(positions.prefix(rows))
        }
    }

    func rope(_ b: Backend, _ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, parameters: RopeParameters) throws {
        switch self {
        case let .contiguous(_, start):
            try b.rope(buffer, rows: rows, heads: heads, headDim: headDim, startPosition: start, parameters: parameters)
        case let .paged(_, _, positions):
            try b.rope(buffer, rows: rows, heads: heads, headDim: headDim, positions: positions, parameters: parameters)
        }
    }

    func store(_ b: Backend, layer: Int, keys: BackendBuffer, values: BackendBuffer, rows: Int) throws {
        switch self {
        case let .contiguous(cache, start):
            let ring = cache.rings[layer] ?? .max
            // Rows land at position mod ring: at most two copies where the ring wraps.
            var r = 0
            while r < rows {
                let row = (start + r) % ring, run = min(rows - r, ring - row)
                try b.copyRows(keys, sourceRow: r, into: cache.keys[layer], destinationRow: row, rows: run, width: cache.width)
                if cache.values[layer] !== cache.keys[layer] {
                    try b.copyRows(values, sourceRow: r, into: cache.values[layer], destinationRow: row, rows: run, width: cache.width)
                }
                r += run
            }
        case let .paged(pool, layout, positions):
            // Consecutive rows landing in consecutive physical rows move as one copy.
            var r = 0
            while r < rows {
                let target = layout.physicalRow(r, position: positions[r])
                var run = 1
                while r + run < rows && layout.tables[r + run] == layout.tables[r] && positions[r + run] == positions[r] + run
                    && layout.physicalRow(r + run, position: positions[r + run]) == target + run { run += 1 }
                try b.copyRows(keys, sourceRow: r, into: pool.keys[layer], destinationRow: target, rows: run, width: pool.width)
                try b.copyRows(values, sourceRow: r, into: pool.values[layer], destinationRow: target, rows: run, width: pool.width)
                r += run
            }
        }
    }

    func attend(_ b: Backend, layer: Int, query: BackendBuffer, into output: BackendBuffer, rows: Int, shape: AttentionShape) throws {
        switch self {
        case let .contiguous(cache, start):
            if let ring = cache.rings[layer] {
                // A ring is a paged layout with one block of `ring` rows repeated: position p → row p mod ring.
                let blocks = (start + rows + ring - 1) / ring
                let layout = PagedLayout(blockSize: ring, tables: Array(repeating: Array(repeating: 0, count: blocks), count: rows),
                                         lengths: Array((start + 1)...(start + rows)))
                try b.pagedAttention(query: query, keys: cache.keys[layer], values: cache.values[layer], into: output,
                                     rows: rows, layout: layout, shape: shape)
            } else {
                try b.attention(query: query, keys: cache.keys[layer], values: cache.values[layer], into: output,
                                rows: rows, startPosition: start, shape: shape)
            }
        case let .paged(pool, layout, _):
            try b.pagedAttention(query: query, keys: pool.keys[layer], values: pool.values[layer], into: output,
                                 rows: rows, layout: layout, shape: shape)
        }
    }
}

/// Activations for one batch, allocated once per session so no step allocates.
private struct Scratch {
    let x, h, q, k, v, attention, gate, up, logits: BackendBuffer

    init(backend: Backend, config c: ModelConfig, rows: Int) throws {
        func make(_ width: Int, _ label: String) throws -> BackendBuffer {
            try backend.makeBuffer(count: rows * width, label: label)
        }
        x = try make(c.dim, "x")
        h = try make(max(c.dim, c.heads * c.headDim), "h")
        q = try make(c.heads * c.headDim, "q")
        k = try make(c.kvHeads * c.headDim, "k")
        v = try make(c.kvHeads * c.headDim, "v")
        attention = try make(c.heads * c.headDim, "attention")
        gate = try make(c.ffnDim, "gate")
        up = try make(c.ffnDim, "up")
        logits = try make(c.vocabularySize, "logits")
    }
}
