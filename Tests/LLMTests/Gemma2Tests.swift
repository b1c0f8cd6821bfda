import Foundation
import XCTest
import LLM
import BackendCPU

/// Gemma 2 has no small model on PyPI, so this builds one: the tiny llama weights re-labelled as
/// gemma2, with post-norms, a sliding window on even layers and both soft-caps, and checks the
/// engine against a plain Double implementation of llama.cpp's gemma2 graph written here.
final class Gemma2Tests: XCTestCase {
    static let window = 6
    static let attentionCap = 5.0
    static let finalCap = 3.0

    private func writeModel() throws -> (path: String, source: GGUFFile) {
        let source = try GGUFFile(path: Fixtures.tiny("tiny-llama-f32.gguf"))
        var builder = GGUFBuilder()
        builder.metadata = source.metadataKeys.map { key -> (String, GGUFValue) in
            if key == "general.architecture" { return (key, .string("gemma2")) }
            return (key.hasPrefix("llama.") ? "gemma2." + key.dropFirst("llama.".count) : key, source.metadata[key]!)
        } + [("gemma2.attention.sliding_window", .uint32(UInt32(Self.window))),
             ("gemma2.attn_logit_softcapping", .float32(Float(Self.attentionCap))),
             ("gemma2.final_logit_softcapping", .float32(Float(Self.finalCap)))]
        builder.tensors = source.tensors.map { ($0.name, $0.dimensions, $0.type, Array(source.bytes(of: $0))) }
        let layers = try source.int("llama.block_count")
        for l in 0..<layers {
            // Reuse the pre-norm vectors as post-norms: any non-trivial values will do.
            let attn = try source.requireTensor("blk.\(l).attn_norm.weight"), ffn = try source.requireTensor("blk.\(l).ffn_norm.weight")
            builder.tensors.append(("blk.\(l).post_attention_norm.weight", attn.dimensions, .f32, Array(source.bytes(of: ffn))))
            builder.tensors.append(("blk.\(l).post_ffw_norm.weight", ffn.dimensions, .f32, Array(source.bytes(of: attn))))
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("gemma2-\(UUID().uuidString).gguf")
        try Data(builder.bytes()).write(to: url)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return (url.path, try GGUFFile(path: url.path))
    }

    func testMatchesReferenceImplementation() throws {
        let (path, file) = try writeModel()
        let model = try Model.load(path: path, backend: CPUBackend(threads: 2))
        XCTAssertEqual(model.config.architecture, "gemma2")
        XCTAssertEqual(model.config.layerWindows, [Self.window, 0, Self.window, 0])
        let tokens: [Int32] = (0..<20).map { Int32(3 + ($0 * 53) % 500) }
        let vocab = model.config.vocabularySize
        let session = try InferenceSession(model: model, contextLength: 32)
        let got = try model.backend.download(session.evaluate(tokens, logits: .all), offset: 0, count: tokens.count * vocab)
        let want = try Gemma2Reference(file: file).logits(tokens)
        var worst = 0.0
        for i in got.indices { worst = max(worst, abs(Double(got[i]) - want[i])) }
        XCTAssertLessThan(worst, 1e-4, "max |Δlogit| against the Double reference")
        XCTAssertLessThanOrEqual(got.map { abs($0) }.max()!, Float(Self.finalCap), "final logits are capped")
    }

    func testGPUBackendsRefuseWhatTheyLack() throws {
        // A backend that does not list the soft-cap ops refuses the model at session creation.
        let (path, _) = try writeModel()
        final class NoSoftcap: Backend {
            let inner = CPUBackend(threads: 1)
            var name: String { "test" }
            var deviceDescription: String { "test" }
            func supports(_ op: BackendOp) -> Bool { op != .attentionSoftcap && inner.supports(op) }
            func makeWeight(name: String, type: GGMLType, rows: Int, columns: Int, bytes: UnsafeRawBufferPointer) throws -> BackendWeight {
                try inner.makeWeight(name: name, type: type, rows: rows, columns: columns, bytes: bytes)
            }
            func makeBuffer(count: Int, label: String) throws -> BackendBuffer { try inner.makeBuffer(count: count, label: label) }
            func upload(_ values: [Float], to buffer: BackendBuffer, offset: Int) throws { try inner.upload(values, to: buffer, offset: offset) }
            func download(_ buffer: BackendBuffer, offset: Int, count: Int) throws -> [Float] { try inner.download(buffer, offset: offset, count: count) }
            func embed(_ table: BackendWeight, tokens: [Int32], into output: BackendBuffer) throws { try inner.embed(table, tokens: tokens, into: output) }
            func matmul(_ weight: BackendWeight, _ input: BackendBuffer, into output: BackendBuffer, rows: Int) throws { try inner.matmul(weight, input, into: output, rows: rows) }
            func rmsNorm(_ input: BackendBuffer, weight: BackendWeight, into output: BackendBuffer, rows: Int, eps: Float) throws { try inner.rmsNorm(input, weight: weight, into: output, rows: rows, eps: eps) }
            func rope(_ buffer: BackendBuffer, rows: Int, heads: Int, headDim: Int, startPosition: Int, parameters: RopeParameters) throws {}
            func attention(query: BackendBuffer, keys: BackendBuffer, values: BackendBuffer, into output: BackendBuffer, rows: Int, startPosition: Int, shape: AttentionShape) throws {}
            func copyRows(_ source: BackendBuffer, sourceRow: Int, into destination: BackendBuffer, destinationRow: Int, rows: Int, width: Int) throws {}
            func swiglu(gate: BackendBuffer, up: BackendBuffer, into output: BackendBuffer, count: Int) throws {}
            func add(_ a: BackendBuffer, _ b: BackendBuffer, into output: BackendBuffer, count: Int) throws {}
            func softmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws {}
            func argmax(_ buffer: BackendBuffer, rows: Int, width: Int) throws -> [Int32] { [] }
            func synchronize() throws {}
        }
        let model = try Model.load(path: path, backend: NoSoftcap())
        XCTAssertThrowsError(try InferenceSession(model: model, contextLength: 16)) { error in
            XCTAssertTrue("\(error)".contains("attentionSoftcap"), "\(error)")
        }
    }
}

/// llama.cpp's gemma2 graph in Double, straight from the formulas, over f32 weights.
private struct Gemma2Reference {
    let file: GGUFFile
    let dim, heads, kvHeads, headDim, layers, ffn, vocab: Int
    let eps, base: Double

    init(file: GGUFFile) throws {
        self.file = file
        dim = try file.int("gemma2.embedding_length")
        heads = try file.int("gemma2.attention.head_count")
        kvHeads = try file.int("gemma2.attention.head_count_kv")
        headDim = dim / heads
        layers = try file.int("gemma2.block_count")
        ffn = try file.int("gemma2.feed_forward_length")
        vocab = try file.stringArray("tokenizer.ggml.tokens").count
        eps = try file.float("gemma2.attention.layer_norm_rms_epsilon")
        base = (try? file.float("gemma2.rope.freq_base")) ?? 10_000
    }

    func tensor(_ name: String) -> [Double] {
        let info = file.tensor(name)!
        return Quantization.dequantize(info.type, file.bytes(of: info), count: info.elementCount).map(Double.init)
    }

    func matvec(_ w: [Double], _ x: [Double], rows: Int) -> [Double] {
        let cols = x.count
        return (0..<rows).map { r in (0..<cols).reduce(0.0) { $0 + w[r * cols + $1] * x[$1] } }
    }

    func rmsNorm(_ x: [Double], _ w: [Double]) -> [Double] {
        let scale = 1 / ((x.reduce(0) { $0 + $1 * $1 } / Double(x.count)) + eps).squareRoot()
        return x.indices.map { x[$0] * scale * w[$0] }
    }

    /// NEOX RoPE: pairs (i, i + d/2).
    func rope(_ v: inout [Double], head: Int, position: Int) {
        let half = headDim / 2
        for i in 0..<half {
            let theta = Double(position) * pow(base, -2 * Double(i) / Double(headDim))
            let a = v[head * headDim + i], b = v[head * headDim + i + half]
            v[head * headDim + i] = a * cos(theta) - b * sin(theta)
            v[head * headDim + i + half] = a * sin(theta) + b * cos(theta)
        }
    }

    func logits(_ tokens: [Int32]) -> [Double] {
        let embedding = tensor("token_embd.weight"), output = tensor("output.weight"), outputNorm = tensor("output_norm.weight")
        var keys = [[[Double]]](repeating: [], count: layers), values = keys
        var result: [Double] = []
        for (p, token) in tokens.enumerated() {
            var x = Array(embedding[(Int(token) * dim)..<((Int(token) + 1) * dim)]).map { $0 * Double(dim).squareRoot() }
            for l in 0..<layers {
                func w(_ s: String) -> [Double] { tensor("blk.\(l).\(s).weight") }
                let h = rmsNorm(x, w("attn_norm"))
                var q = matvec(w("attn_q"), h, rows: heads * headDim)
                var k = matvec(w("attn_k"), h, rows: kvHeads * headDim)
                let v = matvec(w("attn_v"), h, rows: kvHeads * headDim)
                for hd in 0..<heads { rope(&q, head: hd, position: p) }
                for hd in 0..<kvHeads { rope(&k, head: hd, position: p) }
                keys[l].append(k)
                values[l].append(v)
                let first = l % 2 == 0 ? max(0, p - Gemma2Tests.window + 1) : 0
                var attention = [Double](repeating: 0, count: heads * headDim)
                for hd in 0..<heads {
                    let kv = hd / (heads / kvHeads)
                    var scores = (first...p).map { j -> Double in
                        var s = 0.0
                        for d in 0..<headDim { s += q[hd * headDim + d] * keys[l][j][kv * headDim + d] }
                        s /= Double(headDim).squareRoot()
                        return Gemma2Tests.attentionCap * tanh(s / Gemma2Tests.attentionCap)
                    }
                    let m = scores.max()!
                    scores = scores.map { exp($0 - m) }
                    let total = scores.reduce(0, +)
                    for (i, j) in (first...p).enumerated() {
                        for d in 0..<headDim { attention[hd * headDim + d] += scores[i] / total * values[l][j][kv * headDim + d] }
                    }
                }
                let o = rmsNorm(matvec(w("attn_output"), attention, rows: dim), w("post_attention_norm"))
                x = x.indices.map { x[$0] + o[$0] }
                let h2 = rmsNorm(x, w("ffn_norm"))
                let g = matvec(w("ffn_gate"), h2, rows: ffn), u = matvec(w("ffn_up"), h2, rows: ffn)
                let a = g.indices.map { i -> Double in
                    let t = g[i]
                    return 0.5 * t * (1 + tanh(0.7978845608 * (t + 0.044715 * t * t * t))) * u[i]
                }
                let down = rmsNorm(matvec(w("ffn_down"), a, rows: dim), w("post_ffw_norm"))
                x = x.indices.map { x[$0] + down[$0] }
            }
            let row = matvec(output, rmsNorm(x, outputNorm), rows: vocab)
            result += row.map { Gemma2Tests.finalCap * tanh($0 / Gemma2Tests.finalCap) }
        }
        return result
    }
}
