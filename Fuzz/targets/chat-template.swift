import LLM

// The chat-template recogniser and renderer. Input: template, user text, system text, separated by
// NUL bytes (a 4th field non-empty means "no system prompt"). Properties: recognising a template
// either succeeds or throws ChatTemplateError with a message of bounded length; a recognised
// template renders one user turn the same way through render(user:system:) and
// render(conversation:) (documented as identical), and the user's text appears in the result.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChatTemplate(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let f = fields(data, size, count: 4)
    let template: ChatTemplate
    do {
        template = try ChatTemplate(template: f[0])
    } catch {
        let message = String(describing: error)
        if message.utf8.count > 600 { violated("a \(message.utf8.count)-byte error for a bad template") }
        return 0
    }
    let system: String? = f[3].isEmpty ? f[2] : nil
    let single = template.render(user: f[1], system: system)
    var conversation = [ChatMessage(role: .user, content: f[1])]
    if let system { conversation.insert(ChatMessage(role: .system, content: system), at: 0) }
    let whole = template.render(conversation: conversation)
    if single != whole { violated("render(user:system:) \(single.debugDescription) != render(conversation:) \(whole.debugDescription)") }
    if !single.contains(f[1]) { violated("the user's text is missing from \(single.debugDescription)") }
    return 0
}
