/// One turn of a conversation, as OpenAI's `messages` carry it.
public struct ChatMessage: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable {
        case system, user, assistant
    }

    public var role: Role
    public var content: String

    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

extension ChatTemplate {
    /// A whole conversation, ending where the assistant's next reply begins. With one user turn
    /// (and at most one system turn before it) this is `render(user:system:)`'s text exactly.
    /// ChatML takes each turn as it comes, with the template's default system prompt first when
    /// the conversation has none; Gemma has no system role, so system turns go at the start of
    /// the first user turn, and the assistant's role is called `model`.
    public func render(conversation: [ChatMessage]) -> String {
        switch self {
        case .chatML(let defaultSystem):
            var text = ""
            if conversation.first?.role != .system, let defaultSystem {
                text += "<|im_start|>system\n\(defaultSystem)<|im_end|>\n"
            }
            for message in conversation {
                text += "<|im_start|>\(message.role.rawValue)\n\(message.content)<|im_end|>\n"
            }
            return text + "<|im_start|>assistant\n"
        case .gemma:
            let system = conversation.filter { $0.role == .system }.map(\.content)
            var pending = system.isEmpty ? nil : system.joined(separator: "\n\n")
            var text = ""
            for message in conversation where message.role != .system {
                var content = message.content
                if message.role == .user, let prefix = pending {
                    content = "\(prefix)\n\n\(content)"
                    pending = nil
                }
                text += "<start_of_turn>\(message.role == .user ? "user" : "model")\n\(content)<end_of_turn>\n"
            }
            return text + "<start_of_turn>model\n"
        }
    }
}
