import Foundation
import XCTest
import LLM
import BackendCPU

/// The continuous-batching engine against `Generator` run alone: whatever runs beside a request,
/// however its prompt is chunked, pre-empted or served from the prefix cache, it gets the same
/// tokens, text and finish reason (the numerics contract makes a token's logits batch-independent).
final class ServingTests: XCTestCase {
    private var model: Model!
    private var reference: TokensReference!

    override func setUpWithError() throws {
        model = try Model.load(path: Fixtures.tiny("tiny-llama-f32.gguf"), backend: CPUBackend(threads: 2))
        reference = try TokensReference(path: Fixtures.tiny("tiny-llama-f32.tokens.txt"))
    }

    /// Eight different prompts (lengths 3 to 45) cut from the reference sequence.
    private var prompts: [[Int32]] {
        let all = reference.sequence
        return [(0, 5), (2, 21), (7, 3), (0, 45), (11, 17), (4, 33), (20, 9), (1, 26)].map { Array(all[$0.0..<($0.0 + $0.1)]) }
    }

    private func alone(_ prompt: [Int32], _ options: GenerationOptions) throws -> Completion {
        let session = try InferenceSession(model: model, contextLength: 128)
        return try Generator(session: session).generate(prompt: prompt, options: options).best
    }

    private func engine(_ options: BatchSchedulerOptions) throws -> BatchScheduler {
        let engine = try BatchScheduler(model: model, options: options)
        addTeardownBlock { await engine.shutdown() }
        return engine
    }

    private func request(_ prompt: [Int32], _ o: GenerationOptions, topLogprobs: Int? = nil) -> ServingRequest {
        var sampling: SamplingParameters?
        if case .sample(let p) = o.strategy { sampling = p }
        return ServingRequest(prompt: prompt, maxTokens: o.maxTokens, sampling: sampling, stopSequences: o.stopSequences,
                              stopAtEndOfGeneration: o.stopAtEndOfGeneration, topLogprobs: topLogprobs)
    }

    private func submitAll(_ engine: BatchScheduler, _ requests: [ServingRequest]) async throws -> [ServingResult] {
        let handles = try requests.map { try engine.submit($0) }
        var results: [ServingResult] = []
        for h in handles { results.append(await h.result()) }
        return results
    }

    private func assertSame(_ r: ServingResult, _ c: Completion, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertNil(r.failure, message, file: file, line: line)
        XCTAssertEqual(r.tokens, c.tokens, message, file: file, line: line)
        XCTAssertEqual(r.text, c.text, message, file: file, line: line)
        let expected: ServingFinishReason = c.finishReason == .length ? .length : .stop
        XCTAssertEqual(r.finishReason, expected, message, file: file, line: line)
    }

    func testEightConcurrentGreedyRequestsEqualEachRunAlone() async throws {
        let options = GenerationOptions(maxTokens: 24)
        let expected = try prompts.map { try alone($0, options) }
        // 16 tokens per step: the longer prompts prefill over several steps beside decoding streams.
        let engine = try engine(BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 80, stepTokens: 16))
        let results = try await submitAll(engine, prompts.map { request($0, options) })
        for (i, (r, c)) in zip(results, expected).enumerated() { assertSame(r, c, "request \(i)") }
        XCTAssertGreaterThan(expected.map(\.tokens.count).reduce(0, +), 8 * 10, "the streams are long enough to overlap")
        let stats = engine.statistics()
        XCTAssertEqual(stats.generatedTokens, results.map(\.tokens.count).reduce(0, +))
        XCTAssertEqual(stats.promptTokens, prompts.map(\.count).reduce(0, +))
        XCTAssertEqual(stats.running, 0)
        XCTAssertEqual(stats.waiting, 0)
        XCTAssertEqual(stats.kvBlocksUsed, 0, "every block is back or only in the prefix cache")
        XCTAssertEqual(stats.kvBlocksUsed + stats.kvBlocksFree, 8 * 80 / 16)
        XCTAssertEqual(results.map { $0.usage?.completionTokens }, results.map(\.tokens.count))
    }

    func testMoreRequestsThanParallelQueueAndStillMatch() async throws {
        let options = GenerationOptions(maxTokens: 12)
        let expected = try prompts.map { try alone($0, options) }
        let engine = try engine(BatchSchedulerOptions(parallel: 3, kvPositions: 3 * 64, queueLimit: 8, stepTokens: 32))
        let results = try await submitAll(engine, prompts.map { request($0, options) })
        for (i, (r, c)) in zip(results, expected).enumerated() { assertSame(r, c, "request \(i)") }
    }

    func testStopSequencesAndFinishReasonsEqualGenerator() async throws {
        // A stop string made of the text the first request produces alone, cut in its middle.
        let plain = try alone(prompts[3], GenerationOptions(maxTokens: 24))
        let cut = plain.text.index(plain.text.startIndex, offsetBy: plain.text.count / 2)
        let stop = String(plain.text[cut...].prefix(3))
        let options = GenerationOptions(maxTokens: 24, stopSequences: [stop, "never-there"])
        let expected = try prompts.map { try alone($0, options) }
        XCTAssertEqual(expected[3].finishReason, .stop)
        let engine = try engine(BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 80, stepTokens: 64))
        let results = try await submitAll(engine, prompts.map { request($0, options) })
        for (i, (r, c)) in zip(results, expected).enumerated() { assertSame(r, c, "request \(i)") }
    }

    func testSeededSamplingIsTheSameAloneAndUnderLoad() async throws {
        let sampling = SamplingParameters(temperature: 1.2, topK: 40, topP: 0.95, repetitionPenalty: 1.1, seed: 1234)
        let options = GenerationOptions(maxTokens: 20, strategy: .sample(sampling), stopAtEndOfGeneration: false)
        let expected = try alone(prompts[1], options)
        let engine = try engine(BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 80, stepTokens: 24))
        let single = try await submitAll(engine, [request(prompts[1], options)])[0]
        assertSame(single, expected, "alone")
        // The same request among seven others (some greedy, some sampled with other seeds).
        var load = prompts.map { request($0, GenerationOptions(maxTokens: 20)) }
        for i in [0, 4, 6] {
            var other = sampling
            other.seed = UInt64(i)
            load[i] = request(prompts[i], GenerationOptions(maxTokens: 20, strategy: .sample(other)))
        }
        load[1] = request(prompts[1], options)
        let results = try await submitAll(engine, load)
        assertSame(results[1], expected, "under load")
        XCTAssertEqual(results[1].tokens, single.tokens)
    }

    func testPrefixCacheReusesBlocksAndGivesTheColdTokens() async throws {
        let all = reference.sequence
        let shared = Array(all[0..<37])                   // two full blocks and 5 more tokens
        let first = shared + [all[40], all[41]], second = shared + [all[50]]
        let options = GenerationOptions(maxTokens: 10)
        let engine = try engine(BatchSchedulerOptions(parallel: 4, kvPositions: 4 * 64, stepTokens: 64))
        let cold = try await submitAll(engine, [request(first, options)])[0]
        XCTAssertEqual(cold.usage?.cachedTokens, 0)
        let warm = try await submitAll(engine, [request(second, options)])[0]
        XCTAssertEqual(warm.usage?.cachedTokens, 32, "the two full blocks of the shared prefix")
        XCTAssertEqual(warm.cachedTokens, 32)
        assertSame(cold, try alone(first, options), "cold")
        assertSame(warm, try alone(second, options), "warm")
        // The identical prompt again: every full block but the one holding its last token.
        let again = try await submitAll(engine, [request(second, options)])[0]
        XCTAssertEqual(again.usage?.cachedTokens, 32)
        XCTAssertEqual(again.tokens, warm.tokens)
        let stats = engine.statistics()
        XCTAssertEqual(stats.prefixCacheHitTokens, 64)
        XCTAssertEqual(stats.kvBlocksUsed, 0)
        XCTAssertGreaterThanOrEqual(stats.kvBlocksCached, 2)
    }

    func testPrefixCacheBlocksAreEvictedWhenThePoolNeedsThem() async throws {
        let all = reference.sequence
        let options = GenerationOptions(maxTokens: 8)
        // 6 blocks: each 33-token request needs 3 (2 full prompt blocks stay cached after it).
        let engine = try engine(BatchSchedulerOptions(parallel: 1, kvPositions: 6 * 16, stepTokens: 64))
        for start in [0, 3, 6, 9] {
            let prompt = Array(all[start..<(start + 33)])
            let r = try await submitAll(engine, [request(prompt, options)])[0]
            assertSame(r, try alone(prompt, options), "start \(start)")
        }
        let stats = engine.statistics()
        XCTAssertLessThanOrEqual(stats.kvBlocksCached, 6)
        XCTAssertEqual(stats.kvBlocksUsed, 0)
    }

    func testPreemptionUnderASmallPoolGivesTheSameTokens() async throws {
        let options = GenerationOptions(maxTokens: 24, stopAtEndOfGeneration: false)
        let chosen = [prompts[1], prompts[3], prompts[5], prompts[7]]
        let expected = try chosen.map { try alone($0, options) }
        // 10 blocks for four sequences that need 3 to 5 each: the newest give theirs back and recompute.
        let engine = try engine(BatchSchedulerOptions(parallel: 4, kvPositions: 10 * 16, stepTokens: 32, prefixCache: false))
        let results = try await submitAll(engine, chosen.map { request($0, options) })
        for (i, (r, c)) in zip(results, expected).enumerated() { assertSame(r, c, "request \(i)") }
        let stats = engine.statistics()
        XCTAssertGreaterThan(stats.preemptions, 0, "the pool was small enough to force pre-emption")
        XCTAssertEqual(stats.kvBlocksUsed, 0)
        XCTAssertEqual(stats.kvBlocksFree, 10)
    }

    func testCancellationEndsTheSequenceAndFreesItsBlocks() async throws {
        let engine = try engine(BatchSchedulerOptions(parallel: 2, kvPositions: 2 * 128, stepTokens: 32, prefixCache: false))
        let long = try engine.submit(ServingRequest(prompt: prompts[3], maxTokens: 80, stopAtEndOfGeneration: false))
        var seen = 0
        var finish: ServingFinishReason?
        for await event in long.events {
            if case .token = event {
                seen += 1
                if seen == 3 { long.cancel() }
            }
            if case let .finished(reason, _, usage) = event {
                finish = reason
                XCTAssertLessThan(usage.completionTokens, 80)
            }
        }
        XCTAssertEqual(finish, .cancelled)
        let stats = engine.statistics()
        XCTAssertEqual(stats.running, 0)
        XCTAssertEqual(stats.kvBlocksUsed, 0)
        XCTAssertEqual(stats.kvBlocksFree, 2 * 128 / 16)
        // A consumer that stops listening cancels too.
        let dropped = try engine.submit(ServingRequest(prompt: prompts[3], maxTokens: 80, stopAtEndOfGeneration: false))
        let task = Task { for await _ in dropped.events {} }
        task.cancel()
        _ = await task.value
        for _ in 0..<200 where engine.statistics().running + engine.statistics().waiting > 0 { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertEqual(engine.statistics().kvBlocksUsed, 0)
    }

    func testLogprobsAreTheLogSoftmaxOfTheLogits() async throws {
        let prompt = prompts[1]
        let engine = try engine(BatchSchedulerOptions(parallel: 2, kvPositions: 2 * 64, stepTokens: 32))
        let r = try await submitAll(engine, [request(prompt, GenerationOptions(maxTokens: 5, stopAtEndOfGeneration: false), topLogprobs: 3)])[0]
        XCTAssertEqual(r.events.count, 5)
        // One teacher-forced pass over prompt + generated tokens: log-softmax of each row, by hand.
        let session = try InferenceSession(model: model, contextLength: 64)
        let vocab = model.config.vocabularySize, sequence = prompt + r.tokens
        let logits = try model.backend.download(session.evaluate(sequence, logits: .all), offset: 0, count: sequence.count * vocab)
        for (i, event) in r.events.enumerated() {
            let row = logits[((prompt.count - 1 + i) * vocab)..<((prompt.count + i) * vocab)].map(Double.init)
            let m = row.max()!, z = m + log(row.reduce(0) { $0 + exp($1 - m) })
            let chosen = try XCTUnwrap(event.logprob)
            XCTAssertEqual(Double(chosen.logprob), row[Int(event.token)] - z, accuracy: 1e-4)
            XCTAssertEqual(event.top.count, 3)
            XCTAssertEqual(event.top.first?.token, event.token, "greedy picks the most probable")
            let best = row.indices.sorted { row[$0] > row[$1] }.prefix(3).map(Int32.init)
            XCTAssertEqual(event.top.map(\.token), best)
            XCTAssertEqual(chosen.bytes, model.tokenizer.piece(event.token))
        }
    }

    func testRefusals() async throws {
        let engine = try engine(BatchSchedulerOptions(parallel: 1, kvPositions: 64, queueLimit: 1, stepTokens: 16))
        XCTAssertEqual(engine.sequenceCapacity, 64)
        XCTAssertThrowsError(try engine.submit(ServingRequest(prompt: [], maxTokens: 4))) {
            XCTAssertEqual($0 as? ServingError, .emptyPrompt)
        }
        XCTAssertThrowsError(try engine.submit(ServingRequest(prompt: [1, 512], maxTokens: 4))) {
            XCTAssertEqual($0 as? ServingError, .tokenOutOfRange(token: 512, vocabularySize: 512))
        }
        XCTAssertThrowsError(try engine.submit(ServingRequest(prompt: [1, 2, 3], maxTokens: 62))) {
            XCTAssertEqual($0 as? ServingError, .contextLengthExceeded(promptTokens: 3, maxTokens: 62, context: 64))
        }
        // One running, one waiting: the third is refused.
        let a = try engine.submit(ServingRequest(prompt: prompts[0], maxTokens: 40, stopAtEndOfGeneration: false))
        let b = try engine.submit(ServingRequest(prompt: prompts[1], maxTokens: 4))
        var refused: ServingError?
        for _ in 0..<3 {
            do { _ = try engine.submit(ServingRequest(prompt: prompts[2], maxTokens: 4)) } catch { refused = error as? ServingError; break }
        }
        if case .queueFull? = refused {} else { XCTFail("expected queueFull, got \(String(describing: refused))") }
        await engine.shutdown()
        let (ra, rb) = (await a.result(), await b.result())
        XCTAssertTrue([ServingFinishReason.shutdown, .length].contains(ra.finishReason ?? .stop))
        XCTAssertTrue([ServingFinishReason.shutdown, .length, .stop].contains(rb.finishReason ?? .cancelled))
        XCTAssertThrowsError(try engine.submit(ServingRequest(prompt: prompts[2], maxTokens: 4))) {
            XCTAssertEqual($0 as? ServingError, .shuttingDown)
        }
    }

    /// Sliding-window layers in the paged pool: every position stays in its blocks and the attention
    /// reads only the window, against Generator with a ring cache (window 8, chunks of 4) alone.
    func testSlidingWindowModelEqualsARingCacheRunAlone() async throws {
        let model = try windowedTinyModel(window: 8)
        let options = GenerationOptions(maxTokens: 20, stopAtEndOfGeneration: false)
        let expected = try prompts.map { prompt -> Completion in
            let session = try InferenceSession(model: model, contextLength: 128, batchSize: 4)
            XCTAssertNotNil(session.cache.rings.first ?? nil)
            return try Generator(session: session).generate(prompt: prompt, options: options).best
        }
        let engine = try BatchScheduler(model: model, options: BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 80, stepTokens: 16))
        addTeardownBlock { await engine.shutdown() }
        let results = try await submitAll(engine, prompts.map { request($0, options) })
        for (i, (r, c)) in zip(results, expected).enumerated() { assertSame(r, c, "request \(i)") }
    }

    /// Gemma 3: local layers with their own RoPE and window beside global ones, through the engine.
    func testGemma3ConcurrentRequestsEqualEachRunAlone() async throws {
        let model = try RealModelGolden.gemma3.load(backend: CPUBackend(threads: 2))
        let texts = ["The capital of France is", "My favourite food is", "import numpy as np", "Once upon a time"]
        let options = GenerationOptions(maxTokens: 12)
        let expected = try texts.map { text -> Completion in
            let session = try InferenceSession(model: model, contextLength: 64)
            return try Generator(session: session).generate(prompt: model.tokenizer.encode(text), options: options).best
        }
        let engine = try BatchScheduler(model: model, options: BatchSchedulerOptions(parallel: 4, kvPositions: 4 * 64, stepTokens: 16))
        let handles = try texts.map { try engine.submit(request(model.tokenizer.encode($0), options)) }
        for (i, h) in handles.enumerated() { assertSame(await h.result(), expected[i], texts[i]) }
        await engine.shutdown()
    }

    /// The default model at f32 activations: eight concurrent requests each equal to it alone.
    func testSmolLM2EightConcurrentGreedyRequestsEqualEachRunAlone() async throws {
        let model = try RealModelGolden.smolLM2.load(backend: CPUBackend(threads: 2))
        let texts = ["The capital of France is", "My favourite food is", "import numpy as np", "Once upon a time",
                     "The quick brown fox", "def fibonacci(n):", "In 1969, the first", "Water boils at"]
        let options = GenerationOptions(maxTokens: 16)
        let expected = try texts.map { text -> Completion in
            let session = try InferenceSession(model: model, contextLength: 64)
            return try Generator(session: session).generate(prompt: model.tokenizer.encode(text), options: options).best
        }
        let engine = try BatchScheduler(model: model, options: BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 64, stepTokens: 32))
        let handles = try texts.map { try engine.submit(request(model.tokenizer.encode($0), options)) }
        for (i, h) in handles.enumerated() { assertSame(await h.result(), expected[i], texts[i]) }
        await engine.shutdown()
    }
}
