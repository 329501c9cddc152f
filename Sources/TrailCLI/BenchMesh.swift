import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import TrailCore
import TrailMesh

/// `trail bench-mesh`: the seed's two-proxy path on loopback. A 1 KB keep-alive upstream; a paced client; three
/// topologies measured in the same run: direct (client → app), Trail (client → sidecar → mTLS → sidecar → app,
/// access logging on) and HAProxy (client → haproxy → mTLS → haproxy → app, same certificates). Prints the
/// latency each adds over direct at p50/p90/p99, the sidecars' RSS idle and at peak, and full mTLS handshakes/s.
struct BenchMesh: AsyncParsableCommand, BenchHarness {
    static let configuration = CommandConfiguration(
        commandName: "bench-mesh",
        abstract: "Benchmark two Trail sidecars in the request path against direct calls and two HAProxy instances doing the same mTLS.",
        discussion: "Build with -c release first: swift build -c release && .build/release/trail bench-mesh")

    @Option(name: .long, help: "Requests per second offered, spread over the connections.") var rate = 1000
    @Option(name: .long, help: "Seconds measured per topology (after 1 s of warm-up).") var seconds = 10.0
    @Option(name: .long, help: "Keep-alive client connections.") var connections = 16
    @Option(name: .long, help: "The haproxy binary (the comparison is skipped when it is missing).") var haproxy = "/usr/sbin/haproxy"
    @Option(name: .long, help: "Seconds of the handshake measurement.") var handshakeSeconds = 3.0
    @Option(name: .long, help: "Threads of each proxy (sidecar concurrency, HAProxy nbthread).") var threads = 2

    func run() async throws {
        do {
            try await measure()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    func measure() async throws {
        let work = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("trail-bench-mesh-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { if ProcessInfo.processInfo.environment["TRAIL_BENCH_KEEP"] == nil { try? FileManager.default.removeItem(at: work) } }
        func path(_ name: String) -> String { work.appendingPathComponent(name).path }

        // Identities: one CA, an SVID per side, files for the sidecars and for HAProxy (cert + key in one PEM).
        let ca = try CertificateAuthority.initialize(directory: path("ca"), trustDomain: "bench.example")
        var svids: [String: (String, String)] = [:]
        for side in ["client", "server", "load"] {
            let (svid, key) = try ca.issueWithNewKey(spiffeID: "spiffe://bench.example/ns/bench/sa/\(side)")
            try MeshFiles.write(svid.chainPEM, to: path("\(side).pem"))
            try MeshFiles.write(key, to: path("\(side).key"), mode: 0o600)
            try MeshFiles.write(svid.chainPEM + key, to: path("\(side).haproxy.pem"), mode: 0o600)
            svids[side] = (svid.chainPEM, key)
        }

        let group = MultiThreadedEventLoopGroup.singleton
        let app = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(KilobyteResponder())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let appPort = app.localAddress!.port!

        // Trail: two sidecars, STRICT, access logs on.
        let serverPort = try freePort(), clientOut = try freePort()
        try """
            spiffe_id: spiffe://bench.example/ns/bench/sa/server
            trust_bundle: ca/bundle.pem
            svid: {cert: server.pem, key: server.key}
            concurrency: \(threads)
            inbound: {listen: "127.0.0.1:\(serverPort)", app: "127.0.0.1:\(appPort)", mode: STRICT}
            telemetry: {access_log: server-access.ndjson}
            """.write(toFile: path("server.yaml"), atomically: true, encoding: .utf8)
        try """
            spiffe_id: spiffe://bench.example/ns/bench/sa/client
            trust_bundle: ca/bundle.pem
            svid: {cert: client.pem, key: client.key}
            concurrency: \(threads)
            inbound: {listen: "127.0.0.1:0", app: "127.0.0.1:\(appPort)"}
            outbound:
              listen: 127.0.0.1:\(clientOut)
              upstreams:
              - {name: app, address: "127.0.0.1:\(serverPort)", spiffe_id: spiffe://bench.example/ns/bench/sa/server}
            telemetry: {access_log: client-access.ndjson}
            """.write(toFile: path("client.yaml"), atomically: true, encoding: .utf8)
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let server = try startProcess(me, ["sidecar", "--config", path("server.yaml")], in: work, readyPrefix: "listening on")
        let client = try startProcess(me, ["sidecar", "--config", path("client.yaml")], in: work, readyPrefix: "outbound on")
        defer {
            for p in [server, client] where p.isRunning { p.terminate(); p.waitUntilExit() }
        }
        try await Task.sleep(for: .milliseconds(300))
        let idleRSS = [rss(server.processIdentifier, "VmRSS:"), rss(client.processIdentifier, "VmRSS:")]

        writeOut("trail bench-mesh: \(rate) req/s over \(connections) keep-alive connections, 1 KB responses, \(Int(seconds)) s per topology\n")
        let direct = try await LoadRun.run(group: group, port: appPort, host: "app", rate: rate, connections: connections, seconds: seconds)
        let cpuAtStart = cpuSeconds(server.processIdentifier) + cpuSeconds(client.processIdentifier)
        let trail = try await LoadRun.run(group: group, port: clientOut, host: "app", rate: rate, connections: connections, seconds: seconds)
        let sidecarCPU = cpuSeconds(server.processIdentifier) + cpuSeconds(client.processIdentifier) - cpuAtStart
        let peakRSS = [rss(server.processIdentifier, "VmHWM:"), rss(client.processIdentifier, "VmHWM:")]

        var haproxyResult: LoadRun.Result?
        var haproxyCPU: Double?
        if FileManager.default.isExecutableFile(atPath: haproxy) {
            let hServer = try freePort(), hClient = try freePort()
            /// One HAProxy: a frontend bound as `bind`, one backend server as `server`, access logs on stdout.
            func haproxyConfig(bind: String, server: String) -> String {
                """
                global
                  nbthread \(threads)
                  log stdout format raw local0
                defaults
                  mode http
                  log global
                  option httplog
                  timeout connect 5s
                  timeout client 30s
                  timeout server 30s
                frontend in
                  bind \(bind)
                  default_backend out
                backend out
                  http-reuse always
                  server out \(server)

                """
            }
            let mtls = "ca-file \(path("ca/bundle.pem")) verify required"
            try haproxyConfig(bind: "127.0.0.1:\(hServer) ssl crt \(path("server.haproxy.pem")) \(mtls)", server: "127.0.0.1:\(appPort)")
                .write(toFile: path("haproxy-server.cfg"), atomically: true, encoding: .utf8)
            try haproxyConfig(bind: "127.0.0.1:\(hClient)", server: "127.0.0.1:\(hServer) ssl crt \(path("client.haproxy.pem")) \(mtls)")
                .write(toFile: path("haproxy-client.cfg"), atomically: true, encoding: .utf8)
            let h1 = try startProcess(URL(fileURLWithPath: haproxy), ["-db", "-f", path("haproxy-server.cfg")], in: work, readyPrefix: nil, stdout: path("haproxy-server.log"))
            let h2 = try startProcess(URL(fileURLWithPath: haproxy), ["-db", "-f", path("haproxy-client.cfg")], in: work, readyPrefix: nil, stdout: path("haproxy-client.log"))
            defer { for p in [h1, h2] where p.isRunning { p.terminate(); p.waitUntilExit() } }
            try await Task.sleep(for: .milliseconds(500))
            let haproxyCPUAtStart = cpuSeconds(h1.processIdentifier) + cpuSeconds(h2.processIdentifier)
            haproxyResult = try await LoadRun.run(group: group, port: hClient, host: "app", rate: rate, connections: connections, seconds: seconds)
            haproxyCPU = cpuSeconds(h1.processIdentifier) + cpuSeconds(h2.processIdentifier) - haproxyCPUAtStart
        } else {
            printError("bench-mesh: \(haproxy) not found; skipping the HAProxy comparison (apt-get install haproxy)")
        }

        // Full mTLS handshakes per second against the server sidecar (no session resumption).
        let cpuBefore = cpuSeconds(server.processIdentifier)
        let handshakes = try await HandshakeRun.run(
            group: group, port: serverPort, chainPEM: svids["load"]!.0, keyPEM: svids["load"]!.1, bundle: path("ca/bundle.pem"),
            seconds: handshakeSeconds)

        let serverCPU = cpuSeconds(server.processIdentifier) - cpuBefore
        func ms(_ v: Double) -> String { String(format: "%.3f", v) }
        var table = "\n| path | requests | errors | p50 ms | p90 ms | p99 ms | added p50 | added p90 | added p99 |\n|---|---|---|---|---|---|---|---|---|\n"
        for (name, r) in [("direct", direct), ("2 Trail sidecars", trail)] + (haproxyResult.map { [("2 HAProxy", $0)] } ?? []) {
            table += "| \(name) | \(r.requests) | \(r.errors) | \(ms(r.p50)) | \(ms(r.p90)) | \(ms(r.p99)) | "
            table += name == "direct" ? "| | |\n" : "\(ms(r.p50 - direct.p50)) | \(ms(r.p90 - direct.p90)) | \(ms(r.p99 - direct.p99)) |\n"
        }
        writeOut(table)
        let warmedRequests = Double(max(1, trail.requests + rate))
        writeOut(String(format: "\nCPU per request, both proxies together, warm-up included: Trail sidecars %.0f µs", sidecarCPU * 1e6 / warmedRequests))
        if let haproxyCPU { writeOut(String(format: ", HAProxy %.0f µs", haproxyCPU * 1e6 / warmedRequests)) }
        writeOut("\n")
        writeOut(String(format: "sidecar RSS: server idle %.1f MiB, peak %.1f MiB; client idle %.1f MiB, peak %.1f MiB\n",
                        idleRSS[0] / 1024, peakRSS[0] / 1024, idleRSS[1] / 1024, peakRSS[1] / 1024))
        writeOut(String(format: "full mTLS handshakes: %.0f/s against the server sidecar, %d failed; %.0f per CPU-second of the sidecar (the client shares the cores)\n",
                        handshakes.rate, handshakes.failures, serverCPU > 0 ? Double(handshakes.count) / serverCPU : 0))
    }
}

/// Opens mTLS connections one after another on each of two loops for a fixed time; counts completed handshakes.
enum HandshakeRun {
    static func run(group: any EventLoopGroup, port: Int, chainPEM: String, keyPEM: String, bundle: String, seconds: Double) async throws -> (rate: Double, count: Int, failures: Int) {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8)).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(keyPEM.utf8), format: .pem))
        tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(bundle))
        tls.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: tls)
        let counts = HandshakeCounts()
        let deadline = Date().addingTimeInterval(seconds)
        let start = Date()
        await withTaskGroup(of: Void.self) { tasks in
            for _ in 0..<4 {
                tasks.addTask {
                    while Date() < deadline {
                        do {
                            let handshake = group.next().makePromise(of: Void.self)
                            let channel = try await ClientBootstrap(group: group)
                                .channelInitializer { channel in
                                    channel.eventLoop.makeCompletedFuture {
                                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                                        try channel.pipeline.syncOperations.addHandler(HandshakeWatcher(promise: handshake))
                                    }
                                }
                                .connect(host: "127.0.0.1", port: port).get()
                            try await handshake.futureResult.get()
                            counts.value.withLock { $0.ok += 1 }
                            try? await channel.close()
                        } catch {
                            counts.value.withLock { $0.failed += 1 }
                        }
                    }
                }
            }
        }
        let elapsed = Date().timeIntervalSince(start)
        let (ok, failed) = counts.value.withLock { ($0.ok, $0.failed) }
        return (Double(ok) / elapsed, ok, failed)
    }
}

final class HandshakeCounts: Sendable {
    let value = Locked((ok: 0, failed: 0))
}

final class HandshakeWatcher: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let promise: EventLoopPromise<Void>
    private var done = false
    init(promise: EventLoopPromise<Void>) { self.promise = promise }

    private func finish(_ error: (any Error)?) {
        guard !done else { return }
        done = true
        if let error { promise.fail(error) } else { promise.succeed() }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case TLSUserEvent.handshakeCompleted = event { finish(nil) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { finish(error) }
    func channelInactive(context: ChannelHandlerContext) { finish(CLIError("closed before the handshake completed")) }
}
