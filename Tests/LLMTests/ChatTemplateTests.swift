import XCTest
import LLM

/// Chat formats recognised from the real models' templates, rendered as those templates render
/// one user turn with add_generation_prompt (written out here by hand from the Jinja source).
final class ChatTemplateTests: XCTestCase {
    func testSmolLM2TemplateAndTokens() throws {
        let model = try GGUFFile(path: try Fixtures.smolLM2())
        let template = try ChatTemplate(gguf: model)
        XCTAssertEqual(template, .chatML(defaultSystem: "You are a helpful AI assistant named SmolLM, trained by Hugging Face"))
        XCTAssertEqual(template.render(user: "Hi"),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
                       + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        // The markers are single special tokens (ids 1 and 2 in SmolLM2's vocabulary).
        let tokens = try Tokenizer(gguf: model).encode(template.render(user: "Hi", system: "Be brief."))
        XCTAssertEqual(tokens.first, 1)
        XCTAssertEqual(tokens.filter { $0 == 2 }.count, 2)
    }

    func testQwenTemplateDefaultSystem() throws {
        let path = try RealModelGolden.qwen25.path()
        let template = try ChatTemplate(gguf: GGUFFile(path: path))
        XCTAssertEqual(template, .chatML(defaultSystem: "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."))
        XCTAssertEqual(template.render(user: "x", system: "S"), "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nx<|im_end|>\n<|im_start|>assistant\n")
    }

    func testGemmaTurns() throws {
        let template = try ChatTemplate(template: "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}")
        XCTAssertEqual(template, .gemma)
        XCTAssertEqual(template.render(user: "Hi"), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
        XCTAssertEqual(template.render(user: "Hi", system: "Be kind."), "<start_of_turn>user\nBe kind.\n\nHi<end_of_turn>\n<start_of_turn>model\n")
    }

    func testMissingAndUnknownTemplates() throws {
        let gemmaBase = try GGUFFile(path: try RealModelGolden.gemma3.path())
        XCTAssertThrowsError(try ChatTemplate(gguf: gemmaBase)) { XCTAssertEqual($0 as? ChatTemplateError, .missing) }
        XCTAssertThrowsError(try ChatTemplate(template: "[INST] {{ message }} [/INST]")) {
            guard case .unrecognised = $0 as? ChatTemplateError else { return XCTFail("\($0)") }
        }
    }

    /// SmolLM2-Instruct answers inside the ChatML turn and stops at <|im_end|>.
    func testChatRunStopsAtEndOfTurn() throws {
        let model = try RealModelGolden.smolLM2.load()
        let session = try InferenceSession(model: model, contextLength: 256)
        let prompt = model.tokenizer.encode(try ChatTemplate(gguf: model.gguf).render(user: "What is the capital of France?"))
        let reply = try Generator(session: session).generate(prompt: prompt, options: GenerationOptions(maxTokens: 64)).best
        XCTAssertEqual(reply.finishReason, .eos, reply.text)
        XCTAssertTrue(reply.text.contains("Paris"), reply.text)
        XCTAssertFalse(reply.text.contains("<|im_end|>"))
    }
}
