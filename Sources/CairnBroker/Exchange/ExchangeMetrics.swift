import CairnCrypto
import Metrics
public import Prometheus

/// The broker's metrics, through swift-metrics into its own Prometheus registry (served at
/// `/metrics`). One registry per exchange, not the process-global one, so tests can run several.
public struct ExchangeMetrics: Sendable {
    /// The registry `/metrics` renders.
    public let registry: PrometheusCollectorRegistry
    /// Requests answered, by status class.
    let answered: [Int: Metrics.Counter]
    /// Requests refused (each also an audit entry).
    let refused: Metrics.Counter
    /// Rounds opened, finished and aborted.
    let rounds: Metrics.Counter
    let finished: Metrics.Counter
    let aborted: Metrics.Counter
    /// Masked-input bytes accepted.
    let maskedBytes: Metrics.Counter

    /// Fresh metrics in a fresh registry.
    public init() {
        let registry = PrometheusCollectorRegistry()
        let factory = PrometheusMetricsFactory(registry: registry)
        self.registry = registry
        answered = Dictionary(
            uniqueKeysWithValues: [2, 4, 5].map {
                (
                    $0,
                    Metrics.Counter(
                        label: "cairn_requests_total",
                        dimensions: [("status", "\($0)xx")],
                        factory: factory
                    )
                )
            }
        )
        refused = Metrics.Counter(label: "cairn_requests_refused_total", factory: factory)
        rounds = Metrics.Counter(label: "cairn_rounds_opened_total", factory: factory)
        finished = Metrics.Counter(label: "cairn_rounds_finished_total", factory: factory)
        aborted = Metrics.Counter(label: "cairn_rounds_aborted_total", factory: factory)
        maskedBytes = Metrics.Counter(label: "cairn_masked_input_bytes_total", factory: factory)
    }

    /// Counts one answered request.
    public func count(status: Int) { answered[status / 100]?.increment() }
}

extension SecretBytes {
    /// A plain copy, for state written to the broker's own database.
    var copiedBytes: [UInt8] { withUnsafeBytes { Array($0) } }
}
