import ArgumentParser
import Foundation
import LLM

struct LLMGPU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llm-gpu",
        abstract: "Run GGUF language models on OpenCL, Vulkan or the CPU.",
        subcommands: [Run.self, Tokenize.self, Logits.self, PerplexityCommand.self, Inspect.self, Devices.self, Bench.self, Experts.self, Chat.self, BatchBench.self, Serve.self]
    )
}

/// The engine's errors (a bad file, an unsupported model, a missing device…) become one line on
/// stderr and exit status 1, never a trap or a stack trace. swift-argument-parser's own errors
/// (help, usage, validation) keep its messages and exit codes.
do {
    var command = try LLMGPU.parseAsRoot()
    try command.run()
} catch {
    if String(reflecting: type(of: error)).hasPrefix("ArgumentParser.") {
        LLMGPU.exit(withError: error)
    }
    printError("error: \(error)")
    exit(1)
}
