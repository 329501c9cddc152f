import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// `trail bench-gateway`: the edge gateway against nginx as the same reverse proxy, on loopback. A 1 KB
/// keep-alive upstream; four topologies measured in the same run: direct (client → app), `trail gateway` (one
/// route, anonymous, Kong access log to a file), the same gateway with key-auth and a rate limit that never
/// refuses, and nginx (one upstream with keepalive, JSON access log to a file) with as many workers as the
/// gateway has threads. For each: saturation throughput (closed loop) and the latency added at a fixed rate
/// (open loop), and the proxy's CPU per request from /proc; then the ratios against the gateway's goals.
struct BenchGateway: AsyncParsableCommand, BenchHarness {
    static let configuration = CommandConfiguration(
        commandName: "bench-gateway",
        abstract: "Benchmark `trail gateway` (with and without key-auth and rate limiting) against direct calls and nginx as the same reverse proxy.",
        discussion: "Build with -c release first: swift build -c release && .build/release/trail bench-gateway")

    @Option(name: .long, help: "Requests per second offered in the latency measurement, spread over the connections.") var rate = 1000
    @Option(name: .long, help: "Seconds measured per topology and measurement (after 1 s of warm-up).") var seconds = 10.0
    @Option(name: .long, help: "Threads of the gateway and worker processes of nginx.") var workers = 2
    @Option(name: .long, help: "Keep-alive client connections (both measurements).") var connections = 16
    @Option(name: .long, help: "The nginx binary (the comparison is skipped when it is missing).") var nginx = "/usr/sbin/nginx"

    static let apiKey = "trail-bench-gateway-key"
    /// printf %s trail-bench-gateway-key | sha256sum
    static let apiKeySHA256 = "767a8376997c7f8cbaa4b1f2b879efb2c6b042e10ef09a4fbdc84e849a5fb0bf"

    func validate() throws {
        guard rate > 0, seconds > 0, workers > 0, connections > 0 else {
            throw ValidationError("--rate, --seconds, --workers and --connections must be positive")
        }
    }

    func run() async throws {
        do {
            try await measure()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    /// One topology's figures.
    struct Figures {
        var name: String
        var latency: LoadRun.Result
        var saturation: SaturationRun.Result
        /// Proxy CPU seconds during the measured latency and saturation phases (nil for direct).
        var latencyCPU: Double?
        var saturationCPU: Double?
        var accessLogLines: Int?
    }

    func measure() async throws {
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("trail-bench-gateway-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { if ProcessInfo.processInfo.environment["TRAIL_BENCH_KEEP"] == nil { try? FileManager.default.removeItem(at: work) } }
        func path(_ name: String) -> String { work.appendingPathComponent(name).path }

        let group = MultiThreadedEventLoopGroup.singleton
        let app = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 1024)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(KilobyteResponder())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { app.close(promise: nil) }
        let appPort = app.localAddress!.port!

        writeOut("trail bench-gateway: \(connections) keep-alive connections, 1 KB responses, \(Int(seconds)) s per measurement; "
            + "latency at \(rate) req/s; gateway \(workers) threads, nginx \(workers) workers\n")

        /// Latency at the fixed rate, then saturation, each after a warm-up; CPU of `pids()` over each measured phase.
        func topology(_ name: String, port: Int, headers: [(String, String)] = [], pids: (() -> [Int32])?) async throws -> Figures {
            func cpu() -> Double { pids?().reduce(0) { $0 + cpuSeconds($1) } ?? 0 }
            _ = try await LoadRun.phase(group: group, port: port, host: "app", headers: headers, rate: rate, connections: connections, seconds: 1)
            var start = cpu()
            let latency = try await LoadRun.phase(
                group: group, port: port, host: "app", headers: headers, rate: rate, connections: connections, seconds: seconds)
            let latencyCPU = cpu() - start
            _ = try await SaturationRun.phase(group: group, port: port, host: "app", headers: headers, connections: connections, seconds: 1)
            start = cpu()
            let saturation = try await SaturationRun.phase(
                group: group, port: port, host: "app", headers: headers, connections: connections, seconds: seconds)
            let saturationCPU = cpu() - start
            return Figures(
                name: name, latency: latency, saturation: saturation, latencyCPU: pids == nil ? nil : latencyCPU,
                saturationCPU: pids == nil ? nil : saturationCPU)
        }

        var results: [Figures] = []
        results.append(try await topology("direct", port: appPort, pids: nil))

        // The gateway: one route to the upstream, Kong access log to a file; then the same with key-auth and a
        // rate limit far above what the machine can serve (checked on every request, never refusing).
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let backend = "[{name: app, host: 127.0.0.1, port: \(appPort)}]"
        let plain = """
            telemetry: {access_log: gateway-access.ndjson}
            routes:
              - name: bench
                rules: [{backendRefs: \(backend)}]
                auth: {anonymous: true}

            """
        let guarded = """
            telemetry: {access_log: gateway-auth-access.ndjson}
            key_auth: {key_names: [apikey], key_in_query: false}
            consumers:
              - username: bench
                credentials: {key-auth: [{key_sha256: \(Self.apiKeySHA256)}]}
            routes:
              - name: bench
                rules: [{backendRefs: \(backend)}]
                auth: {methods: [key-auth]}
                rate_limit:
                  per_consumer: {requests: 100000000, window: 1s}
                  total: {requests: 100000000, window: 1s}

            """
        for (name, file, yaml, headers) in [
            ("trail gateway", "gateway.yaml", plain, [(String, String)]()),
            ("gateway + key-auth + rate limit", "gateway-auth.yaml", guarded, [("apikey", Self.apiKey)]),
        ] {
            try yaml.write(toFile: path(file), atomically: true, encoding: .utf8)
            let port = try freePort()
            let gateway = try startProcess(
                me, ["gateway", "--config", path(file), "--listen", "127.0.0.1:\(port)", "--threads", "\(workers)"], in: work,
                readyPrefix: "listening on")
            defer { if gateway.isRunning { gateway.terminate(); gateway.waitUntilExit() } }
            let pid = gateway.processIdentifier
            var figures = try await topology(name, port: port, headers: headers, pids: { [pid] })
            gateway.terminate()
            gateway.waitUntilExit()
            figures.accessLogLines = lineCount(path(file.replacingOccurrences(of: ".yaml", with: "-access.ndjson")))
            results.append(figures)
        }

        // nginx as the same reverse proxy.
        if FileManager.default.isExecutableFile(atPath: nginx) {
            let port = try freePort()
            let prefix = path("nginx")
            try FileManager.default.createDirectory(atPath: prefix + "/temp", withIntermediateDirectories: true)
            try nginxConfig(prefix: prefix, listen: port, upstream: appPort).write(toFile: prefix + "/nginx.conf", atomically: true, encoding: .utf8)
            let server = try startProcess(
                URL(fileURLWithPath: nginx), ["-p", prefix, "-c", "nginx.conf", "-e", prefix + "/error.log", "-g", "daemon off;"], in: work,
                readyPrefix: nil, stdout: prefix + "/stdout.log")
            defer { if server.isRunning { server.terminate(); server.waitUntilExit() } }
            try await waitForPort(port, process: server)
            try await Task.sleep(for: .milliseconds(200))
            let pid = server.processIdentifier
            var figures = try await topology("nginx", port: port, pids: { processTree(pid) })
            server.terminate()  // SIGTERM: fast shutdown of the master and its workers
            server.waitUntilExit()
            figures.accessLogLines = lineCount(prefix + "/access.json")
            results.append(figures)
        } else {
            printError("bench-gateway: \(nginx) not found; skipping the nginx comparison (apt-get install nginx)")
        }

        report(results)
    }

    /// nginx as the gateway's twin: `workers` worker processes, keep-alive to the upstream, a JSON access log
    /// line per request, every temporary path under `prefix` (no /var/lib/nginx needed).
    func nginxConfig(prefix: String, listen: Int, upstream: Int) -> String {
        """
        \(getuid() == 0 ? "user root;\n" : "")worker_processes \(workers);
        pid \(prefix)/nginx.pid;
        error_log \(prefix)/error.log warn;
        events { worker_connections 4096; }
        http {
          client_body_temp_path \(prefix)/temp/client_body;
          proxy_temp_path \(prefix)/temp/proxy;
          fastcgi_temp_path \(prefix)/temp/fastcgi;
          uwsgi_temp_path \(prefix)/temp/uwsgi;
          scgi_temp_path \(prefix)/temp/scgi;
          log_format bench escape=json '{"time":"$time_iso8601","request_id":"$request_id","client_ip":"$remote_addr",'
            '"method":"$request_method","uri":"$request_uri","host":"$host","status":$status,"bytes_sent":$bytes_sent,'
            '"request_time":$request_time,"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
            '"upstream_response_time":"$upstream_response_time","user_agent":"$http_user_agent"}';
          access_log \(prefix)/access.json bench;
          keepalive_requests 100000000;
          upstream app {
            server 127.0.0.1:\(upstream);
            keepalive 64;
            keepalive_requests 100000000;
          }
          server {
            listen 127.0.0.1:\(listen) backlog=1024;
            location / {
              proxy_pass http://app;
              proxy_http_version 1.1;
              proxy_set_header Connection "";
              proxy_set_header Host $host;
              proxy_set_header X-Request-Id $request_id;
              proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
              proxy_set_header X-Forwarded-Proto $scheme;
              proxy_set_header X-Forwarded-Host $host;
            }
          }
        }

        """
    }

    func lineCount(_ file: String) -> Int? {
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        return data.reduce(0) { $1 == 0x0A ? $0 + 1 : $0 }
    }

    func report(_ results: [Figures]) {
        guard let direct = results.first else { return }
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        func perRequest(_ cpu: Double?, _ requests: Int) -> String {
            guard let cpu, requests > 0 else { return "" }
            return String(format: "%.0f", cpu * 1e6 / Double(requests))
        }
        var table = "\n| path | req/s at saturation | errors | p50 ms | p90 ms | p99 ms | added p50 | added p90 | added p99 "
            + "| CPU µs/req, saturation | CPU µs/req, at \(rate)/s | log lines |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n"
        for r in results {
            let l = r.latency, s = r.saturation
            table += "| \(r.name) | \(String(format: "%.0f", s.rate)) | \(l.errors + s.errors) | \(ms(l.p50)) | \(ms(l.p90)) | \(ms(l.p99)) | "
            table += r.name == "direct" ? "| | | " : "\(ms(l.p50 - direct.latency.p50)) | \(ms(l.p90 - direct.latency.p90)) | \(ms(l.p99 - direct.latency.p99)) | "
            table += "\(perRequest(r.saturationCPU, s.requests)) | \(perRequest(r.latencyCPU, l.requests)) | \(r.accessLogLines.map(String.init) ?? "") |\n"
        }
        writeOut(table)
        writeOut("\nCPU per request: the proxy's user + system time over the measured phase (/proc), all its threads or processes.\n")

        let gateway = results.first { $0.name == "trail gateway" }
        let guarded = results.first { $0.name.hasPrefix("gateway + key-auth") }
        let nginx = results.first { $0.name == "nginx" }
        func verdict(_ ok: Bool) -> String { ok ? "met" : "NOT met" }
        writeOut("\nGoals:\n")
        if let gateway, let nginx {
            let ratio = gateway.saturation.rate / max(1, nginx.saturation.rate)
            writeOut(String(format: "- throughput: gateway %.0f req/s = %.2f× nginx's %.0f (goal ≥ 0.80×): ",
                            gateway.saturation.rate, ratio, nginx.saturation.rate) + verdict(ratio >= 0.8) + "\n")
            let added = gateway.latency.p99 - direct.latency.p99, nginxAdded = nginx.latency.p99 - direct.latency.p99
            if nginxAdded > 0 {
                let r = added / nginxAdded
                writeOut(String(format: "- added p99 at %d req/s: gateway %.3f ms = %.2f× nginx's %.3f ms (goal ≤ 1.5×): ",
                                rate, added, r, nginxAdded) + verdict(r <= 1.5) + "\n")
            } else {
                writeOut(String(format: "- added p99 at %d req/s: gateway %.3f ms, nginx %.3f ms (nginx not above direct, no ratio): ",
                                rate, added, nginxAdded) + verdict(added <= 0) + "\n")
            }
        } else {
            writeOut("- gateway against nginx: not measured (nginx missing)\n")
        }
        if let gateway, let guarded {
            let ratio = guarded.saturation.rate / max(1, gateway.saturation.rate)
            writeOut(String(format: "- key-auth + rate limit: %.0f req/s = %.2f× the gateway without them (goal ≥ 0.80×; Kong loses 24–31%%): ",
                            guarded.saturation.rate, ratio) + verdict(ratio >= 0.8) + "\n")
        }
    }
}
