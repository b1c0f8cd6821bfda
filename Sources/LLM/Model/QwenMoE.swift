// Follows llama.cpp's LLM_ARCH_QWEN2MOE and LLM_ARCH_QWEN3MOE graphs: the qwen2 (biases on q, k,
// v) or qwen3 (per-head q/k RMSNorm) attention of Qwen2.swift, with every FFN a mixture of experts.
// Where they differ (Model/MixtureOfExperts.swift has the routing formulas):
// - qwen2moe: softmax top-k with no renormalization (unless the file carries `expert_weights_norm`),
//   plus a shared expert (`ffn_{gate,up,down}_shexp`, width `expert_shared_feed_forward_length`)
//   scaled by σ(`ffn_gate_inp_shexp` · h).
// - qwen3moe: softmax top-k, renormalized; no shared expert.
// The per-expert width is `expert_feed_forward_length`, taken here from the tensor shape.

enum QwenMoE {
    static func load(gguf: GGUFFile, backend: Backend, architecture: String) throws -> (ModelConfig, TransformerWeights) {
        var config = try ModelConfig(gguf: gguf, architecture: architecture, ropeStyle: .neox)
        guard let moe = try MoEConfig.read(gguf: gguf, architecture: architecture, dim: config.dim,
                                           normalizeByDefault: architecture == "qwen3moe") else {
            throw ModelError.invalidHyperparameter(key: "blk.0.ffn_gate_inp.weight", value: "missing (\(architecture) needs a router)")
        }
        if let width = gguf["\(architecture).expert_feed_forward_length"]?.intValue, width != moe.expertFFNDim {
            throw ModelError.invalidHyperparameter(key: "\(architecture).expert_feed_forward_length",
                                                   value: "\(width) (the expert tensors have \(moe.expertFFNDim))")
        }
        config.moe = moe
        return try Qwen2.load(config: config, gguf: gguf, backend: backend)
    }
}
