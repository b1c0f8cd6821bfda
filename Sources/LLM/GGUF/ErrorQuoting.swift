/// How error messages quote text that came from a file: a damaged or hostile file can hold
/// megabytes of binary where a name should be, and none of it may reach the terminal raw.
public enum ErrorQuoting {
    /// At most this many bytes of quoted text (after escaping) are shown.
    public static let limit = 80

    /// `text` in single quotes, with control bytes, quotes, backslashes and non-ASCII bytes
    /// escaped (`\n`, `\x1b`, …), and cut at `limit` escaped bytes with the full length named.
    public static func quote(_ text: String) -> String {
        let utf8 = text.utf8
        var out = "'"
        var shown = 0
        for byte in utf8 {
            let escaped = escape(byte)
            guard out.utf8.count + escaped.utf8.count <= limit + 1 else { break }
            out += escaped
            shown += 1
        }
        out += "'"
        if shown < utf8.count { out += "… (\(utf8.count) bytes)" }
        return out
    }

    private static func escape(_ byte: UInt8) -> String {
        switch byte {
        case UInt8(ascii: "\n"): return "\\n"
        case UInt8(ascii: "\t"): return "\\t"
        case UInt8(ascii: "\r"): return "\\r"
        case UInt8(ascii: "'"): return "\\'"
        case UInt8(ascii: "\\"): return "\\\\"
        case 0x20...0x7e: return String(UnicodeScalar(byte))
        default: return "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
}

extension String {
    /// This text quoted for an error message: see `ErrorQuoting.quote`.
    var quotedForError: String { ErrorQuoting.quote(self) }
}
