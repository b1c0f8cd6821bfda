/// What `llm-gpu inspect` says a loaded model is made of, derived from its config and weights.
extension Model {
    /// One short phrase per feature of the decoder, in graph order.
    public var features: [String] {
        let c = config, layer = weights.layers.first
        var list: [String] = []
        if let mla = c.latentAttention {
            list.append("multi-head latent attention (\(c.heads) heads, q rank \(mla.qLoraRank == 0 ? "full" : "\(mla.qLoraRank)"), "
                        + "kv rank \(mla.kvLoraRank), q/k \(mla.nopeDim)+\(mla.ropeDim) rope, v \(mla.valueDim))")
        } else {
            list.append(c.kvHeads == c.heads ? "multi-head attention (\(c.heads) heads of \(c.headDim))"
                        : "grouped-query attention (\(c.heads) heads, \(c.kvHeads) kv heads of \(c.headDim))")
        }
        switch c.positionEncoding {
        case .rope: list.append("RoPE \(c.rope.style.rawValue) (\(c.rope.dimensions) dims, base \(c.rope.base)\(c.rope.positionScale != 1 ? ", linear ×\(1 / c.rope.positionScale)" : ""))")
        case .learned: list.append("learned positions (\(c.trainedContext))")
        }
        list.append(c.normalization == .rms ? "RMSNorm" : "LayerNorm with bias")
        if layer?.qBias != nil || layer?.oBias != nil { list.append("projection biases") }
        if layer?.qNorm != nil { list.append("q/k norms") }
        if c.layerWindows.contains(where: { $0 > 0 }) { list.append("sliding window \(c.layerWindows.max() ?? 0)") }
        if c.attentionSoftcap != nil || c.finalLogitSoftcap != nil { list.append("soft-capping") }
        switch c.ffnActivation {
        case .silu: list.append("SwiGLU FFN")
        case .geluTanh: list.append("GeGLU FFN")
        case .gelu: list.append("GELU FFN (ungated)")
        }
        if let moe = c.moe {
            let g = moe.gating
            var text = "MoE \(moe.experts) experts, top-\(g.k), \(g.function.rawValue)"
            if weights.layers.contains(where: { $0.moe?.selectionBias != nil }) { text += ", selection bias" }
            if g.limitsGroups { text += ", \(g.groupsUsed) of \(g.groups) groups" }
            if g.normalize { text += ", normalized" }
            if g.scale != 1 { text += ", ×\(g.scale)" }
            if moe.sharedFFNDim > 0 { text += ", shared expert" }
            let dense = weights.layers.filter { $0.moe == nil }.count
            if dense > 0 { text += ", \(dense) dense layer\(dense == 1 ? "" : "s")" }
            list.append(text)
        }
        list.append(weights.tiedOutput ? "tied output" : "separate output")
        return list
    }

    /// Bytes the KV cache holds per token (f32, all layers), and what full per-head keys and values
    /// would take (equal except for latent attention, whose cache is one [c | k_pe] row).
    public var kvBytesPerToken: (cached: Int, full: Int) {
        let c = config
        if let mla = c.latentAttention {
            return (c.layers * mla.latentBytesPerLayer, c.layers * mla.fullBytesPerLayer(heads: c.heads))
        }
        let bytes = c.layers * 2 * c.kvHeads * c.headDim * 4
        return (bytes, bytes)
    }
}
