/// Reading a vocabulary from GGUF metadata the way llama.cpp's `llama_vocab::impl::load`
/// does: the same defaults, the same overrides, and the same by-text detection of
/// end-of-turn and end-of-generation tokens (which also marks them as control tokens).
struct LoadedVocabulary {
    var texts = ByteStringTable()
    var count = 0
    var attributes: [TokenAttributes] = []
    var scores: [Float] = []
    var bos: Int32?, eos: Int32?, eot: Int32?, eom: Int32?, unknown: Int32?, padding: Int32?
    var addBOS = false, addEOS = false, addSpacePrefix = false, cleanSpaces = false, ignoreMerges = false
    var passes: [PreTokenizer.Pass] = []
    var merges: BPEMerges?
    var byteTokens: [Int32?] = []
    var endOfGeneration: Set<Int32> = []
    var specialTokens: [Int32] = []
}

extension Tokenizer {
    static let modelKey = "tokenizer.ggml.model"
    static let preKey = "tokenizer.ggml.pre"

    public convenience init(gguf: GGUFFile) throws {
        let model = try Self.metadata(Self.modelKey) { try gguf.string(Self.modelKey) }
        guard let kind = Kind(rawValue: model) else {
            throw TokenizerError.unsupportedModel(key: Self.modelKey, value: model)
        }
        var pre = ""
        if gguf[Self.preKey] != nil { pre = try Self.metadata(Self.preKey) { try gguf.string(Self.preKey) } }
        var v = LoadedVocabulary()

        // Flags and default ids per vocabulary type, before the metadata may override them.
        switch kind {
        case .sentencePiece:
            (v.bos, v.eos, v.unknown) = (1, 2, 0)
            (v.addBOS, v.addEOS, v.addSpacePrefix, v.cleanSpaces) = (true, false, true, false)
        case .bytePair:
            guard let config = PreTokenizerConfig.named(pre) else {
                throw TokenizerError.unsupportedPreTokenizer(key: Self.preKey, value: pre)
            }
            (v.bos, v.eos, v.unknown) = (config.noBOS ? nil : 11, 11, nil)
            v.passes = config.passes
            v.ignoreMerges = config.ignoreMerges
            v.addBOS = config.addBOS
            v.cleanSpaces = config.cleanSpaces
        }
        if let flag = try Self.bool(gguf, "tokenizer.ggml.add_space_prefix") { v.addSpacePrefix = flag }

        try Self.readTokens(gguf, into: &v)
        if kind == .bytePair {
            let key = "tokenizer.ggml.merges"
            guard gguf[key] != nil else { throw TokenizerError.missingKey(key) }
            let merges = try Self.metadata(key) { try gguf.stringArray(key) }
            v.merges = BPEMerges(merges: merges, texts: &v.texts)
        } else {
            v.byteTokens = (0..<256).map { b in
                let hex = Array("0123456789ABCDEF".utf8)
                let name: [UInt8] = Array("<0x".utf8) + [hex[b >> 4], hex[b & 15], UInt8(ascii: ">")]
                // llama.cpp falls back to a token that is the byte itself.
                return v.texts.find(name) ?? v.texts.find(CollectionOfOne(UInt8(b))) ?? v.unknown
            }
        }
        try Self.readSpecialIDs(gguf, into: &v)
        Self.detectByText(gguf, into: &v)

        self.init(kind: kind, pre: pre, loaded: v)
    }

    private static func metadata<T>(_ key: String, _ read: () throws -> T) throws -> T {
        do {
            return try read()
        } catch GGUFError.missingKey {
            throw TokenizerError.missingKey(key)
        } catch let error as GGUFError {
            throw TokenizerError.invalidMetadata(key: key, reason: error.description)
        }
    }

    private static func bool(_ gguf: GGUFFile, _ key: String) throws -> Bool? {
        guard let value = gguf[key] else { return nil }
        guard let flag = value.boolValue else {
            throw TokenizerError.invalidMetadata(key: key, reason: "\(value.shownInError), expected a bool")
        }
        return flag
    }

    private static func readTokens(_ gguf: GGUFFile, into v: inout LoadedVocabulary) throws {
        let tokensKey = "tokenizer.ggml.tokens", scoresKey = "tokenizer.ggml.scores", typesKey = "tokenizer.ggml.token_type"
        let tokens = try metadata(tokensKey) { try gguf.stringArray(tokensKey) }
        guard !tokens.isEmpty else { throw TokenizerError.invalidMetadata(key: tokensKey, reason: "the vocabulary is empty") }
        guard tokens.count < Int(Int32.max) else { throw TokenizerError.invalidMetadata(key: tokensKey, reason: "too many tokens") }
        let n = tokens.count
        var scores = [Float](repeating: 0, count: n)
        if gguf[scoresKey] != nil {
            let s = try metadata(scoresKey) { try gguf.floatArray(scoresKey) }
            guard s.count >= n else {
                throw TokenizerError.invalidMetadata(key: scoresKey, reason: "\(s.count) scores for \(n) tokens")
            }
            scores = Array(s[..<n])
        }
        var attributes = [TokenAttributes](repeating: .normal, count: n)
        if gguf[typesKey] != nil {
            let t = try metadata(typesKey) { try gguf.intArray(typesKey) }
            guard t.count >= n else {
                throw TokenizerError.invalidMetadata(key: typesKey, reason: "\(t.count) token types for \(n) tokens")
            }
            for i in 0..<n { attributes[i] = TokenAttributes(tokenType: t[i]) }
        }
        var texts = ByteStringTable(capacity: n + n / 2)
        for (i, token) in tokens.enumerated() {
            // llama.cpp gives empty tokens a placeholder text so that every token is findable.
            let text = token.isEmpty ? "[EMPTY_\(i)]" : token
            let (id, inserted) = texts.insert(text.utf8)
            guard inserted else { throw TokenizerError.duplicateToken(text: text, firstID: Int(id), secondID: i) }
        }
        v.texts = texts
        v.count = n
        v.scores = scores
        v.attributes = attributes
    }

    private static func readSpecialIDs(_ gguf: GGUFFile, into v: inout LoadedVocabulary) throws {
        let n = v.count
        func id(_ name: String, _ current: Int32?) -> Int32? {
            // A default outside the vocabulary is dropped; a stored id outside it is ignored.
            var result = current.flatMap { Int($0) < n ? $0 : nil }
            if let stored = gguf["tokenizer.ggml.\(name)"]?.intValue, stored >= 0, stored < n { result = Int32(stored) }
            return result
        }
        v.bos = id("bos_token_id", v.bos)
        v.eos = id("eos_token_id", v.eos)
        v.eot = id("eot_token_id", nil)
        v.eom = id("eom_token_id", nil)
        v.unknown = id("unknown_token_id", v.unknown)
        v.padding = id("padding_token_id", nil)
        if let flag = try bool(gguf, "tokenizer.ggml.add_bos_token") { v.addBOS = flag }
        if let flag = try bool(gguf, "tokenizer.ggml.add_eos_token") { v.addEOS = flag }
        if v.addBOS && v.bos == nil {
            throw TokenizerError.missingSpecialToken(flagKey: "tokenizer.ggml.add_bos_token", idKey: "tokenizer.ggml.bos_token_id")
        }
        if v.addEOS && v.eos == nil {
            throw TokenizerError.missingSpecialToken(flagKey: "tokenizer.ggml.add_eos_token", idKey: "tokenizer.ggml.eos_token_id")
        }
    }

    // Token texts llama.cpp recognises (llama-vocab.cpp, as of late 2025).
    private static let eotTexts = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                   "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"]
    private static let fimPadTexts = ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"]
    private static let fimRepTexts = ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"]
    private static let fimSepTexts = ["<|file_sep|>"]
    private static let eogTexts: Set<String> = [
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
        "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
        "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
    ]

    /// llama.cpp finds these by scanning a hash map, so when several candidates exist its
    /// choice is arbitrary; here the first candidate in llama.cpp's list wins.
    private static func detectByText(_ gguf: GGUFFile, into v: inout LoadedVocabulary) {
        func lookup(_ text: String) -> Int32? {
            guard let id = v.texts.find(Array(text.utf8)), Int(id) < v.count else { return nil }
            return id
        }
        func detect(_ current: Int32?, _ candidates: [String]) -> Int32? {
            if let current { return current }
            for text in candidates {
                if let id = lookup(text) {
                    v.attributes[Int(id)].insert(.control)
                    return id
                }
            }
            return nil
        }
        v.eot = detect(v.eot, eotTexts)
        v.eom = detect(v.eom, ["<|eom_id|>"])
        let fimPad = detect(nil, fimPadTexts)
        let fimRep = detect(nil, fimRepTexts)
        let fimSep = detect(nil, fimSepTexts)
        // Stored fim ids win over the by-text ones.
        func stored(_ name: String, _ detected: Int32?) -> Int32? {
            if let s = gguf["tokenizer.ggml.\(name)"]?.intValue, s >= 0, s < v.count { return Int32(s) }
            return detected
        }

        var eog = Set([stored("fim_pad_token_id", fimPad), stored("fim_rep_token_id", fimRep),
                       stored("fim_sep_token_id", fimSep)].compactMap { $0 })
        for text in eogTexts {
            if let id = lookup(text) {
                eog.insert(id)
                v.attributes[Int(id)].insert(.control)
            }
        }
        // gpt-oss: these are rendered, never hidden.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let id = lookup(text) { v.attributes[Int(id)] = .userDefined }
        }
        for id in [v.eos, v.eot, v.eom] { if let id { eog.insert(id) } }
        // o200k_harmony and solar-open: "<|end|>" ends a message, not the generation.
        func has(_ t: String) -> Bool { lookup(t).map { eog.contains($0) } ?? false }
        if let end = lookup("<|end|>"), eog.contains(end),
           (has("<|return|>") && (has("<|call|>") || has("<|calls|>"))) || ((has("<|call|>") || has("<|calls|>")) && has("<|flush|>")) {
            eog.remove(end)
            v.attributes[Int(end)] = .userDefined
        }
        // gemma4 and paddleocr: "</s>" is an ordinary token there.
        if has("<|tool_response>"), let s = lookup("</s>"), eog.contains(s) {
            eog.remove(s)
            v.attributes[Int(s)] = .normal
        }
        v.endOfGeneration = eog

        v.specialTokens = (0..<Int32(v.count))
            .filter { !v.attributes[Int($0)].isDisjoint(with: [.control, .userDefined, .unknown]) }
            .sorted { a, b in
                let la = v.texts.length(of: a), lb = v.texts.length(of: b)
                return la != lb ? la > lb : a < b
            }

        // Phi-3: special tokens swallow the whitespace after them (llama.cpp keys this on general.name).
        let name = (gguf["general.name"]?.stringValue ?? "").lowercased()
        if name.contains("phi-3") || name.contains("phi3") {
            for id in v.specialTokens { v.attributes[Int(id)].insert(.rstrip) }
            if let id = lookup("</s>") { v.attributes[Int(id)].insert(.rstrip) }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let id = lookup(text) { v.attributes[Int(id)].remove(.rstrip) }
            }
        }
    }
}
