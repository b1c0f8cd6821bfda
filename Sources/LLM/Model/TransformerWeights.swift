/// The device-resident weights of one decoder layer. Shapes are `[rows (outputs), columns (inputs)]`.
public struct LayerWeights {
    public let attentionNorm: BackendWeight   // [1, dim] f32
    public let wq: BackendWeight              // [heads · headDim, dim]
    public let wk: BackendWeight              // [kvHeads · headDim, dim]
    public let wv: BackendWeight              // [kvHeads · headDim, dim]
    public let wo: BackendWeight              // [dim, heads · headDim]
    public let ffnNorm: BackendWeight         // [1, dim] f32
    public let ffnGate: BackendWeight         // [ffnDim, dim]
    public let ffnUp: BackendWeight           // [ffnDim, dim]
    public let ffnDown: BackendWeight         // [dim, ffnDim]
}

public struct TransformerWeights {
    public let tokenEmbedding: BackendWeight  // [vocab, dim]; a row per token
    public let layers: [LayerWeights]
    public let outputNorm: BackendWeight      // [1, dim]
    /// [vocab, dim]; the same object as tokenEmbedding when the model ties them.
    public let output: BackendWeight
    public var tiedOutput: Bool { output === tokenEmbedding }

    /// Bytes of weights read to decode one token: every layer matrix once, the norms, the
    /// output matrix, and one embedding row.
    public var bytesPerDecodedToken: Int {
        var total = output.byteCount + outputNorm.byteCount
        total += tokenEmbedding.byteCount / max(tokenEmbedding.rows, 1)
        for l in layers {
            total += [l.attentionNorm, l.wq, l.wk, l.wv, l.wo, l.ffnNorm, l.ffnGate, l.ffnUp, l.ffnDown]
                .reduce(0) { $0 + $1.byteCount }
        }
        return total
    }
}

/// Uploads GGUF tensors to a backend, checking shape and type support on the way.
struct WeightLoader {
    let gguf: GGUFFile
    let backend: Backend
    /// `blk.N.` tensor names are mapped here and nowhere else.
    func layer(_ index: Int, _ suffix: String) -> String { "blk.\(index).\(suffix).weight" }

    /// Loads `name`, which must be `rows × columns` (ggml ne = [columns, rows]).
    func matrix(_ name: String, rows: Int, columns: Int, op: (GGMLType) -> BackendOp = BackendOp.matmul) throws -> BackendWeight {
        let info = try gguf.requireTensor(name)
        guard info.columns == columns, info.rows == rows, info.dimensions.count <= 2 else {
            throw ModelError.tensorShape(tensor: name, expected: [columns, rows], found: info.dimensions)
        }
        guard Quantization.decodableWeightTypes.contains(info.type), backend.supports(op(info.type)) else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try backend.makeWeight(name: name, type: info.type, rows: rows, columns: columns, bytes: gguf.bytes(of: info))
    }

    /// Loads a norm vector of `width` values. Norms are F32 in every GGUF llama.cpp writes.
    func vector(_ name: String, width: Int) throws -> BackendWeight {
        let info = try gguf.requireTensor(name)
        guard info.elementCount == width, info.dimensions.count == 1 else {
            throw ModelError.tensorShape(tensor: name, expected: [width], found: info.dimensions)
        }
        guard info.type == .f32 else {
            throw ModelError.unsupportedTensorType(tensor: name, type: info.type, backend: backend.name)
        }
        return try backend.makeWeight(name: name, type: .f32, rows: 1, columns: width, bytes: gguf.bytes(of: info))
    }
}
