/// SentencePiece-style merging, as llama.cpp's `llm_tokenizer_spm_session`: start from one
/// symbol per UTF-8 character, repeatedly join the adjacent pair whose joined text is the
/// vocabulary token with the highest score (leftmost on ties), and write each final symbol
/// as its token, or as byte tokens when it is not one.
///
/// llama.cpp also keeps a map for re-splitting a symbol that is not a token, but every
/// joined symbol is a token by construction, so only single characters ever fall back,
/// and they fall back to bytes.
struct SentencePieceWorkspace {
    struct Symbol {
        var start: Int32
        var length: Int32  // 0 once merged into its left neighbour
        var prev: Int32
        var next: Int32
    }

    struct Candidate {
        var score: Float
        var left: Int32
        var right: Int32
        var length: Int32
    }

    var symbols: [Symbol] = []
    var queue = Heap<Candidate> { a, b in a.score > b.score || (a.score == b.score && a.left < b.left) }

    /// `text` is already escaped (spaces as U+2581). `byteTokens[b]` is the fallback for byte b.
    mutating func encode(_ text: UnsafeBufferPointer<UInt8>, texts: ByteStringTable, scores: [Float],
                         byteTokens: [Int32?], output: inout [Int32]) {
        symbols.removeAll(keepingCapacity: true)
        var offset = 0
        while offset < text.count {
            let n = UTF8.sequenceLength(leading: text[offset], available: text.count - offset)
            let index = Int32(symbols.count)
            symbols.append(Symbol(start: Int32(offset), length: Int32(n), prev: index - 1,
                                  next: offset + n == text.count ? -1 : index + 1))
            offset += n
        }
        queue.removeAll()
        if symbols.count > 1 {
            for i in 1..<symbols.count { consider(Int32(i - 1), Int32(i), text, texts, scores) }
        }

        while let c = queue.pop() {
            let l = Int(c.left), r = Int(c.right)
            guard symbols[l].length > 0, symbols[r].length > 0,
                  symbols[l].length + symbols[r].length == c.length else { continue }
            symbols[l].length += symbols[r].length
            symbols[r].length = 0
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[Int(symbols[r].next)].prev = c.left }
            consider(symbols[l].prev, c.left, text, texts, scores)
            consider(c.left, symbols[l].next, text, texts, scores)
        }

        var i: Int32 = symbols.isEmpty ? -1 : 0
        while i >= 0 {
            let s = symbols[Int(i)]
            let piece = UnsafeBufferPointer(rebasing: text[Int(s.start) ..< Int(s.start + s.length)])
            if let id = texts.find(piece) {
                output.append(id)
            } else {
                for b in piece { if let id = byteTokens[Int(b)] { output.append(id) } }
            }
            i = s.next
        }
    }

    private mutating func consider(_ left: Int32, _ right: Int32, _ text: UnsafeBufferPointer<UInt8>,
                                   _ texts: ByteStringTable, _ scores: [Float]) {
        guard left >= 0, right >= 0 else { return }
        let start = Int(symbols[Int(left)].start)
        let length = Int(symbols[Int(left)].length + symbols[Int(right)].length)
        guard let id = texts.find(UnsafeBufferPointer(rebasing: text[start ..< start + length])),
              Int(id) < scores.count else { return }
        queue.push(Candidate(score: scores[Int(id)], left: left, right: right, length: Int32(length)))
    }
}
