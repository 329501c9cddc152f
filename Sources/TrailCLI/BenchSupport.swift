import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import TrailCore

// Pieces shared by the proxy benchmarks (`bench-mesh`, `bench-gateway`): processes started from this binary or
// from a system package, their CPU and memory from /proc, a 1 KB upstream, a paced (open-loop) client and a
// saturating (closed-loop) client, both over keep-alive HTTP/1.1 connections.

/// Process and /proc helpers of a benchmark command.
protocol BenchHarness {}

extension BenchHarness {
    func startProcess(_ executable: URL, _ arguments: [String], in dir: URL, readyPrefix: String?, stdout: String? = nil) throws -> Process {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        p.currentDirectoryURL = dir
        let out = Pipe()
        if let stdout {
            FileManager.default.createFile(atPath: stdout, contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: stdout)
        } else {
            p.standardOutput = out
        }
        let log = dir.appendingPathComponent("\(executable.lastPathComponent)-\(UUID().uuidString.prefix(8)).log").path
        FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        try p.run()
        if let readyPrefix {
            // Reads lines until the one that says the process is ready.
            var ready = false
            for _ in 0..<5 where !ready {
                var line = [UInt8]()
                while let b = out.fileHandleForReading.readData(ofLength: 1).first, b != 0x0A { line.append(b) }
                ready = String(decoding: line, as: UTF8.self).hasPrefix(readyPrefix)
                if line.isEmpty { break }
            }
            guard ready else {
                p.terminate()
                throw CLIError("\(executable.lastPathComponent) \(arguments.joined(separator: " ")) did not start")
            }
        }
        return p
    }

    /// User plus system CPU time of a process so far, from /proc/PID/stat.
    func cpuSeconds(_ pid: Int32) -> Double {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return 0 }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After the command: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// A line of /proc/PID/status in KiB.
    func rss(_ pid: Int32, _ key: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
        for line in status.split(separator: "\n") where line.hasPrefix(key) {
            return Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        }
        return 0
    }

    func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Waits until something accepts TCP connections on 127.0.0.1:`port` (for processes that print nothing).
    func waitForPort(_ port: Int, process: Process, seconds: Double = 10) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            guard process.isRunning else { throw CLIError("\(process.executableURL?.lastPathComponent ?? "process") exited early") }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            addr.sin_port = in_port_t(UInt16(port).bigEndian)
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            } == 0
            close(fd)
            if ok { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw CLIError("nothing listens on 127.0.0.1:\(port) after \(Int(seconds)) s")
    }

    /// Pids of a process and its descendants (nginx's master and workers), from /proc.
    func processTree(_ root: Int32) -> [Int32] {
        var parents: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let ppid = Int32(fields[1]) { parents[ppid, default: []].append(pid) }
        }
        var result = [root], i = 0
        while i < result.count {
            result += parents[result[i]] ?? []
            i += 1
        }
        return result
    }

    /// CPU seconds of a process and its descendants.
    func treeCPUSeconds(_ root: Int32) -> Double { processTree(root).reduce(0) { $0 + cpuSeconds($1) } }
}

/// The benchmark's upstream: 200 with 1024 bytes, keep-alive.
final class KilobyteResponder: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart
    static let body = [UInt8](repeating: 0x61, count: 1024)

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .end = unwrapInboundIn(data) else { return }
        var headers = HTTPHeaders()
        headers.add(name: "content-length", value: "1024")
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers))), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: Self.body)))), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// A paced (open-loop) HTTP/1.1 load: each connection sends at rate/connections; a request due while the previous
/// one is in flight waits, and its latency counts from when it was due (no coordinated omission).
enum LoadRun {
    struct Result {
        var requests: Int
        var errors: Int
        var p50: Double
        var p90: Double
        var p99: Double
    }

    final class Recorder: Sendable {
        let state = Locked<(latencies: [Double], errors: Int)>(([], 0))
        func add(_ ms: Double) { state.withLock { $0.latencies.append(ms) } }
        func fail() { state.withLock { $0.errors += 1 } }
    }

    static func run(
        group: any EventLoopGroup, port: Int, host: String, headers: [(String, String)] = [], rate: Int, connections: Int, seconds: Double
    ) async throws -> Result {
        // Warm-up, then the measured run.
        _ = try await phase(group: group, port: port, host: host, headers: headers, rate: rate, connections: connections, seconds: 1)
        return try await phase(group: group, port: port, host: host, headers: headers, rate: rate, connections: connections, seconds: seconds)
    }

    /// The value at quantile `p` (0…1) of ascending `sorted` values (nearest rank); 0 when there are none.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    static func phase(
        group: any EventLoopGroup, port: Int, host: String, headers: [(String, String)] = [], rate: Int, connections: Int, seconds: Double
    ) async throws -> Result {
        let recorder = Recorder()
        let interval = TimeAmount.nanoseconds(Int64(Double(connections) / Double(rate) * 1e9))
        let count = Int(seconds * Double(rate) / Double(connections))
        let request = BenchRequest(host: host, headers: headers)
        _ = try await BenchConnections.run(group: group, port: port, connections: connections) { finished in
            PacedClient(request: request, total: count, interval: interval, recorder: recorder, finished: finished)
        }
        let (latencies, errors) = recorder.state.withLock { ($0.latencies.sorted(), $0.errors) }
        return Result(
            requests: latencies.count, errors: errors, p50: percentile(latencies, 0.5), p90: percentile(latencies, 0.9),
            p99: percentile(latencies, 0.99))
    }
}

/// The benchmark's request: `GET /bench` with a host and optional extra headers (an API key).
struct BenchRequest: Sendable {
    var host: String
    var headers: [(String, String)]

    var head: HTTPRequestHead {
        var head = HTTPRequestHead(version: .http1_1, method: .GET, uri: "/bench")
        head.headers.add(name: "host", value: host)
        for (name, value) in headers { head.headers.add(name: name, value: value) }
        return head
    }
}

/// Opens `connections` keep-alive HTTP/1.1 client connections, each with a handler that completes its promise
/// when it is done; waits for all of them, closes them and returns what the handlers reported.
enum BenchConnections {
    static func run<Value: Sendable, Handler: ChannelHandler>(
        group: any EventLoopGroup, port: Int, connections: Int,
        handler: @escaping @Sendable (EventLoopPromise<Value>) -> Handler
    ) async throws -> [Value] {
        var channels: [any Channel] = []
        var done: [EventLoopFuture<Value>] = []
        for _ in 0..<connections {
            let loop = group.next()
            let finished = loop.makePromise(of: Value.self)
            let channel: any Channel
            do {
                channel = try await ClientBootstrap(group: loop)
                    .channelOption(.socketOption(.tcp_nodelay), value: 1)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHTTPClientHandlers()
                            try channel.pipeline.syncOperations.addHandler(handler(finished))
                        }
                    }
                    .connect(host: "127.0.0.1", port: port).get()
            } catch {
                finished.fail(error)
                for c in channels { try? await c.close() }
                throw CLIError("cannot connect to 127.0.0.1:\(port): \(error)")
            }
            channels.append(channel)
            done.append(finished.futureResult)
        }
        var values: [Value] = []
        for f in done { if let v = try? await f.get() { values.append(v) } }
        for c in channels { try? await c.close() }
        return values
    }
}

/// A saturating (closed-loop) HTTP/1.1 load: each connection sends its next request as soon as the previous
/// response has ended, until the deadline. Throughput counts the 200 responses completed before the deadline.
enum SaturationRun {
    struct Result {
        var requests: Int
        var errors: Int
        var seconds: Double
        var rate: Double { seconds > 0 ? Double(requests) / seconds : 0 }
    }

    static func run(
        group: any EventLoopGroup, port: Int, host: String, headers: [(String, String)] = [], connections: Int, seconds: Double,
        warmUp: Double = 1
    ) async throws -> Result {
        if warmUp > 0 { _ = try await phase(group: group, port: port, host: host, headers: headers, connections: connections, seconds: warmUp) }
        return try await phase(group: group, port: port, host: host, headers: headers, connections: connections, seconds: seconds)
    }

    static func phase(
        group: any EventLoopGroup, port: Int, host: String, headers: [(String, String)] = [], connections: Int, seconds: Double
    ) async throws -> Result {
        let request = BenchRequest(host: host, headers: headers)
        let start = NIODeadline.now()
        let deadline = start + .nanoseconds(Int64(seconds * 1e9))
        let counts = try await BenchConnections.run(group: group, port: port, connections: connections) { finished in
            SaturatingClient(request: request, deadline: deadline, finished: finished)
        }
        let elapsed = Double((deadline - start).nanoseconds) / 1e9
        return Result(
            requests: counts.reduce(0) { $0 + $1.ok }, errors: counts.reduce(0) { $0 + $1.errors } + (connections - counts.count),
            seconds: elapsed)
    }
}

final class SaturatingClient: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    let request: BenchRequest
    let deadline: NIODeadline
    let finished: EventLoopPromise<(ok: Int, errors: Int)>
    private var ok = 0
    private var errors = 0
    private var status200 = true
    private var done = false

    init(request: BenchRequest, deadline: NIODeadline, finished: EventLoopPromise<(ok: Int, errors: Int)>) {
        self.request = request
        self.deadline = deadline
        self.finished = finished
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context)
        context.fireChannelActive()
    }

    private func send(_ context: ChannelHandlerContext) {
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    private func finish() {
        guard !done else { return }
        done = true
        finished.succeed((ok, errors))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): status200 = head.status == .ok
        case .body: break
        case .end:
            guard !done else { return }
            if NIODeadline.now() > deadline {
                finish()
                return
            }
            if status200 { ok += 1 } else { errors += 1 }
            send(context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done { errors += 1 }
        finish()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

final class PacedClient: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    let request: BenchRequest
    let total: Int
    let interval: TimeAmount
    let recorder: LoadRun.Recorder
    let finished: EventLoopPromise<Void>
    private var due: [NIODeadline] = []
    private var inFlight: NIODeadline?
    private var scheduled = 0
    private var completed = 0
    private var ok = true

    init(request: BenchRequest, total: Int, interval: TimeAmount, recorder: LoadRun.Recorder, finished: EventLoopPromise<Void>) {
        self.request = request
        self.total = total
        self.interval = interval
        self.recorder = recorder
        self.finished = finished
    }

    func channelActive(context: ChannelHandlerContext) {
        // Stagger connections so the offered load is smooth.
        let offset = TimeAmount.nanoseconds(Int64.random(in: 0..<max(1, interval.nanoseconds)))
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.scheduleRepeatedTask(initialDelay: offset, delay: interval) { task in
            let (handler, context) = loopBound.value
            guard handler.scheduled < handler.total else {
                task.cancel()
                return
            }
            handler.scheduled += 1
            handler.due.append(.now())
            handler.sendIfIdle(context)
        }
        context.fireChannelActive()
    }

    private func sendIfIdle(_ context: ChannelHandlerContext) {
        guard inFlight == nil, !due.isEmpty else { return }
        inFlight = due.removeFirst()
        context.write(wrapOutboundOut(.head(request.head)), promise: nil)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): ok = head.status == .ok
        case .body: break
        case .end:
            if let dueAt = inFlight {
                let ms = Double((NIODeadline.now() - dueAt).nanoseconds) / 1e6
                if ok { recorder.add(ms) } else { recorder.fail() }
            }
            inFlight = nil
            completed += 1
            if completed >= total { finished.succeed() } else { sendIfIdle(context) }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        for _ in completed..<total { recorder.fail() }
        finished.succeed()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

