import Foundation

/// Matches stop sequences on the decoded text, across token boundaries. Text that might still
/// turn out to be the start of a stop sequence is held back from the stream until it is decided.
struct StopMatcher {
    let stops: [String]
    /// All text decoded so far; `released` characters of it have been handed to the caller.
    private(set) var text = ""
    private var released: String.Index

    init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
        released = text.startIndex
    }

    /// Adds decoded text. Returns the text now safe to show, and whether a stop sequence matched
    /// (in which case `text` has been cut just before it).
    mutating func append(_ piece: String) -> (release: String, stopped: Bool) {
        let releasedCount = text.distance(from: text.startIndex, to: released)
        text += piece
        released = text.index(text.startIndex, offsetBy: releasedCount)
        // A match can only start in the unreleased tail (held text is never longer than a stop).
        for stop in stops {
            if let range = text.range(of: stop, range: released..<text.endIndex) {
                let out = String(text[released..<range.lowerBound])
                text = String(text[..<range.lowerBound])
                released = text.endIndex
                return (out, true)
            }
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        var hold = 0
        for stop in stops {
            for length in stride(from: min(stop.count - 1, text.count), to: hold, by: -1)
            where text.hasSuffix(String(stop.prefix(length))) {
                hold = length
                break
            }
        }
        let end = text.index(text.endIndex, offsetBy: -hold)
        guard end > released else { return ("", false) }
        let out = String(text[released..<end])
        released = end
        return (out, false)
    }

    /// Releases whatever is held (the run ended without a match).
    mutating func finish() -> String {
        let out = String(text[released...])
        released = text.endIndex
        return out
    }
}
