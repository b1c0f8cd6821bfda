import ArgumentParser
import Foundation
import LLM

struct LLMGPU: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "llm-gpu",
        abstract: "Run GGUF language models on OpenCL, Vulkan or the CPU.",
        subcommands: [Run.self, Tokenize.self, Logits.self, PerplexityCommand.self, Inspect.self, Devices.self, Bench.self]
    )
}

/// Errors become one line on stderr and exit code 1; never a trap or a stack trace.
/// Parsing errors, help and validation keep swift-argument-parser's own messages and codes.
let parsed: ParsableCommand
do {
    parsed = try LLMGPU.parseAsRoot()
} catch {
    LLMGPU.exit(withError: error)
}
do {
    var command = parsed
    try command.run()
} catch let error as CleanExit {
    LLMGPU.exit(withError: error)
} catch let error as ValidationError {
    LLMGPU.exit(withError: error)
} catch let error as ExitCode {
    LLMGPU.exit(withError: error)
} catch {
    printError("error: \(error)")
    exit(1)
}
