/// Everything that can be wrong with a GGUF file. Each case names the field and the byte
/// offset at which the reader found the problem, so a user can tell a truncated download
/// from a hostile or simply unsupported file.
public enum GGUFError: Error, Equatable, CustomStringConvertible {
    case cannotOpen(path: String, reason: String)
    case badMagic(found: String)
    case unsupportedVersion(UInt32)
    /// The file ends before `field` (which needs `needed` bytes at `offset`) is complete.
    case truncated(field: String, offset: Int, needed: Int)
    /// A count, length, dimension or offset that cannot be right for this file.
    case invalid(field: String, offset: Int, reason: String)
    case unknownValueType(key: String, type: UInt32, offset: Int)
    case unknownTensorType(tensor: String, type: UInt32, offset: Int)
    case duplicateKey(String, offset: Int)
    case duplicateTensor(String, offset: Int)
    case tensorOutOfBounds(tensor: String, start: Int, end: Int, fileSize: Int)
    case missingKey(String)
    case wrongValueType(key: String, expected: String, found: String)
    case missingTensor(String)

    public var description: String {
        switch self {
        case let .cannotOpen(path, reason):
            return "cannot open '\(path)': \(reason)"
        case let .badMagic(found):
            return "not a GGUF file: magic is \(found), expected \"GGUF\" at byte 0"
        case let .unsupportedVersion(version):
            return "unsupported GGUF version \(version) at byte 4 (supported: 2, 3)"
        case let .truncated(field, offset, needed):
            return "GGUF file is truncated: \(field) needs \(needed) bytes at byte \(offset)"
        case let .invalid(field, offset, reason):
            return "corrupt GGUF file: \(field) at byte \(offset): \(reason)"
        case let .unknownValueType(key, type, offset):
            return "corrupt GGUF file: metadata \(key.quotedForError) has unknown value type \(type) at byte \(offset)"
        case let .unknownTensorType(tensor, type, offset):
            return "unsupported GGUF tensor type \(type) for tensor \(tensor.quotedForError) at byte \(offset)"
        case let .duplicateKey(key, offset):
            return "corrupt GGUF file: metadata key \(key.quotedForError) repeated at byte \(offset)"
        case let .duplicateTensor(name, offset):
            return "corrupt GGUF file: tensor \(name.quotedForError) repeated at byte \(offset)"
        case let .tensorOutOfBounds(tensor, start, end, fileSize):
            return "corrupt or truncated GGUF file: tensor \(tensor.quotedForError) spans bytes \(start)..<\(end), past the end of the file (\(fileSize) bytes)"
        case let .missingKey(key):
            return "GGUF metadata lacks required key \(key.quotedForError)"
        case let .wrongValueType(key, expected, found):
            return "GGUF metadata \(key.quotedForError) is \(found), expected \(expected)"
        case let .missingTensor(name):
            return "GGUF file lacks required tensor \(name.quotedForError)"
        }
    }
}
