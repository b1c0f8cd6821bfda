/// GPT-2's reversible map between the 256 byte values and 256 printable Unicode scalars.
/// Byte-level BPE vocabularies are written in these scalars so that every token is valid
/// text: printable Latin-1 bytes stand for themselves and the rest (controls, space, the
/// C1 range, soft hyphen) are moved to U+0100 and up, in byte order.
enum ByteUnicode {
    /// The scalar value that stands for each byte.
    static let scalarForByte: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            if isSelfMapped(b) {
                table[b] = UInt32(b)
            } else {
                table[b] = next
                next += 1
            }
        }
        return table
    }()

    /// Indexed by scalar value (all of them are below 0x144); -1 where no byte maps there.
    static let byteForScalar: [Int16] = {
        var table = [Int16](repeating: -1, count: 0x144)
        for (b, s) in scalarForByte.enumerated() { table[Int(s)] = Int16(b) }
        return table
    }()

    /// The UTF-8 encoding of each byte's stand-in scalar: what a byte becomes inside a token.
    static let utf8ForByte: [[UInt8]] = scalarForByte.map { Array(String(Unicode.Scalar($0)!).utf8) }

    private static func isSelfMapped(_ b: Int) -> Bool {
        (0x21...0x7E).contains(b) || (0xA1...0xAC).contains(b) || (0xAE...0xFF).contains(b)
    }

    /// Appends the byte-level encoding of `bytes` (each byte to its stand-in's UTF-8).
    static func encode<C: Collection>(_ bytes: C, into out: inout [UInt8]) where C.Element == UInt8 {
        for b in bytes { out.append(contentsOf: utf8ForByte[Int(b)]) }
    }

    /// Maps a token's text back to raw bytes, as llama.cpp's `llama_decode_text`: a scalar
    /// outside the table is kept visibly as `[UNK_BYTE_0x..<text>]` rather than dropped.
    static func decode(_ text: UnsafeBufferPointer<UInt8>, into out: inout [UInt8]) {
        var i = 0
        while i < text.count {
            let length = UTF8.sequenceLength(leading: text[i], available: text.count - i)
            let scalar = UTF8.decodeScalar(text, at: i, length: length)
            if let s = scalar, Int(s) < byteForScalar.count, byteForScalar[Int(s)] >= 0 {
                out.append(UInt8(byteForScalar[Int(s)]))
            } else {
                out.append(contentsOf: Array("[UNK_BYTE_0x".utf8))
                for k in i..<(i + length) { out.append(contentsOf: hex2(text[k]).utf8) }
                out.append(contentsOf: text)
                out.append(UInt8(ascii: "]"))
            }
            i += length
        }
    }

    static func hex2(_ b: UInt8) -> String {
        let digits = Array("0123456789abcdef".utf8)
        return String(decoding: [digits[Int(b >> 4)], digits[Int(b & 15)]], as: UTF8.self)
    }
}

extension UTF8 {
    /// Bytes in the sequence a lead byte starts, as llama.cpp's `unicode_len_utf8` reads the
    /// high nibble (a stray continuation byte counts as 1), clipped to what is available.
    static func sequenceLength(leading byte: UInt8, available: Int) -> Int {
        let n: Int
        switch byte >> 4 {
        case 0xC, 0xD: n = 2
        case 0xE: n = 3
        case 0xF: n = 4
        default: n = 1
        }
        return min(n, available)
    }

    static func decodeScalar(_ text: UnsafeBufferPointer<UInt8>, at i: Int, length: Int) -> UInt32? {
        let b0 = UInt32(text[i])
        switch length {
        case 1: return b0 < 0x80 ? b0 : nil
        case 2: return ((b0 & 0x1F) << 6) | (UInt32(text[i + 1]) & 0x3F)
        case 3: return ((b0 & 0x0F) << 12) | ((UInt32(text[i + 1]) & 0x3F) << 6) | (UInt32(text[i + 2]) & 0x3F)
        default:
            return ((b0 & 0x07) << 18) | ((UInt32(text[i + 1]) & 0x3F) << 12)
                | ((UInt32(text[i + 2]) & 0x3F) << 6) | (UInt32(text[i + 3]) & 0x3F)
        }
    }
}
