import ArgumentParser
import Foundation
import LLM

/// The continuous-batching engine without HTTP: N concurrent requests (random prompt ids, a fixed
/// number of generated tokens each) against the same with one, alternating the client counts
/// within each repetition so machine noise falls on all of them; then time to first token of a
/// request whose long prefix is cached against one whose prefix is new.
struct BatchBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "batch-bench",
        abstract: "Measure the serving engine: aggregate tokens/s of N concurrent requests, and prefix-cache time to first token.")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions
    @Option(help: "Concurrent request counts to compare, comma-separated.")
    var clients: String = "1,4,8"
    @Option(parsing: .unconditional, help: "Prompt tokens per request.")
    var promptTokens: Int = 128
    @Option(parsing: .unconditional, help: "Generated tokens per request.")
    var genTokens: Int = 64
    @Option(parsing: .unconditional, help: "Tokens one engine step evaluates at most.")
    var stepTokens: Int = 512
    @Option(parsing: .unconditional, help: "Shared prefix length of the prefix-cache test (0 skips it).")
    var prefixTokens: Int = 400
    @Option(parsing: .unconditional, help: "Measured runs of each test, after one warm-up run.")
    var repetitions: Int = 3

    func validate() throws {
        guard let counts = clientCounts, !counts.isEmpty, counts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--clients takes counts of 1 or more separated by commas, got '\(clients)'")
        }
        if promptTokens < 1 || genTokens < 1 { throw ValidationError("--prompt-tokens and --gen-tokens must be at least 1") }
        if prefixTokens < 0 || repetitions < 1 { throw ValidationError("--prefix-tokens must be 0 or more, --repetitions at least 1") }
    }

    private var clientCounts: [Int]? {
        let parts = clients.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return parts.contains(nil) ? nil : parts.compactMap { $0 }
    }

    func run() throws {
        let backend = try engine.makeBackend()
        let model = try Model.load(path: modelOption.resolve(), backend: engine.profile ? ProfilingBackend(backend) : backend)
        defer { try? printProfile(model.backend, title: "batch-bench") }
        let counts = clientCounts!
        var random = SeededGenerator(seed: 42)
        let vocab = model.config.vocabularySize
        func tokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(random.next() % UInt64(vocab)) } }

        let parallel = counts.max()!
        let perSequence = promptTokens + genTokens
        let throughputEngine = try BatchScheduler(model: model, options: BatchSchedulerOptions(
            parallel: parallel, kvPositions: parallel * perSequence + 16 * parallel, stepTokens: max(stepTokens, parallel),
            prefixCache: false))
        print("model \(model.config.name), \(model.backend.deviceDescription); \(promptTokens) prompt + \(genTokens) generated tokens per request")
        var aggregate: [Int: [Double]] = [:], ttft: [Int: [Double]] = [:]
        for repetition in 0...repetitions {
            for n in counts {
                let requests = (0..<n).map { _ in
                    ServingRequest(prompt: tokens(promptTokens), maxTokens: genTokens, stopAtEndOfGeneration: false)
                }
                let timings = try blocking { try await Self.time(throughputEngine, requests) }
                guard repetition > 0 else { continue }   // warm-up
                aggregate[n, default: []].append(Double(n * genTokens) / timings.wall)
                ttft[n, default: []].append(median(timings.firstToken))
            }
        }
        blockingShutdown(throughputEngine)
        let base = median(aggregate[counts[0]]!)
        print("clients  aggregate tokens/s (median of \(repetitions))  vs \(counts[0]) client(s)  TTFT median s")
        for n in counts {
            let a = median(aggregate[n]!)
            print(String(format: "%7d  %34.1f  %17.2f×  %14.3f", n, a, a / base, median(ttft[n]!)))
        }

        guard prefixTokens > 0 else { return }
        let cacheEngine = try BatchScheduler(model: model, options: BatchSchedulerOptions(
            parallel: 2, kvPositions: 4 * (prefixTokens + 64 + 32), stepTokens: max(stepTokens, 2)))
        var cold: [Double] = [], warm: [Double] = [], cached = 0
        for repetition in 0...repetitions {
            // A new shared prefix each time, so the first request really is cold.
            let prefix = tokens(prefixTokens)
            let first = ServingRequest(prompt: prefix + tokens(16), maxTokens: 1, stopAtEndOfGeneration: false)
            let second = ServingRequest(prompt: prefix + tokens(16), maxTokens: 1, stopAtEndOfGeneration: false)
            let a = try blocking { try await Self.time(cacheEngine, [first]) }
            let b = try blocking { try await Self.time(cacheEngine, [second]) }
            guard repetition > 0 else { continue }
            cold.append(a.firstToken[0])
            warm.append(b.firstToken[0])
            cached = b.cachedTokens[0]
        }
        blockingShutdown(cacheEngine)
        print(String(format: "prefix cache, %d-token shared prefix + 16 new: time to first token cold %.3f s, warm %.3f s (%.3f×), %d tokens cached",
                     prefixTokens, median(cold), median(warm), median(warm) / median(cold), cached))
    }

    private struct Timing {
        var wall: Double
        var firstToken: [Double]
        var cachedTokens: [Int]
    }

    /// Submits every request at once and waits for all: wall time, and each one's time to first token.
    private static func time(_ engine: BatchScheduler, _ requests: [ServingRequest]) async throws -> Timing {
        let clock = ContinuousClock(), start = clock.now
        let handles = try requests.map { try engine.submit($0) }
        func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18 }
        let results = await withTaskGroup(of: (Int, Double, Int).self) { group in
            for (i, h) in handles.enumerated() {
                group.addTask {
                    var first = 0.0, cached = 0
                    for await event in h.events {
                        switch event {
                        case .token where first == 0: first = seconds(clock.now - start)
                        case let .finished(_, _, usage): cached = usage.cachedTokens
                        case .failed(let message): printError("error: \(message)")
                        default: break
                        }
                    }
                    return (i, first, cached)
                }
            }
            var all: [(Int, Double, Int)] = []
            for await r in group { all.append(r) }
            return all.sorted { $0.0 < $1.0 }
        }
        return Timing(wall: seconds(clock.now - start), firstToken: results.map(\.1), cachedTokens: results.map(\.2))
    }
}

private func median(_ values: [Double]) -> Double {
    let s = values.sorted()
    return s.isEmpty ? 0 : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Runs async work from this synchronous command and waits for it.
private func blocking<T>(_ body: @escaping () async throws -> T) throws -> T {
    let done = DispatchSemaphore(value: 0)
    var result: Result<T, Error>?
    Task {
        do { result = .success(try await body()) } catch { result = .failure(error) }
        done.signal()
    }
    done.wait()
    return try result!.get()
}

private func blockingShutdown(_ engine: BatchScheduler) {
    _ = try? blocking { await engine.shutdown() }
}
