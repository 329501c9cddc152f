import ArgumentParser
import Foundation
import GRDB
import GRDBSQLite
import TrailCore
import TrailFormats
import TrailStore

/// `trail bench`: ingests a generated corpus of realistic chains and prints records/s for parse, store and
/// correlate, next to a raw-SQLite baseline measured in the same run, and query latencies on the result.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark ingestion and queries on a generated corpus, against raw SQLite inserts in the same run.",
        discussion: "Build with -c release first: swift build -c release && .build/release/trail bench")

    @Option(name: .long, help: "Records in the corpus (each trace is 1 Kong record, 4 Envoy lines and 4 OTLP spans).")
    var records = 1_000_000

    @Option(name: .long, help: "Where to put the benchmark stores (deleted afterwards unless --keep).")
    var dir: String = NSTemporaryDirectory()

    @Flag(name: .long, help: "Keep the benchmark store.") var keep = false

    func run() throws {
        try runReporting {
            let traces = max(1, records / 9)
            writeOut("generating \(traces) traces (\(traces * 9) records: Kong NDJSON, Istio JSON lines, OTLP protobuf)...\n")
            let corpus = BenchCorpus.generate(traces: traces)
            let path = (dir as NSString).appendingPathComponent("trail-bench-\(getpid()).db")
            let basePath = path + ".baseline"
            defer {
                if !keep { for p in [path, basePath] { for s in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: p + s) } } }
            }

            // Parse.
            var parsed: [(InputFormat, [ParseResult])] = []
            var parseSeconds: [InputFormat: Double] = [:]
            var parseCounts: [InputFormat: Int] = [:]
            for (format, inputs) in corpus.inputs {
                let t0 = Date()
                for input in inputs {
                    let results = FormatRegistry.parse(input, format: format)
                    parsed.append((format, results))
                    parseCounts[format, default: 0] += format == .otlpProto
                        ? results.reduce(0) { n, r in if case .record(let rec) = r { return n + rec.observations.count } else { return n } }
                        : results.count
                }
                parseSeconds[format] = Date().timeIntervalSince(t0)
            }
            let totalRecords = parseCounts.values.reduce(0, +)

            // Store.
            let store = try TrailStore(path: path)
            var dirty = DirtySet()
            let t1 = Date()
            for (_, results) in parsed {
                for chunk in stride(from: 0, to: results.count, by: 20000) {
                    let (_, d) = try store.ingest(Array(results[chunk..<min(chunk + 20000, results.count)]), source: "bench")
                    dirty.formUnion(d)
                }
            }
            let storeSeconds = Date().timeIntervalSince(t1)
            let t2 = Date()
            let correlation = try store.correlate(dirty)
            let correlateSeconds = Date().timeIntervalSince(t2)

            // Baseline: the same observation and raw-record rows through the SQLite C API, prepared statements,
            // one transaction, the same schema and indexes.
            let baselineRows = try RawSQLiteBaseline.run(path: basePath, parsed: parsed)

            let parseTotal = parseSeconds.values.reduce(0, +)
            func rate(_ n: Int, _ s: Double) -> String { s > 0 ? String(Int(Double(n) / s)) : "-" }
            var out = "\nphase                      records      seconds   records/s\n"
            for format in parseSeconds.keys.sorted(by: { $0.rawValue < $1.rawValue }) {
                let n = parseCounts[format] ?? 0
                out += pad("parse \(format.rawValue)", 26) + pad(String(n), 13) + pad(String(format: "%.2f", parseSeconds[format]!), 11) + rate(n, parseSeconds[format]!) + "\n"
            }
            out += pad("parse (all)", 26) + pad(String(totalRecords), 13) + pad(String(format: "%.2f", parseTotal), 11) + rate(totalRecords, parseTotal) + "\n"
            out += pad("store", 26) + pad(String(totalRecords), 13) + pad(String(format: "%.2f", storeSeconds), 11) + rate(totalRecords, storeSeconds) + "\n"
            out += pad("correlate", 26) + pad(String(totalRecords), 13) + pad(String(format: "%.2f", correlateSeconds), 11) + rate(totalRecords, correlateSeconds) + "\n"
            let e2e = parseTotal + storeSeconds + correlateSeconds
            out += pad("end to end", 26) + pad(String(totalRecords), 13) + pad(String(format: "%.2f", e2e), 11) + rate(totalRecords, e2e) + "\n"
            out += pad("baseline raw SQLite", 26) + pad(String(baselineRows.rows), 13) + pad(String(format: "%.2f", baselineRows.seconds), 11) + rate(baselineRows.rows, baselineRows.seconds) + "\n"
            out += "store phase vs baseline: \(String(format: "%.2f", (Double(totalRecords) / storeSeconds) / (Double(baselineRows.rows) / baselineRows.seconds)))x "
            out += "(Trail also hashes, deduplicates and compresses every raw record)\n"
            out += "correlated \(correlation.traces) traces, \(correlation.hops) hops, \(correlation.findings) findings\n"

            // Queries on the resulting store.
            let reader = try TrailStore(path: path, readOnly: true)
            var chainTimes: [Double] = []
            for i in stride(from: 0, to: traces, by: max(1, traces / 200)) {
                let t = Date()
                _ = try reader.chain(traceID: BenchCorpus.traceID(i))
                chainTimes.append(Date().timeIntervalSince(t) * 1000)
            }
            var whoTimes: [Double] = []
            for resource in ["POST /payments/*", "spiffe://bench.example/ns/shop/sa/ledger", "orders", "/shop/checkout"] {
                let t = Date()
                let rows = try reader.whoAccessed(ResourceMatcher.parse(resource), window: TimeWindow(since: BenchCorpus.start, until: BenchCorpus.start.adding(nanoseconds: 60_000_000_000)))
                whoTimes.append(Date().timeIntervalSince(t) * 1000)
                _ = rows
            }
            chainTimes.sort()
            out += String(format: "trail chain: median %.2f ms, p99 %.2f ms (%d lookups)\n",
                          chainTimes[chainTimes.count / 2], chainTimes[min(chainTimes.count - 1, chainTimes.count * 99 / 100)], chainTimes.count)
            out += String(format: "trail who-accessed (1-minute window): %@ ms\n", whoTimes.map { String(format: "%.1f", $0) }.joined(separator: ", "))
            let size = ((try? FileManager.default.attributesOfItem(atPath: path)[.size]) as? Int ?? 0)
            out += "store size: \(size / 1_048_576) MiB for \(corpus.bytes / 1_048_576) MiB of input\n"
            writeOut(out)
        }
    }

    func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
}

/// The raw-SQLite baseline: prepared INSERTs of the same rows in one transaction, with the store's indexes.
enum RawSQLiteBaseline {
    static func run(path: String, parsed: [(InputFormat, [ParseResult])]) throws -> (rows: Int, seconds: Double) {
        // Create the schema through the store, then close it and insert with the C API.
        _ = try TrailStore(path: path)
        var db: OpaquePointer?
        guard sqlite3_open(path, &db) == SQLITE_OK, let db else { throw StoreError("baseline: cannot open \(path)") }
        defer { sqlite3_close(db) }
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nil, nil, nil)
        var rawStmt: OpaquePointer?
        var obsStmt: OpaquePointer?
        sqlite3_prepare_v2(db, """
            INSERT INTO raw_record(digest, sha256, format, source, line, detail, block_id, offset, length, ingested_at)
            VALUES (?, '', ?, 'bench', ?, NULL, 0, 0, ?, 0)
            """, -1, &rawStmt, nil)
        sqlite3_prepare_v2(db, """
            INSERT INTO observation(raw_id, kind, format, trace_id, span_id, parent_span_id, request_id, start, duration,
              method, path, status, caller_spiffe, caller_service, caller_address, callee_spiffe, callee_service,
              callee_address, transport, cert_serial)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, -1, &obsStmt, nil)
        defer {
            sqlite3_finalize(rawStmt)
            sqlite3_finalize(obsStmt)
        }
        sqlite3_exec(db, "PRAGMA foreign_keys=OFF", nil, nil, nil)
        let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)
        func text(_ s: OpaquePointer?, _ i: Int32, _ v: String?) {
            if let v { sqlite3_bind_text(s, i, v, -1, transient) } else { sqlite3_bind_null(s, i) }
        }
        func int(_ s: OpaquePointer?, _ i: Int32, _ v: Int64?) {
            if let v { sqlite3_bind_int64(s, i, v) } else { sqlite3_bind_null(s, i) }
        }
        let t0 = Date()
        sqlite3_exec(db, "BEGIN", nil, nil, nil)
        var rows = 0
        var digest: Int64 = 1
        for (_, results) in parsed {
            for case .record(let rec) in results {
                digest &+= 0x1E37_79B9_7F4A_7C15
                int(rawStmt, 1, digest)
                text(rawStmt, 2, rec.format.rawValue)
                int(rawStmt, 3, Int64(rec.location.line))
                int(rawStmt, 4, Int64(rec.raw.count))
                sqlite3_step(rawStmt)
                sqlite3_reset(rawStmt)
                let rawID = sqlite3_last_insert_rowid(db)
                for o in rec.observations {
                    int(obsStmt, 1, rawID)
                    text(obsStmt, 2, o.kind.rawValue)
                    text(obsStmt, 3, o.format)
                    text(obsStmt, 4, o.traceID ?? "untraced")
                    text(obsStmt, 5, o.spanID)
                    text(obsStmt, 6, o.parentSpanID)
                    text(obsStmt, 7, o.requestID)
                    int(obsStmt, 8, o.start.nanoseconds)
                    int(obsStmt, 9, o.durationNanos)
                    text(obsStmt, 10, o.method)
                    text(obsStmt, 11, o.path)
                    int(obsStmt, 12, o.status.map(Int64.init))
                    text(obsStmt, 13, o.caller.spiffeID)
                    text(obsStmt, 14, o.caller.service)
                    text(obsStmt, 15, o.caller.address)
                    text(obsStmt, 16, o.callee.spiffeID)
                    text(obsStmt, 17, o.callee.service)
                    text(obsStmt, 18, o.callee.address)
                    text(obsStmt, 19, o.transport?.rawValue)
                    text(obsStmt, 20, o.callerCertificate?.serial)
                    sqlite3_step(obsStmt)
                    sqlite3_reset(obsStmt)
                    rows += 1
                }
            }
        }
        sqlite3_exec(db, "COMMIT", nil, nil, nil)
        return (rows, Date().timeIntervalSince(t0))
    }
}

/// A generated estate: gateway → web → orders → payments with realistic records in three formats.
enum BenchCorpus {
    static let start = Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10)
    static let td = "spiffe://bench.example/ns/shop/sa/"

    static func traceID(_ i: Int) -> String {
        let hex = String(UInt64(i) &* 0x9E37_79B9_7F4A_7C15 | 1, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + "4bf92f3577b34da6"
    }

    static func spanID(_ i: Int, _ k: Int) -> String {
        let hex = String(UInt64(i * 8 + k + 1) &* 0xBF58_476D_1CE4_E5B9 | 1, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }

    struct Corpus {
        var inputs: [(InputFormat, [[UInt8]])]
        var bytes: Int
    }

    static func generate(traces: Int) -> Corpus {
        var kong: [UInt8] = []
        var envoy: [UInt8] = []
        var otlp: [[UInt8]] = []
        var spans: [[UInt8]] = []
        let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
        for i in 0..<traces {
            let trace = traceID(i)
            let t0 = start.nanoseconds + Int64(i) * 3_000_000 // about 330 chains per second of traffic
            let ms = t0 / 1_000_000
            let user = users[i % users.count]
            let webClient = spanID(i, 0), ordersServer = spanID(i, 1), ordersClient = spanID(i, 2), paymentsServer = spanID(i, 3)
            let reqID = "\(trace.prefix(8))-6d84-929d-98bd-\(trace.suffix(12))"
            kong += Array("""
                {"request":{"id":"\(trace)","method":"POST","uri":"/shop/checkout?cart=\(i)","url":"https://shop.example:8443/shop/checkout?cart=\(i)","size":412,"querystring":{"cart":"\(i)"},"headers":{"host":"shop.example","user-agent":"Mozilla/5.0 (X11; Linux x86_64)","authorization":"REDACTED","x-request-id":"\(reqID)","traceparent":"00-\(trace)-\(spanID(i, 7))-01"},"tls":{"version":"TLSv1.3","cipher":"TLS_AES_128_GCM_SHA256","client_verify":"NONE"}},"response":{"status":201,"size":880,"headers":{"content-type":"application/json","x-kong-upstream-latency":"21","x-kong-proxy-latency":"1"}},"route":{"id":"0f1a4101-3327-4274-b1e4-484a4ab0c030","name":"checkout","paths":["/shop"]},"service":{"id":"fb4eecf8-dec2-40ef-b779-16de7e2384c7","name":"web","host":"web.shop.svc.cluster.local","port":8443,"protocol":"https"},"consumer":{"id":"c1b2\(i % 8)","username":"\(user)"},"authenticated_entity":{"id":"7e2c\(i % 8)","consumer_id":"c1b2\(i % 8)"},"credential_type":"jwt","tries":[{"balancer_start":\(ms),"ip":"10.44.1.23","port":8443,"balancer_latency":0}],"latencies":{"kong":1,"proxy":21,"request":23,"receive":1},"client_ip":"203.0.113.\(i % 250 + 1)","upstream_uri":"/shop/checkout?cart=\(i)","upstream_status":"201","source":"upstream","started_at":\(ms),"workspace":"f381e34e-5c25-4e65-b91b-3c0a86cfc393","workspace_name":"default","trace_id":{"w3c":"\(trace)"}}

                """.utf8)
            func envoyLine(_ offsetMs: Int64, caller: String, callee: String, serial: String, path: String, parent: String) -> String {
                let t = Timestamp(nanoseconds: t0 + offsetMs * 1_000_000).rfc3339(fractionDigits: 3)
                return """
                    {"start_time":"\(t)","route_name":"default","method":"POST","path":"\(path)","protocol":"HTTP/1.1","response_code":201,"response_flags":"-","response_code_details":"via_upstream","connection_termination_details":null,"upstream_transport_failure_reason":null,"bytes_received":412,"bytes_sent":880,"duration":12,"upstream_service_time":"11","x_forwarded_for":null,"user_agent":"shop-client/1.4","request_id":"\(reqID)","authority":"\(callee):8443","upstream_host":"127.0.0.1:8080","upstream_cluster":"inbound|8080||","upstream_local_address":"127.0.0.6:51234","downstream_local_address":"10.44.1.27:8443","downstream_remote_address":"10.44.1.23:37652","requested_server_name":"outbound_.8443_._.\(callee).shop.svc.cluster.local","downstream_peer_uri_san":"\(td)\(caller)","downstream_local_uri_san":"\(td)\(callee)","downstream_peer_serial":"\(serial)","downstream_tls_version":"TLSv1.3","traceparent":"00-\(trace)-\(parent)-01"}

                    """
            }
            envoy += Array(envoyLine(1, caller: "gateway", callee: "web", serial: "1007", path: "/shop/checkout", parent: spanID(i, 6)).utf8)
            envoy += Array(envoyLine(4, caller: "web", callee: "orders", serial: "1001", path: "/orders", parent: webClient).utf8)
            envoy += Array(envoyLine(8, caller: "orders", callee: "payments", serial: "1002", path: "/payments/charge", parent: ordersClient).utf8)
            envoy += Array(envoyLine(12, caller: "payments", callee: "ledger", serial: "1003", path: "/ledger/entries", parent: spanID(i, 5)).utf8)
            spans.append(ProtoSpan.encode(trace: trace, span: webClient, parent: spanID(i, 4), kind: 3, start: t0 + 3_000_000, end: t0 + 15_000_000, method: "POST", path: "/orders", status: 201, peer: "orders"))
            spans.append(ProtoSpan.encode(trace: trace, span: ordersServer, parent: webClient, kind: 2, start: t0 + 4_000_000, end: t0 + 14_000_000, method: "POST", path: "/orders", status: 201, peer: nil))
            spans.append(ProtoSpan.encode(trace: trace, span: ordersClient, parent: ordersServer, kind: 3, start: t0 + 7_000_000, end: t0 + 12_000_000, method: "POST", path: "/payments/charge", status: 201, peer: "payments"))
            spans.append(ProtoSpan.encode(trace: trace, span: paymentsServer, parent: ordersClient, kind: 2, start: t0 + 8_000_000, end: t0 + 11_000_000, method: "POST", path: "/payments/charge", status: 201, peer: nil))
            if spans.count >= 512 {
                otlp.append(ProtoSpan.request(spans))
                spans.removeAll(keepingCapacity: true)
            }
        }
        if !spans.isEmpty { otlp.append(ProtoSpan.request(spans)) }
        // Access logs are ingested in 4 MiB pieces, as `trail ingest` reads large files.
        func pieces(_ bytes: [UInt8]) -> [[UInt8]] {
            var out: [[UInt8]] = []
            var s = 0
            while s < bytes.count {
                var e = min(s + (4 << 20), bytes.count)
                while e < bytes.count, bytes[e - 1] != 0x0A { e += 1 }
                out.append(Array(bytes[s..<e]))
                s = e
            }
            return out
        }
        let total = kong.count + envoy.count + otlp.reduce(0) { $0 + $1.count }
        return Corpus(inputs: [(.kong, pieces(kong)), (.envoyJSON, pieces(envoy)), (.otlpProto, otlp)], bytes: total)
    }
}

/// A minimal protobuf writer for OTLP spans (bench corpus only).
enum ProtoSpan {
    static func varint(_ v: UInt64, _ out: inout [UInt8]) {
        var v = v
        while v >= 0x80 {
            out.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func field(_ number: Int, bytes: [UInt8], _ out: inout [UInt8]) {
        varint(UInt64(number << 3 | 2), &out)
        varint(UInt64(bytes.count), &out)
        out += bytes
    }

    static func fixed64(_ number: Int, _ v: UInt64, _ out: inout [UInt8]) {
        varint(UInt64(number << 3 | 1), &out)
        for i in 0..<8 { out.append(UInt8((v >> (8 * UInt64(i))) & 0xFF)) }
    }

    static func attribute(_ key: String, string: String) -> [UInt8] {
        var kv: [UInt8] = []
        field(1, bytes: Array(key.utf8), &kv)
        var any: [UInt8] = []
        field(1, bytes: Array(string.utf8), &any)
        field(2, bytes: any, &kv)
        return kv
    }

    static func attribute(_ key: String, int: Int64) -> [UInt8] {
        var kv: [UInt8] = []
        field(1, bytes: Array(key.utf8), &kv)
        var any: [UInt8] = []
        varint(3 << 3, &any)
        varint(UInt64(bitPattern: int), &any)
        field(2, bytes: any, &kv)
        return kv
    }

    static func encode(trace: String, span: String, parent: String, kind: Int, start: Int64, end: Int64,
                       method: String, path: String, status: Int, peer: String?) -> [UInt8] {
        var s: [UInt8] = []
        field(1, bytes: Hex.decode(trace) ?? [], &s)
        field(2, bytes: Hex.decode(span) ?? [], &s)
        field(4, bytes: Hex.decode(parent) ?? [], &s)
        field(5, bytes: Array("\(method) \(path)".utf8), &s)
        varint(6 << 3, &s)
        varint(UInt64(kind), &s)
        fixed64(7, UInt64(start), &s)
        fixed64(8, UInt64(end), &s)
        field(9, bytes: attribute("http.request.method", string: method), &s)
        field(9, bytes: attribute("url.path", string: path), &s)
        field(9, bytes: attribute("http.response.status_code", int: Int64(status)), &s)
        field(9, bytes: attribute("network.protocol.version", string: "1.1"), &s)
        if let peer {
            field(9, bytes: attribute("server.address", string: peer), &s)
            field(9, bytes: attribute("server.port", int: 8443), &s)
        } else {
            field(9, bytes: attribute("client.address", string: "10.44.1.23"), &s)
            field(9, bytes: attribute("http.route", string: path), &s)
        }
        // Tag the owning service so the request can group spans per resource.
        return [UInt8(kind)] + s
    }

    /// Groups spans by service into ResourceSpans and wraps them in an ExportTraceServiceRequest.
    static func request(_ tagged: [[UInt8]]) -> [UInt8] {
        var byService: [String: [[UInt8]]] = [:]
        for t in tagged {
            // Client spans belong to the caller; the peer tells which: web calls orders, orders calls payments.
            let body = Array(t.dropFirst())
            let kind = t[0]
            let name = String(decoding: body, as: UTF8.self)
            let service: String
            if kind == 3 {
                service = name.contains("/orders") ? "web" : "orders"
            } else {
                service = name.contains("/orders") ? "orders" : "payments"
            }
            byService[service, default: []].append(body)
        }
        var request: [UInt8] = []
        for service in byService.keys.sorted() {
            var resource: [UInt8] = []
            field(1, bytes: attribute("service.name", string: service), &resource)
            var scope: [UInt8] = []
            var scopeInfo: [UInt8] = []
            field(1, bytes: Array("opentelemetry.instrumentation.http".utf8), &scopeInfo)
            field(1, bytes: scopeInfo, &scope)
            for span in byService[service]! { field(2, bytes: span, &scope) }
            var rs: [UInt8] = []
            field(1, bytes: resource, &rs)
            field(2, bytes: scope, &rs)
            field(1, bytes: rs, &request)
        }
        return request
    }
}
