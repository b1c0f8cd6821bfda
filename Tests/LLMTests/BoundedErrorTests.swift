import Foundation
import XCTest
import LLM

/// Errors about a damaged file quote at most `ErrorQuoting.limit` bytes of it, escaped, report
/// numbers as they were read and the offset where they were read, and stay one short line.
final class BoundedErrorTests: XCTestCase {
    private func tinyBytes() throws -> [UInt8] {
        try [UInt8](Data(contentsOf: URL(fileURLWithPath: Fixtures.tiny("tiny-llama-f32.gguf"))))
    }

    private func parseError(_ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> GGUFError? {
        do {
            _ = try bytes.parseGGUF()
            XCTFail("parsed a damaged file", file: file, line: line)
        } catch let error as GGUFError {
            return error
        } catch {
            XCTFail("untyped error \(error)", file: file, line: line)
        }
        return nil
    }

    /// At most 200 bytes, printable ASCII only (no control bytes, nothing raw from the file).
    private func assertShortAndPrintable(_ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertLessThanOrEqual(message.utf8.count, 200, message, file: file, line: line)
        let raw = message.utf8.filter { !(0x20...0x7e).contains($0) && $0 != 0xe2 && $0 != 0x80 && $0 != 0xa6 }
        XCTAssertEqual(raw, [], "unescaped bytes in: \(message.debugDescription)", file: file, line: line)
    }

    func testQuoteEscapesAndBounds() {
        XCTAssertEqual(ErrorQuoting.quote("a\n\u{1b}[31m'\\"), "'a\\n\\x1b[31m\\'\\\\'")
        XCTAssertEqual(ErrorQuoting.quote("ü"), "'\\xc3\\xbc'")
        let long = String(repeating: "x", count: 1000)
        XCTAssertEqual(ErrorQuoting.quote(long), "'" + String(repeating: "x", count: ErrorQuoting.limit) + "'… (1000 bytes)")
    }

    /// The case on the tiny model: key 0's length set past the GGUF limit (and past the file).
    func testHugeKeyLengthIsRefusedAtItsOffset() throws {
        for length: UInt64 in [195_996, 50_000_000, 1 << 63] {
            var bytes = try tinyBytes()
            bytes.overwrite(at: 24, with: length)
            let error = try XCTUnwrap(parseError(bytes))
            XCTAssertEqual(error, .invalid(field: "metadata[0].key length", offset: 24,
                                           reason: "\(length) bytes is over the limit of \(GGUFFile.maxKeyLength)"))
            assertShortAndPrintable(error.description)
        }
    }

    /// A key length under the limit makes the reader take 60,000 bytes of the file as the key;
    /// the error that follows quotes 80 of them, escaped.
    func testGarbageKeyIsQuotedBounded() throws {
        var bytes = try tinyBytes()
        bytes.overwrite(at: 24, with: UInt64(60_000))
        let error = try XCTUnwrap(parseError(bytes))
        assertShortAndPrintable(error.description)
        XCTAssertTrue(error.description.contains(" bytes) has unknown value type"), error.description)
    }

    func testControlBytesInNamesAreEscaped() {
        let hostile = "\u{1b}]0;owned\u{07}\n" + String(repeating: "\u{01}", count: 300)
        var b = GGUFBuilder()
        b.metadata = [(hostile, .uint8(1)), (hostile, .uint8(2))]
        let dup = parseError(b.bytes())
        XCTAssertEqual(dup, .duplicateKey(hostile, offset: 24 + 8 + hostile.utf8.count + 4 + 1))
        assertShortAndPrintable(dup?.description ?? "")
        XCTAssertTrue(dup?.description.contains("\\x1b]0;owned\\x07\\n\\x01") ?? false, dup?.description ?? "")
    }

    func testTensorNameOverGGMLLimit() {
        var b = GGUFBuilder()
        b.tensors = [(String(repeating: "n", count: 64), [4], .f32, [UInt8](repeating: 0, count: 16))]
        XCTAssertEqual(parseError(b.bytes()), .invalid(field: "tensor[0].name length", offset: 24,
                                                       reason: "64 bytes is over the limit of 63"))
    }

    /// 2^63 as a uint64 alignment is reported as 2^63, at the byte its value starts.
    func testAlignmentReportedAsReadWithItsOffset() {
        var b = GGUFBuilder()
        b.metadata = [("a", .uint8(1)), ("general.alignment", .uint64(1 << 63))]
        // header 24 + ("a": 8 + 1 + tag 4 + 1) + key (8 + 17) + tag 4 → the value starts at 67.
        let error = parseError(b.bytes())
        XCTAssertEqual(error, .invalid(field: "general.alignment", offset: 67,
                                       reason: "9223372036854775808 is not a power of two from 1 to 2^20"))
        b.metadata = [("general.alignment", .string(String(repeating: "\u{00}", count: 500)))]
        let s = parseError(b.bytes())
        assertShortAndPrintable(s?.description ?? "")
        XCTAssertTrue(s?.description.contains("the string '\\x00") ?? false, s?.description ?? "")
    }

    /// The executable prints such a file's error as one short line, exit status 1.
    func testCLIPrintsOneShortLine() throws {
        var bytes = try tinyBytes()
        bytes.overwrite(at: 24, with: UInt64(60_000))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("llm-gpu-bounded-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("bad.gguf").path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let result = try LLMGPUExecutable.run(["inspect", "--model", path])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr.debugDescription)
        XCTAssertTrue(result.stderr.hasPrefix("error: corrupt GGUF file"), result.stderr.debugDescription)
        assertShortAndPrintable(String(result.stderr.dropLast()))
    }
}
