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

    @Option(parsing: .unconditional, help: "Most tokens to generate.")
    var maxTokens: Int = 128

    @Flag(help: "Print one JSON object instead of streaming text.")
    var json = false

    @OptionGroup(title: "Sampling (chain order: penalties, top-k, top-p, min-p, temperature)")
    var sampling: SamplingOptions

    @Option(help: "Stop when the text contains this (repeatable); it is not printed.")
    var stop: [String] = []

    @Flag(help: "Wrap the prompt in the model's chat format (ChatML or Gemma turns, from its template).")
    var chat = false

    @Option(help: "With --chat: the system prompt (default: the template's own, if any).")
    var system: String?

    @OptionGroup(title: "Beam search (score = Σ log p / length term, length = generated tokens incl. EOS)")
    var beam: BeamOptions

    func validate() throws {
        if prompt != nil && promptFile != nil { throw ValidationError("give --prompt or --prompt-file, not both") }
        if maxTokens < 0 { throw ValidationError("--max-tokens must be 0 or more, got \(maxTokens)") }
        if stop.contains("") { throw ValidationError("--stop needs a non-empty text") }
        if beam.beams != nil && sampling.temperature > 0 {
            throw ValidationError("--beams and --temperature are different strategies: choose one")
        }
        if beam.beams != nil && !stop.isEmpty { throw ValidationError("--stop is not supported with --beams") }
        if system != nil && !chat { throw ValidationError("--system needs --chat") }
    }

    func run() throws {
        var text = try promptText()
        let model = try engine.loadModel(path: modelOption.resolve())
        if chat { text = try ChatTemplate(gguf: model.gguf).render(user: text, system: system) }
        let promptTokens = model.tokenizer.encode(text)
        let strategy = beam.strategy ?? sampling.strategy
        let options = GenerationOptions(maxTokens: maxTokens, strategy: strategy, stopSequences: stop)
        let generation: Generation
        if case .beamSearch(let parameters) = strategy {
            // Beams run on their own paged pool: no contiguous cache of the whole context is allocated.
            let length = engine.contextLength(for: model)
            warnIfBeyondTrainedContext(length, model: model)
            generation = try Generator.beamSearch(model: model, prompt: promptTokens, options: options, parameters: parameters,
                                                  contextLength: length)
        } else {
            let length = engine.contextLength(for: model)
            let session = try InferenceSession(model: model, contextLength: length)
            warnIfBeyondTrainedContext(length, model: model)
            generation = try Generator(session: session).generate(prompt: promptTokens, options: options) { piece in
                if !json {
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
            }
        }
        let t = generation.timings
        if json {
            try printJSON(RunOutput(
                backend: model.backend.name, promptTokens: promptTokens,
                completions: generation.completions.map {
                    .init(tokens: $0.tokens, text: $0.text, finishReason: $0.finishReason, logprob: $0.logprob, score: $0.score)
                },
                timings: .init(promptTokensPerS: t.promptTokensPerSecond, generationTokensPerS: t.generationTokensPerSecond)))
            return
        }
        if case .beamSearch = strategy {
            for (k, c) in generation.completions.enumerated() {
                if generation.completions.count > 1 {
                    print(String(format: "[%d] score %.4f, logprob %.4f, %d tokens, %@", k + 1, c.score ?? 0, c.logprob ?? 0,
                                 c.tokens.count, c.finishReason.rawValue))
                }
                print(c.text)
            }
        } else {
            print()
        }
        // The text went out unbuffered (FileHandle) and print() is buffered: flush before the
        // statistics go to stderr, or on a terminal they land in the middle of the text's last line.
        fflush(stdout)
        var line = String(format: "prompt: %d tokens, %.1f tokens/s | generation: %d steps, %.1f tokens/s | %@, %@",
                          t.promptTokens, t.promptTokensPerSecond, generation.best.tokens.count,
                          t.generationTokensPerSecond, model.backend.deviceDescription, generation.best.finishReason.rawValue)
        if let peak = generation.peakKVBytes, let contiguous = generation.contiguousKVBytes {
            line += String(format: " | KV %.1f MiB (per-beam caches: %.1f MiB)", Double(peak) / 1_048_576, Double(contiguous) / 1_048_576)
        }
        printError(line)
        try printProfile(model.backend, title: "run")
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
        var logprob: Double?
        var score: Double?
        enum CodingKeys: String, CodingKey { case tokens, text, finishReason = "finish_reason", logprob, score }
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

/// Sampling flags; `--temperature 0` (the default) is greedy decoding.
struct SamplingOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Temperature; 0 picks the most probable token (greedy).")
    var temperature: Float = 0
    @Option(parsing: .unconditional, help: "Keep the K most probable tokens (0 = off).")
    var topK: Int = 0
    @Option(parsing: .unconditional, help: "Keep the most probable tokens up to cumulative probability P (1 = off).")
    var topP: Float = 1
    @Option(parsing: .unconditional, help: "Drop tokens below P × the top probability (0 = off).")
    var minP: Float = 0
    @Option(parsing: .unconditional, help: "Divide positive (multiply negative) logits of recent tokens by this (1 = off).")
    var repeatPenalty: Float = 1
    @Option(parsing: .unconditional, help: "Subtract from the logit of each recent token once (0 = off).")
    var presencePenalty: Float = 0
    @Option(parsing: .unconditional, help: "Subtract from the logit of each recent token per occurrence (0 = off).")
    var frequencyPenalty: Float = 0
    @Option(parsing: .unconditional, help: "How many recent tokens the penalties consider.")
    var penaltyLastN: Int = 64
    @Option(parsing: .unconditional, help: "Seed of the sampler; the same seed gives the same tokens.")
    var seed: UInt64 = 0

    func validate() throws {
        guard temperature >= 0, temperature.isFinite else { throw ValidationError("--temperature must be 0 or more") }
        guard topK >= 0 else { throw ValidationError("--top-k must be 0 or more") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        guard minP >= 0, minP < 1 else { throw ValidationError("--min-p must be in [0, 1)") }
        guard repeatPenalty > 0 else { throw ValidationError("--repeat-penalty must be positive") }
        guard penaltyLastN >= 0 else { throw ValidationError("--penalty-last-n must be 0 or more") }
        let changed = topK != 0 || topP != 1 || minP != 0 || repeatPenalty != 1 || presencePenalty != 0 || frequencyPenalty != 0
        if temperature == 0 && changed {
            throw ValidationError("sampling options need --temperature above 0 (temperature 0 is greedy decoding)")
        }
    }

    var strategy: DecodingStrategy {
        guard temperature > 0 else { return .greedy }
        return .sample(SamplingParameters(
            temperature: temperature, topK: topK, topP: topP, minP: minP, repetitionPenalty: repeatPenalty,
            presencePenalty: presencePenalty, frequencyPenalty: frequencyPenalty, penaltyWindow: penaltyLastN, seed: seed))
    }
}

extension LengthNormalization: ExpressibleByArgument {}
extension EarlyStopping: ExpressibleByArgument {}

struct BeamOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Beam search with N beams (1 equals greedy; at most \(BeamSearchParameters.maximumBeams)).")
    var beams: Int?
    @Option(parsing: .unconditional, help: "α in the length term.")
    var lengthPenalty: Double = 1
    @Option(help: "Length term: power (L^α) or gnmt (((5 + L) / 6)^α).")
    var lengthNorm: LengthNormalization = .power
    @Option(help: "true: stop at N finished; false: stop when no live beam can win at its length; never: ... at max length.")
    var earlyStopping: EarlyStopping = .false
    @Option(parsing: .unconditional, help: "Return the K best finished hypotheses.")
    var numReturn: Int = 1

    func validate() throws {
        if let beams, beams < 1 || beams > BeamSearchParameters.maximumBeams {
            throw ValidationError("--beams must be in 1...\(BeamSearchParameters.maximumBeams), got \(beams)")
        }
        if numReturn < 1 { throw ValidationError("--num-return must be at least 1") }
        if numReturn > (beams ?? 1) { throw ValidationError("--num-return \(numReturn) needs at least as many --beams") }
        if !lengthPenalty.isFinite { throw ValidationError("--length-penalty must be a number") }
    }

    var strategy: DecodingStrategy? {
        beams.map {
            .beamSearch(BeamSearchParameters(beams: $0, lengthPenalty: lengthPenalty, lengthNormalization: lengthNorm,
                                             earlyStopping: earlyStopping, returnCount: numReturn))
        }
    }
}
