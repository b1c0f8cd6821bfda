import ArgumentParser
import Foundation
import BackendCPU
import LLM

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print the token ids of a text.")

    @OptionGroup var modelOption: ModelOption
    @Option(help: "The text to tokenize (BOS is added if the model adds it; special tokens are parsed).")
    var text: String?
    @Option(help: "Tokenize this file's text instead (UTF-8; - reads stdin).")
    var file: String?
    @Flag(help: "Print {\"tokens\": [ids]}.")
    var json = false

    func validate() throws {
        if (text == nil) == (file == nil) { throw ValidationError("give exactly one of --text and --file") }
    }

    /// The text to tokenize: `--text`, or the whole of `--file` (stdin for `-`), which must be UTF-8.
    func input() throws -> String {
        if let text { return text }
        let path = file ?? "-"
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read --file \(path)") }
            data = contents
        }
        guard let string = String(data: data, encoding: .utf8) else {
            throw CLIError("--file \(path) is not UTF-8 text")
        }
        return string
    }

    func run() throws {
        let text = try input()
        // Only the vocabulary is needed: no weights are uploaded.
        let tokenizer = try Tokenizer(gguf: GGUFFile(path: modelOption.resolve()))
        let tokens = tokenizer.encode(text)
        if json {
            try printJSON(["tokens": tokens])
        } else {
            print(tokens.map(String.init).joined(separator: " "))
        }
    }
}

struct Logits: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the top-K logits after each prefix of a token sequence (ids used as given, no BOS added).")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions
    @Option(help: "Comma-separated token ids.")
    var tokens: String
    @Option(parsing: .unconditional, help: "How many (id, logit) pairs per position.")
    var top: Int = 5
    @Flag(help: "Print {\"positions\": [{\"token\", \"top\": [{\"id\", \"logit\"}]}]}.")
    var json = false

    func validate() throws {
        if top < 1 { throw ValidationError("--top must be at least 1, got \(top)") }
        _ = try parsedTokens()
    }

    func parsedTokens() throws -> [Int32] {
        let parts = tokens.split(separator: ",", omittingEmptySubsequences: false)
        return try parts.map { part in
            guard let id = Int32(part.trimmingCharacters(in: .whitespaces)), id >= 0 else {
                throw ValidationError("--tokens: '\(part)' is not a token id")
            }
            return id
        }
    }

    func run() throws {
        let ids = try parsedTokens()
        let (model, session) = try engine.open(modelPath: modelOption.resolve())
        let vocab = model.config.vocabularySize
        let buffer = try session.evaluate(ids, logits: .all)
        let logits = try model.backend.download(buffer, offset: 0, count: ids.count * vocab)
        let k = min(top, vocab)
        let positions = ids.indices.map { p -> LogitsOutput.Position in
            let row = logits[(p * vocab)..<((p + 1) * vocab)]
            let best = row.indices.sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }.prefix(k)
            return .init(token: ids[p], top: best.map { .init(id: $0 - p * vocab, logit: row[$0]) })
        }
        if json {
            try printJSON(LogitsOutput(positions: positions))
        } else {
            for (p, position) in positions.enumerated() {
                let pairs = position.top.map { String(format: "%d:%.6f", $0.id, $0.logit) }.joined(separator: " ")
                print("pos \(p) tok \(position.token) top\(k): \(pairs)")
            }
        }
    }
}

struct LogitsOutput: Encodable {
    struct Entry: Encodable { var id: Int; var logit: Float }
    struct Position: Encodable { var token: Int32; var top: [Entry] }
    var positions: [Position]
}

struct PerplexityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "perplexity",
        abstract: "Perplexity over a text file: non-overlapping --context windows, each scored on its second half (as llama.cpp).")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions
    @Option(help: "The text file.")
    var file: String
    @Flag(help: "Print {\"perplexity\": x, \"tokens\": n}.")
    var json = false

    func run() throws {
        guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read text file: \(file)") }
        var options = engine
        let window = engine.context ?? 512
        options.context = window
        let (_, session) = try options.open(modelPath: modelOption.resolve())
        let result = try Perplexity.evaluate(session: session, text: String(decoding: data, as: UTF8.self), context: window)
        if json {
            try printJSON(PerplexityOutput(perplexity: result.perplexity, tokens: result.scoredTokens))
        } else {
            print(String(format: "perplexity: %.4f over %d windows of %d tokens (%d tokens scored)",
                         result.perplexity, result.windows, window, result.scoredTokens))
        }
    }
}

struct PerplexityOutput: Encodable {
    var perplexity: Double
    var tokens: Int
}

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a GGUF file's metadata and tensor table.")

    @Option(help: "Path to a GGUF file.")
    var model: String
    @Flag(help: "Print JSON.")
    var json = false

    func run() throws {
        let file = try GGUFFile(path: model)
        // The model as this engine would run it (on the CPU: memory-mapped, nothing copied), or why not.
        let loaded = Result { try Model.load(gguf: file, backend: CPUBackend(threads: 1)) }
        let summary: InspectOutput.Summary
        switch loaded {
        case .success(let m):
            let kv = m.kvBytesPerToken
            summary = .init(architecture: m.config.architecture, features: m.features, kvBytesPerToken: kv.cached,
                            fullKVBytesPerToken: kv.full, error: nil)
        case .failure(let error):
            summary = .init(architecture: file["general.architecture"]?.stringValue ?? "?", features: [], kvBytesPerToken: nil,
                            fullKVBytesPerToken: nil, error: "\(error)")
        }
        if json {
            var metadata: [String: String] = [:]
            for key in file.metadataKeys { metadata[key] = file.metadata[key]!.description }
            try printJSON(InspectOutput(
                version: file.version, alignment: file.alignment, model: summary, metadata: metadata,
                tensors: file.tensors.map { .init(name: $0.name, type: $0.type.description, dimensions: $0.dimensions,
                                                  offset: $0.fileOffset, bytes: $0.byteCount) }))
            return
        }
        print("GGUF v\(file.version), \(file.metadata.count) metadata keys, \(file.tensors.count) tensors, alignment \(file.alignment)")
        if let error = summary.error {
            print("model: \(summary.architecture), cannot run here: \(error)")
        } else {
            print("model: \(summary.architecture): \(summary.features.joined(separator: "; "))")
            if let cached = summary.kvBytesPerToken, let full = summary.fullKVBytesPerToken {
                print("  KV cache: \(cached) bytes per token\(cached != full ? " (full K/V would be \(full))" : "")")
            }
        }
        for key in file.metadataKeys {
            print("  \(key) = \(file.metadata[key]!)")
        }
        print("tensors:")
        for t in file.tensors {
            let dims = t.dimensions.map(String.init).joined(separator: " x ")
            print("  \(t.name.padding(toLength: 32, withPad: " ", startingAt: 0)) \(t.type.description.padding(toLength: 5, withPad: " ", startingAt: 0)) [\(dims)] \(t.byteCount) bytes @ \(t.fileOffset)")
        }
    }
}

struct InspectOutput: Encodable {
    struct Tensor: Encodable {
        var name: String; var type: String; var dimensions: [Int]; var offset: Int; var bytes: Int
    }
    struct Summary: Encodable {
        var architecture: String
        var features: [String]
        var kvBytesPerToken: Int?
        var fullKVBytesPerToken: Int?
        var error: String?
        enum CodingKeys: String, CodingKey {
            case architecture, features, error
            case kvBytesPerToken = "kv_bytes_per_token", fullKVBytesPerToken = "full_kv_bytes_per_token"
        }
    }
    var version: UInt32
    var alignment: Int
    var model: Summary
    var metadata: [String: String]
    var tensors: [Tensor]
}
