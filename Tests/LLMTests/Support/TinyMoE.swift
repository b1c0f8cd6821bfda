import Foundation
import LLM

/// Tiny random-weight MoE models written with GGUFBuilder, and an independent reference forward
/// pass in plain Swift (Double) written from the formulas, not from the engine's code:
///   h = rms(x)·g; q,k,v = W h [+ b]; [q,k = rms over the whole projection (olmoe) or per head (qwen3)];
///   NEOX RoPE; causal GQA softmax attention; x += Wo·att;
///   h = rms(x)·g; p = softmax|sigmoid(R h); top-k; w = p[top] [/Σ] [·scale];
///   x += Σ w·down(silu(gate h)·up h) + [σ(s·h)]·down_s(silu(gate_s h)·up_s h).
struct TinyMoE {
    static let dim = 32, heads = 4, kvHeads = 2, headDim = 8, layers = 2, expertFFN = 16, vocab = 512

    var architecture: String
    var experts: Int
    var k: Int
    var sharedFFN = 0
    var sharedGate = false
    var biases = false
    var fullNorms = false
    var perHeadNorms = false
    var gatingFunction: Int? = nil
    var normalize: Bool? = nil
    var scale: Float? = nil
    var seed: UInt64 = 7

    init(architecture: String, experts: Int, k: Int, sharedFFN: Int = 0, sharedGate: Bool = false, biases: Bool = false,
         fullNorms: Bool = false) {
        self.architecture = architecture
        self.experts = experts
        self.k = k
        self.sharedFFN = sharedFFN
        self.sharedGate = sharedGate
        self.biases = biases
        self.fullNorms = fullNorms
    }

    /// The tokenizer of tiny-llama-f32 (512 SentencePiece pieces), so the models load like real files.
    static func tokenizerBuilder() -> GGUFBuilder {
        var b = GGUFBuilder()
        let source = try! GGUFFile(path: Fixtures.tiny("tiny-llama-f32.gguf"))
        for key in source.metadataKeys where key.hasPrefix("tokenizer.") { b.metadata.append((key, source.metadata[key]!)) }
        return b
    }

    /// What the routing of this family does without overrides (llama.cpp's fixed choices).
    var effectiveNormalize: Bool { normalize ?? (architecture == "llama" || architecture == "qwen3moe") }

    func build() -> (builder: GGUFBuilder, reference: Reference) {
        let d = Self.dim, q = Self.heads * Self.headDim, kv = Self.kvHeads * Self.headDim, ff = Self.expertFFN
        var rng = MoERandom(seed: seed &+ UInt64(experts * 31 + k))
        var b = Self.tokenizerBuilder()
        let a = architecture
        b.metadata += [
            ("general.architecture", .string(a)), ("\(a).block_count", .uint32(UInt32(Self.layers))),
            ("\(a).embedding_length", .uint32(UInt32(d))), ("\(a).feed_forward_length", .uint32(UInt32(ff))),
            ("\(a).attention.head_count", .uint32(UInt32(Self.heads))),
            ("\(a).attention.head_count_kv", .uint32(UInt32(Self.kvHeads))),
            ("\(a).context_length", .uint32(256)), ("\(a).attention.layer_norm_rms_epsilon", .float32(1e-6)),
            ("\(a).rope.freq_base", .float32(10_000)),
            ("\(a).expert_count", .uint32(UInt32(experts))), ("\(a).expert_used_count", .uint32(UInt32(k))),
        ]
        if a != "llama" && a != "olmoe" { b.metadata.append(("\(a).expert_feed_forward_length", .uint32(UInt32(ff)))) }
        if sharedFFN > 0 { b.metadata.append(("\(a).expert_shared_feed_forward_length", .uint32(UInt32(sharedFFN)))) }
        if let gatingFunction { b.metadata.append(("\(a).expert_gating_func", .uint32(UInt32(gatingFunction)))) }
        if let normalize { b.metadata.append(("\(a).expert_weights_norm", .bool(normalize))) }
        if let scale { b.metadata.append(("\(a).expert_weights_scale", .float32(scale))) }

        var ref = Reference(spec: self)
        func random(_ count: Int, _ std: Double) -> [Float] { (0..<count).map { _ in Float(rng.normal() * std) } }
        func norm(_ count: Int) -> [Float] { (0..<count).map { _ in Float(1 + 0.1 * rng.normal()) } }
        func add(_ name: String, _ dims: [Int], _ values: [Float]) -> [Double] {
            b.tensors.append((name, dims, .f32, floatBytes(values)))
            return values.map(Double.init)
        }
        ref.embedding = add("token_embd.weight", [d, Self.vocab], random(Self.vocab * d, 1))
        for l in 0..<Self.layers {
            var L = Reference.Layer()
            func t(_ n: String) -> String { "blk.\(l).\(n).weight" }
            L.attnNorm = add(t("attn_norm"), [d], norm(d))
            L.wq = add(t("attn_q"), [d, q], random(q * d, 1 / sqrt(Double(d))))
            L.wk = add(t("attn_k"), [d, kv], random(kv * d, 1 / sqrt(Double(d))))
            L.wv = add(t("attn_v"), [d, kv], random(kv * d, 1 / sqrt(Double(d))))
            L.wo = add(t("attn_output"), [q, d], random(d * q, 1 / sqrt(Double(q))))
            if biases {
                for (n, w) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                    let values = add("blk.\(l).\(n).bias", [w], random(w, 0.1))
                    if n == "attn_q" { L.bq = values } else if n == "attn_k" { L.bk = values } else { L.bv = values }
                }
            }
            if fullNorms {
                L.qNorm = add(t("attn_q_norm"), [q], norm(q))
                L.kNorm = add(t("attn_k_norm"), [kv], norm(kv))
            }
            if perHeadNorms {
                L.qNorm = add(t("attn_q_norm"), [Self.headDim], norm(Self.headDim))
                L.kNorm = add(t("attn_k_norm"), [Self.headDim], norm(Self.headDim))
            }
            L.ffnNorm = add(t("ffn_norm"), [d], norm(d))
            L.router = add(t("ffn_gate_inp"), [d, experts], random(experts * d, 3 / sqrt(Double(d))))
            L.gate = add(t("ffn_gate_exps"), [d, ff, experts], random(experts * ff * d, 1 / sqrt(Double(d))))
            L.up = add(t("ffn_up_exps"), [d, ff, experts], random(experts * ff * d, 1 / sqrt(Double(d))))
            L.down = add(t("ffn_down_exps"), [ff, d, experts], random(experts * d * ff, 1 / sqrt(Double(ff))))
            if sharedFFN > 0 {
                L.sGate = add(t("ffn_gate_shexp"), [d, sharedFFN], random(sharedFFN * d, 1 / sqrt(Double(d))))
                L.sUp = add(t("ffn_up_shexp"), [d, sharedFFN], random(sharedFFN * d, 1 / sqrt(Double(d))))
                L.sDown = add(t("ffn_down_shexp"), [sharedFFN, d], random(d * sharedFFN, 1 / sqrt(Double(sharedFFN))))
                if sharedGate { L.sRouter = add(t("ffn_gate_inp_shexp"), [d], random(d, 1 / sqrt(Double(d)))) }
            }
            ref.layers.append(L)
        }
        ref.outputNorm = add("output_norm.weight", [d], norm(d))
        ref.output = add("output.weight", [d, Self.vocab], random(Self.vocab * d, 4 / sqrt(Double(d))))
        return (b, ref)
    }

    struct Reference {
        struct Layer {
            var attnNorm: [Double] = [], wq: [Double] = [], wk: [Double] = [], wv: [Double] = [], wo: [Double] = []
            var bq: [Double]? = nil, bk: [Double]? = nil, bv: [Double]? = nil, qNorm: [Double]? = nil, kNorm: [Double]? = nil
            var ffnNorm: [Double] = [], router: [Double] = [], gate: [Double] = [], up: [Double] = [], down: [Double] = []
            var sGate: [Double]? = nil, sUp: [Double]? = nil, sDown: [Double]? = nil, sRouter: [Double]? = nil
        }
        let spec: TinyMoE
        var embedding: [Double] = [], outputNorm: [Double] = [], output: [Double] = []
        var layers: [Layer] = []
        init(spec: TinyMoE) { self.spec = spec }

        /// y = W x for W stored [rows][columns] row-major starting at `offset`.
        func mv(_ w: [Double], _ x: [Double], rows: Int, offset: Int = 0) -> [Double] {
            (0..<rows).map { r in (0..<x.count).reduce(0) { $0 + w[offset + r * x.count + $1] * x[$1] } }
        }
        func rms(_ x: [Double], _ g: [Double], eps: Double = 1e-6) -> [Double] {
            let s = 1 / (x.reduce(0) { $0 + $1 * $1 } / Double(x.count) + eps).squareRoot()
            return x.indices.map { x[$0] * s * g[$0 % g.count] }
        }
        /// Per-segment RMSNorm: segments of g.count values each.
        func segmentedRMS(_ x: [Double], _ g: [Double]) -> [Double] {
            stride(from: 0, to: x.count, by: g.count).flatMap { rms(Array(x[$0..<($0 + g.count)]), g) }
        }
        func neox(_ x: inout [Double], heads: Int, position: Int) {
            let hd = TinyMoE.headDim, half = hd / 2
            for h in 0..<heads {
                for i in 0..<half {
                    let theta = Double(position) * pow(10_000, -2 * Double(i) / Double(hd))
                    let a = x[h * hd + i], b = x[h * hd + i + half]
                    x[h * hd + i] = a * cos(theta) - b * sin(theta)
                    x[h * hd + i + half] = a * sin(theta) + b * cos(theta)
                }
            }
        }
        func normalRope(_ x: inout [Double], heads: Int, position: Int) {
            let hd = TinyMoE.headDim
            for h in 0..<heads {
                for i in 0..<(hd / 2) {
                    let theta = Double(position) * pow(10_000, -2 * Double(i) / Double(hd))
                    let a = x[h * hd + 2 * i], b = x[h * hd + 2 * i + 1]
                    x[h * hd + 2 * i] = a * cos(theta) - b * sin(theta)
                    x[h * hd + 2 * i + 1] = a * sin(theta) + b * cos(theta)
                }
            }
        }
        func silu(_ v: Double) -> Double { v / (1 + exp(-v)) }
        func sigmoid(_ v: Double) -> Double { 1 / (1 + exp(-v)) }

        /// Logits for every position of `tokens`.
        func forward(_ tokens: [Int32]) -> [[Double]] {
            let d = TinyMoE.dim, hd = TinyMoE.headDim, H = TinyMoE.heads, KV = TinyMoE.kvHeads, ff = TinyMoE.expertFFN
            let E = spec.experts
            var xs = tokens.map { Array(embedding[(Int($0) * d)..<(Int($0) * d + d)]) }
            for L in layers {
                var keys: [[Double]] = [], values: [[Double]] = [], queries: [[Double]] = []
                for (p, x) in xs.enumerated() {
                    let h = rms(x, L.attnNorm)
                    var q = mv(L.wq, h, rows: H * hd), k = mv(L.wk, h, rows: KV * hd), v = mv(L.wv, h, rows: KV * hd)
                    if let b = L.bq { q = zip(q, b).map(+) }
                    if let b = L.bk { k = zip(k, b).map(+) }
                    if let b = L.bv { v = zip(v, b).map(+) }
                    if let g = L.qNorm { q = segmentedRMS(q, g) }
                    if let g = L.kNorm { k = segmentedRMS(k, g) }
                    if spec.architecture == "llama" {
                        normalRope(&q, heads: H, position: p); normalRope(&k, heads: KV, position: p)
                    } else {
                        neox(&q, heads: H, position: p); neox(&k, heads: KV, position: p)
                    }
                    queries.append(q); keys.append(k); values.append(v)
                }
                for p in xs.indices {
                    var att = [Double](repeating: 0, count: H * hd)
                    for h in 0..<H {
                        let g = h / (H / KV)
                        let scores = (0...p).map { j in
                            (0..<hd).reduce(0.0) { $0 + queries[p][h * hd + $1] * keys[j][g * hd + $1] } / Double(hd).squareRoot()
                        }
                        let m = scores.max()!, e = scores.map { exp($0 - m) }, total = e.reduce(0, +)
                        for j in 0...p { for i in 0..<hd { att[h * hd + i] += e[j] / total * values[j][g * hd + i] } }
                    }
                    let o = mv(L.wo, att, rows: d)
                    for i in 0..<d { xs[p][i] += o[i] }
                }
                for p in xs.indices {
                    let h = rms(xs[p], L.ffnNorm)
                    let logits = mv(L.router, h, rows: E)
                    var probs: [Double]
                    if spec.gatingFunction == 2 {
                        probs = logits.map(sigmoid)
                    } else {
                        let m = logits.max()!, e = logits.map { exp($0 - m) }, s = e.reduce(0, +)
                        probs = e.map { $0 / s }
                    }
                    let top = probs.indices.sorted { probs[$0] != probs[$1] ? probs[$0] > probs[$1] : $0 < $1 }.prefix(spec.k)
                    var w = top.map { probs[$0] }
                    if spec.effectiveNormalize { let s = w.reduce(0, +); w = w.map { $0 / s } }
                    if let scale = spec.scale { w = w.map { $0 * Double(scale) } }
                    var out = [Double](repeating: 0, count: d)
                    for (j, e) in top.enumerated() {
                        let g = mv(L.gate, h, rows: ff, offset: e * ff * d), u = mv(L.up, h, rows: ff, offset: e * ff * d)
                        let y = mv(L.down, zip(g, u).map { silu($0) * $1 }, rows: d, offset: e * d * ff)
                        for i in 0..<d { out[i] += w[j] * y[i] }
                    }
                    if let sg = L.sGate, let su = L.sUp, let sd = L.sDown {
                        let n = spec.sharedFFN
                        let g = mv(sg, h, rows: n), u = mv(su, h, rows: n)
                        let y = mv(sd, zip(g, u).map { silu($0) * $1 }, rows: d)
                        let factor = L.sRouter.map { r in sigmoid(zip(r, h).reduce(0) { $0 + $1.0 * $1.1 }) } ?? 1
                        for i in 0..<d { out[i] += factor * y[i] }
                    }
                    for i in 0..<d { xs[p][i] += out[i] }
                }
            }
            return xs.map { mv(output, rms($0, outputNorm), rows: TinyMoE.vocab) }
        }
    }
}

/// Deterministic normal numbers: SplitMix64 (QuantizationTests' generator) + Box–Muller.
struct MoERandom {
    var base: SplitMix
    init(seed: UInt64) { base = SplitMix(seed: seed) }
    mutating func next() -> UInt64 { base.next() }
    mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
    mutating func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
}
