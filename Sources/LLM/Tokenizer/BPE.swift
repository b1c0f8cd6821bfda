/// Byte-level BPE merging, as llama.cpp's `llm_tokenizer_bpe_session`.
///
/// llama.cpp ranks merges by the pair of texts. Here every text that takes part in a merge
/// (vocabulary or not) is interned once in a `ByteStringTable`, and each merge is stored as
/// (left id, right id) -> (rank, id of the joined text), so merging a word never builds or
/// hashes a string. Ids below the vocabulary size are token ids.
struct BPEMerges: Sendable {
    struct Merge: Sendable {
        var rank: Int32
        var result: Int32
    }

    let table: Merges
    /// Interned id of each byte's one-scalar stand-in: a word's starting symbols.
    let byteSymbol: [Int32]

    typealias Merges = [UInt64: Merge]

    /// `texts` holds the vocabulary (ids 0..<vocabularySize) and gains every other text a
    /// merge mentions. Each merge is "left right", split at the first space after byte 0;
    /// the first occurrence of a pair keeps its rank, as with std::unordered_map::emplace.
    init(merges: [String], texts: inout ByteStringTable) {
        byteSymbol = ByteUnicode.utf8ForByte.map { texts.insert($0).id }
        var table = Merges(minimumCapacity: merges.count)
        var joined: [UInt8] = []
        for (rank, merge) in merges.enumerated() {
            let bytes = Array(merge.utf8)
            guard bytes.count > 1, let space = bytes[1...].firstIndex(of: 0x20) else { continue }
            let left = texts.insert(bytes[..<space]).id
            let right = texts.insert(bytes[(space + 1)...]).id
            joined.removeAll(keepingCapacity: true)
            joined.append(contentsOf: bytes[..<space])
            joined.append(contentsOf: bytes[(space + 1)...])
            let key = Self.key(left, right)
            if table[key] == nil {
                table[key] = Merge(rank: Int32(rank), result: texts.insert(joined).id)
            }
        }
        self.table = table
    }

    static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }
}

/// Working storage for merging one word at a time; one per `encode` call, so nothing is shared.
struct BPEWorkspace {
    struct Symbol {
        var id: Int32
        var start: Int32   // byte offset in the word
        var length: Int32  // bytes of the word covered; 0 once merged into its left neighbour
        var prev: Int32
        var next: Int32
    }

    struct Candidate {
        var rank: Int32
        var left: Int32
        var right: Int32
        var leftID: Int32
        var rightID: Int32
        var result: Int32
    }

    var symbols: [Symbol] = []
    var queue = Heap<Candidate> { a, b in a.rank < b.rank || (a.rank == b.rank && a.left < b.left) }
    var encoded: [UInt8] = []

    /// Merges one pre-tokenized word (raw UTF-8 bytes) and appends its tokens.
    mutating func encode(word: UnsafeBufferPointer<UInt8>, merges: BPEMerges, texts: ByteStringTable,
                         vocabularySize: Int, ignoreMerges: Bool, output: inout [Int32]) {
        guard !word.isEmpty else { return }
        if ignoreMerges {
            // A word that is itself a token is taken whole, merges or not (llama3's rule).
            encoded.removeAll(keepingCapacity: true)
            ByteUnicode.encode(word, into: &encoded)
            if let id = encoded.withUnsafeBufferPointer({ texts.find($0) }), Int(id) < vocabularySize {
                output.append(id)
                return
            }
        }
        symbols.removeAll(keepingCapacity: true)
        for (i, b) in word.enumerated() {
            symbols.append(Symbol(id: merges.byteSymbol[Int(b)], start: Int32(i), length: 1,
                                  prev: Int32(i - 1), next: i + 1 == word.count ? -1 : Int32(i + 1)))
        }
        queue.removeAll()
        for i in 1..<symbols.count { consider(Int32(i - 1), Int32(i), merges) }

        while let c = queue.pop() {
            let l = Int(c.left), r = Int(c.right)
            // Stale if either side has changed since the pair was queued.
            guard symbols[l].length > 0, symbols[r].length > 0,
                  symbols[l].id == c.leftID, symbols[r].id == c.rightID else { continue }
            symbols[l].id = c.result
            symbols[l].length += symbols[r].length
            symbols[r].length = 0
            symbols[l].next = symbols[r].next
            if symbols[r].next >= 0 { symbols[Int(symbols[r].next)].prev = c.left }
            consider(symbols[l].prev, c.left, merges)
            consider(c.left, symbols[l].next, merges)
        }

        for s in symbols where s.length > 0 {
            if Int(s.id) < vocabularySize {
                output.append(s.id)
                continue
            }
            // Not a token (only possible with an incomplete vocabulary): llama.cpp emits
            // whichever single bytes of the encoded text are tokens, and drops the rest.
            encoded.removeAll(keepingCapacity: true)
            ByteUnicode.encode(word[Int(s.start) ..< Int(s.start + s.length)], into: &encoded)
            for b in encoded {
                if let id = texts.find(CollectionOfOne(b)), Int(id) < vocabularySize { output.append(id) }
            }
        }
    }

    private mutating func consider(_ left: Int32, _ right: Int32, _ merges: BPEMerges) {
        guard left >= 0, right >= 0 else { return }
        let a = symbols[Int(left)].id, b = symbols[Int(right)].id
        guard let m = merges.table[BPEMerges.key(a, b)] else { return }
        queue.push(Candidate(rank: m.rank, left: left, right: right, leftID: a, rightID: b, result: m.result))
    }
}

/// A binary min-heap under `less`.
struct Heap<Element> {
    private var items: [Element] = []
    private let less: (Element, Element) -> Bool

    init(less: @escaping (Element, Element) -> Bool) { self.less = less }

    var isEmpty: Bool { items.isEmpty }

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ e: Element) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && less(items[l], items[m]) { m = l }
                if r < items.count && less(items[r], items[m]) { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
