import Foundation

/// Chat formats recognised from `tokenizer.chat_template` by their form, not by rendering the
/// Jinja template: ChatML (`<|im_start|>role\n…<|im_end|>`, SmolLM2 and Qwen) and Gemma's turns
/// (`<start_of_turn>user\n…<end_of_turn>`). A template's built-in default system prompt (the
/// literal it emits when the conversation has none) is extracted and used the same way.
public enum ChatTemplate: Equatable, Sendable {
    case chatML(defaultSystem: String?)
    /// Gemma has no system role: a system prompt is put at the start of the first user turn.
    case gemma

    public init(template: String) throws {
        if template.contains("<|im_start|>") {
            self = .chatML(defaultSystem: Self.defaultSystemPrompt(in: template))
        } else if template.contains("<start_of_turn>") {
            self = .gemma
        } else {
            throw ChatTemplateError.unrecognised(prefix: String(template.prefix(60)))
        }
    }

    /// The template of a model's GGUF, or a typed error saying why there is none.
    public init(gguf: GGUFFile) throws {
        guard let template = gguf["tokenizer.chat_template"]?.stringValue else { throw ChatTemplateError.missing }
        try self.init(template: template)
    }

    /// The text for one user turn, ending where the assistant's reply begins.
    public func render(user: String, system: String? = nil) -> String {
        switch self {
        case .chatML(let defaultSystem):
            var text = ""
            if let system = system ?? defaultSystem { text += "<|im_start|>system\n\(system)<|im_end|>\n" }
            return text + "<|im_start|>user\n\(user)<|im_end|>\n<|im_start|>assistant\n"
        case .gemma:
            let content = system.map { "\($0)\n\n\(user)" } ?? user
            return "<start_of_turn>user\n\(content)<end_of_turn>\n<start_of_turn>model\n"
        }
    }

    /// The literal system prompt a ChatML template emits by default, written either with a real
    /// newline or a `\n` escape after `<|im_start|>system`.
    static func defaultSystemPrompt(in template: String) -> String? {
        for opener in ["<|im_start|>system\n", "<|im_start|>system\\n"] {
            var search = template.startIndex..<template.endIndex
            while let start = template.range(of: opener, range: search) {
                search = start.upperBound..<template.endIndex
                guard let end = template.range(of: "<|im_end|>", range: start.upperBound..<template.endIndex) else { break }
                let body = template[start.upperBound..<end.lowerBound]
                // A literal, not an expression such as `' + messages[0]['content'] + '`.
                if !body.isEmpty, !body.contains("'"), !body.contains("\""), !body.contains("{") {
                    return String(body)
                }
            }
        }
        return nil
    }
}

public enum ChatTemplateError: Error, Equatable, CustomStringConvertible {
    case missing
    case unrecognised(prefix: String)

    public var description: String {
        switch self {
        case .missing:
            return "this model has no chat template (tokenizer.chat_template); run without --chat"
        case .unrecognised(let prefix):
            return "unrecognised chat template (known forms: ChatML, Gemma turns): \(prefix.quotedForError)"
        }
    }
}
