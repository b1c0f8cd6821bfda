/// Splits text into the words that byte-level BPE merges within, as llama.cpp's
/// `unicode_regex_split` does for each `tokenizer.ggml.pre` value. llama.cpp runs a list of
/// regexes one after the other, each splitting the pieces the previous one left. Some of
/// its regexes have hand-written matchers in unicode.cpp (gpt2, llama3); the rest go through
/// std::regex over text whose non-ASCII scalars are collapsed to one byte per category.
/// Each pass here reproduces what llama.cpp actually executes, including the hand-written
/// matchers' small departures from the regex they stand for.
struct PreTokenizer: Sendable {
    enum Pass: Sendable {
        /// unicode.cpp's custom matcher for
        /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`.
        case gpt2
        /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,n}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:
        /// llama.cpp's custom matcher for n = 3 (llama3); for n = 1 (qwen2) std::regex
        /// gives the same split, since every scalar is matched by some alternative.
        case llama3(maxDigits: Int)
        /// `\p{N}`: every number scalar alone.
        case eachNumber
        /// `\p{N}+`.
        case numberRuns
        /// `[\p{P}\$\+<=>\^~\|]+`.
        case punctuationRuns
        /// `[0-9][0-9][0-9]` (ASCII digits only).
        case asciiDigitTriples
        /// `\p{N}{1,3}`.
        case numberTriples
        /// `[一-龥぀-ゟ゠-ヿ]+` (U+4E00–U+9FA5, U+3040–U+30FF), through std::wregex on the scalars.
        case cjkRuns
        /// DeepSeek-V3's third regex, through std::regex over the collapsed text:
        /// `[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`.
        case deepseek3
    }

    let passes: [Pass]

    /// The split of `scalars` (with their `classes`) as lengths in scalars, in order.
    func split(_ scalars: [UInt32], _ classes: [UInt8]) -> [Int] {
        var pieces = scalars.isEmpty ? [] : [scalars.count]
        for pass in passes {
            var next: [Int] = []
            next.reserveCapacity(pieces.count * 2)
            var start = 0
            for length in pieces {
                let scanner = Scanner(scalars: scalars, classes: classes, start: start, end: start + length)
                scanner.run(pass, into: &next)
                start += length
            }
            pieces = next
        }
        return pieces
    }
}

/// Per-scalar class bits, the subset of llama.cpp's `unicode_cpt_flags` the passes read.
/// `valid` is set for every scalar: llama.cpp's matchers treat a position past the piece's
/// end as having no flags at all, which some of their tests rely on.
enum ScalarClass {
    static let letter: UInt8 = 1
    static let number: UInt8 = 2
    static let whitespace: UInt8 = 4
    static let punctuation: UInt8 = 8
    /// \p{S}. For ASCII, the scalars llama.cpp's regex class lists: `$+<=>^`|~`.
    static let symbol: UInt8 = 0x10
    /// \p{M}.
    static let mark: UInt8 = 0x20
    static let valid: UInt8 = 0x80

    /// \p{L}, \p{N}, \p{P}, \p{S} and \p{M} are the major general categories; \s is the White_Space
    /// property (which llama.cpp's table was generated from: it excludes U+001C...U+001F).
    static func of(_ s: Unicode.Scalar) -> UInt8 {
        if s.value < 0x80 { return ascii[Int(s.value)] }
        var c = valid
        switch s.properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            c |= letter
        case .decimalNumber, .letterNumber, .otherNumber:
            c |= number
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation:
            c |= punctuation
        case .mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol:
            c |= symbol
        case .nonspacingMark, .spacingMark, .enclosingMark:
            c |= mark
        default:
            break
        }
        if s.properties.isWhitespace { c |= whitespace }
        return c
    }

    private static let ascii: [UInt8] = (0..<128).map { v in
        var c = valid
        let ch = UInt8(v)
        if (0x41...0x5A).contains(ch) || (0x61...0x7A).contains(ch) { c |= letter }
        if (0x30...0x39).contains(ch) { c |= number }
        if (0x09...0x0D).contains(ch) || ch == 0x20 { c |= whitespace }
        if Array("!\"#%&'()*,-./:;?@[\\]_{}".utf8).contains(ch) { c |= punctuation }
        if Array("$+<=>^`|~".utf8).contains(ch) { c |= symbol }
        return c
    }
}

/// One piece of text being split by one pass. Positions are scalar indices into the whole text.
private struct Scanner {
    let scalars: [UInt32]
    let classes: [UInt8]
    let start: Int
    let end: Int

    func cls(_ p: Int) -> UInt8 { p < end ? classes[p] : 0 }
    func cpt(_ p: Int) -> UInt32 { p < end ? scalars[p] : UInt32.max }
    func has(_ p: Int, _ bits: UInt8) -> Bool { cls(p) & bits != 0 }

    func run(_ pass: PreTokenizer.Pass, into out: inout [Int]) {
        switch pass {
        case .gpt2: gpt2(into: &out)
        case .llama3(let maxDigits): llama3(maxDigits: maxDigits, into: &out)
        case .eachNumber: regexRuns(into: &out) { p in has(p, ScalarClass.number) ? 1 : 0 }
        case .numberRuns: regexRuns(into: &out) { p in run(from: p) { has($0, ScalarClass.number) } }
        case .punctuationRuns:
            regexRuns(into: &out) { p in run(from: p) { has($0, ScalarClass.punctuation) || Scanner.extraPunct.contains(cpt($0)) } }
        case .asciiDigitTriples:
            regexRuns(into: &out) { p in (0..<3).allSatisfy { (0x30...0x39).contains(cpt(p + $0)) } ? 3 : 0 }
        case .numberTriples: regexRuns(into: &out) { p in min(3, run(from: p) { has($0, ScalarClass.number) }) }
        case .cjkRuns:
            regexRuns(into: &out) { p in
                run(from: p) { (0x4E00...0x9FA5).contains(cpt($0)) || (0x3040...0x30FF).contains(cpt($0)) }
            }
        case .deepseek3: regexRuns(into: &out, deepseek3)
        }
    }

    /// The length of the leftmost alternative of `.deepseek3` matching at p (ECMAScript order, with
    /// backtracking worked out per alternative), 0 for none.
    private func deepseek3(_ p: Int) -> Int {
        let L = ScalarClass.letter, P = ScalarClass.punctuation, S = ScalarClass.symbol, M = ScalarClass.mark
        let W = ScalarClass.whitespace
        func asciiLetter(_ q: Int) -> Bool { q < end && ((0x41...0x5A).contains(cpt(q)) || (0x61...0x7A).contains(cpt(q))) }
        func newline(_ q: Int) -> Bool { q < end && (cpt(q) == 0x0A || cpt(q) == 0x0D) }
        let c = cpt(p)
        // [ASCII punctuation and symbols][A-Za-z]+
        if ((0x21...0x2F).contains(c) || (0x3A...0x40).contains(c) || (0x5B...0x60).contains(c) || (0x7B...0x7E).contains(c)),
           asciiLetter(p + 1) {
            return 1 + run(from: p + 1, asciiLetter)
        }
        // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
        let letterOrMark = { (q: Int) in self.has(q, L | M) }
        if !newline(p) && !has(p, L | P | S) && letterOrMark(p + 1) { return 1 + run(from: p + 1, letterOrMark) }
        if letterOrMark(p) { return run(from: p, letterOrMark) }
        // ' ?[\p{P}\p{S}]+[\r\n]*'
        let symbolic = { (q: Int) in self.has(q, P | S) }
        let afterSpace = c == 0x20 && symbolic(p + 1) ? p + 1 : p
        if symbolic(afterSpace) {
            let q = afterSpace + run(from: afterSpace, symbolic)
            return q + run(from: q, newline) - p
        }
        let spaces = run(from: p) { has($0, W) }
        guard spaces > 0 else { return 0 }
        // \s*[\r\n]+: up to the last newline of the whitespace run.
        if let last = (p..<(p + spaces)).last(where: newline) { return last + 1 - p }
        // \s+(?!\S), then \s+
        if p + spaces == end { return spaces }
        return spaces > 1 ? spaces - 1 : 1
    }

    private static let extraPunct: Set<UInt32> = Set("$+<=>^~|".unicodeScalars.map(\.value))

    private func run(from p: Int, _ test: (Int) -> Bool) -> Int {
        var q = p
        while q < end && test(q) { q += 1 }
        return q - p
    }

    /// std::regex_iterator over the piece: every match is a word, and so is every gap
    /// between matches. `match(p)` is the length of the match starting at p, 0 for none.
    private func regexRuns(into out: inout [Int], _ match: (Int) -> Int) {
        var gapStart = start
        var p = start
        while p < end {
            let n = match(p)
            if n > 0 {
                if p > gapStart { out.append(p - gapStart) }
                out.append(n)
                p += n
                gapStart = p
            } else {
                p += 1
            }
        }
        if end > gapStart { out.append(end - gapStart) }
    }

    private func isContraction(at p: Int, caseInsensitive: Bool) -> Int {
        guard cpt(p) == 0x27, p + 1 < end else { return 0 }
        func lower(_ c: UInt32) -> UInt32 { caseInsensitive && (0x41...0x5A).contains(c) ? c + 0x20 : c }
        let c1 = lower(cpt(p + 1))
        if c1 == 0x73 || c1 == 0x74 || c1 == 0x6D || c1 == 0x64 { return 2 } // s t m d
        guard p + 2 < end else { return 0 }
        let c2 = lower(cpt(p + 2))
        if (c1 == 0x72 && c2 == 0x65) || (c1 == 0x76 && c2 == 0x65) || (c1 == 0x6C && c2 == 0x6C) { return 3 } // re ve ll
        return 0
    }

    private func gpt2(into out: inout [Int]) {
        let L = ScalarClass.letter, N = ScalarClass.number, W = ScalarClass.whitespace
        var pos = start
        var last = start
        func emit(_ to: Int) { if to > last { out.append(to - last) }; last = to; pos = to }
        while pos < end {
            let c = cpt(pos)
            let contraction = isContraction(at: pos, caseInsensitive: false)
            if contraction > 0 { emit(pos + contraction); continue }
            let c2 = c == 0x20 ? cls(pos + 1) : cls(pos)
            if c2 & L != 0 || c2 & N != 0 {
                let kind = c2 & L != 0 ? L : N
                var p = pos + (c == 0x20 ? 1 : 0)
                while has(p, kind) { p += 1 }
                emit(p); continue
            }
            if c2 & (W | L | N) == 0 && c2 != 0 {
                var p = pos + (c == 0x20 ? 1 : 0)
                while cls(p) != 0 && cls(p) & (W | L | N) == 0 { p += 1 }
                emit(p); continue
            }
            var spaces = 0
            while has(pos + spaces, W) { spaces += 1 }
            if spaces > 1 && pos + spaces < end { emit(pos + spaces - 1); continue }
            if spaces > 0 { emit(pos + spaces); continue }
            emit(pos + 1)
        }
    }

    private func llama3(maxDigits: Int, into out: inout [Int]) {
        let L = ScalarClass.letter, N = ScalarClass.number, W = ScalarClass.whitespace
        var pos = start
        var last = start
        func emit(_ to: Int) { if to > last { out.append(to - last) }; last = to; pos = to }
        func isCRLF(_ c: UInt32) -> Bool { c == 0x0D || c == 0x0A }
        while pos < end {
            let c = cpt(pos)
            let f = cls(pos)
            let contraction = isContraction(at: pos, caseInsensitive: true)
            if contraction > 0 { emit(pos + contraction); continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if !isCRLF(c) && f & N == 0 && (f & L != 0 || has(pos + 1, L)) {
                var p = pos + 1
                while has(p, L) { p += 1 }
                emit(p); continue
            }
            // \p{N}{1,maxDigits}
            if f & N != 0 {
                var groupStart = pos
                var p = pos
                while has(p, N) {
                    p += 1
                    if p - groupStart >= maxDigits { emit(p); groupStart = p }
                }
                emit(p); continue
            }
            // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
            let f2 = c == 0x20 ? cls(pos + 1) : f
            if f2 & (W | L | N) == 0 {
                var p = pos + (c == 0x20 ? 1 : 0)
                while cls(p) != 0 && cls(p) & (W | L | N) == 0 { p += 1 }
                while p < end && isCRLF(cpt(p)) { p += 1 }
                emit(p); continue
            }
            var spaces = 0
            var afterLastNewline = 0
            while has(pos + spaces, W) {
                if isCRLF(cpt(pos + spaces)) { afterLastNewline = pos + spaces + 1 }
                spaces += 1
            }
            if afterLastNewline > 0 { emit(afterLastNewline); continue }     // \s*[\r\n]+
            if spaces > 1 && pos + spaces < end { emit(pos + spaces - 1); continue } // \s+(?!\S)
            if spaces > 0 { emit(pos + spaces); continue }                    // \s+
            emit(pos + 1)
        }
    }
}
