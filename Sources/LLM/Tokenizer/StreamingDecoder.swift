/// Turns generated token ids into text as it becomes printable. A token's piece may end in
/// the middle of a UTF-8 character (byte-fallback and byte-level BPE tokens often do), so
/// the trailing bytes that could still become a valid character are held back until the
/// next token completes them. Bytes that can no longer be valid are released at once, as
/// U+FFFD.
public struct StreamingDecoder: Sendable {
    public let tokenizer: Tokenizer
    /// Whether control tokens are rendered as their text (llama.cpp's `special`).
    public let special: Bool
    private var pending: [UInt8] = []

    public init(tokenizer: Tokenizer, special: Bool = false) {
        self.tokenizer = tokenizer
        self.special = special
    }

    /// Adds one token and returns the text it completes (possibly empty).
    public mutating func feed(_ token: Int32) -> String {
        pending.append(contentsOf: tokenizer.piece(token, special: special))
        let hold = Self.incompleteSuffixLength(pending)
        guard pending.count > hold else { return "" }
        let text = String(decoding: pending[..<(pending.count - hold)], as: UTF8.self)
        pending.removeFirst(pending.count - hold)
        return text
    }

    /// Returns whatever is still held back (an unfinished character becomes U+FFFD).
    public mutating func flush() -> String {
        defer { pending.removeAll() }
        return String(decoding: pending, as: UTF8.self)
    }

    /// The number of trailing bytes that form a proper prefix of some valid UTF-8 sequence.
    static func incompleteSuffixLength(_ bytes: [UInt8]) -> Int {
        var lead = bytes.count - 1
        while lead >= 0 && bytes.count - lead <= 3 && bytes[lead] & 0xC0 == 0x80 { lead -= 1 }
        guard lead >= 0 else { return 0 }
        let have = bytes.count - lead
        let need: Int
        // The second byte's range depends on the lead byte: this rules out overlong forms,
        // surrogates and scalars past U+10FFFF, exactly as a validating decoder does.
        var second: ClosedRange<UInt8> = 0x80...0xBF
        switch bytes[lead] {
        case 0xC2...0xDF: need = 2
        case 0xE0: need = 3; second = 0xA0...0xBF
        case 0xED: need = 3; second = 0x80...0x9F
        case 0xE1...0xEF: need = 3
        case 0xF0: need = 4; second = 0x90...0xBF
        case 0xF4: need = 4; second = 0x80...0x8F
        case 0xF1...0xF3: need = 4
        default: return 0
        }
        guard have < need else { return 0 }
        if have >= 2 && !second.contains(bytes[lead + 1]) { return 0 }
        return have
    }
}
