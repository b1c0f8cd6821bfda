import Foundation
@testable import LLM
import XCTest

/// The numerics contract (docs/ARCHITECTURE.md, "Batch invariance"): a sequence's logits are the
/// same bits however it is batched. The reference is each sequence alone, one token per forward
/// pass (decode); it is compared, bit for bit, with
/// - the whole sequence evaluated in chunks of `batchSizes` tokens (prompt chunking, batch size);
/// - all sequences interleaved in mixed batches over a paged KV pool, as continuous batching and
///   beam search run them: each forward pass takes a varying run of tokens from each unfinished
///   sequence, so a token sits at different rows, next to other sequences at other positions, in
///   batches of 1 to `maxBatch` rows;
/// - optionally, the same on a second model instance (another backend, e.g. other threads).
struct BatchInvariance {
    let sequences: [[Int32]]
    var batchSizes: [Int] = Array(1...33)
    var maxBatch = 33
    /// Paged blocks of an odd size, so runs cross block boundaries at every offset.
    var blockSize = 7

    /// Logits of each position of `tokens`, fed one token per forward pass.
    static func decoded(_ model: Model, _ tokens: [Int32]) throws -> [[Float]] {
        let session = try InferenceSession(model: model, contextLength: tokens.count, batchSize: 1)
        let vocab = model.config.vocabularySize
        return try tokens.map { token in
            let logits = try session.evaluate([token], logits: .last)
            return try model.backend.download(logits, offset: 0, count: vocab)
        }
    }

    /// Logits of every position of `tokens`, evaluated as one prompt in chunks of `batch` tokens.
    static func chunked(_ model: Model, _ tokens: [Int32], batch: Int) throws -> [[Float]] {
        let session = try InferenceSession(model: model, contextLength: tokens.count, batchSize: batch)
        let vocab = model.config.vocabularySize
        let all = try model.backend.download(try session.evaluate(tokens, logits: .all), offset: 0, count: tokens.count * vocab)
        return (0..<tokens.count).map { Array(all[($0 * vocab)..<(($0 + 1) * vocab)]) }
    }

    /// Logits of every position of every sequence, the sequences interleaved in mixed batches over
    /// one paged pool. Round r takes `runs[(r + s) % runs.count]` tokens from sequence s (in an
    /// order that rotates with r), capped so a batch has at most `maxBatch` rows.
    func mixed(_ model: Model) throws -> [[[Float]]] {
        let c = model.config, vocab = c.vocabularySize
        let blocksPerSequence = sequences.map { ($0.count + blockSize - 1) / blockSize }
        let pool = try BlockPool(backend: model.backend, layers: c.layers, blockSize: blockSize,
                                 blockCount: blocksPerSequence.reduce(0, +), width: c.kvHeads * c.headDim)
        let graph = try InferenceSession(model: model, contextLength: 1, rows: maxBatch)
        let runs = [1, 5, 2, 11, 3, 8, 1, 13, 4, 1, 7]
        var tables = sequences.map { _ in [Int32]() }
        var done = sequences.map { _ in 0 }
        var out = sequences.map { _ in [[Float]]() }
        var round = 0
        while zip(done, sequences).contains(where: { $0 < $1.count }) {
            var tokens: [Int32] = [], positions: [Int] = [], rowTables: [[Int32]] = [], owners: [Int] = []
            for i in sequences.indices {
                let s = (i + round) % sequences.count
                let take = min(runs[(round + s) % runs.count], sequences[s].count - done[s], maxBatch - tokens.count)
                guard take > 0 else { continue }
                for p in done[s]..<(done[s] + take) {
                    try pool.prepareAppend(&tables[s], length: p)
                    tokens.append(sequences[s][p])
                    positions.append(p)
                    owners.append(s)
                }
                done[s] += take
            }
            for s in owners { rowTables.append(tables[s]) }
            let layout = PagedLayout(blockSize: blockSize, tables: rowTables, lengths: positions.map { $0 + 1 })
            try graph.runGraph(tokens, placement: .paged(pool: pool, layout: layout, positions: positions), logits: .all)
            let all = try model.backend.download(graph.logitsBuffer, offset: 0, count: tokens.count * vocab)
            for (row, s) in owners.enumerated() { out[s].append(Array(all[(row * vocab)..<((row + 1) * vocab)])) }
            round += 1
        }
        return out
    }

    /// Checks `model` (and `other`, if given, against `model`'s reference).
    func check(_ model: Model, other: Model? = nil, _ what: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let reference = try sequences.map { try Self.decoded(model, $0) }
        let candidates = [model] + (other.map { [$0] } ?? [])
        for (index, candidate) in candidates.enumerated() {
            let label = index == 0 ? what : "\(what), second instance"
            if index > 0 {
                for (s, tokens) in sequences.enumerated() {
                    Self.expectSame(try Self.decoded(candidate, tokens), reference[s], "\(label): sequence \(s) decoded", file: file, line: line)
                }
            }
            for batch in batchSizes {
                Self.expectSame(try Self.chunked(candidate, sequences[0], batch: batch), reference[0],
                                "\(label): sequence 0 in chunks of \(batch)", file: file, line: line)
            }
            let mixed = try mixed(candidate)
            for s in sequences.indices {
                Self.expectSame(mixed[s], reference[s], "\(label): sequence \(s) in mixed batches", file: file, line: line)
            }
        }
    }

    /// Bit-for-bit equality, reported as the first differing position and the largest |Δ| there.
    static func expectSame(_ got: [[Float]], _ want: [[Float]], _ what: String, file: StaticString, line: UInt) {
        XCTAssertEqual(got.count, want.count, "\(what): positions", file: file, line: line)
        for p in 0..<min(got.count, want.count) where got[p].map(\.bitPattern) != want[p].map(\.bitPattern) {
            let delta = zip(got[p], want[p]).map { abs($0 - $1) }.max() ?? 0
            XCTFail("\(what): position \(p) differs from decode (max |Δ| \(delta))", file: file, line: line)
            return
        }
    }

    /// `count` ids below `vocab` from a fixed seed (SplitMix64).
    static func tokens(_ count: Int, vocab: Int, seed: UInt64) -> [Int32] {
        var state = seed
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return Int32((z ^ (z >> 31)) % UInt64(vocab))
        }
    }

    /// The tiny random-weight models of Tests/Fixtures/tiny (README there).
    static let tinyModels = ["tiny-llama-f32", "tiny-llama-ffn340-f32", "tiny-llama-f16", "tiny-llama-q8_0",
                             "tiny-llama-q4_0", "tiny-llama-q4_1", "tiny-moe-q8_0"]

    static func tinyPath(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tiny/\(name).gguf").path
    }

    /// Three sequences of different lengths: 40 tokens cross chunk boundaries at every batch size
    /// up to 33, and the others start the mixed batches at other positions.
    static func tinySequences(vocab: Int) -> [[Int32]] {
        [tokens(40, vocab: vocab, seed: 1), tokens(23, vocab: vocab, seed: 2), tokens(17, vocab: vocab, seed: 3)]
    }

    /// SmolLM2 (the default model) from the model cache, or XCTSkip.
    static func smolLM2Path() throws -> String {
        let path = ModelCache.path(ModelCache.defaultModelFile)
        guard FileManager.default.fileExists(atPath: path) else {
            throw XCTSkip("\(ModelCache.defaultModelFile) is not in \(ModelCache.directory); run scripts/fetch-model")
        }
        return path
    }
}
