import Foundation
import NIOCore
import NIOPosix
import TrailCore
import Testing
import TrailServer
@testable import TrailMesh

@Suite("Disk-buffered delivery to trail serve")
struct OutboxTests {
    /// Records what a stand-in `trail serve` received.
    final class Receiver: ServerRequestHandler {
        let bodies = Locked<[String]>([])
        /// The status it answers; only a 2xx takes the body.
        let status = Locked(200)
        func handle(_ request: ServerRequest) async -> ServerResponse {
            let status = status.withLock { $0 }
            guard (200..<300).contains(status) else { return .text(status, "refused") }
            bodies.withLock { $0.append(String(decoding: request.body, as: UTF8.self)) }
            return .text(status, "ok")
        }
    }

    /// A port that refuses connections for as long as the returned descriptor stays open: bound but not
    /// listening, so no other test's server or connection can take it meanwhile.
    static func refusingPort() -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    static func outbox(_ dir: String, port: Int, maxBytes: Int = 1 << 20, log: @escaping @Sendable (String) -> Void = { _ in }) throws -> Outbox {
        let client = HTTPSClient(group: MultiThreadedEventLoopGroup.singleton, timeout: .seconds(15)) { nil }
        return try Outbox(
            directory: dir, endpoint: try HTTPSClient.Endpoint(url: "http://127.0.0.1:\(port)"), path: "/v1/access-logs",
            headers: [], client: client, maxBytes: maxBytes, flushInterval: .milliseconds(50), log: log
        ) { lines in Array(lines.joined(separator: "\n").utf8) }
    }

    static func spool(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".ndjson") }
    }

    /// A sender whose credentials `trail serve` refuses (401/403: a revoked certificate) keeps its spool and retries
    /// every cycle, but says so once per answer, not once per cycle.
    @Test func aRepeatedRefusalIsRetriedAndLoggedOnce() async throws {
        let dir = NSTemporaryDirectory() + "trail-outbox-\(UUID().uuidString)"
        let receiver = Receiver()
        receiver.status.withLock { $0 = 403 }
        let server = IngestHTTPServer(configuration: ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true), handler: receiver)
        let url = try await server.start()
        defer { Task { try? await server.shutdown() } }
        let lines = Locked<[String]>([])
        let outbox = try Self.outbox(dir, port: try #require(url.port)) { line in lines.withLock { $0.append(line) } }
        outbox.append("{\"n\":1}")
        for _ in 0..<4 { await outbox.cycle() }
        #expect(lines.withLock { $0 }.count == 1, "\(lines.withLock { $0 })")
        #expect(Self.spool(dir).count == 1)
        receiver.status.withLock { $0 = 503 }
        for _ in 0..<3 { await outbox.cycle() }
        receiver.status.withLock { $0 = 200 }
        await outbox.cycle()
        #expect(outbox.snapshot.sent == 1)
        receiver.status.withLock { $0 = 403 }
        outbox.append("{\"n\":2}")
        for _ in 0..<3 { await outbox.cycle() }
        let logged = lines.withLock { $0 }
        #expect(logged.count == 3, "\(logged)")
        #expect(logged.map { $0.contains("answered 403") } == [true, false, true])
    }

    @Test func recordsWaitOnDiskWhileTheIngestIsDownAndAllArriveInOrder() async throws {
        let dir = NSTemporaryDirectory() + "trail-outbox-\(UUID().uuidString)"
        let down = Self.refusingPort()
        defer { close(down.fd) }
        let outbox = try Self.outbox(dir, port: down.port)
        for i in 0..<10 { outbox.append("{\"n\":\(i)}") }
        await outbox.cycle()
        for i in 10..<20 { outbox.append("{\"n\":\(i)}") }
        await outbox.cycle()
        #expect(Self.spool(dir).count == 2)
        #expect(outbox.snapshot.sent == 0)

        // A restarted sidecar finds the spool and sends it once the ingest is back (on a port of its own:
        // re-binding the old one races with other tests' outgoing connections).
        let receiver = Receiver()
        let server = IngestHTTPServer(configuration: ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true), handler: receiver)
        let url = try await server.start()
        defer { Task { try? await server.shutdown() } }
        let again = try Self.outbox(dir, port: try #require(url.port))
        await again.cycle()
        #expect(again.snapshot.sent == 20)
        #expect(Self.spool(dir).isEmpty)
        let lines = receiver.bodies.withLock { $0 }.flatMap { $0.split(separator: "\n") }
        #expect(lines == (0..<20).map { "{\"n\":\($0)}"[...] })
    }

    @Test func pastTheBoundTheOldestBatchesAreDroppedAndCounted() async throws {
        let dir = NSTemporaryDirectory() + "trail-outbox-\(UUID().uuidString)"
        let down = Self.refusingPort()
        defer { close(down.fd) }
        let outbox = try Self.outbox(dir, port: down.port, maxBytes: 250)
        for batch in 0..<5 {
            for i in 0..<10 { outbox.append("{\"batch\":\(batch),\"i\":\(i)}") }
            await outbox.cycle()
        }
        let kept = Self.spool(dir).count
        #expect(kept < 5 && kept >= 1)
        #expect(outbox.snapshot.dropped == (5 - kept) * 10)
    }
}
