/// Why a GGUF file's vocabulary could not be turned into a tokenizer. Each message names
/// the metadata key and, where there is one, the offending value.
public enum TokenizerError: Error, Equatable, CustomStringConvertible {
    case missingKey(String)
    /// `tokenizer.ggml.model` names a tokenizer this engine does not implement.
    case unsupportedModel(key: String, value: String)
    /// `tokenizer.ggml.pre` names a pre-tokenizer this engine does not implement.
    case unsupportedPreTokenizer(key: String, value: String)
    case invalidMetadata(key: String, reason: String)
    case duplicateToken(text: String, firstID: Int, secondID: Int)
    /// An add-token flag is set but the token it adds is not defined.
    case missingSpecialToken(flagKey: String, idKey: String)

    public var description: String {
        switch self {
        case let .missingKey(key):
            return "GGUF metadata lacks the tokenizer key '\(key)'"
        case let .unsupportedModel(key, value):
            return "unsupported tokenizer: \(key) = \(value.quotedForError) (supported: 'llama' for SentencePiece, 'gpt2' for byte-level BPE)"
        case let .unsupportedPreTokenizer(key, value):
            return "unsupported pre-tokenizer: \(key) = \(value.quotedForError) (supported: \(PreTokenizerConfig.supportedNames.joined(separator: ", ")))"
        case let .invalidMetadata(key, reason):
            return "invalid tokenizer metadata '\(key)': \(reason)"
        case let .duplicateToken(text, first, second):
            return "invalid tokenizer metadata 'tokenizer.ggml.tokens': token \(text.quotedForError) appears as both id \(first) and id \(second)"
        case let .missingSpecialToken(flagKey, idKey):
            return "invalid tokenizer metadata: \(flagKey) is true but \(idKey) is not set"
        }
    }
}
