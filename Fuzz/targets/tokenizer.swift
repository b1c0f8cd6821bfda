import LLM

// The SentencePiece (tiny-llama: 512 pieces with <0xNN> byte fallback) and byte-level BPE
// (tiny-gpt2) tokenizers. The first byte picks the tokenizer and the flags, the rest is the text.
// Properties, where the tokenizer guarantees them (encode with addSpecial and parseSpecial off):
//   byte-level BPE: decode(encode(s)) == s for every string;
//   SentencePiece with byte fallback: the same for every s without U+2581 (which encodes as, and
//   decodes to, a space, as in llama.cpp).
// With parseSpecial on, control tokens written in the text are matched: only crash-freedom and
// in-range ids are checked. Decoding arbitrary in-range ids must not crash either.
let spm = try! Tokenizer(gguf: GGUFFile(path: fixture("Tests/Fixtures/tiny/tiny-llama-q4_0.gguf")))
let bpe = try! Tokenizer(gguf: GGUFFile(path: fixture("Tests/Fixtures/families/tiny-gpt2-q8_0.gguf")))

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTokenizer(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let mode = data[0]
    let tokenizer = mode & 1 == 0 ? spm : bpe
    let bytes = UnsafeBufferPointer(start: data + 1, count: size - 1)
    let text = String(decoding: bytes, as: UTF8.self)
    let parseSpecial = mode & 2 != 0, addSpecial = mode & 4 != 0
    let ids = tokenizer.encode(text, addSpecial: addSpecial, parseSpecial: parseSpecial)
    let count = Int32(tokenizer.vocabularyCount)
    if let bad = ids.first(where: { !(0..<count).contains($0) }) { violated("id \(bad) outside 0..<\(count)") }
    let decoded = tokenizer.decode(ids, special: mode & 8 != 0)
    if !parseSpecial, !addSpecial, tokenizer === bpe || !text.unicodeScalars.contains("\u{2581}"), decoded != text {
        violated("round trip: \(text.debugDescription) → \(ids) → \(decoded.debugDescription)")
    }
    // The raw bytes as token ids, folded into the vocabulary: decoding never fails.
    let raw = stride(from: 0, to: bytes.count - 1, by: 2).map { Int32(bytes[$0]) << 8 | Int32(bytes[$0 + 1]) }
    _ = tokenizer.decode(raw.map { $0 % count }, special: mode & 8 != 0)
    return 0
}
