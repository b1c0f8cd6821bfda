import BackendCPU
import LLM

// The GGUF reader and model loading up to the first forward pass: any bytes either give a typed
// error (GGUFError, ModelError, TokenizerError…) or a model that evaluates one token. A crash,
// an overflow trap, an ASan report or a hang (libFuzzer's -timeout) is a finding.
let backend = CPUBackend(threads: 1)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGGUF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0, let file = try? GGUFFile(unownedBytes: UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    guard let model = try? Model.load(gguf: file, backend: backend) else { return 0 }
    // A short context: the KV cache is sized by it, not by what the file claims.
    guard let transformer = try? Transformer(model: model, contextLength: 4, batchSize: 2) else { return 0 }
    if let next = try? transformer.evaluateGreedy([model.tokenizer.bos ?? 0]),
       !(0..<Int32(model.config.vocabularySize)).contains(next) {
        violated("greedy token \(next) outside the vocabulary of \(model.config.vocabularySize)")
    }
    return 0
}
