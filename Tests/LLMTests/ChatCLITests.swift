import Foundation
import XCTest
import LLM
import BackendCPU

/// `llm-gpu chat` with stdin piped (one message per line): each turn's reply equals a one-shot
/// `llm-gpu run` of the whole conversation rendered with the chat template, and turn 2 evaluates
/// only what follows the cached conversation, not the history again.
final class ChatCLITests: XCTestCase {
    private struct RunJSON: Decodable {
        struct Completion: Decodable {
            var tokens: [Int32]
            var text: String
            var finish_reason: String
        }
        var prompt_tokens: [Int32]
        var completions: [Completion]
    }

    private let common = ["--cpu-activations", "f32", "--threads", "2", "--max-tokens", "16"]

    private func oneShot(_ text: String, model: String) throws -> RunJSON.Completion {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("chat-\(UUID().uuidString).txt")
        try Data(text.utf8).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        let r = try LLMGPUExecutable.run(["run", "--model", model, "--prompt-file", url.path, "--json"] + common)
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONDecoder().decode(RunJSON.self, from: Data(r.stdout.utf8)).completions[0]
    }

    func testTurnTwoEvaluatesOnlyTheNewTokensAndEqualsAOneShotRun() throws {
        let path = try Fixtures.smolLM2()
        let model = try Model.load(path: path, backend: CPUBackend(threads: 1))
        let template = try ChatTemplate(gguf: model.gguf)
        let first = "What is the capital of France?", second = "And of Italy?"

        let chat = try LLMGPUExecutable.run(["chat", "--model", path, "--verbose"] + common, input: "\(first)\n\(second)\n")
        XCTAssertEqual(chat.status, 0, chat.stderr)

        let turn1 = [ChatMessage(role: .user, content: first)]
        let reply1 = try oneShot(template.render(conversation: turn1), model: path)
        let turn2 = turn1 + [ChatMessage(role: .assistant, content: reply1.text), ChatMessage(role: .user, content: second)]
        let reply2 = try oneShot(template.render(conversation: turn2), model: path)
        XCTAssertFalse(reply2.text.isEmpty)
        XCTAssertEqual(chat.stdout, reply1.text + "\n" + reply2.text + "\n")

        // What the cache holds after turn 1: its prompt and the generated tokens that were
        // evaluated (all of them when an end-of-generation token stopped the reply).
        let prompt1 = model.tokenizer.encode(template.render(conversation: turn1))
        let prompt2 = model.tokenizer.encode(template.render(conversation: turn2))
        let held = prompt1 + (reply1.finish_reason == "eos" ? reply1.tokens : reply1.tokens.dropLast())
        var shared = 0
        while shared < min(held.count, prompt2.count - 1) && held[shared] == prompt2[shared] { shared += 1 }
        XCTAssertGreaterThanOrEqual(shared, prompt1.count, "turn 1's prompt is reused whole")
        let lines = chat.stderr.split(separator: "\n").filter { $0.hasPrefix("turn ") }
        XCTAssertEqual(lines.count, 2, chat.stderr)
        XCTAssertTrue(lines.first?.hasPrefix("turn 1: \(prompt1.count) prompt tokens evaluated, 0 reused") == true, chat.stderr)
        XCTAssertTrue(lines.last?.hasPrefix("turn 2: \(prompt2.count - shared) prompt tokens evaluated, \(shared) reused") == true,
                      chat.stderr)
    }

    func testResetAndExit() throws {
        let path = try Fixtures.smolLM2()
        let chat = try LLMGPUExecutable.run(["chat", "--model", path, "--verbose"] + common,
                                            input: "Hello\n/reset\nHello\n/exit\nnever read\n")
        XCTAssertEqual(chat.status, 0, chat.stderr)
        let lines = chat.stderr.split(separator: "\n").filter { $0.hasPrefix("turn ") }
        XCTAssertEqual(lines.count, 2, chat.stderr)
        // After /reset the same message is turn 1 again, evaluated from nothing, with the same reply.
        XCTAssertEqual(lines[0].prefix(while: { $0 != "|" }), lines[1].prefix(while: { $0 != "|" }))
        let replies = chat.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertEqual(replies.count, 3, chat.stdout)
        XCTAssertEqual(replies[0], replies[1])
    }
}
