/// What llama.cpp (llama-vocab.cpp, `llama_vocab::impl::load` and `llm_tokenizer_bpe`)
/// sets for each `tokenizer.ggml.pre` value of a byte-level BPE vocabulary: the regex
/// passes and the flags that go with them. Only names whose regexes this engine
/// implements are accepted; any other is an error rather than a silently different split.
struct PreTokenizerConfig: Sendable {
    let passes: [PreTokenizer.Pass]
    /// A word that is itself a token is not merged (llama3 style).
    var ignoreMerges = false
    /// Overrides the add-BOS default of false (before the GGUF flag is applied).
    var addBOS = false
    /// llama.cpp's `clean_spaces`: decode removes spaces before punctuation and some contractions.
    var cleanSpaces = true
    /// llama.cpp drops the BOS default for GLM4.
    var noBOS = false

    private static let gpt2: [PreTokenizer.Pass] = [.gpt2]
    private static let digitsThenGPT2: [PreTokenizer.Pass] = [.eachNumber, .gpt2]
    private static let llama3: [PreTokenizer.Pass] = [.llama3(maxDigits: 3)]
    private static let qwen2: [PreTokenizer.Pass] = [.llama3(maxDigits: 1)]
    /// LLAMA_VOCAB_PRE_TYPE_DEFAULT: not just the gpt2 regex.
    private static let fallback: [PreTokenizer.Pass] = [.punctuationRuns, .gpt2, .numberRuns, .asciiDigitTriples]

    private static let deepseek3: [PreTokenizer.Pass] = [.numberTriples, .cjkRuns, .deepseek3]

    static func named(_ name: String) -> PreTokenizerConfig? {
        switch name {
        case "deepseek-v3":
            return .init(passes: deepseek3, cleanSpaces: false)
        case "", "default":
            return .init(passes: fallback)
        case "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano":
            return .init(passes: llama3, ignoreMerges: true, addBOS: true)
        case "dbrx", "smaug-bpe":
            return .init(passes: llama3)
        case "glm4", "chatglm-bpe":
            return .init(passes: llama3, noBOS: true)
        case "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open":
            return .init(passes: qwen2, cleanSpaces: false)
        case "megrez", "stablelm2":
            return .init(passes: qwen2)
        case "smollm", "command-r":
            return .init(passes: digitsThenGPT2, cleanSpaces: false)
        case "starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2":
            return .init(passes: digitsThenGPT2)
        case "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de", "a.x-4.0",
             "mellum", "modern-bert", "exaone4", "mpt", "olmo", "jais":
            return .init(passes: gpt2)
        case "trillion", "granite-docling":
            return .init(passes: gpt2, cleanSpaces: false)
        default:
            return nil
        }
    }

    static let supportedNames = ["default", "gpt-2", "llama3", "llama-bpe", "qwen2", "smollm", "deepseek-v3", "and their llama.cpp aliases"]
}
