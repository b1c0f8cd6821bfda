import Foundation
import LLM
import Metrics
import Prometheus

/// `/metrics`: swift-metrics handles over a Prometheus registry of this server's own (not the
/// process-wide `MetricsSystem`, so several servers in one test process keep separate figures).
/// The engine's gauges and counters are read from `ServingStatistics` at each scrape; the
/// latency histograms are fed as requests and steps happen.
final class ServerMetrics: @unchecked Sendable {
    private let registry = PrometheusCollectorRegistry()
    private let running, waiting, kvUsed, kvFree: Metrics.Gauge
    private let promptTokens, generatedTokens, prefixCacheHits, preemptions: Metrics.Counter
    private let timeToFirstToken, interTokenLatency, stepTime: Metrics.Timer
    private let factory: PrometheusMetricsFactory
    /// The counters' values at the last scrape (the engine reports totals; Counter takes increments).
    private var last = ServingStatistics()
    private let lock = NSLock()

    static let prefix = "llmgpu_"

    init() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Seconds: TTFT spans a queued long prompt on a CPU; a token and a step are milliseconds.
        let latency: [Duration] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30].map { .milliseconds(Int($0 * 1000)) }
        let fine: [Duration] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1].map { .microseconds(Int($0 * 1e6)) }
        factory.durationHistogramBuckets = [
            Self.prefix + "time_to_first_token_seconds": latency,
            Self.prefix + "inter_token_latency_seconds": fine,
            Self.prefix + "step_seconds": fine,
        ]
        self.factory = factory
        func gauge(_ name: String) -> Metrics.Gauge { Metrics.Gauge(label: Self.prefix + name, factory: factory) }
        func counter(_ name: String) -> Metrics.Counter { Metrics.Counter(label: Self.prefix + name, factory: factory) }
        func timer(_ name: String) -> Metrics.Timer { Metrics.Timer(label: Self.prefix + name, factory: factory) }
        running = gauge("requests_running")
        waiting = gauge("requests_waiting")
        kvUsed = gauge("kv_blocks_used")
        kvFree = gauge("kv_blocks_free")
        promptTokens = counter("prompt_tokens_total")
        generatedTokens = counter("generated_tokens_total")
        prefixCacheHits = counter("prefix_cache_hit_tokens_total")
        preemptions = counter("preemptions_total")
        timeToFirstToken = timer("time_to_first_token_seconds")
        interTokenLatency = timer("inter_token_latency_seconds")
        stepTime = timer("step_seconds")
    }

    func recordTimeToFirstToken(seconds: Double) { timeToFirstToken.recordNanoseconds(Int64(seconds * 1e9)) }
    func recordInterTokenLatency(seconds: Double) { interTokenLatency.recordNanoseconds(Int64(seconds * 1e9)) }
    func recordStep(seconds: Double) { stepTime.recordNanoseconds(Int64(seconds * 1e9)) }

    /// Prometheus text exposition format, after bringing the engine's figures up to date.
    func scrape(_ statistics: ServingStatistics?) -> [UInt8] {
        lock.lock()
        if let s = statistics {
            running.record(s.running)
            waiting.record(s.waiting)
            kvUsed.record(s.kvBlocksUsed)
            kvFree.record(s.kvBlocksFree)
            promptTokens.increment(by: max(0, s.promptTokens - last.promptTokens))
            generatedTokens.increment(by: max(0, s.generatedTokens - last.generatedTokens))
            prefixCacheHits.increment(by: max(0, s.prefixCacheHitTokens - last.prefixCacheHitTokens))
            preemptions.increment(by: max(0, s.preemptions - last.preemptions))
            last = s
        }
        lock.unlock()
        return registry.emitToBuffer()
    }
}
