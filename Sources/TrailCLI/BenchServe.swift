import ArgumentParser
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import TrailCore
import TrailFormats
import TrailStore

/// `trail bench-serve`: starts `trail serve` (this binary, TLS, a token) on loopback, pushes OTLP protobuf
/// spans and Kong records with several concurrent senders, and prints sustained accepted records/s,
/// acknowledgement latency p50/p99 (at saturation and at half of it) and the server's peak RSS, next to the
/// file-ingest rate of the same data measured in the same run.
struct BenchServe: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serve",
        abstract: "Load-benchmark `trail serve` over loopback TLS against file ingestion of the same data.",
        discussion: "Build with -c release first: swift build -c release && .build/release/trail bench-serve")

    @Option(name: .long, help: "Concurrent senders (half OTLP protobuf, half Kong records).") var senders = 4
    @Option(name: .long, help: "Seconds of load in each phase.") var seconds = 15.0
    @Option(name: .long, help: "Where to put the stores and certificates.") var dir: String = NSTemporaryDirectory()
    @Option(name: .long, help: "The fixtures folder (for the certificate script).") var fixtures: String?

    func run() async throws {
        do {
            try await measure()
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }

    func measure() async throws {
        let work = URL(fileURLWithPath: dir).appendingPathComponent("trail-bench-serve-\(getpid())")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: work) }
        let root = try FixtureDirectory.locate(fixtures)
        try runTool("/bin/bash", [root + "/serve/make-server-certs.sh", work.path])
        let tokenLine = try String(contentsOf: work.appendingPathComponent("tokens"), encoding: .utf8)
        let token = String(tokenLine.split(separator: ":")[1].trimmingCharacters(in: .whitespacesAndNewlines))

        // Payloads: OTLP requests of 512 spans and Kong bodies of 500 records, from the same generator as `trail bench`.
        let corpus = BenchCorpus.generate(traces: 20_000)
        let otlp = corpus.inputs.first { $0.0 == .otlpProto }?.1 ?? []
        let kongLines = (corpus.inputs.first { $0.0 == .kong }?.1 ?? []).flatMap { LineSplitter.lines(in: $0).map { Array($0.bytes) } }
        var kong: [[UInt8]] = []
        for start in stride(from: 0, to: kongLines.count, by: 500) {
            kong.append(kongLines[start..<min(start + 500, kongLines.count)].flatMap { $0 + [0x0A] })
        }
        let spansPerRequest = 512
        let kongPerRequest = 500

        // File-ingest rate of the same data, same machine, same run.
        let fileStore = try TrailStore(path: work.appendingPathComponent("file.db").path)
        let t0 = Date()
        var dirty = DirtySet()
        var fileRecords = 0
        for body in otlp {
            let results = FormatRegistry.parse(body, format: .otlpProto)
            fileRecords += results.reduce(0) { $0 + ($1.record?.observations.count ?? 0) }
            dirty.formUnion(try fileStore.ingest(results, source: "file").1)
        }
        for body in kong {
            let results = FormatRegistry.parse(body, format: .kong)
            fileRecords += results.count
            dirty.formUnion(try fileStore.ingest(results, source: "file").1)
        }
        try fileStore.correlate(dirty)
        let fileRate = Double(fileRecords) / Date().timeIntervalSince(t0)

        // The server, as users run it.
        let server = Process()
        server.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        server.arguments = [
            "serve", "--db", work.appendingPathComponent("serve.db").path, "--listen", "127.0.0.1:0",
            "--tls-cert", work.appendingPathComponent("server.pem").path,
            "--tls-key", work.appendingPathComponent("server.key").path,
            "--token-file", work.appendingPathComponent("tokens").path,
        ]
        let out = Pipe()
        server.standardOutput = out
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            server.terminate()
            server.waitUntilExit()
        }
        let first = readLine(out.fileHandleForReading)
        guard first.hasPrefix("listening on https://"), let port = Int(first.split(separator: ":").last ?? "") else {
            throw CLIError("trail serve did not start: \(first)")
        }

        let group = MultiThreadedEventLoopGroup.singleton
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.trustRoots = .file(work.appendingPathComponent("ca.pem").path)
        tls.certificateVerification = .noHostnameVerification
        let context = try NIOSSLContext(configuration: tls)

        func phase(_ label: String, ratePerSender: Double?) async throws -> (Double, [Double]) {
            let deadline = Date().addingTimeInterval(seconds)
            let results = try await withThrowingTaskGroup(of: (Int, [Double]).self) { tasks in
                for s in 0..<senders {
                    let isOTLP = s % 2 == 0
                    let bodies = isOTLP ? otlp : kong
                    let path = isOTLP ? "/v1/traces" : "/v1/access-logs"
                    let contentType = isOTLP ? "application/x-protobuf" : "application/json"
                    let perRequest = isOTLP ? spansPerRequest : kongPerRequest
                    tasks.addTask {
                        let client = try await LoadClient.connect(group: group, context: context, port: port)
                        defer { client.close() }
                        var accepted = 0
                        var latencies: [Double] = []
                        var i = s
                        let start = Date()
                        while Date() < deadline {
                            if let rate = ratePerSender {
                                // Paced: request n goes out at start + n / rate.
                                let due = start.addingTimeInterval(Double(latencies.count) / rate)
                                let wait = due.timeIntervalSinceNow
                                if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
                            }
                            let body = bodies[i % bodies.count]
                            i += senders
                            let sent = Date()
                            let status = try await client.post(path: path, contentType: contentType, token: token, body: body)
                            latencies.append(Date().timeIntervalSince(sent) * 1000)
                            if status == 200 { accepted += perRequest }
                        }
                        return (accepted, latencies)
                    }
                }
                var accepted = 0
                var latencies: [Double] = []
                for try await (a, l) in tasks {
                    accepted += a
                    latencies += l
                }
                return (accepted, latencies)
            }
            // Include the time the server needs to store and correlate what it accepted.
            let drained = try await drain()
            return (Double(results.0) / (seconds + drained), results.1.sorted())
        }

        /// Seconds until the server reports an empty queue and nothing left to correlate.
        func drain() async throws -> Double {
            let client = try await LoadClient.connect(group: group, context: context, port: port)
            defer { client.close() }
            let start = Date()
            while Date().timeIntervalSince(start) < 600 {
                let (_, body) = try await client.get(path: "/metrics", token: token)
                let text = String(decoding: body, as: UTF8.self)
                let pending = text.split(separator: "\n").filter {
                    $0.hasPrefix("trail_ingest_queue_depth ") || $0.hasPrefix("trail_ingest_uncorrelated_traces ")
                }.compactMap { Double($0.split(separator: " ").last ?? "") }
                if pending.count == 2 && pending.allSatisfy({ $0 == 0 }) { break }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            return Date().timeIntervalSince(start)
        }

        let (saturated, satLatency) = try await phase("saturation", ratePerSender: nil)
        let requestsPerSender = Double(satLatency.count) / seconds / Double(senders)
        let (half, halfLatency) = try await phase("half", ratePerSender: requestsPerSender / 2)
        let rss = peakRSS(pid: server.processIdentifier)

        func pct(_ v: [Double], _ p: Double) -> String {
            v.isEmpty ? "-" : String(format: "%.1f", v[min(v.count - 1, Int(Double(v.count) * p))])
        }
        var text = "trail serve over loopback TLS, \(senders) senders (OTLP protobuf \(spansPerRequest) spans/request, Kong \(kongPerRequest) records/request)\n"
        text += String(format: "file ingest of the same data:        %8.0f records/s\n", fileRate)
        text += String(format: "serve at saturation:                 %8.0f records/s stored and correlated (%.0f%% of file ingest), ack p50 %@ ms, p99 %@ ms\n",
                       saturated, saturated / fileRate * 100, pct(satLatency, 0.5), pct(satLatency, 0.99))
        text += String(format: "serve at half of saturation:         %8.0f records/s stored and correlated, ack p50 %@ ms, p99 %@ ms\n",
                       half, pct(halfLatency, 0.5), pct(halfLatency, 0.99))
        text += "server peak RSS: \(rss.map { "\($0 / 1024) MiB" } ?? "unknown")\n"
        writeOut(text)
    }

    func readLine(_ handle: FileHandle) -> String {
        var line = [UInt8]()
        while let b = handle.readData(ofLength: 1).first, b != 0x0A { line.append(b) }
        return String(decoding: line, as: UTF8.self)
    }

    func runTool(_ path: String, _ arguments: [String]) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CLIError("\(arguments.first ?? path) failed") }
    }

    /// VmHWM of a process, in KiB.
    func peakRSS(pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
        }
        return nil
    }
}

/// A keep-alive HTTP/1.1-over-TLS client that sends one request at a time and reports the status.
final class LoadClient: Sendable {
    let channel: any Channel

    init(channel: any Channel) { self.channel = channel }

    static func connect(group: any EventLoopGroup, context: NIOSSLContext, port: Int) async throws -> LoadClient {
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: context, serverHostname: nil))
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(RequestResponseHandler())
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return LoadClient(channel: channel)
    }

    func post(path: String, contentType: String, token: String, body: [UInt8]) async throws -> Int {
        var head = HTTPRequestHead(version: .http1_1, method: .POST, uri: path)
        head.headers.add(name: "host", value: "127.0.0.1")
        head.headers.add(name: "content-type", value: contentType)
        head.headers.add(name: "authorization", value: "Bearer \(token)")
        head.headers.add(name: "content-length", value: String(body.count))
        let promise = channel.eventLoop.makePromise(of: Int.self)
        let request = RequestResponseHandler.Request(head: head, body: ByteBuffer(bytes: body), promise: promise)
        channel.writeAndFlush(request, promise: nil)
        return try await promise.futureResult.get()
    }

    func get(path: String, token: String) async throws -> (Int, [UInt8]) {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: path)
        head.headers.add(name: "host", value: "127.0.0.1")
        head.headers.add(name: "authorization", value: "Bearer \(token)")
        let promise = channel.eventLoop.makePromise(of: Int.self)
        let bodyPromise = channel.eventLoop.makePromise(of: [UInt8].self)
        let request = RequestResponseHandler.Request(head: head, body: ByteBuffer(), promise: promise, body: bodyPromise)
        channel.writeAndFlush(request, promise: nil)
        let status = try await promise.futureResult.get()
        return (status, try await bodyPromise.futureResult.get())
    }

    func close() { channel.close(promise: nil) }
}

/// Writes a request and completes its promise with the response status when the response ends.
final class RequestResponseHandler: ChannelDuplexHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundIn = Request
    typealias OutboundOut = HTTPClientRequestPart

    struct Request: Sendable {
        var head: HTTPRequestHead
        var body: ByteBuffer
        var promise: EventLoopPromise<Int>
        var bodyPromise: EventLoopPromise<[UInt8]>? = nil

        init(head: HTTPRequestHead, body: ByteBuffer, promise: EventLoopPromise<Int>, body bodyPromise: EventLoopPromise<[UInt8]>? = nil) {
            self.head = head
            self.body = body
            self.promise = promise
            self.bodyPromise = bodyPromise
        }
    }

    private var waiting: [Request] = []
    private var status = 0
    private var received: [UInt8] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        waiting.append(request)
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(request.body))), promise: nil)
        context.write(wrapOutboundOut(.end(nil)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            status = Int(head.status.code)
            received = []
        case .body(var buffer):
            if waiting.first?.bodyPromise != nil { received += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        case .end:
            if !waiting.isEmpty {
                let r = waiting.removeFirst()
                r.promise.succeed(status)
                r.bodyPromise?.succeed(received)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        for r in waiting {
            r.promise.fail(error)
            r.bodyPromise?.fail(error)
        }
        waiting.removeAll()
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        for r in waiting {
            r.promise.fail(ChannelError.ioOnClosedChannel)
            r.bodyPromise?.fail(ChannelError.ioOnClosedChannel)
        }
        waiting.removeAll()
        context.fireChannelInactive()
    }
}
