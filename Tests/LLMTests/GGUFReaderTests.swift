import XCTest
import LLM

final class GGUFReaderTests: XCTestCase {
    /// A small valid file: every metadata value type, a nested array, and two tensors.
    private func validBuilder() -> GGUFBuilder {
        var b = GGUFBuilder()
        b.metadata = [
            ("general.architecture", .string("llama")),
            ("u8", .uint8(200)), ("i8", .int8(-5)), ("u16", .uint16(60000)), ("i16", .int16(-300)),
            ("u32", .uint32(4_000_000_000)), ("i32", .int32(-7)), ("u64", .uint64(1 << 40)), ("i64", .int64(-(1 << 40))),
            ("f32", .float32(1.5)), ("f64", .float64(-2.25)), ("flag", .bool(true)),
            ("strings", .array([.string("a"), .string("ünï")])),
            ("nested", .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])])),
        ]
        b.tensors = [
            ("weights", [32, 2], .q8_0, [UInt8](repeating: 1, count: 68)),
            ("norm", [3], .f32, [UInt8](repeating: 0, count: 12)),
        ]
        return b
    }

    func testReadsEveryValueTypeAndTensorTable() throws {
        let bytes = validBuilder().bytes()
        let file = try bytes.parseGGUF()
        XCTAssertEqual(file.version, 3)
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(file["u8"], .uint8(200))
        XCTAssertEqual(file["i16"], .int16(-300))
        XCTAssertEqual(try file.int("u32"), 4_000_000_000)
        XCTAssertEqual(try file.int("i64"), -(1 << 40))
        XCTAssertEqual(try file.float("f64"), -2.25)
        XCTAssertEqual(file["flag"], .bool(true))
        XCTAssertEqual(try file.stringArray("strings"), ["a", "ünï"])
        XCTAssertEqual(file["nested"], .array([.array([.int32(1), .int32(2)]), .array([.int32(3)])]))
        XCTAssertEqual(file.tensors.map(\.name), ["weights", "norm"])
        let w = try XCTUnwrap(file.tensor("weights"))
        XCTAssertEqual(w.type, .q8_0)
        XCTAssertEqual(w.dimensions, [32, 2])
        XCTAssertEqual(w.byteCount, 68)
        XCTAssertEqual(w.fileOffset % 32, 0)
        XCTAssertEqual(file.tensor("norm")?.fileOffset, w.fileOffset + 96)
    }

    func testVersion2IsAccepted() throws {
        var b = validBuilder()
        b.version = 2
        XCTAssertEqual(try b.bytes().parseGGUF().version, 2)
    }

    func testWrongMagic() {
        var bytes = validBuilder().bytes()
        bytes[0] = UInt8(ascii: "X")
        assertError(bytes) { if case .badMagic = $0 { return true }; return false }
    }

    func testUnsupportedVersion() {
        var bytes = validBuilder().bytes()
        bytes.overwrite(at: 4, with: UInt32(1))
        XCTAssertThrowsError(try bytes.parseGGUF()) { XCTAssertEqual($0 as? GGUFError, .unsupportedVersion(1)) }
    }

    /// Every truncation of the header, metadata and tensor table fails with a typed error, never a trap.
    func testEveryTruncationIsATypedError() throws {
        let bytes = validBuilder().bytes()
        let file = try bytes.parseGGUF()
        let headerEnd = file.dataOffset
        for length in 0..<headerEnd {
            XCTAssertThrowsError(try Array(bytes.prefix(length)).parseGGUF(), "prefix \(length)") { error in
                XCTAssertTrue(error is GGUFError, "prefix \(length): \(error)")
            }
        }
        // Cut inside the tensor data: the last tensor then extends past the end.
        assertError(Array(bytes.prefix(bytes.count - 40))) {
            if case .tensorOutOfBounds(let name, _, _, _) = $0 { return name == "norm" }; return false
        }
    }

    func testAbsurdCounts() {
        var bytes = validBuilder().bytes()
        bytes.overwrite(at: 8, with: UInt64.max)
        assertError(bytes) { if case .invalid(let field, 8, _) = $0 { return field == "tensor count" }; return false }

        bytes = validBuilder().bytes()
        bytes.overwrite(at: 16, with: UInt64(1) << 62)
        assertError(bytes) { if case .invalid(let field, 16, _) = $0 { return field == "metadata count" }; return false }

        // A string length of 2^63 in the first key.
        bytes = validBuilder().bytes()
        bytes.overwrite(at: 24, with: UInt64(1) << 63)
        assertError(bytes) { if case .invalid(let field, 24, _) = $0 { return field.hasSuffix("key length") }; return false }
    }

    func testAbsurdArrayCount() {
        var b = GGUFBuilder()
        b.metadata = [("big", .array([.uint8(1), .uint8(2)]))]
        var bytes = b.bytes()
        // header 24 + key (8 + 3) + tag 4 + element type 4 → the count sits at 43.
        bytes.overwrite(at: 43, with: UInt64.max / 2)
        assertError(bytes) { if case .invalid(let field, 43, _) = $0 { return field.contains("element count") }; return false }
    }

    func testTensorPastTheEnd() {
        var b = validBuilder()
        b.tensors[0].dims = [32, 1000]    // claims 34,000 bytes; the file holds far fewer
        assertError(b.bytes()) {
            if case .tensorOutOfBounds(let name, _, _, _) = $0 { return name == "weights" }; return false
        }
    }

    func testHugeDimensionsDoNotOverflow() {
        var b = validBuilder()
        b.tensors[0].dims = [32, 1 << 30, 1 << 30, 1 << 30]
        XCTAssertThrowsError(try b.bytes().parseGGUF()) { XCTAssertTrue($0 is GGUFError) }
    }

    func testUnknownTypes() {
        var b = GGUFBuilder()
        b.tensors = [("t", [4], .f32, [UInt8](repeating: 0, count: 16))]
        var bytes = b.bytes()
        XCTAssertNoThrow(try bytes.parseGGUF())
        // header (24) + name (8 + 1) + dimension count (4) + one dimension (8) → the type sits at 45.
        bytes.overwrite(at: 45, with: UInt32(99))
        assertError(bytes) { if case .unknownTensorType("t", 99, 45) = $0 { return true }; return false }

        var m = GGUFBuilder()
        m.metadata = [("k", .uint8(1))]
        var mb = m.bytes()
        mb.overwrite(at: 24 + 8 + 1, with: UInt32(77))
        assertError(mb) { if case .unknownValueType("k", 77, 33) = $0 { return true }; return false }
    }

    func testBlockMisalignedRowIsRejected() {
        var b = validBuilder()
        b.tensors[0].dims = [20, 2]    // Q8_0 rows must be whole 32-element blocks
        assertError(b.bytes()) { if case .invalid(let field, _, _) = $0 { return field.contains("dimension 0") }; return false }
    }

    func testMissingFileAndDirectory() {
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) {
            guard case .cannotOpen = $0 as? GGUFError else { return XCTFail("\($0)") }
        }
        XCTAssertThrowsError(try GGUFFile(path: NSTemporaryDirectory())) {
            guard case .cannotOpen = $0 as? GGUFError else { return XCTFail("\($0)") }
        }
    }

    func testReadsConformanceModel() throws {
        let file = try GGUFFile(path: Fixtures.tiny("tiny-llama-q4_1.gguf"))
        XCTAssertEqual(try file.string("general.architecture"), "llama")
        XCTAssertEqual(try file.int("llama.block_count"), 4)
        XCTAssertEqual(try file.stringArray("tokenizer.ggml.tokens").count, 512)
        let q = try XCTUnwrap(file.tensor("blk.0.attn_q.weight"))
        XCTAssertEqual(q.type, .q4_1)
        XCTAssertEqual(q.dimensions, [128, 128])
        XCTAssertEqual(q.byteCount, 128 * 4 * 20)
    }

    private func assertError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line,
                             _ matches: (GGUFError) -> Bool) {
        XCTAssertThrowsError(try bytes.parseGGUF(), file: file, line: line) { error in
            guard let g = error as? GGUFError else { return XCTFail("untyped error \(error)", file: file, line: line) }
            XCTAssertTrue(matches(g), "unexpected error: \(g)", file: file, line: line)
        }
    }
}
