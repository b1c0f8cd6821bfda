import Foundation
import LLM

/// Writes small GGUF files byte by byte, so tests can make valid ones and then break them.
struct GGUFBuilder {
    var version: UInt32 = 3
    var alignment = 32
    var metadata: [(String, GGUFValue)] = []
    var tensors: [(name: String, dims: [Int], type: GGMLType, data: [UInt8])] = []

    /// Byte offset of the tensor count, metadata count, and of each tensor info's fields, for targeted corruption.
    private(set) var tensorCountOffset = 8
    private(set) var metadataCountOffset = 16

    func bytes() -> [UInt8] {
        var out: [UInt8] = Array("GGUF".utf8)
        put(&out, version)
        put(&out, UInt64(tensors.count))
        put(&out, UInt64(metadata.count))
        for (key, value) in metadata {
            putString(&out, key)
            putValue(&out, value, withTag: true)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset += (t.data.count + alignment - 1) / alignment * alignment
        }
        for (i, t) in tensors.enumerated() {
            putString(&out, t.name)
            put(&out, UInt32(t.dims.count))
            for d in t.dims { put(&out, UInt64(d)) }
            put(&out, t.type.rawValue)
            put(&out, UInt64(offsets[i]))
        }
        while out.count % alignment != 0 { out.append(0) }
        for t in tensors {
            out += t.data
            while out.count % alignment != 0 { out.append(0) }
        }
        return out
    }

    private func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }

    private func putString(_ out: inout [UInt8], _ s: String) {
        put(&out, UInt64(s.utf8.count))
        out += Array(s.utf8)
    }

    private func tag(_ v: GGUFValue) -> UInt32 {
        switch v {
        case .uint8: return 0
        case .int8: return 1
        case .uint16: return 2
        case .int16: return 3
        case .uint32: return 4
        case .int32: return 5
        case .float32: return 6
        case .bool: return 7
        case .string: return 8
        case .array: return 9
        case .uint64: return 10
        case .int64: return 11
        case .float64: return 12
        }
    }

    private func putValue(_ out: inout [UInt8], _ v: GGUFValue, withTag: Bool) {
        if withTag { put(&out, tag(v)) }
        switch v {
        case .uint8(let x): put(&out, x)
        case .int8(let x): put(&out, x)
        case .uint16(let x): put(&out, x)
        case .int16(let x): put(&out, x)
        case .uint32(let x): put(&out, x)
        case .int32(let x): put(&out, x)
        case .uint64(let x): put(&out, x)
        case .int64(let x): put(&out, x)
        case .float32(let x): put(&out, x.bitPattern)
        case .float64(let x): put(&out, x.bitPattern)
        case .bool(let x): out.append(x ? 1 : 0)
        case .string(let s): putString(&out, s)
        case .array(let items):
            put(&out, items.first.map(tag) ?? 0)
            put(&out, UInt64(items.count))
            for item in items { putValue(&out, item, withTag: false) }
        }
    }
}

extension Array where Element == UInt8 {
    /// Parses these bytes as a GGUF file.
    func parseGGUF() throws -> GGUFFile {
        // The parsed file only views the bytes while parsing metadata (strings are copied),
        // but tensor views would dangle: tests here look at metadata and tensor infos only.
        try withUnsafeBytes { try GGUFFile(unownedBytes: $0) }
    }

    mutating func overwrite<T: FixedWidthInteger>(at offset: Int, with value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { bytes in
            for (i, b) in bytes.enumerated() { self[offset + i] = b }
        }
    }
}
