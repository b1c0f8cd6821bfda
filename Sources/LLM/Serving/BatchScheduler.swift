import Foundation

public struct BatchSchedulerOptions: Sendable, Equatable {
    /// Sequences decoding at once (`--parallel`).
    public var parallel: Int
    /// KV positions in the shared pool, over all sequences (`--context`).
    public var kvPositions: Int
    /// Requests that may wait beyond `parallel` before `submit` refuses (`--queue`).
    public var queueLimit: Int
    /// Tokens one forward step evaluates at most: every running sequence's next token first, then
    /// prompt chunks, so a long prompt prefills over several steps without stalling the streams.
    public var stepTokens: Int
    /// Positions per KV block.
    public var blockSize: Int
    /// The most tokens one sequence holds; nil = the model's trained context, capped by the pool.
    public var sequenceContext: Int?
    /// Reuse full prompt blocks across requests.
    public var prefixCache: Bool

    public init(parallel: Int = 8, kvPositions: Int? = nil, queueLimit: Int = 64, stepTokens: Int = 512,
                blockSize: Int = 16, sequenceContext: Int? = nil, prefixCache: Bool = true) {
        self.parallel = parallel
        self.kvPositions = kvPositions ?? parallel * 2048
        self.queueLimit = queueLimit
        self.stepTokens = stepTokens
        self.blockSize = blockSize
        self.sequenceContext = sequenceContext
        self.prefixCache = prefixCache
    }
}

/// Continuous batching over a paged KV pool (`ServingEngine`): a thread of its own runs one forward
/// pass per step over every running sequence's next token plus prompt chunks of admitted requests.
/// docs/ARCHITECTURE.md ("Serving") describes the step, the budget, the prefix cache and pre-emption.
public final class BatchScheduler: ServingEngine, @unchecked Sendable {
    public let model: Model
    public let options: BatchSchedulerOptions
    public let sequenceCapacity: Int

    // Owned by the scheduler thread after init.
    private let pool: BlockPool
    private let graph: InferenceSession
    private let cache: PrefixCache?
    private var running: [ServingSequence] = []
    /// Admitted in arrival order; pre-empted sequences go back here by arrival, ahead of newer ones.
    private var waiting: [ServingSequence] = []

    // Shared with submitters, under `condition`.
    private let condition = NSCondition()
    private var inbox: [ServingSequence] = []
    private var cancelled: Set<UInt64> = []
    private var stopping = false
    private var stopped = false
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private var nextID: UInt64 = 0
    private var snapshot = ServingStatistics()
    private var observer: (@Sendable (Double, Int) -> Void)?

    public init(model: Model, options: BatchSchedulerOptions = BatchSchedulerOptions()) throws {
        let o = options
        guard o.parallel >= 1, o.blockSize >= 1, o.kvPositions >= o.blockSize, o.queueLimit >= 0, o.stepTokens >= o.parallel else {
            throw BatchSchedulerError.invalidOptions(o)
        }
        let c = model.config
        self.model = model
        self.options = o
        let blocks = (o.kvPositions + o.blockSize - 1) / o.blockSize
        pool = try BlockPool(backend: model.backend, layers: c.layers, blockSize: o.blockSize, blockCount: blocks,
                             width: c.kvHeads * c.headDim)
        // One sequence may take the whole pool; never more, so it can always finish alone.
        sequenceCapacity = min(o.sequenceContext ?? c.trainedContext, blocks * o.blockSize)
        // The session's own contiguous cache stays unused (one position): keys and values go to the pool.
        graph = try InferenceSession(model: model, contextLength: 1, rows: o.stepTokens)
        cache = o.prefixCache ? PrefixCache(pool: pool) : nil
        snapshot.kvBlocksFree = blocks
        let thread = Thread { [self] in loop() }
        thread.name = "llm-gpu.scheduler"
        thread.stackSize = 8 << 20
        thread.start()
    }

    public func submit(_ request: ServingRequest) throws -> any ServingHandle {
        guard !request.prompt.isEmpty else { throw ServingError.emptyPrompt }
        let vocab = model.config.vocabularySize
        if let bad = request.prompt.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ServingError.tokenOutOfRange(token: bad, vocabularySize: vocab)
        }
        guard request.prompt.count + max(request.maxTokens, 0) <= sequenceCapacity else {
            throw ServingError.contextLengthExceeded(promptTokens: request.prompt.count, maxTokens: request.maxTokens,
                                                     context: sequenceCapacity)
        }
        let (events, continuation) = AsyncStream.makeStream(of: ServingEvent.self, bufferingPolicy: .unbounded)
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { throw ServingError.shuttingDown }
        let waitingNow = snapshot.waiting + inbox.count
        guard waitingNow < options.queueLimit + max(0, options.parallel - snapshot.running) else {
            throw ServingError.queueFull(waiting: waitingNow)
        }
        nextID += 1
        let id = nextID
        inbox.append(ServingSequence(id: id, request: request, tokenizer: model.tokenizer, blockSize: options.blockSize,
                                     continuation: continuation))
        condition.signal()
        // A consumer that stops listening (its task cancelled, the stream dropped) cancels the request.
        continuation.onTermination = { [weak self] _ in self?.cancel(id) }
        return Handle(events: events, onCancel: { [weak self] in self?.cancel(id) })
    }

    public func statistics() -> ServingStatistics {
        condition.lock()
        defer { condition.unlock() }
        return snapshot
    }

    public func setStepObserver(_ observer: (@Sendable (Double, Int) -> Void)?) {
        condition.lock()
        self.observer = observer
        condition.unlock()
    }

    public func shutdown() async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            condition.lock()
            stopping = true
            if stopped {
                condition.unlock()
                done.resume()
                return
            }
            stopWaiters.append(done)
            condition.signal()
            condition.unlock()
        }
    }

    private func cancel(_ id: UInt64) {
        condition.lock()
        cancelled.insert(id)
        condition.signal()
        condition.unlock()
    }

    private struct Handle: ServingHandle {
        let events: AsyncStream<ServingEvent>
        let onCancel: @Sendable () -> Void
        func cancel() { onCancel() }
    }

    // MARK: The scheduler thread

    private func loop() {
        while true {
            condition.lock()
            while inbox.isEmpty && cancelled.isEmpty && !stopping && running.isEmpty && waiting.isEmpty { condition.wait() }
            let arrived = inbox, cancelling = cancelled, stop = stopping
            inbox.removeAll()
            cancelled.removeAll()
            // Counted as waiting at once, so `submit`'s queue check sees them.
            snapshot.waiting += arrived.count
            condition.unlock()

            waiting += arrived
            if stop { break }
            for id in cancelling { end(id, .cancelled) }
            step()
        }
        for s in running + waiting { finish(s, .shutdown) }
        running.removeAll()
        waiting.removeAll()
        cache?.removeAll()
        publish()
        condition.lock()
        stopped = true
        let waiters = stopWaiters
        stopWaiters.removeAll()
        // `submit` refuses once `stopping` is set, and the inbox was drained under the same lock.
        condition.unlock()
        for w in waiters { w.resume() }
    }

    private func end(_ id: UInt64, _ reason: ServingFinishReason) {
        if let i = running.firstIndex(where: { $0.id == id }) {
            finish(running.remove(at: i), reason)
        } else if let i = waiting.firstIndex(where: { $0.id == id }) {
            finish(waiting.remove(at: i), reason)
        }
    }

    /// Sends the last event and returns the sequence's blocks to the pool.
    private func finish(_ s: ServingSequence, _ reason: ServingFinishReason) {
        pool.release(s.dropKV())
        let (text, reason) = s.finalText(reason)
        send(s, .finished(reason: reason, text: text, usage: s.usage), last: true)
    }

    private func fail(_ s: ServingSequence, _ message: String) {
        pool.release(s.dropKV())
        send(s, .failed(message: message), last: true)
    }

    /// A free block, evicting an idle prefix-cache block if none is free.
    private func allocate() -> Int32? {
        while true {
            if let block = try? pool.allocate() { return block }
            guard cache?.evict() == true else { return nil }
        }
    }

    /// Gives `s` blocks for its first `count` pending tokens; on failure it keeps what it got.
    private func reserve(_ s: ServingSequence, count: Int) -> Bool {
        let needed = (s.computed + count + options.blockSize - 1) / options.blockSize
        while s.table.count < needed {
            guard let block = allocate() else { return false }
            s.table.append(block)
        }
        return true
    }

    /// Moves `s` from running back to waiting with its KV dropped; it recomputes from its tokens.
    private func preempt(_ s: ServingSequence) {
        pool.release(s.dropKV())
        running.removeAll { $0 === s }
        waiting.insert(s, at: waiting.firstIndex { $0.id > s.id } ?? waiting.endIndex)
        counters.preemptions += 1
    }

    private var counters = ServingStatistics()

    /// One forward pass: plan rows under the token budget, find their blocks, run, then turn each
    /// finished row's logits into the sequence's next token.
    private func step() {
        let clock = ContinuousClock(), started = clock.now
        var budget = options.stepTokens
        var plan: [(sequence: ServingSequence, count: Int)] = []

        // Running sequences, oldest first: decoders take one token each before any prompt chunk.
        let decoders = running.filter { $0.pending == 1 }
        let prefilling = running.filter { $0.pending > 1 }
        budget -= decoders.count
        var chunks: [(ServingSequence, Int)] = []
        for s in prefilling where budget > 0 {
            let n = min(s.pending, budget)
            chunks.append((s, n))
            budget -= n
        }
        let preemptionsBefore = counters.preemptions
        var scheduled = (decoders.map { ($0, 1) } + chunks).sorted { $0.0.id < $1.0.id }
        // Blocks, oldest first; when the pool is out, the newest running sequence gives its blocks back.
        var i = 0
        while i < scheduled.count {
            let (s, n) = scheduled[i]
            if reserve(s, count: n) {
                plan.append((s, n))
                i += 1
                continue
            }
            // Everything in `plan` is older than `s`, so the victim is `s` or a sequence after it.
            let victim = running[running.count - 1]
            preempt(victim)
            scheduled.removeAll { $0.0 === victim }
        }
        budget = options.stepTokens - plan.reduce(0) { $0 + $1.count }
        // After a pre-emption the pool is full: admitting now would only take the freed blocks
        // back from the sequences that needed them.
        let admitting = counters.preemptions == preemptionsBefore

        // Admissions, in arrival order, while there is room; they never pre-empt.
        while admitting, budget > 0, running.count < options.parallel, let s = waiting.first {
            if s.request.maxTokens <= 0 {
                waiting.removeFirst()
                finish(s, .length)
                continue
            }
            if let cache {
                // At least one token is left to evaluate: its logits choose the first generated token.
                let hit = cache.lookup(keys: s.promptKeys, tokens: s.tokens, limit: (s.tokens.count - 1) / options.blockSize)
                s.table = hit
                s.computed = hit.count * options.blockSize
                s.registeredBlocks = hit.count
                counters.prefixCacheHitTokens += s.computed
            }
            let n = min(s.pending, budget)
            guard reserve(s, count: n) else {
                counters.prefixCacheHitTokens -= s.computed
                pool.release(s.dropKV())
                break
            }
            waiting.removeFirst()
            if s.cachedTokens == nil {
                s.cachedTokens = s.computed
                counters.promptTokens += s.request.prompt.count
                send(s, .started(promptTokens: s.request.prompt.count, cachedTokens: s.computed))
            }
            running.append(s)
            running.sort { $0.id < $1.id }
            plan.append((s, n))
            budget -= n
        }
        guard !plan.isEmpty else {
            publish()
            return
        }
        run(plan)
        publish()
        let tokens = plan.reduce(0) { $0 + $1.count }
        condition.lock()
        let observer = self.observer
        condition.unlock()
        observer?(seconds(clock.now - started), tokens)
    }

    private func run(_ plan: [(sequence: ServingSequence, count: Int)]) {
        var tokens: [Int32] = [], positions: [Int] = [], tables: [[Int32]] = [], logitRows: [Int] = []
        var choosing: [ServingSequence] = []
        for (s, n) in plan {
            for p in s.computed..<(s.computed + n) {
                tokens.append(s.tokens[p])
                positions.append(p)
                tables.append(s.table)
            }
            if s.computed + n == s.tokens.count {
                logitRows.append(tokens.count - 1)
                choosing.append(s)
            }
        }
        let vocab = model.config.vocabularySize, backend = model.backend
        var greedy: [Int32] = [], rows: [Int: [Float]] = [:]
        do {
            let layout = PagedLayout(blockSize: options.blockSize, tables: tables, lengths: positions.map { $0 + 1 })
            try graph.runGraph(tokens, placement: .paged(pool: pool, layout: layout, positions: positions),
                               logits: logitRows.isEmpty ? nil : .rows(logitRows))
            if !logitRows.isEmpty {
                let logits = graph.logitsBuffer
                if choosing.contains(where: { $0.request.sampling == nil }) {
                    greedy = try backend.argmax(logits, rows: choosing.count, width: vocab)
                }
                for (r, s) in choosing.enumerated() where s.needsHostLogits {
                    rows[r] = try backend.download(logits, offset: r * vocab, count: vocab)
                }
            } else {
                try backend.synchronize()
            }
        } catch {
            for (s, _) in plan {
                running.removeAll { $0 === s }
                fail(s, "the forward pass failed: \(error)")
            }
            return
        }
        for (s, n) in plan {
            s.computed += n
            register(s)
        }
        for (r, s) in choosing.enumerated() {
            let (event, reason) = s.accept(greedy: greedy.isEmpty ? nil : greedy[r], row: rows[r], capacity: sequenceCapacity)
            if let event {
                send(s, event)
                counters.generatedTokens += 1
            }
            if let reason {
                running.removeAll { $0 === s }
                finish(s, reason)
            }
        }
    }

    /// Offers the prompt's newly completed full blocks to the prefix cache.
    private func register(_ s: ServingSequence) {
        guard let cache else { return }
        while s.registeredBlocks < s.promptKeys.count && (s.registeredBlocks + 1) * options.blockSize <= s.computed {
            cache.insert(keys: s.promptKeys, tokens: s.request.prompt, index: s.registeredBlocks, block: s.table[s.registeredBlocks])
            s.registeredBlocks += 1
        }
    }

    /// Events wait here until the step's statistics are published, so a client that has seen its
    /// stream end sees statistics that include it.
    private var outbox: [(AsyncStream<ServingEvent>.Continuation, ServingEvent, Bool)] = []

    private func send(_ s: ServingSequence, _ event: ServingEvent, last: Bool = false) {
        outbox.append((s.continuation, event, last))
    }

    /// Publishes the statistics, then delivers the step's events (never under the lock: a
    /// stream's termination handler takes it).
    private func publish() {
        defer {
            let events = outbox
            outbox.removeAll()
            for (continuation, event, last) in events {
                continuation.yield(event)
                if last { continuation.finish() }
            }
        }
        var s = counters
        s.running = running.count
        s.waiting = waiting.count
        let idle = cache?.idleCount ?? 0
        s.kvBlocksUsed = pool.blocksInUse - idle
        s.kvBlocksFree = pool.blockCount - s.kvBlocksUsed
        s.kvBlocksCached = cache?.blockCount ?? 0
        condition.lock()
        snapshot = s
        condition.unlock()
    }

    private func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
    }
}

public enum BatchSchedulerError: Error, Equatable, CustomStringConvertible {
    case invalidOptions(BatchSchedulerOptions)

    public var description: String {
        switch self {
        case .invalidOptions(let o):
            return "invalid serving options: parallel \(o.parallel) (≥ 1), KV positions \(o.kvPositions) (≥ block size \(o.blockSize)), "
                + "queue \(o.queueLimit) (≥ 0), tokens per step \(o.stepTokens) (≥ parallel)"
        }
    }
}
