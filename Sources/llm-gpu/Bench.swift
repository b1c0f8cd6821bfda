import ArgumentParser
import Foundation
import LLM

/// Throughput as llama-bench measures it: pp = one batched pass over a prompt of N tokens;
/// tg = N single-token decode steps from an empty context. Each test runs once to warm up, then
/// `--repetitions` times; the table shows mean ± standard deviation of tokens/s.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure prompt (pp) and generation (tg) tokens/s, as llama-bench does.")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions
    @Option(parsing: .unconditional, help: "Prompt length of the pp test (0 skips it).")
    var promptTokens: Int = 512
    @Option(parsing: .unconditional, help: "Decode steps of the tg test (0 skips it).")
    var genTokens: Int = 128
    @Option(parsing: .unconditional, help: "Measured runs per test, after one warm-up run.")
    var repetitions: Int = 5
    @Flag(help: "Print a JSON array with one object per test.")
    var json = false

    func validate() throws {
        if promptTokens < 0 || genTokens < 0 { throw ValidationError("token counts must be 0 or more") }
        if promptTokens == 0 && genTokens == 0 { throw ValidationError("nothing to measure: both tests are 0 tokens") }
        if repetitions < 1 { throw ValidationError("--repetitions must be at least 1") }
    }

    func run() throws {
        var options = engine
        options.context = max(engine.context ?? 0, promptTokens, genTokens, 1)
        let path = try modelOption.resolve()
        let (model, session) = try options.open(modelPath: path)
        // Random ids, seeded: the cost does not depend on which tokens they are.
        var generator = SeededGenerator(seed: 1234)
        let vocab = model.config.vocabularySize
        func randomTokens(_ n: Int) -> [Int32] { (0..<n).map { _ in Int32(generator.next() % UInt64(vocab)) } }

        var rows: [BenchRow] = []
        let base = BenchRow(model: model.config.name, modelType: modelType(model), sizeBytes: model.weightBytes,
                            parameters: model.parameterCount, backend: model.backend.name,
                            device: model.backend.deviceDescription, threads: engine.cpuThreads,
                            test: "", tokens: 0, tokensPerS: 0, stddev: 0, samples: [],
                            bytesPerToken: nil, bandwidthGBPerS: nil)
        if promptTokens > 0 {
            let prompt = randomTokens(promptTokens)
            let samples = try measure("pp\(promptTokens)", model.backend) {
                session.reset()
                _ = try session.evaluateGreedy(prompt)
                return promptTokens
            }
            rows.append(base.with(test: "pp\(promptTokens)", tokens: promptTokens, samples: samples))
            try printProfile(model.backend, title: "pp\(promptTokens)")
        }
        if genTokens > 0 {
            let tokens = randomTokens(genTokens)
            let samples = try measure("tg\(genTokens)", model.backend) {
                session.reset()
                for t in tokens { _ = try session.evaluateGreedy([t]) }
                return genTokens
            }
            var row = base.with(test: "tg\(genTokens)", tokens: genTokens, samples: samples)
            let bytes = model.weights.bytesPerDecodedToken
            row.bytesPerToken = bytes
            row.bandwidthGBPerS = Double(bytes) * row.tokensPerS / 1e9
            rows.append(row)
            try printProfile(model.backend, title: "tg\(genTokens)")
        }

        if json {
            try printJSON(rows)
        } else {
            printTable(rows)
        }
    }

    /// Runs `body` once to warm up, then `repetitions` times; returns tokens/s per run.
    private func measure(_ name: String, _ backend: Backend, _ body: () throws -> Int) throws -> [Double] {
        let clock = ContinuousClock()
        var samples: [Double] = []
        for i in 0...repetitions {
            printError(i == 0 ? "\(name): warm-up" : "\(name): run \(i)/\(repetitions)")
            (backend as? ProfilingBackend)?.reset()
            let start = clock.now
            let tokens = try body()
            let d = clock.now - start
            let seconds = Double(d.components.seconds) + Double(d.components.attoseconds) * 1e-18
            if i > 0 { samples.append(Double(tokens) / seconds) }
        }
        return samples
    }

    private func modelType(_ model: Model) -> String {
        let types = Dictionary(grouping: model.gguf.tensors, by: \.type).mapValues { $0.reduce(0) { $0 + $1.byteCount } }
        let main = types.max { $0.value < $1.value }?.key.description ?? "?"
        return "\(model.config.architecture) \(main)"
    }

    private func printTable(_ rows: [BenchRow]) {
        print("| model | size | params | backend | threads | test | t/s |")
        print("| --- | ---: | ---: | --- | ---: | ---: | ---: |")
        for r in rows {
            print(String(format: "| %@ %@ | %.2f MiB | %.2f M | %@ | %d | %@ | %.2f ± %.2f |",
                         r.model, r.modelType, Double(r.sizeBytes) / 1_048_576, Double(r.parameters) / 1e6,
                         r.backend, r.threads, r.test, r.tokensPerS, r.stddev))
        }
        for r in rows {
            if let bytes = r.bytesPerToken, let bandwidth = r.bandwidthGBPerS {
                print(String(format: "\n%@: %.1f MB of weights read per decoded token → %.2f GB/s effective at %.2f t/s (%@)",
                             r.test, Double(bytes) / 1e6, bandwidth, r.tokensPerS, r.device))
            }
        }
    }
}

struct BenchRow: Encodable {
    var model: String
    var modelType: String
    var sizeBytes: Int
    var parameters: Int
    var backend: String
    var device: String
    var threads: Int
    var test: String
    var tokens: Int
    var tokensPerS: Double
    var stddev: Double
    var samples: [Double]
    var bytesPerToken: Int?
    var bandwidthGBPerS: Double?

    enum CodingKeys: String, CodingKey {
        case model, modelType = "model_type", sizeBytes = "size_bytes", parameters, backend, device, threads, test
        case tokens, tokensPerS = "tokens_per_s", stddev, samples, bytesPerToken = "bytes_per_token"
        case bandwidthGBPerS = "bandwidth_gb_per_s"
    }

    func with(test: String, tokens: Int, samples: [Double]) -> BenchRow {
        var row = self
        row.test = test
        row.tokens = tokens
        row.samples = samples
        row.tokensPerS = samples.reduce(0, +) / Double(samples.count)
        let variance = samples.count > 1
            ? samples.reduce(0) { $0 + ($1 - row.tokensPerS) * ($1 - row.tokensPerS) } / Double(samples.count - 1) : 0
        row.stddev = variance.squareRoot()
        return row
    }
}

/// Prints `--profile`'s table to stderr when the backend was wrapped for it.
func printProfile(_ backend: Backend, title: String) throws {
    guard let profiler = backend as? ProfilingBackend else { return }
    let report = try profiler.report()
    let total = report.totalSeconds
    guard !report.entries.isEmpty else { return }
    let how: String
    var timeColumn = "ms"
    switch report.timing {
    case .device(let source):
        how = "device timestamps from \(source), ops not synchronized"
        timeColumn = "device ms"
    case .host(let unavailable?):
        how = "host clock, each op synchronized; \(DeviceTimingUnavailable(unavailable))"
    case .host(nil):
        how = "host clock, each op synchronized"
    }
    printError("\nprofile of \(title) (\(profiler.inner.name) backend, \(how)):")
    func pad(_ s: String, _ width: Int = 20) -> String { s.padding(toLength: width, withPad: " ", startingAt: 0) }
    printError(pad("op") + "   calls " + String(repeating: " ", count: max(0, 10 - timeColumn.count)) + timeColumn + "   share   µs/call")
    for entry in report.entries {
        if entry.deviceCommands == 0 {
            printError(pad(entry.kind) + String(format: " %7d", entry.calls) + "          -   host work only (no device commands)")
            continue
        }
        let share = total > 0 ? 100 * entry.seconds / total : 0
        printError(pad(entry.kind) + String(format: " %7d %10.2f %6.1f%% %9.1f", entry.calls, entry.seconds * 1000, share,
                                            entry.seconds * 1e6 / Double(max(entry.calls, 1))))
    }
    let wall = report.wallSeconds
    let busy = wall > 0 ? String(format: " (%.0f%%)", 100 * total / wall) : ""
    switch report.timing {
    case .device:
        printError(String(format: "device busy %.2f ms of %.2f ms wall%@; the rest is host work (recording, launches, sampling) and device idle time",
                          total * 1000, wall * 1000, busy))
    case .host:
        printError(String(format: "ops %.2f ms of %.2f ms wall%@ (each op waited for; device idle gaps are not visible this way)",
                          total * 1000, wall * 1000, busy))
    }
}
