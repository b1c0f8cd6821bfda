import ArgumentParser
import Foundation
import LLM

struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Chat with the model in the terminal, streaming its replies.",
        discussion: """
            Each turn evaluates only the new message: the conversation's KV cache is kept between turns.
            /reset forgets the conversation, /exit (or end of input) quits, and Ctrl-C stops the current reply.
            When stdin is not a terminal, every line is one message and every reply ends with a newline.
            """)

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions

    @Option(help: "The system prompt (default: the template's own, if any).")
    var system: String?

    @Option(parsing: .unconditional, help: "Most tokens per reply.")
    var maxTokens: Int = 512

    @OptionGroup(title: "Sampling (chain order: penalties, top-k, top-p, min-p, temperature)")
    var sampling: SamplingOptions

    @Flag(help: "Print, per turn, the prompt tokens evaluated and reused and the speeds to stderr.")
    var verbose = false

    func validate() throws {
        if maxTokens < 1 { throw ValidationError("--max-tokens must be at least 1, got \(maxTokens)") }
    }

    func run() throws {
        let (model, session) = try engine.open(modelPath: modelOption.resolve())
        let template = try ChatTemplate(gguf: model.gguf)
        let conversation = Conversation(session: session)
        let interactive = isatty(STDIN_FILENO) != 0
        let interrupt = Interrupt()
        let options = GenerationOptions(maxTokens: maxTokens, strategy: sampling.strategy)
        var messages: [ChatMessage] = system.map { [ChatMessage(role: .system, content: $0)] } ?? []
        let initial = messages
        var turn = 0
        if interactive { printError("chat with \(model.config.name): /reset forgets, /exit quits, Ctrl-C stops a reply") }
        while true {
            if interactive {
                FileHandle.standardOutput.write(Data("> ".utf8))
            }
            guard let line = readLine(strippingNewline: true) else { break }
            let text = line.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            switch text {
            case "/exit", "/quit": return
            case "/reset":
                messages = initial
                conversation.reset()
                turn = 0
                if interactive || verbose { printError("(conversation reset)") }
                continue
            default:
                if text.hasPrefix("/") && !text.contains(" ") {
                    printError("unknown command \(text) (known: /reset, /exit)")
                    continue
                }
            }
            messages.append(ChatMessage(role: .user, content: line))
            let prompt = model.tokenizer.encode(template.render(conversation: messages))
            interrupt.arm()
            let reply: Conversation.Turn
            do {
                reply = try conversation.reply(prompt: prompt, options: options, interrupt: { interrupt.fired }) { piece in
                    FileHandle.standardOutput.write(Data(piece.utf8))
                }
            } catch {
                interrupt.disarm()
                messages.removeLast()
                printError("error: \(error)\(interactive ? " (/reset starts over)" : "")")
                if interactive { continue }
                throw ExitCode(1)
            }
            interrupt.disarm()
            FileHandle.standardOutput.write(Data("\n".utf8))
            messages.append(ChatMessage(role: .assistant, content: reply.completion.text))
            turn += 1
            if verbose {
                let t = reply.timings
                printError(String(format: "turn %d: %d prompt tokens evaluated, %d reused | %.1f tokens/s | %d generated, %.1f tokens/s | %@",
                                  turn, reply.evaluated, reply.reused, t.promptTokensPerSecond, reply.completion.tokens.count,
                                  t.generationTokensPerSecond, reply.interrupted ? "interrupted" : reply.completion.finishReason.rawValue))
            } else if reply.interrupted && interactive {
                printError("(stopped)")
            }
        }
    }
}

/// Ctrl-C while a reply streams stops that reply; at other times it is ignored (end of input or
/// /exit quits), so the conversation is never lost to a stray keypress.
final class Interrupt: @unchecked Sendable {
    private let lock = NSLock()
    private var armed = false
    private var flag = false
    private let source: DispatchSourceSignal

    init() {
        signal(SIGINT, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        source.setEventHandler { [unowned self] in
            lock.lock()
            if armed { flag = true }
            lock.unlock()
        }
        source.resume()
    }

    func arm() {
        lock.lock()
        armed = true
        flag = false
        lock.unlock()
    }

    func disarm() {
        lock.lock()
        armed = false
        lock.unlock()
    }

    var fired: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }
}
