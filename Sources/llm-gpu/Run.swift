import ArgumentParser
import Foundation
import LLM

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate text after a prompt, streaming it to stdout; speeds go to stderr.")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions

    @Option(help: "The prompt text.")
    var prompt: String?

    @Option(help: "Read the prompt from a file.")
    var promptFile: String?

    @Option(help: "Most tokens to generate.")
    var maxTokens: Int = 128

    @Flag(help: "Print one JSON object instead of streaming text.")
    var json = false

    func validate() throws {
        if prompt != nil && promptFile != nil { throw ValidationError("give --prompt or --prompt-file, not both") }
        if maxTokens < 0 { throw ValidationError("--max-tokens must be 0 or more, got \(maxTokens)") }
    }

    func run() throws {
        let text = try promptText()
        let (model, session) = try engine.open(modelPath: modelOption.resolve())
        let promptTokens = model.tokenizer.encode(text)
        let options = GenerationOptions(maxTokens: maxTokens, strategy: .greedy)
        let completion = try Generator(session: session).generate(prompt: promptTokens, options: options) { piece in
            if !json {
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
        }
        let t = completion.timings
        if json {
            try printJSON(RunOutput(
                backend: model.backend.name, promptTokens: promptTokens,
                completions: [.init(tokens: completion.tokens, text: completion.text, finishReason: completion.finishReason)],
                timings: .init(promptTokensPerS: t.promptTokensPerSecond, generationTokensPerS: t.generationTokensPerSecond)))
        } else {
            print()
            printError(String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d tokens, %.1f tokens/s | %@, %@",
                              t.promptTokens, t.promptTokensPerSecond, completion.tokens.count,
                              t.generationTokensPerSecond, model.backend.deviceDescription, completion.finishReason.rawValue))
        }
    }

    private func promptText() throws -> String {
        if let promptFile {
            guard let data = FileManager.default.contents(atPath: promptFile) else {
                throw CLIError("cannot read prompt file: \(promptFile)")
            }
            return String(decoding: data, as: UTF8.self)
        }
        return prompt ?? "The capital of France is"
    }
}

struct RunOutput: Encodable {
    struct CompletionOutput: Encodable {
        var tokens: [Int32]
        var text: String
        var finishReason: FinishReason
        enum CodingKeys: String, CodingKey { case tokens, text, finishReason = "finish_reason" }
    }
    struct TimingsOutput: Encodable {
        var promptTokensPerS: Double
        var generationTokensPerS: Double
        enum CodingKeys: String, CodingKey {
            case promptTokensPerS = "prompt_tokens_per_s", generationTokensPerS = "generation_tokens_per_s"
        }
    }
    var backend: String
    var promptTokens: [Int32]
    var completions: [CompletionOutput]
    var timings: TimingsOutput
    enum CodingKeys: String, CodingKey { case backend, promptTokens = "prompt_tokens", completions, timings }
}
