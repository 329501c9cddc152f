import TrailCore

/// A thread-safe registry of metrics rendered in the Prometheus text exposition format, version 0.0.4.
///
/// Declare each family once (``counter(_:help:labelNames:)``, ``gauge(_:help:labelNames:)``,
/// ``histogram(_:help:labelNames:buckets:)``) and keep the returned handle; handles are cheap `Sendable` values
/// that update the registry under its lock. Declaring a name again returns a handle to the existing family
/// (its first help text, label names and buckets are kept).
///
/// ``exposition()`` output is stable: families in name order, each with `# HELP` and `# TYPE` lines, then its
/// series ordered by their label values (in label-name order). A family without labels always has its one
/// series (starting at 0); a labelled family shows only the series that were touched. Label values are
/// escaped (`\` → `\\`, `"` → `\"`, newline → `\n`), as is help text (`\` and newline).
public final class MetricsRegistry: Sendable {
    /// The `Content-Type` of ``exposition()``.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// The metric types of the exposition format used here.
    public enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    struct Series {
        var value: Double = 0
        /// Histograms: per-bucket (non-cumulative) counts, one per upper bound.
        var bucketCounts: [UInt64] = []
        var count: UInt64 = 0
        var sum: Double = 0
    }

    struct Family {
        var kind: Kind
        var help: String
        var labelNames: [String]
        var buckets: [Double]
        var series: [[String]: Series] = [:]
    }

    private let families = Locked<[String: Family]>([:])

    public init() {}

    // MARK: Declaring

    /// Declares (or finds) a counter family. Counters only go up.
    public func counter(_ name: String, help: String, labelNames: [String] = []) -> MetricCounter {
        declare(name, kind: .counter, help: help, labelNames: labelNames, buckets: [])
        return MetricCounter(registry: self, name: name)
    }

    /// Declares (or finds) a gauge family.
    public func gauge(_ name: String, help: String, labelNames: [String] = []) -> MetricGauge {
        declare(name, kind: .gauge, help: help, labelNames: labelNames, buckets: [])
        return MetricGauge(registry: self, name: name)
    }

    /// Declares (or finds) a histogram family. `buckets` are the finite upper bounds (sorted and de-duplicated
    /// here; non-finite bounds are dropped); the `+Inf` bucket is implicit.
    public func histogram(_ name: String, help: String, labelNames: [String] = [], buckets: [Double]) -> MetricHistogram {
        let bounds = Array(Set(buckets.filter { $0.isFinite })).sorted()
        declare(name, kind: .histogram, help: help, labelNames: labelNames, buckets: bounds)
        return MetricHistogram(registry: self, name: name)
    }

    private func declare(_ name: String, kind: Kind, help: String, labelNames: [String], buckets: [Double]) {
        families.withLock { families in
            guard families[name] == nil else { return }
            var family = Family(kind: kind, help: help, labelNames: labelNames, buckets: buckets)
            if labelNames.isEmpty { family.series[[]] = Self.emptySeries(buckets: buckets) }
            families[name] = family
        }
    }

    private static func emptySeries(buckets: [Double]) -> Series {
        Series(bucketCounts: Array(repeating: 0, count: buckets.count))
    }

    // MARK: Updating

    /// Applies `change` to the series of `name` with `labelValues`. A call whose number of label values differs
    /// from the family's label names is ignored (a programming error that must not crash the service).
    func update(_ name: String, labelValues: [String], _ change: (inout Series, Family) -> Void) {
        families.withLock { families in
            guard var family = families[name], labelValues.count == family.labelNames.count else { return }
            var series = family.series[labelValues] ?? Self.emptySeries(buckets: family.buckets)
            change(&series, family)
            family.series[labelValues] = series
            families[name] = family
        }
    }

    /// The current value of a counter or gauge series, or the count of a histogram series (for tests and
    /// status pages); nil when the series does not exist.
    public func value(_ name: String, labelValues: [String] = []) -> Double? {
        families.withLock { families in
            guard let family = families[name], let series = family.series[labelValues] else { return nil }
            return family.kind == .histogram ? Double(series.count) : series.value
        }
    }

    // MARK: Rendering

    /// The whole registry in the Prometheus text format 0.0.4 (ends with a newline unless empty).
    public func exposition() -> String {
        let snapshot = families.withLock { $0 }
        var out = ""
        for name in snapshot.keys.sorted() {
            guard let family = snapshot[name] else { continue }
            out += "# HELP \(name) \(Self.escapeHelp(family.help))\n"
            out += "# TYPE \(name) \(family.kind.rawValue)\n"
            let keys = family.series.keys.sorted { $0.lexicographicallyPrecedes($1) }
            for key in keys {
                guard let series = family.series[key] else { continue }
                let labels = Array(zip(family.labelNames, key))
                switch family.kind {
                case .counter, .gauge:
                    out += name + Self.labelText(labels) + " " + Self.number(series.value) + "\n"
                case .histogram:
                    var cumulative: UInt64 = 0
                    for (bound, count) in zip(family.buckets, series.bucketCounts) {
                        cumulative += count
                        out += name + "_bucket" + Self.labelText(labels + [("le", Self.number(bound))]) + " "
                            + String(cumulative) + "\n"
                    }
                    out += name + "_bucket" + Self.labelText(labels + [("le", "+Inf")]) + " " + String(series.count)
                        + "\n"
                    out += name + "_sum" + Self.labelText(labels) + " " + Self.number(series.sum) + "\n"
                    out += name + "_count" + Self.labelText(labels) + " " + String(series.count) + "\n"
                }
            }
        }
        return out
    }

    static func labelText(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabelValue($0.1))\"" }.joined(separator: ",") + "}"
    }

    /// `\` → `\\`, `"` → `\"`, line feed → `\n`.
    static func escapeLabelValue(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `\` → `\\`, line feed → `\n`.
    static func escapeHelp(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A sample value: integers without a fraction (`42`), others in shortest form (`0.25`), `+Inf`, `-Inf`,
    /// `NaN`.
    static func number(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v == .infinity { return "+Inf" }
        if v == -.infinity { return "-Inf" }
        if v.rounded() == v, abs(v) < 9.0e15 { return String(Int64(v)) }
        return String(v)
    }
}

/// A counter family handle (see ``MetricsRegistry``).
public struct MetricCounter: Sendable {
    let registry: MetricsRegistry
    public let name: String

    /// Adds `amount` (ignored unless finite and ≥ 0) to the series with these label values, given in the
    /// order of the family's label names.
    public func increment(_ labelValues: [String] = [], by amount: Double = 1) {
        guard amount.isFinite, amount >= 0 else { return }
        registry.update(name, labelValues: labelValues) { series, _ in series.value += amount }
    }
}

/// A gauge family handle (see ``MetricsRegistry``).
public struct MetricGauge: Sendable {
    let registry: MetricsRegistry
    public let name: String

    /// Sets the series with these label values.
    public func set(_ value: Double, _ labelValues: [String] = []) {
        registry.update(name, labelValues: labelValues) { series, _ in series.value = value }
    }

    /// Adds `amount` (may be negative) to the series with these label values.
    public func add(_ amount: Double, _ labelValues: [String] = []) {
        registry.update(name, labelValues: labelValues) { series, _ in series.value += amount }
    }
}

/// A histogram family handle (see ``MetricsRegistry``).
public struct MetricHistogram: Sendable {
    let registry: MetricsRegistry
    public let name: String

    /// Records one observation: it counts in the first bucket whose upper bound is ≥ `value` (and in every
    /// larger one, cumulatively, when rendered). NaN is ignored.
    public func observe(_ value: Double, _ labelValues: [String] = []) {
        guard !value.isNaN else { return }
        registry.update(name, labelValues: labelValues) { series, family in
            if let index = family.buckets.firstIndex(where: { value <= $0 }) { series.bucketCounts[index] += 1 }
            series.count += 1
            series.sum += value
        }
    }
}

/// The metrics of `trail serve`, declared on one registry.
///
/// | name | type | labels |
/// |---|---|---|
/// | `trail_ingest_records_received_total` | counter | `source`, `format` |
/// | `trail_ingest_records_stored_total` | counter | `source`, `format` |
/// | `trail_ingest_records_rejected_total` | counter | `source`, `format` |
/// | `trail_ingest_requests_total` | counter | `endpoint`, `status` |
/// | `trail_ingest_queue_depth` | gauge | |
/// | `trail_store_size_bytes` | gauge | |
/// | `trail_ingest_insecure` | gauge (0 or 1) | |
/// | `trail_ingest_batch_seconds` | histogram (``batchBuckets``) | |
public struct IngestMetrics: Sendable {
    /// Upper bounds of `trail_ingest_batch_seconds`, in seconds.
    public static let batchBuckets: [Double] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    public let registry: MetricsRegistry
    public let recordsReceived: MetricCounter
    public let recordsStored: MetricCounter
    public let recordsRejected: MetricCounter
    public let requests: MetricCounter
    public let queueDepth: MetricGauge
    public let uncorrelatedTraces: MetricGauge
    public let storeSizeBytes: MetricGauge
    public let insecure: MetricGauge
    public let batchSeconds: MetricHistogram

    public init(registry: MetricsRegistry = MetricsRegistry()) {
        self.registry = registry
        recordsReceived = registry.counter(
            "trail_ingest_records_received_total", help: "Records received, by source and input format.",
            labelNames: ["source", "format"])
        recordsStored = registry.counter(
            "trail_ingest_records_stored_total", help: "Records written to the store, by source and input format.",
            labelNames: ["source", "format"])
        recordsRejected = registry.counter(
            "trail_ingest_records_rejected_total",
            help: "Records (or parts of records) rejected, by source and input format.",
            labelNames: ["source", "format"])
        requests = registry.counter(
            "trail_ingest_requests_total", help: "HTTP requests answered, by endpoint and status code.",
            labelNames: ["endpoint", "status"])
        queueDepth = registry.gauge("trail_ingest_queue_depth", help: "Records waiting to be written to the store.")
        uncorrelatedTraces = registry.gauge(
            "trail_ingest_uncorrelated_traces", help: "Traces stored but not yet correlated into chains.")
        storeSizeBytes = registry.gauge("trail_store_size_bytes", help: "Size of the store's files in bytes.")
        insecure = registry.gauge(
            "trail_ingest_insecure", help: "1 when the ingest service runs without TLS client authentication, else 0.")
        batchSeconds = registry.histogram(
            "trail_ingest_batch_seconds", help: "Time to parse and store one batch, in seconds.",
            buckets: Self.batchBuckets)
    }

    /// Counts records of one source and format.
    public func received(source: String, format: String, count: Int = 1) {
        recordsReceived.increment([source, format], by: Double(count))
    }

    public func stored(source: String, format: String, count: Int = 1) {
        recordsStored.increment([source, format], by: Double(count))
    }

    public func rejected(source: String, format: String, count: Int = 1) {
        recordsRejected.increment([source, format], by: Double(count))
    }

    /// Counts one answered request.
    public func request(endpoint: String, status: Int) {
        requests.increment([endpoint, String(status)])
    }

    public func setInsecure(_ flag: Bool) { insecure.set(flag ? 1 : 0) }
}

extension IngestMetrics {
    /// Metrics for a service, with the insecure gauge set once at start.
    public init(insecure: Bool) {
        self.init()
        setInsecure(insecure)
    }

    func countRequest(endpoint: String, status: Int) { request(endpoint: endpoint, status: status) }

    func countRecords(source: String, format: String, received r: Int, stored s: Int, rejected j: Int) {
        received(source: source, format: format, count: r)
        stored(source: source, format: format, count: s)
        rejected(source: source, format: format, count: j)
    }

    func setQueueDepth(_ records: Int) { queueDepth.set(Double(records)) }
    func setUncorrelated(_ traces: Int) { uncorrelatedTraces.set(Double(traces)) }
    func setStoreSize(_ bytes: Int64) { storeSizeBytes.set(Double(bytes)) }
    public func observeBatch(seconds: Double) { batchSeconds.observe(seconds) }
    func render() -> String { registry.exposition() }
}
