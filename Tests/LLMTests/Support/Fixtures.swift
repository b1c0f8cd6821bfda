import Foundation
import XCTest
import LLM
import BackendCPU

/// Locates test data inside the repository (never outside it: a user's clone has only this).
enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func tiny(_ name: String) -> String { root.appendingPathComponent("tiny/\(name)").path }
    static func families(_ name: String) -> String { root.appendingPathComponent("families/\(name)").path }
    static func real(_ name: String) -> String { root.appendingPathComponent("real/\(name)").path }

    /// SmolLM2 from the user's cache; tests that need it skip, naming the fetch step, when absent.
    static func smolLM2() throws -> String { try RealModelGolden.smolLM2.path() }
}

extension XCTestCase {
    /// tiny-llama-f32 with `llama.attention.sliding_window` = `window` added (Mistral-style: every layer).
    func windowedTinyModel(window: Int) throws -> Model {
        let source = try GGUFFile(path: Fixtures.tiny("tiny-llama-f32.gguf"))
        var builder = GGUFBuilder()
        builder.metadata = source.metadataKeys.map { ($0, source.metadata[$0]!) } + [("llama.attention.sliding_window", .uint32(UInt32(window)))]
        builder.tensors = source.tensors.map { ($0.name, $0.dimensions, $0.type, Array(source.bytes(of: $0))) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("windowed-\(UUID().uuidString).gguf")
        try Data(builder.bytes()).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return try Model.load(path: url.path, backend: CPUBackend(threads: 2))
    }
}

/// A float32 .npy file (the reference logits), C order.
struct NPYArray {
    let shape: [Int]
    let values: [Float]

    init(path: String) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        guard data.count > 10, data.prefix(6) == Data([0x93] + Array("NUMPY".utf8)) else {
            throw NSError(domain: "npy", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(path) is not .npy"])
        }
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        guard header.contains("'descr': '<f4'"), header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")") else {
            throw NSError(domain: "npy", code: 2, userInfo: [NSLocalizedDescriptionKey: "unsupported header \(header)"])
        }
        shape = header[open.upperBound..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let body = data.dropFirst(10 + headerLength)
        values = body.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }

    func row(_ r: Int) -> ArraySlice<Float> {
        let width = shape[1]
        return values[(r * width)..<((r + 1) * width)]
    }
}

/// llama.cpp's `*.tokens.txt` reference: prompt ids, greedy ids and the top-5 logits per position.
struct TokensReference {
    var promptIDs: [Int32] = []
    var greedyIDs: [Int32] = []
    /// top[p] = [(id, logit)] after the token at position p, best first.
    var top: [[(id: Int, logit: Float)]] = []

    init(path: String) throws {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for line in text.split(separator: "\n") {
            if line.hasPrefix("prompt_ids:") {
                promptIDs = line.dropFirst("prompt_ids:".count).split(separator: " ").compactMap { Int32($0) }
            } else if line.hasPrefix("greedy_ids:") {
                greedyIDs = line.dropFirst("greedy_ids:".count).split(separator: " ").compactMap { Int32($0) }
            } else if line.hasPrefix("pos "), let range = line.range(of: "top5: ") {
                top.append(line[range.upperBound...].split(separator: " ").map { pair in
                    let parts = pair.split(separator: ":")
                    return (Int(parts[0])!, Float(parts[1])!)
                })
            }
        }
    }

    var sequence: [Int32] { promptIDs + greedyIDs }

    /// Index into `greedyIDs` of the first step whose top two logits in llama.cpp are within `gap`
    /// (a near-tie, where rounding order may flip the choice); greedyIDs.count when there is none.
    func firstNearTie(gap: Float = 0.3) -> Int {
        for g in greedyIDs.indices {
            let row = top[promptIDs.count - 1 + g]
            if row[0].logit - row[1].logit < gap { return g }
        }
        return greedyIDs.count
    }
}

extension TokensReference {
    /// Teacher-forced pass as llama.cpp's dump makes it: the prompt in one batch, then each greedy
    /// token alone. Returns one logits row per position and, for MoE layers, the experts each row
    /// chose (layer → rows → ids, in the gate's order).
    func teacherForced(_ session: InferenceSession) throws -> (rows: [[Float]], chosen: [Int: [[Int]]]) {
        let backend = session.model.backend, vocab = session.model.config.vocabularySize
        var chosen: [Int: [[Int]]] = [:]
        session.routingObserver = { event in
            let k = event.gating.k
            for r in 0..<event.rows { chosen[event.layer, default: []].append(event.selected[(r * k)..<(r * k + k)].map(Int.init)) }
        }
        defer { session.routingObserver = nil }
        var rows: [[Float]] = []
        let prompt = try backend.download(session.evaluate(promptIDs, logits: .all), offset: 0, count: promptIDs.count * vocab)
        for r in 0..<promptIDs.count { rows.append(Array(prompt[(r * vocab)..<((r + 1) * vocab)])) }
        for token in greedyIDs {
            rows.append(try backend.download(session.evaluate([token], logits: .last), offset: 0, count: vocab))
        }
        return (rows, chosen)
    }
}
