import Foundation

/// How the score divides a hypothesis's summed log-probability by its length L, the number of
/// generated tokens (counting the end-of-generation token that finished it, if any).
public enum LengthNormalization: String, Sendable, CaseIterable {
    /// sum / L^α
    case power
    /// sum / ((5 + L) / 6)^α, as in GNMT (Wu et al. 2016).
    case gnmt

    public func divisor(length: Int, alpha: Double) -> Double {
        switch self {
        case .power: return pow(Double(length), alpha)
        case .gnmt: return pow((5 + Double(length)) / 6, alpha)
        }
    }
}

/// When beam search stops, with Hugging Face transformers' meanings.
public enum EarlyStopping: String, Sendable, CaseIterable {
    /// As soon as `beams` hypotheses are finished.
    case `true`
    /// When `beams` are finished and the best live beam, scored at its current length, cannot beat the worst of them.
    case `false`
    /// When `beams` are finished and no live beam could beat them even at the longest allowed length.
    case never
}

public struct BeamSearchParameters: Sendable, Equatable {
    /// The most beams one search may run (memory bounds it too, checked before allocating): enough to
    /// cover a small vocabulary exhaustively, while memory and time grow linearly with it.
    public static let maximumBeams = 1024

    public var beams: Int
    /// α in the length term.
    public var lengthPenalty: Double
    public var lengthNormalization: LengthNormalization
    public var earlyStopping: EarlyStopping
    /// How many finished hypotheses to return, best first (≤ beams).
    public var returnCount: Int

    public init(beams: Int, lengthPenalty: Double = 1, lengthNormalization: LengthNormalization = .power,
                earlyStopping: EarlyStopping = .false, returnCount: Int = 1) {
        self.beams = beams
        self.lengthPenalty = lengthPenalty
        self.lengthNormalization = lengthNormalization
        self.earlyStopping = earlyStopping
        self.returnCount = returnCount
    }
}

public struct Hypothesis: Sendable {
    /// Generated ids; an end-of-generation token that finished the hypothesis is included.
    public var tokens: [Int32]
    public var text: String
    /// Σ log p of the generated tokens.
    public var logprob: Double
    /// logprob / length term.
    public var score: Double
    public var finishReason: FinishReason
}

public struct BeamSearchResult: Sendable {
    public var hypotheses: [Hypothesis]
    public var timings: Timings
    /// Most KV bytes the paged cache held at once.
    public var peakKVBytes: Int
    /// What per-beam contiguous caches would need: beams × (prompt + max tokens) positions.
    public var contiguousKVBytes: Int
}

/// Beam search over a paged KV cache: the prompt is stored once, every live beam advances in one
/// batched forward step, and a beam that forks shares its parent's blocks (copy-on-write for the
/// partial last block), so reordering beams copies at most one partial block per beam.
public struct BeamSearch {
    public let model: Model
    public static let blockSize = 16

    public init(model: Model) {
        self.model = model
    }

    public func run(prompt: [Int32], maxTokens: Int, parameters p: BeamSearchParameters,
                    stopAtEndOfGeneration: Bool = true, contextLength: Int) throws -> BeamSearchResult {
        guard !prompt.isEmpty else { throw ModelError.emptyPrompt }
        guard prompt.count + maxTokens <= contextLength else {
            throw ModelError.promptTooLong(tokens: prompt.count + maxTokens, context: contextLength)
        }
        let n = max(1, p.beams), vocab = model.config.vocabularySize, tokenizer = model.tokenizer
        guard n <= BeamSearchParameters.maximumBeams else {
            throw ModelError.tooManyBeams(beams: n, limit: BeamSearchParameters.maximumBeams)
        }
        let blockSize = Self.blockSize
        let promptBlocks = (prompt.count + blockSize - 1) / blockSize
        // Each beam needs its own blocks for at most maxTokens positions, plus one copied partial block.
        let blockCount = promptBlocks + n * ((maxTokens + blockSize - 1) / blockSize + 2)
        let width = model.config.kvHeads * model.config.headDim, graphRows = max(n, 128)
        // Checked here, before any allocation, so the message names what the user asked for (beams), not --context.
        let kvBytes = BlockPool.allocationBytes(layers: model.config.layers, blockSize: blockSize, blockCount: blockCount, width: width)
        let bytes = kvBytes.flatMap { kv in
            let (sum, overflow) = kv.addingReportingOverflow(2 * graphRows * vocab * MemoryLayout<Float>.size)
            return overflow ? nil : sum
        }
        if bytes == nil || model.backend.memoryCapacity.map({ UInt64(bytes!) > $0 }) == true {
            throw ModelError.beamsTooLarge(beams: n, tokens: maxTokens, bytes: bytes ?? .max,
                                           available: model.backend.memoryCapacity ?? 0, backend: model.backend.name)
        }
        let pool = try BlockPool(backend: model.backend, layers: model.config.layers, blockSize: blockSize,
                                 blockCount: blockCount, width: width)
        // The graph's own contiguous cache stays unused (one position); keys and values go to the pool.
        let graph = try InferenceSession(model: model, contextLength: 1, rows: graphRows)
        let clock = ContinuousClock()
        var timings = Timings()

        // The prompt, once, into blocks every beam will share.
        var started = clock.now
        var promptTable: [Int32] = []
        for _ in 0..<promptBlocks { promptTable.append(try pool.allocate()) }
        var rows: [[Float]] = []
        var start = 0
        while start < prompt.count {
            let end = min(start + graph.batchSize, prompt.count)
            let layout = PagedLayout(blockSize: blockSize, tables: Array(repeating: promptTable, count: end - start),
                                     lengths: Array((start + 1)...end))
            try graph.runGraph(Array(prompt[start..<end]), placement: .paged(pool: pool, layout: layout, positions: Array(start..<end)),
                               logits: end == prompt.count ? .last : nil)
            start = end
        }
        rows = [try model.backend.download(graph.logitsBuffer, offset: 0, count: vocab)]
        timings.promptTokens = prompt.count
        timings.promptSeconds = seconds(clock.now - started)

        var beams = [Beam(table: promptTable, tokens: [], logprob: 0)]
        var finished = FinishedSet(capacity: n)
        let alpha = p.lengthPenalty
        func score(_ logprob: Double, _ length: Int) -> Double {
            logprob / p.lengthNormalization.divisor(length: max(length, 1), alpha: alpha)
        }

        started = clock.now
        for step in 0..<maxTokens {
            // Expand: every beam's best continuations, merged and ranked by summed logprob.
            var candidates: [(beam: Int, token: Int32, logprob: Double)] = []
            let perBeam = min(vocab, 2 * n)
            for (i, beam) in beams.enumerated() {
                let lp = logSoftmax(rows[i])
                for t in topIndices(lp, count: perBeam) { candidates.append((i, Int32(t), beam.logprob + lp[t])) }
            }
            candidates.sort { $0.logprob != $1.logprob ? $0.logprob > $1.logprob : ($0.beam, $0.token) < ($1.beam, $1.token) }

            var next: [(parent: Int, token: Int32, logprob: Double)] = []
            for (rank, c) in candidates.enumerated() where next.count < n {
                if stopAtEndOfGeneration && tokenizer.isEndOfGeneration(c.token) {
                    // As in transformers: an end token only finishes a hypothesis from within the top `beams` ranks.
                    if rank < n {
                        let tokens = beams[c.beam].tokens + [c.token]
                        finished.add(Hypothesis(tokens: tokens, text: tokenizer.decode(beams[c.beam].tokens), logprob: c.logprob,
                                                score: score(c.logprob, tokens.count), finishReason: .eos))
                    }
                    continue
                }
                next.append((c.beam, c.token, c.logprob))
            }
            let length = step + 1

            // Done? Then the live beams are not extended further.
            let atLimit = length == maxTokens || next.isEmpty
            if !atLimit, finished.isFull, let worst = finished.worstScore, let best = next.first {
                let stop: Bool
                switch p.earlyStopping {
                case .true: stop = true
                case .false: stop = score(best.logprob, length) <= worst
                case .never:
                    stop = alpha > 0 ? score(best.logprob, maxTokens) <= worst : score(best.logprob, length) <= worst
                }
                if stop {
                    for beam in beams { pool.release(beam.table) }
                    return finish(finished, timings: timings, started: started, clock: clock, pool: pool, prompt: prompt, maxTokens: maxTokens, beams: n, p: p)
                }
            }
            if atLimit {
                for c in next {
                    let tokens = beams[c.parent].tokens + [c.token]
                    finished.add(Hypothesis(tokens: tokens, text: tokenizer.decode(tokens), logprob: c.logprob,
                                            score: score(c.logprob, tokens.count), finishReason: .length))
                }
                for beam in beams { pool.release(beam.table) }
                return finish(finished, timings: timings, started: started, clock: clock, pool: pool, prompt: prompt, maxTokens: maxTokens, beams: n, p: p)
            }

            // Fork: children share their parent's blocks; the position written next gets a private block.
            let position = prompt.count + step
            // Parents are released before children make room, so a parent's only child (or its last
            // one) takes the partial block over without copying it.
            var children = next.map { c in
                Beam(table: beams[c.parent].table, tokens: beams[c.parent].tokens + [c.token], logprob: c.logprob)
            }
            for child in children { pool.retain(child.table) }
            for beam in beams { pool.release(beam.table) }
            for i in children.indices { try pool.prepareAppend(&children[i].table, length: position) }
            beams = children

            // One batched step for every live beam, all at the same position.
            let layout = PagedLayout(blockSize: blockSize, tables: beams.map(\.table),
                                     lengths: Array(repeating: position + 1, count: beams.count))
            try graph.runGraph(beams.map { $0.tokens.last! }, placement: .paged(pool: pool, layout: layout,
                               positions: Array(repeating: position, count: beams.count)), logits: .all)
            let all = try model.backend.download(graph.logitsBuffer, offset: 0, count: beams.count * vocab)
            rows = (0..<beams.count).map { Array(all[($0 * vocab)..<(($0 + 1) * vocab)]) }
            timings.generationSteps += 1
        }
        for beam in beams { pool.release(beam.table) }
        return finish(finished, timings: timings, started: started, clock: clock, pool: pool, prompt: prompt, maxTokens: maxTokens, beams: n, p: p)
    }

    private func finish(_ finished: FinishedSet, timings: Timings, started: ContinuousClock.Instant, clock: ContinuousClock,
                        pool: BlockPool, prompt: [Int32], maxTokens: Int, beams: Int, p: BeamSearchParameters) -> BeamSearchResult {
        var t = timings
        t.generationSeconds = seconds(clock.now - started)
        let perPosition = pool.bytes(blocks: 1) / pool.blockSize
        return BeamSearchResult(hypotheses: Array(finished.sorted.prefix(max(1, p.returnCount))), timings: t,
                                peakKVBytes: pool.bytes(blocks: pool.peakBlocksInUse),
                                contiguousKVBytes: beams * (prompt.count + maxTokens) * perPosition)
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}

private struct Beam {
    var table: [Int32]
    var tokens: [Int32]
    var logprob: Double
}

/// The best `capacity` finished hypotheses seen so far.
private struct FinishedSet {
    let capacity: Int
    private(set) var items: [Hypothesis] = []

    mutating func add(_ h: Hypothesis) {
        items.append(h)
        items.sort { $0.score > $1.score }
        if items.count > capacity { items.removeLast() }
    }

    var isFull: Bool { items.count >= capacity }
    var worstScore: Double? { items.last?.score }
    var sorted: [Hypothesis] { items }
}

/// log softmax in double precision.
func logSoftmax(_ logits: [Float]) -> [Double] {
    let m = Double(logits.max() ?? 0)
    var sum = 0.0
    for l in logits { sum += exp(Double(l) - m) }
    let logZ = m + log(sum)
    return logits.map { Double($0) - logZ }
}

/// Indices of the `count` largest values, largest first (lowest index on ties).
func topIndices(_ values: [Double], count: Int) -> [Int] {
    if count >= values.count {
        return values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }
    }
    // Partial selection: keep a small sorted list; vocabularies are large and count is small.
    var best: [Int] = []
    best.reserveCapacity(count + 1)
    for i in values.indices {
        if best.count == count, let last = best.last, values[i] <= values[last] { continue }
        var lo = 0, hi = best.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if values[best[mid]] >= values[i] { lo = mid + 1 } else { hi = mid }
        }
        best.insert(i, at: lo)
        if best.count > count { best.removeLast() }
    }
    return best
}
