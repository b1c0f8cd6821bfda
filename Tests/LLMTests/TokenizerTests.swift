import Foundation
import XCTest
@testable import LLM

/// Tokenizer tests against independent references: llama.cpp's own output for SmolLM2
/// (byte-level BPE, `smollm` pre-tokenizer) and for the tiny SentencePiece model, plus
/// small synthetic vocabularies for behaviour those two do not reach.
final class TokenizerTests: XCTestCase {
    func smolLM() throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: Fixtures.smolLM2()))
    }

    func tinyLlama() throws -> Tokenizer {
        try Tokenizer(gguf: GGUFFile(path: Fixtures.tiny("tiny-llama-f32.gguf")))
    }

    /// Lines of `text<TAB>[ids]`, split at the last tab (one text contains a tab itself).
    func tokenizeFixture(_ name: String) throws -> [(text: String, ids: [Int32])] {
        let content = try String(contentsOfFile: Fixtures.real(name), encoding: .utf8)
        return try content.split(separator: "\n", omittingEmptySubsequences: true).map { line in
            let tab = try XCTUnwrap(line.lastIndex(of: "\t"))
            let list = line[line.index(after: tab)...].trimmingCharacters(in: CharacterSet(charactersIn: "[] "))
            let ids = try list.split(separator: ",").map { try XCTUnwrap(Int32($0.trimmingCharacters(in: .whitespaces))) }
            return (String(line[..<tab]), ids)
        }
    }

    // MARK: Byte-level BPE (SmolLM2)

    func testSmolLMMatchesLlamaCpp() throws {
        let tokenizer = try smolLM()
        XCTAssertEqual(tokenizer.kind, .bytePair)
        XCTAssertEqual(tokenizer.preTokenizerName, "smollm")
        XCTAssertEqual(tokenizer.vocabularySize, 49152)
        XCTAssertFalse(tokenizer.addsBOS)
        let cases = try tokenizeFixture("smollm2.tokenize.tsv")
        XCTAssertEqual(cases.count, 10)
        for (text, ids) in cases {
            XCTAssertEqual(tokenizer.encode(text), ids, "text: \(text.debugDescription)")
        }
    }

    func testSmolLMPromptTokensMatchLlamaCpp() throws {
        let tokenizer = try smolLM()
        let prompts = ["The capital of France is", "My favourite food is", "import numpy as np"]
        for (k, prompt) in prompts.enumerated() {
            let file = try String(contentsOfFile: Fixtures.real("smollm2.prompt\(k + 1).tokens.txt"), encoding: .utf8)
            let line = try XCTUnwrap(file.split(separator: "\n").first { $0.hasPrefix("prompt_ids:") })
            let ids = line.dropFirst("prompt_ids:".count).split(separator: " ").compactMap { Int32($0) }
            XCTAssertEqual(tokenizer.encode(prompt), ids, prompt)
        }
    }

    func testSmolLMRoundTrip() throws {
        let tokenizer = try smolLM()
        for (text, ids) in try tokenizeFixture("smollm2.tokenize.tsv") {
            // Control tokens render as nothing; with special on they come back as text.
            let plain = text.replacingOccurrences(of: "<|im_start|>", with: "")
            XCTAssertEqual(tokenizer.decode(ids), plain)
            XCTAssertEqual(tokenizer.decode(ids, special: true), text)
            var stream = StreamingDecoder(tokenizer: tokenizer)
            let streamed = ids.map { stream.feed($0) }.joined() + stream.flush()
            XCTAssertEqual(streamed, plain)
        }
    }

    func testSmolLMSpecialTokens() throws {
        let tokenizer = try smolLM()
        XCTAssertEqual(tokenizer.bos, 1)
        XCTAssertEqual(tokenizer.eos, 2)
        XCTAssertEqual(tokenizer.eot, 2, "<|im_end|> is found by text, as llama.cpp does")
        // llama.cpp's EOG set for this vocabulary: <|endoftext|>, <|im_end|>, and <reponame> (a FIM repo token).
        XCTAssertEqual(tokenizer.endOfGenerationTokens, [0, 2, 4])
        XCTAssertTrue(tokenizer.isEndOfGeneration(2))
        XCTAssertFalse(tokenizer.isEndOfGeneration(1))
        // Without special parsing the marker is ordinary text.
        let literal = tokenizer.encode("<|im_start|>assistant", parseSpecial: false)
        XCTAssertFalse(literal.contains(1))
        XCTAssertEqual(tokenizer.decode(literal), "<|im_start|>assistant")
        XCTAssertEqual(tokenizer.piece(1), [])
        XCTAssertEqual(tokenizer.piece(1, special: true), Array("<|im_start|>".utf8))
    }

    func testSmolLMSpeed() throws {
        let clock = ContinuousClock()
        let gguf = try GGUFFile(path: Fixtures.smolLM2())
        var tokenizer: Tokenizer?
        let load = try clock.measure { tokenizer = try Tokenizer(gguf: gguf) }
        XCTAssertLessThan(load, .milliseconds(500), "building the 49152-token vocabulary")
        let text = try String(contentsOfFile: Fixtures.real("perplexity-text.txt"), encoding: .utf8)
        var ids: [Int32] = []
        let encode = clock.measure { ids = tokenizer!.encode(text) }
        XCTAssertLessThan(encode, .seconds(1), "encoding \(text.utf8.count) bytes")
        XCTAssertEqual(tokenizer!.decode(ids), text)
        print("SmolLM2 vocabulary built in \(load), \(text.utf8.count) bytes encoded to \(ids.count) tokens in \(encode)")
    }

    // MARK: SentencePiece (tiny llama)

    func testTinyLlamaMatchesLlamaCpp() throws {
        let tokenizer = try tinyLlama()
        XCTAssertEqual(tokenizer.kind, .sentencePiece)
        XCTAssertEqual(tokenizer.vocabularySize, 512)
        XCTAssertEqual(tokenizer.bos, 1)
        XCTAssertEqual(tokenizer.eos, 2)
        XCTAssertTrue(tokenizer.addsBOS)
        let text = "Once upon a time there was a little girl named Lily. She saw a big dog in the park."
        let expected: [Int32] = [1, 336, 340, 341, 345, 349, 352, 341, 358, 362, 380, 384, 322, 259, 304, 459, 401,
                                 341, 394, 396, 375, 347, 420, 322]
        let ids = tokenizer.encode(text)
        XCTAssertEqual(ids, expected)
        XCTAssertEqual(tokenizer.decode(Array(ids.dropFirst())), text)
        // With BOS first, llama.cpp's detokenizer keeps the prefix space (BOS takes the strip).
        XCTAssertEqual(tokenizer.decode(ids), " " + text)
        XCTAssertEqual(tokenizer.encode(text, addSpecial: false), Array(expected.dropFirst()))
        XCTAssertEqual(tokenizer.tokenText(336), "▁Once")
        XCTAssertEqual(tokenizer.piece(336), Array(" Once".utf8))
    }

    func testTinyLlamaByteFallback() throws {
        let tokenizer = try tinyLlama()
        // No piece covers "é", so its UTF-8 bytes C3 A9 become <0xC3> <0xA9>, ids 3 + byte.
        let ids = tokenizer.encode("é", addSpecial: false)
        let space = try XCTUnwrap(tokenizer.tokenID("▁"))
        XCTAssertEqual(ids, [space, 3 + 0xC3, 3 + 0xA9])
        XCTAssertEqual(tokenizer.tokenText(3 + 0xC3), "<0xC3>")
        XCTAssertEqual(tokenizer.piece(3 + 0xC3), [0xC3])
        XCTAssertEqual(tokenizer.decode(ids), "é")
        let mixed = "Lily saw café 🙂 and naïve ü."
        XCTAssertEqual(tokenizer.decode(tokenizer.encode(mixed, addSpecial: false)), mixed)
    }

    func testTinyLlamaSpecialTokensAndSpacePrefix() throws {
        let tokenizer = try tinyLlama()
        // A special token in the text is one id, and the text after it gets the space prefix again.
        let ids = tokenizer.encode("Lily</s>Lily", addSpecial: false)
        let lily = tokenizer.encode("Lily", addSpecial: false)
        XCTAssertEqual(ids, lily + [2] + lily)
        XCTAssertTrue(tokenizer.isEndOfGeneration(2))
        XCTAssertEqual(tokenizer.encode("", addSpecial: true), [1])
        XCTAssertEqual(tokenizer.encode("", addSpecial: false), [])
    }

    // MARK: Streaming

    func testStreamingDecoderHoldsSplitCharacters() throws {
        let tokenizer = try tinyLlama()
        // 🙂 is F0 9F 99 82: four byte tokens; nothing may print until the last one.
        let emoji: [Int32] = [0xF0, 0x9F, 0x99, 0x82].map { 3 + $0 }
        var stream = StreamingDecoder(tokenizer: tokenizer)
        XCTAssertEqual(stream.feed(3 + 0x41), "A")
        XCTAssertEqual(stream.feed(emoji[0]), "")
        XCTAssertEqual(stream.feed(emoji[1]), "")
        XCTAssertEqual(stream.feed(emoji[2]), "")
        XCTAssertEqual(stream.feed(emoji[3]), "🙂")
        XCTAssertEqual(stream.flush(), "")
        // A lead byte followed by a non-continuation is invalid at once; a dangling lead at the end flushes as U+FFFD.
        XCTAssertEqual(stream.feed(3 + 0xE2), "")
        XCTAssertEqual(stream.feed(3 + 0x41), "\u{FFFD}A")
        XCTAssertEqual(stream.feed(3 + 0xC3), "")
        XCTAssertEqual(stream.flush(), "\u{FFFD}")
        // A stray continuation byte cannot start anything.
        XCTAssertEqual(stream.feed(3 + 0x80), "\u{FFFD}")
        // E0 80 is an overlong start: invalid as soon as the second byte arrives.
        XCTAssertEqual(stream.feed(3 + 0xE0), "")
        XCTAssertEqual(stream.feed(3 + 0x80), "\u{FFFD}\u{FFFD}")
        // Control tokens print nothing.
        XCTAssertEqual(stream.feed(1), "")
    }

    func testIncompleteSuffixLength() {
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([]), 0)
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0x41, 0xF0, 0x9F]), 2)
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0xF0, 0x9F, 0x99]), 3)
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0xF0, 0x9F, 0x99, 0x82]), 0)
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0xED, 0xA0]), 0, "surrogate")
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0xF4, 0x90]), 0, "past U+10FFFF")
        XCTAssertEqual(StreamingDecoder.incompleteSuffixLength([0xC0]), 0, "never valid")
    }

    // MARK: Pre-tokenizers

    /// Splits `text` with a pre-tokenizer and returns the words.
    func words(_ passes: [PreTokenizer.Pass], _ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        let lengths = PreTokenizer(passes: passes).split(scalars.map(\.value), scalars.map(ScalarClass.of))
        var out: [String] = []
        var start = 0
        for n in lengths {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[start ..< start + n])
            out.append(String(s))
            start += n
        }
        return out
    }

    func testGPT2Split() {
        XCTAssertEqual(words([.gpt2], "I'll we've  two\tx 12ab!! ?"),
                       ["I", "'ll", " we", "'ve", " ", " two", "\t", "x", " 12", "ab", "!!", " ?"])
        XCTAssertEqual(words([.gpt2], "end   "), ["end", "   "])
        XCTAssertEqual(words([.eachNumber, .gpt2], "a 2024x"), ["a", " ", "2", "0", "2", "4", "x"])
    }

    func testLlama3AndQwen2Split() {
        let text = "Hello world's 12345 DON'T\n\n  x!?\n"
        XCTAssertEqual(words([.llama3(maxDigits: 3)], text),
                       ["Hello", " world", "'s", " ", "123", "45", " DON", "'T", "\n\n", " ", " x", "!?\n"])
        XCTAssertEqual(words([.llama3(maxDigits: 1)], "x 123"), ["x", " ", "1", "2", "3"])
        XCTAssertEqual(words([.llama3(maxDigits: 3)], "a  \n b"), ["a", "  \n", " b"])
    }

    /// DeepSeek-V3's three regexes (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM); the expected
    /// words are what Python's `regex` module gives for the same expressions, piece by piece.
    func testDeepSeekV3Split() {
        let passes = PreTokenizerConfig.named("deepseek-v3")!.passes
        XCTAssertEqual(words(passes, ".Hello world, 12345 cats!!\n\nok"),
                       [".Hello", " world", ",", " ", "123", "45", " cats", "!!\n\n", "ok"])
        XCTAssertEqual(words(passes, "3cats ~abc $5 +x a^b"), ["3", "cats", " ~", "abc", " $", "5", " +", "x", " a", "^b"])
        XCTAssertEqual(words(passes, "a数字カタb  x \n y"), ["a", "数字カタ", "b", " ", " x", " \n", " y"])
        XCTAssertEqual(words(passes, "It's  done.\n"), ["It", "'s", " ", " done", ".\n"])
        XCTAssertEqual(words(passes, "e\u{301}t\u{e9} Ωmega"), ["e\u{301}t\u{e9}", " Ωmega"])
    }

    func testDefaultSplit() {
        // llama.cpp's fallback list: punctuation runs, the gpt2 regex, number runs, ASCII digit triples.
        XCTAssertEqual(words(PreTokenizerConfig.named("default")!.passes, "a+=b 12345"),
                       ["a", "+=", "b", " ", "123", "45"])
    }

    // MARK: Synthetic vocabularies

    /// A byte-level BPE vocabulary: the 256 byte stand-ins, then `extra` tokens, with `merges`.
    func bytePairGGUF(pre: String?, extra: [String], merges: [String],
                      more: [(String, GGUFValue)] = []) -> GGUFBuilder {
        let bytes = (0..<256).map { String(Unicode.Scalar(ByteUnicode.scalarForByte[$0])!) }
        var builder = GGUFBuilder()
        builder.metadata = [("tokenizer.ggml.model", .string("gpt2"))]
        if let pre { builder.metadata.append(("tokenizer.ggml.pre", .string(pre))) }
        builder.metadata += [
            ("tokenizer.ggml.tokens", .array((bytes + extra).map { .string($0) })),
            ("tokenizer.ggml.merges", .array(merges.map { .string($0) })),
        ] + more
        return builder
    }

    func tokenizer(_ builder: GGUFBuilder) throws -> Tokenizer {
        try Tokenizer(gguf: builder.bytes().parseGGUF())
    }

    func expectError(_ builder: GGUFBuilder, _ expected: TokenizerError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try tokenizer(builder), file: file, line: line) { error in
            XCTAssertEqual(error as? TokenizerError, expected, file: file, line: line)
            XCTAssertFalse("\(error)".isEmpty)
        }
    }

    func testPreTokenizerFlagsFollowLlamaCpp() throws {
        let merges = ["a b", "1 2", "12 3", "4 5"]
        let extra = ["ab", "abc", "12", "123", "45"]
        func id(_ t: Tokenizer, _ s: String) throws -> Int32 { try XCTUnwrap(t.tokenID(s)) }
        let gpt2 = try tokenizer(bytePairGGUF(pre: "gpt-2", extra: extra, merges: merges))
        let llama3 = try tokenizer(bytePairGGUF(pre: "llama-bpe", extra: extra, merges: merges))
        let qwen2 = try tokenizer(bytePairGGUF(pre: "qwen2", extra: extra, merges: merges))
        // gpt2 merges "abc" to ab + c; llama3 takes a word that is a token whole (ignore_merges).
        XCTAssertEqual(gpt2.encode("abc"), [try id(gpt2, "ab"), try id(gpt2, "c")])
        XCTAssertEqual(llama3.encode("abc", addSpecial: false), [try id(llama3, "abc")])
        // Digits: gpt2 keeps the run, llama3 groups by three, qwen2 splits each.
        XCTAssertEqual(gpt2.encode("12345"), [try id(gpt2, "123"), try id(gpt2, "45")])
        XCTAssertEqual(llama3.encode("12345", addSpecial: false), [try id(llama3, "123"), try id(llama3, "45")])
        XCTAssertEqual(qwen2.encode("12345"), ["1", "2", "3", "4", "5"].map { qwen2.tokenID($0)! })
        // BOS: llama3 adds it by default (id 11 when no bos_token_id is stored); the others do not.
        XCTAssertTrue(llama3.addsBOS)
        XCTAssertEqual(llama3.encode("a").first, 11)
        XCTAssertFalse(gpt2.addsBOS)
        XCTAssertFalse(qwen2.addsBOS)
        // clean_spaces: on for gpt-2 and llama3, off for qwen2 and smollm.
        let spaced = gpt2.encode("a , b 's")
        XCTAssertEqual(gpt2.decode(spaced), "a, b's")
        XCTAssertEqual(qwen2.decode(qwen2.encode("a , b 's")), "a , b 's")
        // A merge result that is not a token falls back to the single-byte tokens.
        let partial = try tokenizer(bytePairGGUF(pre: "gpt-2", extra: [], merges: ["a b"]))
        XCTAssertEqual(partial.encode("ab"), [partial.tokenID("a")!, partial.tokenID("b")!])
    }

    func testSpecialTokenPartition() throws {
        // Longest first: "<ab>" wins over "<a" where both could match; user-defined tokens
        // are matched even without parseSpecial, control ones only with it.
        let builder = bytePairGGUF(pre: "gpt-2", extra: ["<a", "<ab>", "[u]"], merges: [], more: [
            ("tokenizer.ggml.token_type", .array(Array(repeating: GGUFValue.int32(1), count: 256)
                + [.int32(3), .int32(3), .int32(4)])),
        ])
        let t = try tokenizer(builder)
        let a = t.tokenID("<a")!, ab = t.tokenID("<ab>")!, u = t.tokenID("[u]")!
        XCTAssertEqual(t.encode("x<ab>y<az"), [t.tokenID("x")!, ab, t.tokenID("y")!, a, t.tokenID("z")!])
        XCTAssertFalse(t.encode("<ab>", parseSpecial: false).contains(ab))
        XCTAssertEqual(t.encode("[u][u]", parseSpecial: false), [u, u])
        XCTAssertEqual(t.piece(u), Array("[u]".utf8), "user-defined tokens always render")
        XCTAssertEqual(t.piece(ab), [], "control tokens render only with special")
    }

    func testBadVocabulariesThrowTypedErrors() {
        var noModel = bytePairGGUF(pre: "gpt-2", extra: [], merges: [])
        noModel.metadata.removeFirst()
        expectError(noModel, .missingKey("tokenizer.ggml.model"))

        var bert = bytePairGGUF(pre: nil, extra: [], merges: [])
        bert.metadata[0].1 = .string("bert")
        expectError(bert, .unsupportedModel(key: "tokenizer.ggml.model", value: "bert"))

        expectError(bytePairGGUF(pre: "tekken", extra: [], merges: []),
                    .unsupportedPreTokenizer(key: "tokenizer.ggml.pre", value: "tekken"))

        var noMerges = bytePairGGUF(pre: "gpt-2", extra: [], merges: [])
        noMerges.metadata.removeAll { $0.0 == "tokenizer.ggml.merges" }
        expectError(noMerges, .missingKey("tokenizer.ggml.merges"))

        expectError(bytePairGGUF(pre: "gpt-2", extra: ["a"], merges: []),
                    .duplicateToken(text: "a", firstID: 0x61, secondID: 256))

        // SentencePiece defaults EOS to id 2, which a two-token vocabulary lacks.
        var spm = GGUFBuilder()
        spm.metadata = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .array([.string("<unk>"), .string("<s>")])),
            ("tokenizer.ggml.add_eos_token", .bool(true)),
        ]
        expectError(spm, .missingSpecialToken(flagKey: "tokenizer.ggml.add_eos_token", idKey: "tokenizer.ggml.eos_token_id"))

        var wrongType = bytePairGGUF(pre: "gpt-2", extra: [], merges: [])
        wrongType.metadata.append(("tokenizer.ggml.scores", .array([.string("x")])))
        XCTAssertThrowsError(try tokenizer(wrongType)) { error in
            guard case .invalidMetadata(let key, _)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(key, "tokenizer.ggml.scores")
        }
    }

    func testConcurrentEncoding() throws {
        let tokenizer = try tinyLlama()
        let text = try String(contentsOfFile: Fixtures.real("perplexity-text.txt"), encoding: .utf8)
        let expected = tokenizer.encode(text)
        let results = UnsafeMutableBufferPointer<Bool>.allocate(capacity: 8)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { i in results[i] = tokenizer.encode(text) == expected }
        XCTAssertTrue(results.allSatisfy { $0 })
        XCTAssertEqual(tokenizer.decode(Array(expected.dropFirst())), text)
    }

    func testByteUnicodeTable() {
        XCTAssertEqual(ByteUnicode.scalarForByte[0x20], 0x120) // Ġ
        XCTAssertEqual(ByteUnicode.scalarForByte[0x0A], 0x10A) // Ċ
        XCTAssertEqual(ByteUnicode.scalarForByte[0x41], 0x41)
        XCTAssertEqual(Set(ByteUnicode.scalarForByte).count, 256)
        for b in 0..<256 { XCTAssertEqual(ByteUnicode.byteForScalar[Int(ByteUnicode.scalarForByte[b])], Int16(b)) }
    }
}
