import Foundation
import GRDB
import Testing
import TrailCore
import TrailStore

/// `trail serve` goes down (kill -9) while `trail gateway` and a `trail sidecar` behind it keep serving traffic:
/// their records wait in their spools and arrive when `trail serve` comes back on the same address. With a small
/// spool bound, the spools stay within it, the oldest batches are dropped and counted, and the rest arrives.
/// (`OutboxTests` checks the outbox alone; this is the estate as processes.)
@Suite("The gateway and a sidecar while trail serve is down", .serialized)
struct IngestDownTests {
    typealias M = MeshTests

    /// A CA, `trail serve` on a fixed port, a Python app behind a STRICT sidecar (SVID files from `trail ca issue`),
    /// and the gateway in front of it with an API key; both deliver to `trail serve` with their SVIDs.
    final class Estate {
        let dir: URL
        let db: String
        let servePort: Int
        var serve: M.Daemon?
        var serveStarts = 0
        var daemons: [M.Daemon] = []
        var gatewayURL = ""
        var sidecarAdmin = ""
        let key = "fault-key"
        /// The four spools: (name, directory, bound in bytes).
        var spools: [(name: String, path: String, bound: Int)] = []

        init(bufferMaxBytes: Int) throws {
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("trail-down-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            db = dir.appendingPathComponent("trail.db").path
            servePort = try M.Estate.freePort()
            _ = try M.trail(["ca", "init", "--dir", "ca", "--trust-domain", "shop.example"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/trail/serve", "--ip", "127.0.0.1", "--out", "serve"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/shop/sa/payments", "--out", "payments"], in: dir)
            _ = try M.trail(["ca", "issue", "--dir", "ca", "--spiffe-id", "spiffe://shop.example/ns/edge/sa/gateway", "--out", "gateway"], in: dir)
            try startServe()

            let app = try start(URL(fileURLWithPath: "/usr/bin/env"), ["python3", CLI.root.appendingPathComponent("fixtures/mesh/app.py").path, "0", "payments"], "payments-app")
            try """
                spiffe_id: spiffe://shop.example/ns/shop/sa/payments
                service: payments
                trust_bundle: ca/bundle.pem
                svid: {cert: payments/svid.pem, key: payments/svid.key}
                inbound:
                  listen: 127.0.0.1:0
                  app: 127.0.0.1:\(app.lines[0].split(separator: " ")[1])
                  mode: STRICT
                telemetry:
                  ingest: https://127.0.0.1:\(servePort)
                  access_log: payments-access.ndjson
                  buffer_dir: payments-buffer
                  buffer_max_bytes: \(bufferMaxBytes)
                  flush_ms: 100
                admin:
                  listen: 127.0.0.1:0
                """.write(to: dir.appendingPathComponent("payments.yaml"), atomically: true, encoding: .utf8)
            let sidecar = try start(CLI.binary, ["sidecar", "--config", "payments.yaml"], "payments-sidecar", lines: 2)
            sidecarAdmin = String(sidecar.lines[1].split(separator: " ").last ?? "")
            let keyHash = String(try M.run("/bin/sh", ["-c", "printf %s '\(key)' | sha256sum"], in: dir).1.prefix(64))
            try """
                listen: 127.0.0.1:0
                mesh:
                  spiffe_id: spiffe://shop.example/ns/edge/sa/gateway
                  trust_bundle: ca/bundle.pem
                  svid: {cert: gateway/svid.pem, key: gateway/svid.key}
                telemetry:
                  access_log: gateway-access.ndjson
                  ingest: https://127.0.0.1:\(servePort)
                  buffer_dir: gateway-buffer
                  buffer_max_bytes: \(bufferMaxBytes)
                consumers:
                  - username: alice
                    credentials:
                      key-auth:
                        - key_sha256: \(keyHash)
                routes:
                  - name: payments
                    rules:
                      - matches:
                          - path: {type: PathPrefix, value: /pay}
                        backendRefs:
                          - {name: payments, host: 127.0.0.1, port: \(sidecar.url.split(separator: ":").last!), spiffe_id: spiffe://shop.example/ns/shop/sa/payments}
                    auth:
                      methods: [key-auth]
                """.write(to: dir.appendingPathComponent("gateway.yaml"), atomically: true, encoding: .utf8)
            gatewayURL = try start(CLI.binary, ["gateway", "--config", "gateway.yaml"], "gateway").url
            spools = [
                ("gateway access log", path("gateway-buffer"), bufferMaxBytes / 2),
                ("gateway spans", path("gateway-buffer/spans"), bufferMaxBytes / 2),
                ("sidecar access log", path("payments-buffer/access-logs"), bufferMaxBytes / 2),
                ("sidecar spans", path("payments-buffer/spans"), bufferMaxBytes / 2),
            ]
        }

        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

        func start(_ executable: URL, _ arguments: [String], _ name: String, lines: Int = 1) throws -> M.Daemon {
            let d = try M.Daemon(executable, arguments, dir: dir, name: name, lines: lines)
            daemons.append(d)
            return d
        }

        /// Starts `trail serve` on the estate's port and store.
        func startServe() throws {
            serveStarts += 1
            serve = try M.Daemon(CLI.binary, [
                "serve", "--db", db, "--listen", "127.0.0.1:\(servePort)", "--tls-cert", "serve/svid.pem", "--tls-key", "serve/svid.key",
                "--client-ca", "ca/bundle.pem", "--allow", "shop.example",
            ], dir: dir, name: "serve-\(serveStarts)")
        }

        func killServe() {
            guard let serve else { return }
            kill(serve.process.processIdentifier, SIGKILL)
            serve.process.waitUntilExit()
            self.serve = nil
        }

        /// Sends `count` requests through the gateway (one curl, keep-alive), with x-request-id `PREFIX-i`;
        /// returns the statuses.
        func traffic(_ prefix: String, _ count: Int) throws -> [Int] {
            var arguments: [String] = []
            for i in 0..<count {
                if i > 0 { arguments.append("--next") }
                arguments += ["-s", "-o", "/dev/null", "-w", "%{http_code}\n", "--max-time", "10", "-H", "apikey: \(key)",
                              "-H", "x-request-id: \(prefix)-\(i)", "\(gatewayURL)/pay/\(prefix)/\(i)"]
            }
            let (_, out, _) = try M.run("/usr/bin/curl", arguments, in: dir)
            return out.split(separator: "\n").map { Int($0) ?? 0 }
        }

        /// How many observations each stream (sender and format) delivered per request id starting with `prefix`.
        func delivered(_ prefix: String) throws -> [String: [String: Int]] {
            guard FileManager.default.fileExists(atPath: db) else { return [:] }
            let rows = try TrailStore(path: db, readOnly: true).read { db in
                try Row.fetchAll(db, sql: """
                    SELECT r.source || ' ' || o.format AS stream, o.request_id AS id, COUNT(*) AS n
                    FROM observation o JOIN raw_record r ON r.id = o.raw_id
                    WHERE o.request_id LIKE ? GROUP BY 1, 2
                    """, arguments: [prefix + "-%"]).map { ($0["stream"] as String, $0["id"] as String, $0["n"] as Int) }
            }
            var out: [String: [String: Int]] = [:]
            for (stream, id, n) in rows { out[stream, default: [:]][id] = n }
            return out
        }

        /// The sidecar's delivery counters from its admin endpoint: "stream outcome" → records.
        func sidecarCounters() throws -> [String: Int] {
            let (_, text) = try M.curl(["\(sidecarAdmin)/metrics"], in: dir)
            var out: [String: Int] = [:]
            for line in text.split(separator: "\n") where line.hasPrefix("trail_sidecar_delivered_records_total{") {
                let labels = line.split(separator: "\"")
                guard labels.count >= 4, let value = Int(line.split(separator: " ").last ?? "") else { continue }
                out["\(labels[1]) \(labels[3])"] = value
            }
            return out
        }

        /// Bytes of the files in a spool directory, and of its newest batch: the last by name, which may still be
        /// the temporary file it is written to (`SEQUENCE.ndjson.tmp-PID`).
        static func usage(_ path: String) -> (total: Int, newest: Int) {
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted()
            var total = 0
            var newest = 0
            for name in names {
                var info = stat()
                guard stat((path as NSString).appendingPathComponent(name), &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { continue }
                total += Int(info.st_size)
                newest = Int(info.st_size)
            }
            return (total, newest)
        }

        func stop() {
            killServe()
            for d in daemons.reversed() { d.stop() }
        }
    }

    /// Samples spool directories every 5 ms on a thread of its own, keeping the most bytes each held besides its
    /// newest batch.
    final class SpoolWatch: @unchecked Sendable {
        private let lock = NSLock()
        private var worst: [Int]
        private var running = true
        private let done = DispatchSemaphore(value: 0)

        init(_ paths: [String]) {
            worst = Array(repeating: 0, count: paths.count)
            Thread { [self] in
                while lock.withLock({ running }) {
                    for (i, path) in paths.enumerated() {
                        let u = Estate.usage(path)
                        lock.withLock { worst[i] = max(worst[i], u.total - u.newest) }
                    }
                    usleep(5_000)
                }
                done.signal()
            }.start()
        }

        func finish() -> [Int] {
            lock.withLock { running = false }
            done.wait()
            return lock.withLock { worst }
        }
    }

    static let streams = ["gateway access log", "gateway spans", "sidecar access log", "sidecar spans"]

    /// The stream a delivered observation came by.
    static func stream(_ key: String) -> String? {
        let gateway = key.hasPrefix("serve:spiffe://shop.example/ns/edge/sa/gateway ")
        let sidecar = key.hasPrefix("serve:spiffe://shop.example/ns/shop/sa/payments ")
        switch (gateway, sidecar, key.hasSuffix(" otlp-json")) {
        case (true, _, false): return "gateway access log"
        case (true, _, true): return "gateway spans"
        case (_, true, false): return "sidecar access log"
        case (_, true, true): return "sidecar spans"
        default: return nil
        }
    }

    /// Per stream: request ids delivered, and the most observations any one of them has there.
    static func byStream(_ delivered: [String: [String: Int]]) -> [String: (ids: Set<String>, most: Int)] {
        var out: [String: (ids: Set<String>, most: Int)] = [:]
        for (key, ids) in delivered {
            guard let s = stream(key) else { continue }
            let old = out[s] ?? ([], 0)
            out[s] = (old.ids.union(ids.keys), max(old.most, ids.values.max() ?? 0))
        }
        return out
    }

    @Test func spooledRecordsAllArriveWhenTrailServeReturns() throws {
        let estate = try Estate(bufferMaxBytes: 64 << 20)
        defer { estate.stop() }
        // Up: records flow.
        #expect(try estate.traffic("up", 10) == Array(repeating: 200, count: 10))
        #expect(M.eventually(20) {
            let up = Self.byStream((try? estate.delivered("up")) ?? [:])
            return Self.streams.allSatisfy { up[$0]?.ids.count == 10 }
        }, "the records of the first 10 requests did not arrive")

        // Down: traffic is served all the same, and the records wait on disk.
        estate.killServe()
        let requests = 300
        let statuses = try estate.traffic("down", requests)
        #expect(statuses == Array(repeating: 200, count: requests), "the gateway refused traffic while trail serve was down")
        // Every stream spools (and its delivery attempts fail meanwhile).
        var spooled: [Int] = []
        let allSpooled = M.eventually(10) {
            spooled = estate.spools.map { Estate.usage($0.path).total }
            return spooled.allSatisfy { $0 > 0 }
        }
        #expect(allSpooled, "spools while down: \(spooled)")

        // Back on the same address: every spooled record arrives, once.
        try estate.startServe()
        var delivered: [String: (ids: Set<String>, most: Int)] = [:]
        let arrived = M.eventually(30) {
            delivered = Self.byStream((try? estate.delivered("down")) ?? [:])
            return Self.streams.allSatisfy { delivered[$0]?.ids.count == requests }
        }
        #expect(arrived, "delivered per stream: \(delivered.mapValues(\.ids.count))")
        for s in Self.streams { #expect(delivered[s]?.most == 1, "\(s): a record was stored twice") }
        #expect(M.eventually(5) { estate.spools.allSatisfy { Estate.usage($0.path).total == 0 } }, "spools not emptied")
        let counters = try estate.sidecarCounters()
        #expect(counters["access_logs dropped"] == 0 && counters["spans dropped"] == 0, "\(counters)")
        let arrivals = Self.streams.map { delivered[$0]?.ids.count ?? 0 }
        let twice = Self.streams.filter { (delivered[$0]?.most ?? 0) > 1 }.count
        print("ingest down: 1 outage, \(requests) requests through the gateway and the sidecar while trail serve was down, spooled \(spooled) bytes; arrived per stream \(arrivals), lost \(4 * requests - arrivals.reduce(0, +)), streams with duplicates \(twice)")
    }

    @Test func pastASmallSpoolBoundTheOldestAreDroppedCountedAndTheRestArrives() throws {
        let bound = 1 << 18  // 256 KiB in all: 128 KiB per spool
        let estate = try Estate(bufferMaxBytes: bound)
        defer { estate.stop() }
        estate.killServe()

        // Watch the spools while the traffic runs: each stays within its bound, give or take the newest batch.
        let watch = SpoolWatch(estate.spools.map(\.path))
        let spools = estate.spools
        let requests = 500
        let trafficStarted = Date()
        let statuses = try estate.traffic("down", requests)
        let trafficSeconds = Date().timeIntervalSince(trafficStarted)
        // The last batches reach the spools: wait until no spool changes over more than two flush intervals (the
        // gateway flushes every 500 ms), so that no drop comes after the counts are read.
        var listings: [[String]] = []
        _ = M.eventually(20) {
            let now = spools.map { ((try? FileManager.default.contentsOfDirectory(atPath: $0.path)) ?? []).sorted() }
            defer { listings = now }
            Thread.sleep(forTimeInterval: 1.2)
            return now == listings
        }
        let worstSeen = watch.finish()
        #expect(statuses == Array(repeating: 200, count: requests))
        for (i, spool) in spools.enumerated() {
            #expect(worstSeen[i] <= spool.bound, "\(spool.name): \(worstSeen[i]) bytes besides the newest batch, bound \(spool.bound)")
        }

        // The drops are counted: the sidecar's admin endpoint, the gateway's log.
        let counters = try estate.sidecarCounters()
        let gatewayLog = try String(contentsOfFile: estate.path("gateway.err"), encoding: .utf8)
        func droppedInLog(spans: Bool) -> Int {
            gatewayLog.split(separator: "\n").filter { $0.contains("dropped the oldest") && $0.contains("/spans/") == spans }
                .compactMap { line in line.components(separatedBy: "dropped the oldest ").last?.split(separator: " ").first.flatMap { Int($0) } }
                .reduce(0, +)
        }
        let dropped = [droppedInLog(spans: false), droppedInLog(spans: true), counters["access_logs dropped"] ?? -1, counters["spans dropped"] ?? -1]
        #expect(dropped.allSatisfy { $0 > 0 && $0 < requests }, "dropped per stream: \(dropped)")

        // What was not dropped arrives: the newest records, each once.
        try estate.startServe()
        var delivered: [String: (ids: Set<String>, most: Int)] = [:]
        let arrived = M.eventually(30) {
            delivered = Self.byStream((try? estate.delivered("down")) ?? [:])
            return zip(Self.streams, dropped).allSatisfy { delivered[$0]?.ids.count == requests - $1 }
        }
        #expect(arrived, "delivered \(Self.streams.map { delivered[$0]?.ids.count ?? 0 }), dropped \(dropped) of \(requests)")
        for (s, d) in zip(Self.streams, dropped) {
            #expect(delivered[s]?.most == 1, "\(s): a record was stored twice")
            #expect(delivered[s]?.ids == Set((d..<requests).map { "down-\($0)" }), "\(s): not the newest \(requests - d) records")
        }
        #expect(M.eventually(5) { estate.spools.allSatisfy { Estate.usage($0.path).total == 0 } }, "spools not emptied")
        let sent = try estate.sidecarCounters()
        #expect(sent["access_logs sent"] == requests - dropped[2] && sent["spans sent"] == requests - dropped[3], "\(sent)")
        let arrivals = Self.streams.map { delivered[$0]?.ids.count ?? 0 }
        let twice = Self.streams.filter { (delivered[$0]?.most ?? 0) > 1 }.count
        print("""
            ingest down, spool bound \(bound / 2) bytes per stream: \(requests) requests in \(String(format: "%.1f", trafficSeconds)) s; \
            largest spool besides its newest batch \(worstSeen) bytes; dropped \(dropped), arrived \(arrivals); \
            lost beyond the counted drops \(4 * requests - dropped.reduce(0, +) - arrivals.reduce(0, +)), streams with duplicates \(twice)
            """)
    }
}
