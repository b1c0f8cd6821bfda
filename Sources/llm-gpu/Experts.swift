import ArgumentParser
import Foundation
import LLM

/// `llm-gpu experts`: how a mixture-of-experts model's router spreads a text over its experts,
/// per layer (definitions in Sources/LLM/Runtime/RoutingStatistics.swift).
struct Experts: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Routing statistics of a mixture-of-experts model over a text: load per expert, load-balancing and z-loss, collapse.",
        discussion: RoutingStatistics.collapseRule + ". Texts longer than --context are evaluated in consecutive windows.")

    @OptionGroup var modelOption: ModelOption
    @OptionGroup var engine: EngineOptions
    @Option(help: "The text to route.")
    var prompt: String?
    @Option(help: "A text file to route.")
    var file: String?
    @Flag(help: "Print {\"tokens\", \"experts_per_token\", \"layers\": [{\"layer\", \"counts\", \"fractions\", \"mean_probs\", \"load_balancing_loss\", \"z_loss\", \"entropy\", \"collapsed\"}]}.")
    var json = false

    func validate() throws {
        if (prompt == nil) == (file == nil) { throw ValidationError("give exactly one of --prompt and --file") }
    }

    func run() throws {
        let text: String
        if let file {
            guard let data = FileManager.default.contents(atPath: file) else { throw CLIError("cannot read text file: \(file)") }
            text = String(decoding: data, as: UTF8.self)
        } else {
            text = prompt ?? ""
        }
        let (model, session) = try engine.open(modelPath: modelOption.resolve())
        let statistics = try RoutingStatistics(model: model)
        let tokens = model.tokenizer.encode(text)
        guard !tokens.isEmpty else { throw ModelError.emptyPrompt }
        let window = session.cache.capacity
        var start = 0
        while start < tokens.count {
            try statistics.observe(session: session, tokens: Array(tokens[start..<min(start + window, tokens.count)]))
            start += window
        }
        let layers = statistics.layers
        if json {
            try printJSON(ExpertsOutput(tokens: tokens.count, expertsPerToken: statistics.expertsPerToken, layers: layers))
            return
        }
        print("\(model.config.name): \(tokens.count) tokens, \(statistics.experts) experts, \(statistics.expertsPerToken) per token")
        print("f = share of routing assignments, P = mean router probability; LB = N·Σf·P (1 = uniform), z = mean logsumexp²")
        let width = 30
        for l in layers {
            print(String(format: "layer %d  LB %.3f  z %.3f  entropy %.3f", l.layer, l.loadBalancingLoss, l.zLoss, l.entropy)
                  + (l.collapsed ? "  COLLAPSED" : ""))
            let top = l.fractions.max() ?? 0
            for e in l.counts.indices {
                let length = top > 0 ? Int((l.fractions[e] / top * Double(width)).rounded()) : 0
                let bar = String(repeating: "█", count: length) + String(repeating: " ", count: width - length)
                print(String(format: "  %3d ", e) + bar + String(format: " %6d  f %.3f  P %.3f", l.counts[e], l.fractions[e], l.meanProbs[e]))
            }
        }
        print(RoutingStatistics.collapseRule)
    }
}

struct ExpertsOutput: Encodable {
    var tokens: Int
    var expertsPerToken: Int
    var layers: [LayerRoutingStatistics]

    enum CodingKeys: String, CodingKey {
        case tokens, layers
        case expertsPerToken = "experts_per_token"
    }
}
