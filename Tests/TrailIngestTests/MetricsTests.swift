import Testing
@testable import TrailIngest

@Suite("Metrics")
struct MetricsTests {
    @Test func expositionText() {
        let r = MetricsRegistry()
        let c = r.counter("b_total", help: "B things.", labelNames: ["source", "format"])
        c.increment(["kong", "kong"], by: 2)
        c.increment(["envoy", "envoy-json"])
        c.increment(["a\\b\"c\nd", "x"])
        let g = r.gauge("a_gauge", help: "Help with \\ and\nnewline.")
        g.set(3.5)
        let h = r.histogram("c_seconds", help: "C.", buckets: [0.5, 0.1, 1, 0.5, .infinity])
        h.observe(0.25)
        h.observe(0.5)
        h.observe(7)
        #expect(r.exposition() == #"""
            # HELP a_gauge Help with \\ and\nnewline.
            # TYPE a_gauge gauge
            a_gauge 3.5
            # HELP b_total B things.
            # TYPE b_total counter
            b_total{source="a\\b\"c\nd",format="x"} 1
            b_total{source="envoy",format="envoy-json"} 1
            b_total{source="kong",format="kong"} 2
            # HELP c_seconds C.
            # TYPE c_seconds histogram
            c_seconds_bucket{le="0.1"} 0
            c_seconds_bucket{le="0.5"} 2
            c_seconds_bucket{le="1"} 2
            c_seconds_bucket{le="+Inf"} 3
            c_seconds_sum 7.75
            c_seconds_count 3

            """#)
    }

    @Test func labelledHistogramAndEmptyFamilies() {
        let r = MetricsRegistry()
        _ = r.counter("z_total", help: "Nothing yet.", labelNames: ["endpoint"])
        _ = r.counter("y_total", help: "Unlabelled starts at zero.")
        let h = r.histogram("x_seconds", help: "X.", labelNames: ["endpoint"], buckets: [1])
        h.observe(2, ["/v1/logs"])
        h.observe(0.5, ["/v1/traces"])
        h.observe(.nan, ["/v1/traces"])  // ignored
        #expect(r.exposition() == #"""
            # HELP x_seconds X.
            # TYPE x_seconds histogram
            x_seconds_bucket{endpoint="/v1/logs",le="1"} 0
            x_seconds_bucket{endpoint="/v1/logs",le="+Inf"} 1
            x_seconds_sum{endpoint="/v1/logs"} 2
            x_seconds_count{endpoint="/v1/logs"} 1
            x_seconds_bucket{endpoint="/v1/traces",le="1"} 1
            x_seconds_bucket{endpoint="/v1/traces",le="+Inf"} 1
            x_seconds_sum{endpoint="/v1/traces"} 0.5
            x_seconds_count{endpoint="/v1/traces"} 1
            # HELP y_total Unlabelled starts at zero.
            # TYPE y_total counter
            y_total 0
            # HELP z_total Nothing yet.
            # TYPE z_total counter

            """#)
    }

    @Test func misuseIsIgnored() {
        let r = MetricsRegistry()
        let c = r.counter("c_total", help: "C.", labelNames: ["a"])
        c.increment([])  // wrong label count
        c.increment(["1", "2"])  // wrong label count
        c.increment(["1"], by: -5)  // counters never go down
        c.increment(["1"], by: .nan)
        c.increment(["1"], by: 0.5)
        #expect(r.value("c_total", labelValues: ["1"]) == 0.5)
        #expect(r.value("c_total", labelValues: []) == nil)
        // Declaring again keeps the first declaration.
        let again = r.gauge("c_total", help: "Other.", labelNames: [])
        again.set(9)
        #expect(r.exposition() == "# HELP c_total C.\n# TYPE c_total counter\nc_total{a=\"1\"} 0.5\n")
    }

    @Test func gaugesAndNumbers() {
        let r = MetricsRegistry()
        let g = r.gauge("g", help: "G.", labelNames: ["k"])
        g.set(.infinity, ["inf"])
        g.set(-.infinity, ["minf"])
        g.set(.nan, ["nan"])
        g.set(1e20, ["big"])
        g.set(-3, ["neg"])
        g.add(10, ["neg"])
        g.add(-0.25, ["neg"])
        #expect(r.exposition() == """
            # HELP g G.
            # TYPE g gauge
            g{k="big"} 1e+20
            g{k="inf"} +Inf
            g{k="minf"} -Inf
            g{k="nan"} NaN
            g{k="neg"} 6.75

            """)
    }

    @Test func ingestMetrics() {
        let m = IngestMetrics()
        m.received(source: "otlp", format: "otlp-proto", count: 5)
        m.stored(source: "otlp", format: "otlp-proto", count: 4)
        m.rejected(source: "otlp", format: "otlp-proto")
        m.request(endpoint: "/v1/traces", status: 200)
        m.request(endpoint: "/v1/traces", status: 200)
        m.request(endpoint: "/v1/logs", status: 415)
        m.queueDepth.set(2)
        m.storeSizeBytes.set(1_048_576)
        m.setInsecure(true)
        m.batchSeconds.observe(0.003)
        m.batchSeconds.observe(0.2)
        #expect(MetricsRegistry.contentType == "text/plain; version=0.0.4; charset=utf-8")
        #expect(m.registry.exposition() == #"""
            # HELP trail_ingest_batch_seconds Time to parse and store one batch, in seconds.
            # TYPE trail_ingest_batch_seconds histogram
            trail_ingest_batch_seconds_bucket{le="0.001"} 0
            trail_ingest_batch_seconds_bucket{le="0.005"} 1
            trail_ingest_batch_seconds_bucket{le="0.01"} 1
            trail_ingest_batch_seconds_bucket{le="0.025"} 1
            trail_ingest_batch_seconds_bucket{le="0.05"} 1
            trail_ingest_batch_seconds_bucket{le="0.1"} 1
            trail_ingest_batch_seconds_bucket{le="0.25"} 2
            trail_ingest_batch_seconds_bucket{le="0.5"} 2
            trail_ingest_batch_seconds_bucket{le="1"} 2
            trail_ingest_batch_seconds_bucket{le="2.5"} 2
            trail_ingest_batch_seconds_bucket{le="5"} 2
            trail_ingest_batch_seconds_bucket{le="10"} 2
            trail_ingest_batch_seconds_bucket{le="+Inf"} 2
            trail_ingest_batch_seconds_sum 0.203
            trail_ingest_batch_seconds_count 2
            # HELP trail_ingest_insecure 1 when the ingest service runs without TLS client authentication, else 0.
            # TYPE trail_ingest_insecure gauge
            trail_ingest_insecure 1
            # HELP trail_ingest_queue_depth Records waiting to be written to the store.
            # TYPE trail_ingest_queue_depth gauge
            trail_ingest_queue_depth 2
            # HELP trail_ingest_records_received_total Records received, by source and input format.
            # TYPE trail_ingest_records_received_total counter
            trail_ingest_records_received_total{source="otlp",format="otlp-proto"} 5
            # HELP trail_ingest_records_rejected_total Records (or parts of records) rejected, by source and input format.
            # TYPE trail_ingest_records_rejected_total counter
            trail_ingest_records_rejected_total{source="otlp",format="otlp-proto"} 1
            # HELP trail_ingest_records_stored_total Records written to the store, by source and input format.
            # TYPE trail_ingest_records_stored_total counter
            trail_ingest_records_stored_total{source="otlp",format="otlp-proto"} 4
            # HELP trail_ingest_requests_total HTTP requests answered, by endpoint and status code.
            # TYPE trail_ingest_requests_total counter
            trail_ingest_requests_total{endpoint="/v1/logs",status="415"} 1
            trail_ingest_requests_total{endpoint="/v1/traces",status="200"} 2
            # HELP trail_ingest_uncorrelated_traces Traces stored but not yet correlated into chains.
            # TYPE trail_ingest_uncorrelated_traces gauge
            trail_ingest_uncorrelated_traces 0
            # HELP trail_store_size_bytes Size of the store's files in bytes.
            # TYPE trail_store_size_bytes gauge
            trail_store_size_bytes 1048576

            """#)
    }

    @Test func concurrentUpdates() async {
        let r = MetricsRegistry()
        let c = r.counter("n_total", help: "N.", labelNames: ["worker"])
        let h = r.histogram("d_seconds", help: "D.", buckets: [0.5])
        await withTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    for _ in 0..<1000 {
                        c.increment([String(w % 2)])
                        h.observe(0.25)
                    }
                }
            }
        }
        #expect(r.value("n_total", labelValues: ["0"]) == 4000)
        #expect(r.value("n_total", labelValues: ["1"]) == 4000)
        #expect(r.value("d_seconds") == 8000)
    }
}
