/// Token ids back to bytes and text, as llama.cpp's `llama_token_to_piece` and
/// `llama_detokenize`.
extension Tokenizer {
    /// The bytes llama.cpp's `llama_token_to_piece` gives for one token (no leading-space
    /// strip). With `special` false, control and unknown tokens give nothing, which is
    /// what a user should see; user-defined tokens always give their text.
    public func piece(_ token: Int32, special: Bool = false) -> [UInt8] {
        guard token >= 0, Int(token) < vocabularyCount else { return [] }
        let attr = attributes[Int(token)]
        if !special && !attr.isDisjoint(with: [.control, .unknown]) { return [] }
        return texts.withBytes(of: token) { text -> [UInt8] in
            if !attr.isDisjoint(with: [.control, .unknown, .userDefined]) { return Array(text) }
            if attr.contains(.normal) {
                var out: [UInt8] = []
                out.reserveCapacity(text.count)
                switch kind {
                case .bytePair:
                    ByteUnicode.decode(text, into: &out)
                case .sentencePiece:
                    var i = 0
                    while i < text.count {
                        if i + 2 < text.count && text[i] == 0xE2 && text[i + 1] == 0x96 && text[i + 2] == 0x81 {
                            out.append(0x20)
                            i += 3
                        } else {
                            out.append(text[i])
                            i += 1
                        }
                    }
                }
                return out
            }
            if attr.contains(.byte) { return [Self.byteValue(text)] }
            return []
        }
    }

    /// A byte token's value: the hex digits after "<0x", read as strtol reads them.
    private static func byteValue(_ text: UnsafeBufferPointer<UInt8>) -> UInt8 {
        var value = 0
        var i = 3
        while i < min(5, text.count), let d = hexDigit(text[i]) {
            value = value * 16 + d
            i += 1
        }
        return UInt8(truncatingIfNeeded: value)
    }

    private static func hexDigit(_ c: UInt8) -> Int? {
        switch c {
        case 0x30...0x39: return Int(c - 0x30)
        case 0x41...0x46: return Int(c - 0x41 + 10)
        case 0x61...0x66: return Int(c - 0x61 + 10)
        default: return nil
        }
    }

    /// Text for `tokens`, as llama.cpp's `llama_detokenize(remove_special: false,
    /// unparse_special: special)`: pieces joined, the first token's leading space dropped
    /// when the vocabulary adds a space prefix, then llama.cpp's `clean_spaces` rules where
    /// the pre-tokenizer enables them. Bytes that are not valid UTF-8 become U+FFFD.
    public func decode(_ tokens: [Int32], special: Bool = false) -> String {
        String(decoding: decodeBytes(tokens, special: special), as: UTF8.self)
    }

    public func decodeBytes(_ tokens: [Int32], special: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var stripSpace = addSpacePrefix
        for token in tokens {
            let p = piece(token, special: special)
            if stripSpace && p.first == 0x20 { out.append(contentsOf: p.dropFirst()) } else { out.append(contentsOf: p) }
            stripSpace = false
        }
        if cleanSpaces { Self.cleanUpSpaces(&out) }
        return out
    }

    /// llama.cpp's three in-place passes over the detokenized bytes, kept in the same
    /// in-place form because later checks read bytes the earlier steps may have rewritten.
    static func cleanUpSpaces(_ text: inout [UInt8]) {
        let space = UInt8(ascii: " "), quote = UInt8(ascii: "'")
        func ascii(_ s: String) -> [UInt8] { Array(s.utf8) }
        var total = text.count
        // " ?", " !", " .", " ," lose the space.
        var n = total
        total = n > 0 ? 1 : 0
        var i = 1
        while i < n {
            let x = text[i]
            if text[i - 1] == space && ascii("?!.,").contains(x) { total -= 1 }
            text[total] = x; total += 1
            i += 1
        }
        // " ' " loses both spaces.
        n = total
        total = n > 0 ? 1 : 0
        i = 1
        while i < n {
            let x = text[i]
            if x == quote && i + 1 < n && text[i - 1] == space && text[i + 1] == space {
                total -= 1
                i += 1
                text[i] = 0
            }
            text[total] = x; total += 1
            i += 1
        }
        // " 's", " 'm", " 're", " 've" lose the space.
        n = total
        total = n > 0 ? 1 : 0
        i = 1
        while i < n {
            let x = text[i]
            if text[i - 1] == space && x == quote && i + 1 < n {
                let x1 = text[i + 1]
                if x1 == UInt8(ascii: "s") || x1 == UInt8(ascii: "m") {
                    total -= 1
                } else if i + 2 < n && x1 != UInt8(ascii: "t") && x1 != UInt8(ascii: "d") {
                    let x2 = text[i + 2]
                    if (x1 == UInt8(ascii: "r") || x1 == UInt8(ascii: "v")) && x2 == UInt8(ascii: "e") { total -= 1 }
                }
            }
            text[total] = x; total += 1
            i += 1
        }
        text.removeLast(text.count - total)
    }
}
