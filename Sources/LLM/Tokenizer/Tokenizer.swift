/// llama.cpp's token attributes (`llama_token_attr`), derived from `tokenizer.ggml.token_type`
/// and adjusted by llama.cpp's by-text rules at load.
struct TokenAttributes: OptionSet, Sendable {
    let rawValue: UInt16
    static let unknown = TokenAttributes(rawValue: 1 << 0)
    static let unused = TokenAttributes(rawValue: 1 << 1)
    static let normal = TokenAttributes(rawValue: 1 << 2)
    static let control = TokenAttributes(rawValue: 1 << 3)
    static let userDefined = TokenAttributes(rawValue: 1 << 4)
    static let byte = TokenAttributes(rawValue: 1 << 5)
    static let lstrip = TokenAttributes(rawValue: 1 << 7)
    static let rstrip = TokenAttributes(rawValue: 1 << 8)

    /// GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
    init(tokenType: Int) {
        switch tokenType {
        case 1: self = .normal
        case 2: self = .unknown
        case 3: self = .control
        case 4: self = .userDefined
        case 5: self = .unused
        case 6: self = .byte
        default: self = []
        }
    }

    init(rawValue: UInt16) { self.rawValue = rawValue }
}

/// A tokenizer built from a GGUF vocabulary that reproduces llama.cpp's `llama_tokenize`
/// and `llama_detokenize`: SentencePiece-style (`tokenizer.ggml.model = llama`) or byte-level
/// BPE (`gpt2`) with the pre-tokenizer named by `tokenizer.ggml.pre`. Immutable after init;
/// every call keeps its working storage local, so one instance serves any number of threads.
public final class Tokenizer: Sendable {
    public enum Kind: String, Sendable {
        case sentencePiece = "llama"
        case bytePair = "gpt2"
    }

    public let kind: Kind
    /// The `tokenizer.ggml.pre` value ("" when absent).
    public let preTokenizerName: String
    public let bos: Int32?
    public let eos: Int32?
    /// End of turn: from `tokenizer.ggml.eot_token_id`, else found by text as llama.cpp does.
    public let eot: Int32?
    public let eom: Int32?
    public let unknown: Int32?
    public let padding: Int32?
    /// Whether `encode(_:addSpecial: true)` prepends `bos` / appends `eos`.
    public let addsBOS: Bool
    public let addsEOS: Bool
    /// Every token that ends generation: eos, eot, eom and the ones llama.cpp finds by text.
    public let endOfGenerationTokens: Set<Int32>

    let texts: ByteStringTable
    let vocabularyCount: Int
    let attributes: [TokenAttributes]
    let scores: [Float]
    /// Tokens split out of raw text before tokenizing, longest text first.
    let specialTokens: [Int32]
    let addSpacePrefix: Bool
    let cleanSpaces: Bool
    let preTokenizer: PreTokenizer
    let ignoreMerges: Bool
    let merges: BPEMerges?
    /// SentencePiece byte fallback: the `<0xXX>` token for each byte.
    let byteTokens: [Int32?]

    public var vocabularySize: Int { vocabularyCount }

    public func isEndOfGeneration(_ id: Int32) -> Bool { endOfGenerationTokens.contains(id) }

    /// The token's text as stored in the vocabulary (byte-level BPE tokens in GPT-2's
    /// stand-in scalars, SentencePiece ones with U+2581 for spaces).
    public func tokenText(_ id: Int32) -> String? {
        guard id >= 0, Int(id) < vocabularyCount else { return nil }
        return String(decoding: texts.bytes(of: id), as: UTF8.self)
    }

    /// The id of the token whose vocabulary text is exactly `text`.
    public func tokenID(_ text: String) -> Int32? {
        guard let id = texts.find(Array(text.utf8)), Int(id) < vocabularyCount else { return nil }
        return id
    }

    public func isControl(_ id: Int32) -> Bool {
        id >= 0 && Int(id) < vocabularyCount && attributes[Int(id)].contains(.control)
    }

    init(kind: Kind, pre: String, loaded: LoadedVocabulary) {
        self.kind = kind
        preTokenizerName = pre
        bos = loaded.bos
        eos = loaded.eos
        eot = loaded.eot
        eom = loaded.eom
        unknown = loaded.unknown
        padding = loaded.padding
        addsBOS = loaded.addBOS
        addsEOS = loaded.addEOS
        endOfGenerationTokens = loaded.endOfGeneration
        texts = loaded.texts
        vocabularyCount = loaded.count
        attributes = loaded.attributes
        scores = loaded.scores
        specialTokens = loaded.specialTokens
        addSpacePrefix = loaded.addSpacePrefix
        cleanSpaces = loaded.cleanSpaces
        preTokenizer = PreTokenizer(passes: loaded.passes)
        ignoreMerges = loaded.ignoreMerges
        merges = loaded.merges
        byteTokens = loaded.byteTokens
    }

    // MARK: Encoding

    /// Token ids for `text`, as llama.cpp's `llama_tokenize(text, add_special, parse_special)`.
    /// `addSpecial` adds BOS/EOS as the model's flags say; `parseSpecial` lets control tokens
    /// written literally in the text (e.g. "<|im_start|>") become those tokens.
    /// User-defined tokens are always matched whole, as in llama.cpp.
    public func encode(_ text: String, addSpecial: Bool = true, parseSpecial: Bool = true) -> [Int32] {
        let bytes = Array(text.utf8)
        let fragments = partition(bytes, parseSpecial: parseSpecial)
        var output: [Int32] = []
        output.reserveCapacity(bytes.count / 3 + 2)
        if addSpecial, addsBOS, let bos { output.append(bos) }
        bytes.withUnsafeBufferPointer { all in
            switch kind {
            case .sentencePiece: encodeSentencePiece(all, fragments, &output)
            case .bytePair: encodeBytePair(all, fragments, &output)
            }
        }
        if addSpecial, addsEOS, let eos { output.append(eos) }
        return output
    }

    private func encodeSentencePiece(_ all: UnsafeBufferPointer<UInt8>, _ fragments: [Fragment], _ output: inout [Int32]) {
        var workspace = SentencePieceWorkspace()
        var escaped: [UInt8] = []
        let spaceMark: [UInt8] = [0xE2, 0x96, 0x81] // U+2581
        // The space prefix goes before the first text and before text that follows a special token.
        var afterSpecial = true
        for fragment in fragments {
            switch fragment {
            case .token(let id):
                output.append(id)
                afterSpecial = true
            case .text(let range):
                escaped.removeAll(keepingCapacity: true)
                if addSpacePrefix && afterSpecial { escaped.append(contentsOf: spaceMark) }
                for b in all[range] {
                    if b == 0x20 { escaped.append(contentsOf: spaceMark) } else { escaped.append(b) }
                }
                escaped.withUnsafeBufferPointer {
                    workspace.encode($0, texts: texts, scores: scores, byteTokens: byteTokens, output: &output)
                }
                afterSpecial = false
            }
        }
    }

    private func encodeBytePair(_ all: UnsafeBufferPointer<UInt8>, _ fragments: [Fragment], _ output: inout [Int32]) {
        guard let merges else { return }
        var workspace = BPEWorkspace()
        var scalars: [UInt32] = []
        var classes: [UInt8] = []
        var widths: [Int] = []
        for fragment in fragments {
            guard case .text(let range) = fragment else {
                if case .token(let id) = fragment { output.append(id) }
                continue
            }
            scalars.removeAll(keepingCapacity: true)
            classes.removeAll(keepingCapacity: true)
            widths.removeAll(keepingCapacity: true)
            var i = range.lowerBound
            while i < range.upperBound {
                let n = UTF8.sequenceLength(leading: all[i], available: range.upperBound - i)
                let value = UTF8.decodeScalar(all, at: i, length: n) ?? 0xFFFD
                let scalar = Unicode.Scalar(value) ?? "\u{FFFD}"
                scalars.append(scalar.value)
                classes.append(ScalarClass.of(scalar))
                widths.append(n)
                i += n
            }
            var byteStart = range.lowerBound
            var scalarStart = 0
            for length in preTokenizer.split(scalars, classes) {
                var byteCount = 0
                for k in scalarStart ..< scalarStart + length { byteCount += widths[k] }
                let word = UnsafeBufferPointer(rebasing: all[byteStart ..< byteStart + byteCount])
                workspace.encode(word: word, merges: merges, texts: texts, vocabularySize: vocabularyCount,
                                 ignoreMerges: ignoreMerges, output: &output)
                byteStart += byteCount
                scalarStart += length
            }
        }
    }

    // MARK: Special tokens in text

    enum Fragment {
        case text(Range<Int>)
        case token(Int32)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, every
    /// occurrence in the still-raw text is cut out as that token. Control and unknown tokens
    /// take part only when `parseSpecial`; user-defined ones always do.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        guard !bytes.isEmpty else { return [] }
        var fragments: [Fragment] = [.text(0 ..< bytes.count)]
        var present = [Bool](repeating: false, count: 256)
        for b in bytes { present[Int(b)] = true }
        bytes.withUnsafeBufferPointer { text in
            for id in specialTokens {
                let attr = attributes[Int(id)]
                if !parseSpecial && !attr.isDisjoint(with: [.control, .unknown]) { continue }
                texts.withBytes(of: id) { token in
                    guard let first = token.first, present[Int(first)], token.count <= text.count else { return }
                    var next: [Fragment] = []
                    var changed = false
                    for fragment in fragments {
                        guard case .text(let range) = fragment else { next.append(fragment); continue }
                        var start = range.lowerBound
                        while let match = Self.find(token, in: text, from: start, to: range.upperBound) {
                            changed = true
                            var leftEnd = match
                            if attr.contains(.lstrip) {
                                while leftEnd > start && Self.isCSpace(text[leftEnd - 1]) { leftEnd -= 1 }
                            }
                            if leftEnd > start { next.append(.text(start ..< leftEnd)) }
                            next.append(.token(id))
                            start = match + token.count
                            if attr.contains(.rstrip) {
                                while start < range.upperBound && Self.isCSpace(text[start]) { start += 1 }
                            }
                        }
                        if start < range.upperBound { next.append(.text(start ..< range.upperBound)) }
                    }
                    if changed { fragments = next }
                }
            }
        }
        return fragments
    }

    /// C's isspace in the "C" locale, which llama.cpp uses for lstrip/rstrip.
    private static func isCSpace(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }

    private static func find(_ needle: UnsafeBufferPointer<UInt8>, in hay: UnsafeBufferPointer<UInt8>,
                             from: Int, to: Int) -> Int? {
        let m = needle.count
        guard m > 0, to - from >= m else { return nil }
        let first = needle[0]
        var i = from
        while i <= to - m {
            if hay[i] == first {
                var k = 1
                while k < m && hay[i + k] == needle[k] { k += 1 }
                if k == m { return i }
            }
            i += 1
        }
        return nil
    }
}
