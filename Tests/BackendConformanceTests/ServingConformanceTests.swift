@testable import BackendVulkan
import Foundation
import LLM
import XCTest

// The continuous-batching engine on the GPU backends: eight concurrent greedy requests (prompts
// chunked over several steps beside decoding streams) each equal to `Generator` run alone on the
// same backend, and on Vulkan one queue submission per engine step.
final class ServingConformanceTests: XCTestCase {
    private static let prompts: [[Int32]] = {
        let all = (try? ModelConformanceTests.ids("tiny-llama-f32", "prompt_ids")) ?? []
        let greedy = (try? ModelConformanceTests.ids("tiny-llama-f32", "greedy_ids")) ?? []
        let sequence = all + greedy
        return [(0, 5), (2, 21), (7, 3), (0, 45), (11, 17), (4, 33), (20, 9), (1, 26)].map { Array(sequence[$0.0..<($0.0 + $0.1)]) }
    }()

    private final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var value = 0
        func add() { lock.lock(); value += 1; lock.unlock() }
        var count: Int { lock.lock(); defer { lock.unlock() }; return value }
    }

    func testEightConcurrentGreedyRequestsEqualEachRunAlone() async throws {
        var ran = 0
        for candidate in ConformanceBackends.all() {
            let backend: Backend
            do { backend = try candidate.make() } catch is BackendUnavailable { continue }
            let model = try Model.load(path: ModelConformanceTests.fixtures.appendingPathComponent("tiny-llama-f32.gguf").path,
                                       backend: backend)
            let options = GenerationOptions(maxTokens: 16)
            let expected = try Self.prompts.map { prompt -> Completion in
                let session = try InferenceSession(model: model, contextLength: 96)
                return try Generator(session: session).generate(prompt: prompt, options: options).best
            }
            let engine = try BatchScheduler(model: model, options: BatchSchedulerOptions(parallel: 8, kvPositions: 8 * 64, stepTokens: 16))
            let steps = Counter()
            engine.setStepObserver { _, _ in steps.add() }
            let submitsBefore = (backend as? VulkanBackend)?.statistics.submits
            let handles = try Self.prompts.map {
                try engine.submit(ServingRequest(prompt: $0, maxTokens: options.maxTokens))
            }
            for (i, h) in handles.enumerated() {
                let r = await h.result()
                XCTAssertEqual(r.tokens, expected[i].tokens, "\(backend.name) request \(i)")
                XCTAssertEqual(r.text, expected[i].text, "\(backend.name) request \(i)")
            }
            await engine.shutdown()
            if let vulkan = backend as? VulkanBackend, let submitsBefore {
                XCTAssertEqual(vulkan.statistics.submits - submitsBefore, steps.count, "one submission per step")
            }
            XCTAssertGreaterThan(steps.count, 16)
            print("note: serving on \(backend.name): \(steps.count) steps, every request equal to Generator alone")
            ran += 1
        }
        if ran == 0 { throw XCTSkip("no GPU backend here") }
    }
}
