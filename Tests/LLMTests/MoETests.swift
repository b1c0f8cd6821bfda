import XCTest
import LLM
import BackendCPU

/// Mixture-of-experts layers on the CPU backend (issue #5):
/// - the Mixtral-style tiny-moe fixtures against llama.cpp's logits and expert choices;
/// - tiny Qwen2-MoE-style (shared expert, sigmoid-gated), OLMoE-style and DeepSeek-style (sigmoid
///   gating, scale, ungated shared expert) models written here, against a plain Swift loop;
/// - decode reads k experts' weights, not all of them;
/// - `experts` statistics on routers built so the answer is known in closed form.
final class MoETests: XCTestCase {

    // MARK: llama.cpp's tiny MoE

    /// F32: max |diff| 1e-4 (an exact pass is within 6.6e-6). Q8_0 as the dense Q8_0 models: llama.cpp
    /// rounds activations to Q8_0 blocks before each quantized matmul and we keep f32, which flips 2 of
    /// 224 (row, layer) expert choices; with `int8Activations` the choices all agree.
    func testTinyMoEF32MatchesLlamaCpp() throws {
        try checkGolden("tiny-moe-f32", backend: CPUBackend(threads: 2), maxDiff: 1e-4, meanDiff: 1e-5, routingMismatches: 0)
    }

    func testTinyMoEQ8_0MatchesLlamaCpp() throws {
        try checkGolden("tiny-moe-q8_0", backend: CPUBackend(threads: 2), maxDiff: 2.0, meanDiff: 0.07, routingMismatches: 2)
    }

    func testTinyMoEQ8_0WithLlamaCppRoundingRoutesIdentically() throws {
        try checkGolden("tiny-moe-q8_0", backend: CPUBackend(threads: 2, int8Activations: true),
                        maxDiff: 0.2, meanDiff: 0.01, routingMismatches: 0)
    }

    private func checkGolden(_ name: String, backend: CPUBackend, maxDiff: Float, meanDiff: Float, routingMismatches: Int) throws {
        let reference = try TokensReference(path: Fixtures.tiny(name + ".tokens.txt"))
        let expected = try NPYArray(path: Fixtures.tiny(name + ".logits.npy"))
        let routing = try RoutingReference(path: Fixtures.tiny(name + ".routing.json"))
        let model = try Model.load(path: Fixtures.tiny(name + ".gguf"), backend: backend)
        XCTAssertEqual(model.config.moe?.experts, 8)
        XCTAssertEqual(model.config.moe?.expertsPerToken, 2)
        XCTAssertEqual(model.config.moe?.gating.normalize, true)
        let session = try InferenceSession(model: model, contextLength: 128)
        let vocab = model.config.vocabularySize

        let (rows, routed) = try reference.teacherForced(session)
        let chosen = (0..<model.config.layers).map { routed[$0] ?? [] }  // [layer][row] = experts

        var mismatches: [String] = [], mismatchedRows = Set<Int>()
        for (l, layer) in chosen.enumerated() {
            XCTAssertEqual(layer.count, 56)
            for (r, experts) in layer.enumerated() where Set(experts) != Set(routing.order[l][r].prefix(2)) {
                mismatches.append("layer \(l) row \(r): ours \(experts), llama.cpp \(Array(routing.order[l][r].prefix(2)))")
                mismatchedRows.insert(r)
            }
        }
        print("\(name): \(mismatches.count) expert choices differ from llama.cpp \(mismatches)")
        XCTAssertLessThanOrEqual(mismatches.count, routingMismatches, "\(mismatches)")

        var worst: Float = 0, total: Double = 0, topWorst: Float = 0
        for (r, row) in rows.enumerated() {
            for (a, b) in zip(row, expected.row(r)) {
                worst = max(worst, abs(a - b))
                total += Double(abs(a - b))
            }
            let top = reference.top[r]
            topWorst = max(topWorst, abs(row[top[0].id] - top[0].logit))
            // A row whose experts differ from llama.cpp's computes another function: its argmax may differ.
            if top[0].logit - top[1].logit >= 0.3 && !mismatchedRows.contains(r) {
                XCTAssertEqual(row.indices.max { row[$0] < row[$1] }, top[0].id, "\(name) row \(r): argmax")
            }
        }
        let mean = Float(total / Double(rows.count * vocab))
        print("\(name) (\(backend.int8Activations ? "llama.cpp rounding" : "f32 activations")): max |diff| \(worst), mean \(mean), top-1 max \(topWorst)")
        XCTAssertLessThanOrEqual(worst, maxDiff)
        XCTAssertLessThanOrEqual(mean, meanDiff)

        // Greedy ids equal llama.cpp's up to its first near-tie, or the first row routed differently
        // (greedy id g is the argmax of row 23 + g).
        let completion = try Generator(session: session).generate(
            prompt: reference.promptIDs, options: GenerationOptions(maxTokens: 32, stopAtEndOfGeneration: false)).best
        let firstRerouted = mismatchedRows.min().map { $0 - (reference.promptIDs.count - 1) } ?? reference.greedyIDs.count
        let agree = max(0, min(reference.firstNearTie(), firstRerouted))
        XCTAssertEqual(Array(completion.tokens.prefix(agree)), Array(reference.greedyIDs.prefix(agree)), "\(name): greedy ids")
    }

    // MARK: Own families against a plain Swift loop

    func testQwen2MoEWithSigmoidGatedSharedExpert() throws {
        try checkAgainstReference(TinyMoE(architecture: "qwen2moe", experts: 6, k: 2, sharedFFN: 24, sharedGate: true, biases: true))
    }

    func testQwen3MoERenormalizes() throws {
        var spec = TinyMoE(architecture: "qwen3moe", experts: 6, k: 3)
        spec.perHeadNorms = true
        try checkAgainstReference(spec)
    }

    func testOLMoEWithFullWidthQKNorms() throws {
        try checkAgainstReference(TinyMoE(architecture: "olmoe", experts: 8, k: 2, fullNorms: true))
    }

    /// DeepSeek-style routing on a qwen2moe body: sigmoid scores, normalize, × scale, an ungated shared expert.
    func testSigmoidGatingWithScaleAndUngatedSharedExpert() throws {
        var spec = TinyMoE(architecture: "qwen2moe", experts: 8, k: 3, sharedFFN: 16, sharedGate: false, biases: true)
        spec.gatingFunction = 2
        spec.normalize = true
        spec.scale = 2.5
        try checkAgainstReference(spec)
    }

    func testMixtralStyleLlamaAgainstReference() throws {
        try checkAgainstReference(TinyMoE(architecture: "llama", experts: 4, k: 2))
    }

    private func checkAgainstReference(_ spec: TinyMoE) throws {
        let built = spec.build()
        let path = try write(built.builder)
        let model = try Model.load(path: path, backend: CPUBackend(threads: 2))
        XCTAssertEqual(model.config.moe?.experts, spec.experts)
        let session = try InferenceSession(model: model, contextLength: 64, batchSize: 16)
        let tokens: [Int32] = [1, 300, 301, 5, 77, 400, 12, 300, 9, 250, 42, 3]
        let prompt = Array(tokens.prefix(8)), vocab = model.config.vocabularySize
        var ours: [[Float]] = []
        let batch = try model.backend.download(session.evaluate(prompt, logits: .all), offset: 0, count: prompt.count * vocab)
        for r in prompt.indices { ours.append(Array(batch[(r * vocab)..<((r + 1) * vocab)])) }
        for token in tokens.dropFirst(8) {
            ours.append(try model.backend.download(session.evaluate([token], logits: .last), offset: 0, count: vocab))
        }
        let expected = built.reference.forward(tokens)
        var worst = 0.0
        for (a, b) in zip(ours, expected) { for (x, y) in zip(a, b) { worst = max(worst, abs(Double(x) - y)) } }
        print("\(spec.architecture) (E \(spec.experts), k \(spec.k)): max |ours − reference| \(worst)")
        XCTAssertLessThan(worst, 1e-4, spec.architecture)
    }

    // MARK: Decode reads k experts, not all

    /// Weight bytes the CPU backend streams for one decoded token: growing the expert count adds only
    /// the router's rows; growing k adds exactly one expert's three slices per layer per extra expert.
    func testDecodeBytesScaleWithKNotExpertCount() throws {
        func decodeBytes(experts: Int, k: Int) throws -> (bytes: Int, expertBytes: Int, predicted: Int) {
            let spec = TinyMoE(architecture: "llama", experts: experts, k: k)
            let path = try write(spec.build().builder)
            let backend = CPUBackend(threads: 2)
            let model = try Model.load(path: path, backend: backend)
            let session = try InferenceSession(model: model, contextLength: 32)
            _ = try session.evaluate([1, 300, 301, 302], logits: .last)
            backend.matmulWeightBytesRead = 0
            _ = try session.evaluate([303], logits: .last)
            let moe = try XCTUnwrap(model.weights.layers[0].moe)
            return (backend.matmulWeightBytesRead, moe.expertBytes(0), model.weights.bytesPerDecodedToken)
        }
        let layers = TinyMoE.layers, dim = TinyMoE.dim
        var table: [String] = []
        for k in [1, 2, 4] {
            let small = try decodeBytes(experts: 4, k: k), large = try decodeBytes(experts: 16, k: k)
            table.append("k \(k): E=4 \(small.bytes) B, E=16 \(large.bytes) B")
            // 12 more experts cost only 12 more router rows of f32 per layer.
            XCTAssertEqual(large.bytes - small.bytes, layers * 12 * dim * 4, "k \(k)")
            // The bytes predicted for bench match what was read, less the embedding row and norms (not matmuls).
            XCTAssertEqual(small.bytes, small.predicted - dim * 4 - (2 * layers + 1) * dim * 4, "k \(k)")
        }
        let one = try decodeBytes(experts: 8, k: 1), two = try decodeBytes(experts: 8, k: 2), four = try decodeBytes(experts: 8, k: 4)
        XCTAssertEqual(two.bytes - one.bytes, layers * one.expertBytes)
        XCTAssertEqual(four.bytes - two.bytes, 2 * layers * one.expertBytes)
        print("decode weight bytes per token: " + table.joined(separator: "; "))
    }

    // MARK: Routing statistics in closed form

    /// Token t of 4 is (after RMSNorm) √dim·e_t; attention and experts are zero, so every layer sees the
    /// same inputs. The uniform router gives token t the logit L for experts 2t and 2t+1 (0 elsewhere);
    /// the collapsed one gives every token L for experts 0 and 1.
    func testExpertStatisticsUniformRouter() throws {
        let stats = try routingStatistics(collapsed: false)
        let (q, r, z) = Self.closedForm
        XCTAssertEqual(q + 3 * r, 0.5, accuracy: 1e-12)
        for layer in stats.layers {
            XCTAssertEqual(layer.counts, Array(repeating: 3, count: 8))
            for f in layer.fractions { XCTAssertEqual(f, 0.125, accuracy: 1e-12) }
            for p in layer.meanProbs { XCTAssertEqual(p, 0.125, accuracy: 1e-6) }
            XCTAssertEqual(layer.loadBalancingLoss, 1, accuracy: 1e-5)
            XCTAssertEqual(layer.zLoss, z, accuracy: 1e-4)
            XCTAssertEqual(layer.entropy, 1, accuracy: 1e-12)
            XCTAssertFalse(layer.collapsed)
        }
        XCTAssertEqual(stats.tokens, 12)
    }

    func testExpertStatisticsCollapsedRouter() throws {
        let stats = try routingStatistics(collapsed: true)
        let (q, r, z) = Self.closedForm
        for layer in stats.layers {
            XCTAssertEqual(layer.counts, [12, 12, 0, 0, 0, 0, 0, 0])
            XCTAssertEqual(layer.fractions[0], 0.5, accuracy: 1e-12)
            XCTAssertEqual(layer.meanProbs[0], q, accuracy: 1e-6)
            XCTAssertEqual(layer.meanProbs[7], r, accuracy: 1e-6)
            XCTAssertEqual(layer.loadBalancingLoss, 8 * q, accuracy: 1e-5)
            XCTAssertEqual(layer.zLoss, z, accuracy: 1e-4)
            XCTAssertEqual(layer.entropy, log(2) / log(8), accuracy: 1e-12)
            XCTAssertTrue(layer.collapsed)
        }
    }

    /// Router logit L = 2: q = e^L/(2e^L + 6) for the two chosen experts, r = 1/(2e^L + 6) for the others,
    /// z-loss = ln(2e^L + 6)².
    static let routerLogit = 2.0
    static var closedForm: (q: Double, r: Double, z: Double) {
        let denominator = 2 * exp(routerLogit) + 6
        return (exp(routerLogit) / denominator, 1 / denominator, pow(log(denominator), 2))
    }

    private func routingStatistics(collapsed: Bool) throws -> RoutingStatistics {
        let dim = 8, experts = 8, vocab = 512
        var b = TinyMoE.tokenizerBuilder()
        b.metadata += [
            ("general.architecture", .string("llama")), ("llama.block_count", .uint32(2)),
            ("llama.embedding_length", .uint32(UInt32(dim))), ("llama.feed_forward_length", .uint32(4)),
            ("llama.attention.head_count", .uint32(2)), ("llama.attention.head_count_kv", .uint32(2)),
            ("llama.context_length", .uint32(64)), ("llama.attention.layer_norm_rms_epsilon", .float32(1e-5)),
            ("llama.expert_count", .uint32(UInt32(experts))), ("llama.expert_used_count", .uint32(2)),
        ]
        // Token 300 + t (t < 4) embeds as 10·e_t; RMSNorm (eps 1e-5) turns it into s·e_t.
        var embedding = [Float](repeating: 0, count: vocab * dim)
        for t in 0..<4 { embedding[(300 + t) * dim + t] = 10 }
        let s = 10 / (100.0 / Double(dim) + 1e-5).squareRoot()
        let a = Float(Self.routerLogit / s)
        var router = [Float](repeating: 0, count: experts * dim)
        for e in 0..<experts {
            for d in 0..<4 where collapsed ? e < 2 : d == e / 2 { router[e * dim + d] = a }
        }
        func add(_ name: String, _ dims: [Int], _ values: [Float]) { b.tensors.append((name, dims, .f32, floatBytes(values))) }
        func zeros(_ n: Int) -> [Float] { Array(repeating: 0, count: n) }
        add("token_embd.weight", [dim, vocab], embedding)
        add("output_norm.weight", [dim], Array(repeating: 1, count: dim))
        add("output.weight", [dim, vocab], zeros(dim * vocab))
        for l in 0..<2 {
            add("blk.\(l).attn_norm.weight", [dim], Array(repeating: 1, count: dim))
            for n in ["attn_q", "attn_k", "attn_v", "attn_output"] { add("blk.\(l).\(n).weight", [dim, dim], zeros(dim * dim)) }
            add("blk.\(l).ffn_norm.weight", [dim], Array(repeating: 1, count: dim))
            add("blk.\(l).ffn_gate_inp.weight", [dim, experts], router)
            add("blk.\(l).ffn_gate_exps.weight", [dim, 4, experts], zeros(dim * 4 * experts))
            add("blk.\(l).ffn_up_exps.weight", [dim, 4, experts], zeros(dim * 4 * experts))
            add("blk.\(l).ffn_down_exps.weight", [4, dim, experts], zeros(dim * 4 * experts))
        }
        let model = try Model.load(path: try write(b), backend: CPUBackend(threads: 1))
        let session = try InferenceSession(model: model, contextLength: 32)
        let tokens = (0..<12).map { Int32(300 + $0 % 4) }
        return try RoutingStatistics.collect(session: session, tokens: tokens)
    }

    // MARK: CLI

    /// `llm-gpu experts --json` over the fixture prompt: counts equal llama.cpp's (Tests/Fixtures/tiny/README.md).
    func testExpertsCommandCountsMatchLlamaCpp() throws {
        let result = try runCLI(["experts", "--model", Fixtures.tiny("tiny-moe-f32.gguf"), "--prompt",
                                 "Once upon a time there was a little girl named Lily. She saw a big dog in the park.", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertEqual(object["tokens"] as? Int, 24)
        XCTAssertEqual(object["experts_per_token"] as? Int, 2)
        let layers = try XCTUnwrap(object["layers"] as? [[String: Any]])
        XCTAssertEqual(layers.map { $0["counts"] as? [Int] ?? [] }, [
            [3, 9, 8, 3, 8, 8, 6, 3], [6, 9, 8, 6, 9, 1, 3, 6], [4, 5, 5, 10, 7, 3, 4, 10], [3, 4, 4, 17, 4, 1, 5, 10]])
        for layer in layers {
            for key in ["fractions", "mean_probs", "load_balancing_loss", "z_loss", "entropy", "collapsed"] {
                XCTAssertNotNil(layer[key], key)
            }
        }
        let text = try runCLI(["experts", "--model", Fixtures.tiny("tiny-moe-f32.gguf"), "--prompt", "Once upon a time"])
        XCTAssertEqual(text.status, 0, text.stderr)
        XCTAssertTrue(text.stdout.contains("layer 3"), text.stdout)
        let dense = try runCLI(["experts", "--model", Fixtures.tiny("tiny-llama-f32.gguf"), "--prompt", "Once"])
        XCTAssertEqual(dense.status, 1)
        XCTAssertTrue(dense.stderr.contains("dense model"), dense.stderr)
    }

    private func runCLI(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let result = try LLMGPUExecutable.run(arguments)
        return (result.status, result.stdout, result.stderr)
    }

    private func write(_ builder: GGUFBuilder) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llm-gpu-moe-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("model.gguf")
        try Data(builder.bytes()).write(to: url)
        return url.path
    }
}

/// llama.cpp's expert choices (`*.routing.json`): order[layer][row] = experts by probability, best first.
struct RoutingReference {
    let order: [[[Int]]]
    init(path: String) throws {
        let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        let layers = object?["layers"] as? [[String: Any]] ?? []
        order = layers.map { $0["order"] as? [[Int]] ?? [] }
    }
}

func floatBytes(_ values: [Float]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }
}
