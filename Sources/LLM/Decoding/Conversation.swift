/// A multi-turn chat over one session that keeps its KV cache between turns (`llm-gpu chat`): each
/// turn's prompt is the whole conversation rendered again, and only the part after the longest
/// prefix the cache already holds is evaluated, so a turn costs its new message, not the history.
public final class Conversation {
    public let session: InferenceSession
    /// The tokens whose keys and values the cache holds, in order.
    public private(set) var cached: [Int32] = []

    public init(session: InferenceSession) {
        self.session = session
    }

    public struct Turn: Sendable {
        public var completion: Completion
        public var timings: Timings
        /// Prompt tokens evaluated this turn (the rest came from the cache).
        public var evaluated: Int
        public var reused: Int
        /// `interrupt` ended the reply early.
        public var interrupted: Bool
    }

    /// Generates the reply after `prompt` (the rendered conversation so far, tokenized).
    public func reply(prompt: [Int32], options: GenerationOptions, interrupt: () -> Bool = { false },
                      onText: (String) -> Void = { _ in }) throws -> Turn {
        var common = 0
        while common < min(prompt.count - 1, cached.count) && prompt[common] == cached[common] { common += 1 }
        var stopped = false
        let generator = Generator(session: session)
        func run(_ reusing: Int) throws -> Generation {
            try generator.generate(prompt: prompt, reusing: reusing, options: options,
                                   interrupt: { stopped = stopped || interrupt(); return stopped }, onText: onText)
        }
        let generation: Generation
        do {
            generation = try run(common)
        } catch ModelError.rewoundTooFar {
            // A sliding-window ring no longer holds what the shorter prefix needs: start over.
            common = 0
            generation = try run(0)
        } catch {
            cached = []
            session.reset()
            throw error
        }
        // The cache holds the prompt and the generated tokens that were evaluated (not the last
        // one when the reply stopped right after choosing it).
        cached = Array((prompt + generation.best.tokens).prefix(session.position))
        return Turn(completion: generation.best, timings: generation.timings, evaluated: prompt.count - common, reused: common,
                    interrupted: stopped)
    }

    /// Forgets the conversation's cache (`/reset`).
    public func reset() {
        cached = []
        session.reset()
    }
}
