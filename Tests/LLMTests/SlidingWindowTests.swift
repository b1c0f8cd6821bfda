import Foundation
import XCTest
import LLM
import BackendCPU

/// Sliding-window layers keep a ring of window + batch rows instead of the whole context; the
/// results must equal a cache that keeps every position.
final class SlidingWindowTests: XCTestCase {
    func testRingEqualsFullCache() throws {
        let model = try windowedTinyModel(window: 8)
        let vocab = model.config.vocabularySize
        let tokens = (0..<40).map { Int32(3 + ($0 * 37) % 500) }
        // Batch 4: the ring is 12 rows, far below the 64-position context, and wraps several times.
        let ringed = try InferenceSession(model: model, contextLength: 64, batchSize: 4)
        XCTAssertEqual(ringed.cache.rings.first ?? nil, 12)
        // Batch 64: window + batch exceeds the context, so every position is kept.
        let full = try InferenceSession(model: model, contextLength: 64, batchSize: 64)
        XCTAssertNil(full.cache.rings.first ?? nil)
        XCTAssertLessThan(ringed.cache.byteCount, full.cache.byteCount / 4)

        let a = try model.backend.download(ringed.evaluate(tokens, logits: .all), offset: 0, count: tokens.count * vocab)
        let b = try model.backend.download(full.evaluate(tokens, logits: .all), offset: 0, count: tokens.count * vocab)
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(worst, 1e-4)

        // Decode steps through the ring agree too.
        for t in [Int32(5), 77, 300] {
            let x = try model.backend.download(ringed.evaluate([t], logits: .last), offset: 0, count: vocab)
            let y = try model.backend.download(full.evaluate([t], logits: .last), offset: 0, count: vocab)
            XCTAssertLessThan(zip(x, y).map { abs($0 - $1) }.max()!, 1e-4)
        }
    }

    /// With a window the model really forgets: the logits after a long prefix do not depend on
    /// tokens that left every layer's window, and do depend on those inside it.
    func testWindowForgetsOldTokens() throws {
        let model = try windowedTinyModel(window: 4)
        let vocab = model.config.vocabularySize
        func last(_ tokens: [Int32]) throws -> [Float] {
            let session = try InferenceSession(model: model, contextLength: 64, batchSize: 4)
            return try model.backend.download(session.evaluate(tokens, logits: .last), offset: 0, count: vocab)
        }
        let tail: [Int32] = (0..<24).map { Int32(10 + $0 * 7) }
        // 4 layers × window 4: information travels at most 4 · 3 = 12 positions back.
        let a = try last([300] + tail), b = try last([301] + tail)
        XCTAssertEqual(a, b, "a token 24 positions back is outside the receptive field")
        let c = try last(tail.dropLast() + [400]), d = try last(tail.dropLast() + [401])
        XCTAssertNotEqual(c, d)
    }

    func testRewindingPastTheRingIsRefused() throws {
        let model = try windowedTinyModel(window: 8)
        let session = try InferenceSession(model: model, contextLength: 64, batchSize: 4)
        _ = try session.evaluate((0..<30).map { Int32(3 + $0) }, logits: .last)
        session.cache.truncate(to: 10)
        XCTAssertThrowsError(try session.evaluate([5], logits: .last)) {
            XCTAssertEqual($0 as? ModelError, .rewoundTooFar(position: 10))
        }
        session.reset()
        XCTAssertNoThrow(try session.evaluate([5], logits: .last))
    }
}
