#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One tensor's entry in the GGUF tensor table. `dimensions` are in ggml's order:
/// `dimensions[0]` is the innermost (contiguous) one, so a weight matrix of
/// `rows` outputs over `columns` inputs is `[columns, rows]`.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let dimensions: [Int]
    public let type: GGMLType
    /// Absolute byte offset of the first block in the file.
    public let fileOffset: Int
    public let byteCount: Int

    public var elementCount: Int { dimensions.reduce(1, *) }
    /// Elements in one contiguous row (ne0).
    public var columns: Int { dimensions.first ?? 1 }
    /// Number of rows: the product of every dimension but the first.
    public var rows: Int { dimensions.dropFirst().reduce(1, *) }
}

/// A memory-mapped GGUF file (versions 2 and 3). Metadata and the tensor table are parsed
/// and validated on open; tensor data is never copied, only viewed in the mapping.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order, for display.
    public let metadataKeys: [String]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    public let fileSize: Int

    private let base: UnsafeRawPointer
    private let mappedLength: Int
    private let tensorIndex: [String: Int]

    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError.cannotOpen(path: path, reason: Self.errnoText()) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw GGUFError.cannotOpen(path: path, reason: Self.errnoText()) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw GGUFError.cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        guard size > 0 else { throw GGUFError.truncated(field: "magic", offset: 0, needed: 4) }
        guard let mapping = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), mapping != MAP_FAILED else {
            throw GGUFError.cannotOpen(path: path, reason: "mmap failed: \(Self.errnoText())")
        }
        do {
            try self.init(path: path, base: UnsafeRawPointer(mapping), length: size, owned: true)
        } catch {
            munmap(mapping, size)
            throw error
        }
    }

    /// Parses bytes already in memory (used by tests to feed corrupt files). The buffer
    /// must outlive the returned object.
    public convenience init(unownedBytes: UnsafeRawBufferPointer, name: String = "<memory>") throws {
        guard let base = unownedBytes.baseAddress, unownedBytes.count > 0 else {
            throw GGUFError.truncated(field: "magic", offset: 0, needed: 4)
        }
        try self.init(path: name, base: base, length: unownedBytes.count, owned: false)
    }

    private let ownsMapping: Bool

    /// The GGUF specification's bound on a metadata key, in bytes.
    public static let maxKeyLength = 65_535
    /// ggml's bound on a tensor name (GGML_MAX_NAME, with its terminating zero), in bytes.
    public static let maxTensorNameLength = 63

    private init(path: String, base: UnsafeRawPointer, length: Int, owned: Bool) throws {
        var reader = ByteReader(base: base, count: length)
        let header = try reader.header()
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        keys.reserveCapacity(min(header.kvCount, 4096))
        var alignmentOffset = 0
        for index in 0..<header.kvCount {
            let keyOffset = reader.offset
            let key = try reader.string(field: "metadata[\(index)].key", limit: GGUFFile.maxKeyLength)
            guard metadata[key] == nil else { throw GGUFError.duplicateKey(key, offset: keyOffset) }
            if key == "general.alignment" { alignmentOffset = reader.offset + 4 }
            metadata[key] = try reader.value(key: key)
            keys.append(key)
        }

        var alignment = 32
        if let value = metadata["general.alignment"] {
            guard let a = value.intValue, a > 0, a & (a - 1) == 0, a <= 1 << 20 else {
                throw GGUFError.invalid(field: "general.alignment", offset: alignmentOffset,
                                        reason: "\(value.shownInError) is not a power of two from 1 to 2^20")
            }
            alignment = a
        }

        var infos: [(name: String, dims: [Int], type: GGMLType, relative: Int, at: Int)] = []
        infos.reserveCapacity(header.tensorCount)
        var index: [String: Int] = [:]
        for t in 0..<header.tensorCount {
            let at = reader.offset
            let name = try reader.string(field: "tensor[\(t)].name", limit: GGUFFile.maxTensorNameLength)
            guard index[name] == nil else { throw GGUFError.duplicateTensor(name, offset: at) }
            let dimsOffset = reader.offset
            let dimCount = Int(try reader.u32(field: "tensor \(name.quotedForError) dimension count"))
            guard (1...4).contains(dimCount) else {
                throw GGUFError.invalid(field: "tensor \(name.quotedForError) dimension count", offset: dimsOffset,
                                        reason: "\(dimCount) (ggml allows 1 to 4)")
            }
            var dims: [Int] = []
            for d in 0..<dimCount {
                let dOffset = reader.offset
                let raw = try reader.u64(field: "tensor \(name.quotedForError) dimension \(d)")
                guard raw > 0, raw <= UInt64(Int32.max) else {
                    throw GGUFError.invalid(field: "tensor \(name.quotedForError) dimension \(d)", offset: dOffset,
                                            reason: "\(raw) is out of range")
                }
                dims.append(Int(raw))
            }
            let typeOffset = reader.offset
            let rawType = try reader.u32(field: "tensor \(name.quotedForError) type")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError.unknownTensorType(tensor: name, type: rawType, offset: typeOffset)
            }
            let relOffset = reader.offset
            let rel = try reader.u64(field: "tensor \(name.quotedForError) offset")
            guard rel <= UInt64(Int.max / 2), Int(rel) % alignment == 0 else {
                throw GGUFError.invalid(field: "tensor \(name.quotedForError) offset", offset: relOffset,
                                        reason: "\(rel) is not a multiple of the alignment \(alignment)")
            }
            index[name] = infos.count
            infos.append((name, dims, type, Int(rel), at))
        }

        let (dataStart, overflow) = reader.offset.addingReportingOverflow((alignment - reader.offset % alignment) % alignment)
        guard !overflow else { throw GGUFError.invalid(field: "tensor data", offset: reader.offset, reason: "overflow") }

        var tensors: [GGUFTensorInfo] = []
        tensors.reserveCapacity(infos.count)
        for info in infos {
            guard info.dims[0] % info.type.blockSize == 0, let rowBytes = info.type.rowBytes(info.dims[0]) else {
                throw GGUFError.invalid(field: "tensor \(info.name.quotedForError) dimension 0", offset: info.at,
                                        reason: "\(info.dims[0]) is not a multiple of \(info.type)'s block of \(info.type.blockSize)")
            }
            var bytes = rowBytes
            for d in info.dims.dropFirst() {
                let (product, o) = bytes.multipliedReportingOverflow(by: d)
                guard !o else {
                    throw GGUFError.invalid(field: "tensor \(info.name.quotedForError) size", offset: info.at, reason: "overflows")
                }
                bytes = product
            }
            let (start, o1) = dataStart.addingReportingOverflow(info.relative)
            let (end, o2) = start.addingReportingOverflow(bytes)
            guard !o1, !o2, end <= length else {
                throw GGUFError.tensorOutOfBounds(tensor: info.name, start: o1 ? Int.max : start,
                                                  end: (o1 || o2) ? Int.max : end, fileSize: length)
            }
            tensors.append(GGUFTensorInfo(name: info.name, dimensions: info.dims, type: info.type,
                                          fileOffset: start, byteCount: bytes))
        }

        self.path = path
        self.version = header.version
        self.metadata = metadata
        self.metadataKeys = keys
        self.tensors = tensors
        self.alignment = alignment
        self.dataOffset = dataStart
        self.fileSize = length
        self.base = base
        self.mappedLength = length
        self.tensorIndex = index
        self.ownsMapping = owned
    }

    deinit {
        if ownsMapping { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }
    }

    // MARK: Tensors

    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    public func requireTensor(_ name: String) throws -> GGUFTensorInfo {
        guard let info = tensor(name) else { throw GGUFError.missingTensor(name) }
        return info
    }

    /// The tensor's bytes inside the mapping: valid while this file object lives.
    public func bytes(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + tensor.fileOffset, count: tensor.byteCount)
    }

    // MARK: Typed metadata access

    public subscript(key: String) -> GGUFValue? { metadata[key] }

    public func string(_ key: String) throws -> String {
        let value = try require(key)
        guard let s = value.stringValue else { throw GGUFError.wrongValueType(key: key, expected: "string", found: value.typeName) }
        return s
    }

    public func int(_ key: String) throws -> Int {
        let value = try require(key)
        guard let i = value.intValue else { throw GGUFError.wrongValueType(key: key, expected: "integer", found: value.typeName) }
        return i
    }

    public func float(_ key: String) throws -> Double {
        let value = try require(key)
        guard let f = value.floatValue else { throw GGUFError.wrongValueType(key: key, expected: "number", found: value.typeName) }
        return f
    }

    public func stringArray(_ key: String) throws -> [String] {
        try array(key, expected: "array of strings") { $0.stringValue }
    }

    public func floatArray(_ key: String) throws -> [Float] {
        try array(key, expected: "array of numbers") { $0.floatValue.map(Float.init) }
    }

    public func intArray(_ key: String) throws -> [Int] {
        try array(key, expected: "array of integers") { $0.intValue }
    }

    private func require(_ key: String) throws -> GGUFValue {
        guard let value = metadata[key] else { throw GGUFError.missingKey(key) }
        return value
    }

    private func array<T>(_ key: String, expected: String, _ convert: (GGUFValue) -> T?) throws -> [T] {
        let value = try require(key)
        guard let items = value.arrayValue else {
            throw GGUFError.wrongValueType(key: key, expected: expected, found: value.typeName)
        }
        var out: [T] = []
        out.reserveCapacity(items.count)
        for item in items {
            guard let converted = convert(item) else {
                throw GGUFError.wrongValueType(key: key, expected: expected, found: "array of \(item.typeName)")
            }
            out.append(converted)
        }
        return out
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

/// A bounds-checked cursor over the mapped bytes. Every read checks the remaining length
/// first, so a hostile count can never make the reader step outside the file.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    private(set) var offset = 0

    init(base: UnsafeRawPointer, count: Int) {
        self.base = base
        self.count = count
    }

    var remaining: Int { count - offset }

    mutating func need(_ bytes: Int, _ field: @autoclosure () -> String) throws {
        guard bytes >= 0, bytes <= remaining else {
            throw GGUFError.truncated(field: field(), offset: offset, needed: bytes)
        }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, field: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, field())
        let v = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    mutating func u32(field: @autoclosure () -> String) throws -> UInt32 { try load(UInt32.self, field: field()) }
    mutating func u64(field: @autoclosure () -> String) throws -> UInt64 { try load(UInt64.self, field: field()) }

    mutating func header() throws -> (version: UInt32, tensorCount: Int, kvCount: Int) {
        try need(4, "magic")
        let magic = (0..<4).map { base.load(fromByteOffset: $0, as: UInt8.self) }
        guard magic == Array("GGUF".utf8) else {
            let shown = magic.map { (32...126).contains($0) ? String(UnicodeScalar($0)) : "\\x" + String($0, radix: 16) }.joined()
            throw GGUFError.badMagic(found: "\"\(shown)\"")
        }
        offset = 4
        let version = try u32(field: "version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        let tcOffset = offset
        let tensorCount = try u64(field: "tensor count")
        let kvOffset = offset
        let kvCount = try u64(field: "metadata count")
        // A tensor entry takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes, a key-value pair
        // at least 8 + 4 + 1: counts that cannot fit in the file are rejected before any allocation.
        guard tensorCount <= UInt64(remaining / 32) else {
            throw GGUFError.invalid(field: "tensor count", offset: tcOffset,
                                    reason: "\(tensorCount) tensors cannot fit in \(count) bytes")
        }
        guard kvCount <= UInt64(remaining / 13) else {
            throw GGUFError.invalid(field: "metadata count", offset: kvOffset,
                                    reason: "\(kvCount) entries cannot fit in \(count) bytes")
        }
        return (version, Int(tensorCount), Int(kvCount))
    }

    /// A length-prefixed string. The length is checked against `limit` and the bytes left
    /// before anything is read or allocated, so a bogus length costs nothing.
    mutating func string(field: @autoclosure () -> String, limit: Int = .max) throws -> String {
        let lengthOffset = offset
        let length = try u64(field: field() + " length")
        guard length <= UInt64(limit) else {
            throw GGUFError.invalid(field: field() + " length", offset: lengthOffset,
                                    reason: "\(length) bytes is over the limit of \(limit)")
        }
        guard length <= UInt64(remaining) else {
            throw GGUFError.truncated(field: field(), offset: lengthOffset + 8, needed: length > UInt64(Int.max) ? Int.max : Int(length))
        }
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: Int(length))
        offset += Int(length)
        // Invalid UTF-8 is repaired rather than rejected: llama.cpp vocabularies hold raw byte pieces.
        return String(decoding: bytes, as: UTF8.self)
    }

    mutating func value(key: String) throws -> GGUFValue {
        let typeOffset = offset
        let raw = try u32(field: "metadata \(key.quotedForError) type")
        guard let tag = GGUFValue.Tag(rawValue: raw) else {
            throw GGUFError.unknownValueType(key: key, type: raw, offset: typeOffset)
        }
        return try value(tag, key: key, depth: 0)
    }

    private mutating func value(_ tag: GGUFValue.Tag, key: String, depth: Int) throws -> GGUFValue {
        // Built only when an error needs it: this runs once per vocabulary entry.
        func field() -> String { "metadata \(key.quotedForError)" }
        switch tag {
        case .uint8: return .uint8(try load(UInt8.self, field: field()))
        case .int8: return .int8(try load(Int8.self, field: field()))
        case .uint16: return .uint16(try load(UInt16.self, field: field()))
        case .int16: return .int16(try load(Int16.self, field: field()))
        case .uint32: return .uint32(try load(UInt32.self, field: field()))
        case .int32: return .int32(try load(Int32.self, field: field()))
        case .uint64: return .uint64(try load(UInt64.self, field: field()))
        case .int64: return .int64(try load(Int64.self, field: field()))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, field: field())))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, field: field())))
        case .bool:
            let at = offset
            let b = try load(UInt8.self, field: field())
            guard b <= 1 else { throw GGUFError.invalid(field: field(), offset: at, reason: "bool is \(b)") }
            return .bool(b == 1)
        case .string: return .string(try string(field: field()))
        case .array:
            let at = offset
            let rawType = try u32(field: field() + " element type")
            guard let elementTag = GGUFValue.Tag(rawValue: rawType) else {
                throw GGUFError.unknownValueType(key: key, type: rawType, offset: at)
            }
            guard depth < 4 else { throw GGUFError.invalid(field: field(), offset: at, reason: "arrays nested too deeply") }
            let countOffset = offset
            let n = try u64(field: field() + " element count")
            guard n <= UInt64(remaining / elementTag.minimumSize) else {
                throw GGUFError.invalid(field: field() + " element count", offset: countOffset,
                                        reason: "\(n) elements cannot fit in the \(remaining) bytes left")
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<Int(n) { items.append(try value(elementTag, key: key, depth: depth + 1)) }
            return .array(items)
        }
    }
}
