import Foundation

/// A fuzz target's input split at its first `separator` bytes into `count` fields (the last takes
/// the rest), each decoded as UTF-8 (invalid bytes become U+FFFD, as a `String` always is).
func fields(_ data: UnsafePointer<UInt8>, _ size: Int, count: Int, separator: UInt8 = 0) -> [String] {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    var parts = bytes.split(separator: separator, maxSplits: count - 1, omittingEmptySubsequences: false)
        .map { String(decoding: $0, as: UTF8.self) }
    while parts.count < count { parts.append("") }
    return parts
}

/// A property the target checks failed: print what and abort, so libFuzzer saves the input.
func violated(_ what: String) -> Never {
    FileHandle.standardError.write(Data("fuzz property violated: \(what)\n".utf8))
    abort()
}

/// A fixture the target needs, from the repository (scripts/fuzz runs from its root).
func fixture(_ path: String) -> String {
    guard FileManager.default.fileExists(atPath: path) else { violated("missing fixture \(path): run from the repository root") }
    return path
}
