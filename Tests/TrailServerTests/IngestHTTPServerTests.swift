import Foundation
import TrailCore
import Testing
import TrailCompression

@testable import TrailServer

#if canImport(Glibc)
    import Glibc
#endif

/// Records what the server handed to the application and answers: `/echo` returns the body, anything else a
/// one-line summary of the sender.
final class EchoHandler: ServerRequestHandler {
    let requests = Locked<[ServerRequest]>([])

    func handle(_ request: ServerRequest) async -> ServerResponse {
        requests.withLock { $0.append(request) }
        if request.path == "/sleep" {
            try? await Task.sleep(for: .milliseconds(150))
            return .text(200, "slept")
        }
        if request.path == "/echo" {
            return ServerResponse(status: 200, headers: [("content-type", "application/octet-stream")], body: request.body)
        }
        let s = request.sender
        return .text(
            200,
            "spiffe=\(s.spiffeID ?? "-") token=\(s.tokenName ?? "-") enc=\(request.contentEncoding) bytes=\(request.body.count) q=\(request.query["q"] ?? "-")"
        )
    }

    var last: ServerRequest? { requests.withLock { $0.last } }
    var count: Int { requests.withLock { $0.count } }
}

struct CurlResult {
    var exitCode: Int32
    /// What `-w` wrote.
    var written: String
    var stderr: String
    var body: [UInt8]
    var headers: String
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// Runs the real curl without blocking a cooperative thread; output goes to files.
func curl(_ arguments: [String], in directory: URL) async throws -> CurlResult {
    let id = UUID().uuidString
    let out = directory.appendingPathComponent("curl-\(id).out")
    let err = directory.appendingPathComponent("curl-\(id).err")
    let body = directory.appendingPathComponent("curl-\(id).body")
    let headers = directory.appendingPathComponent("curl-\(id).headers")
    _ = FileManager.default.createFile(atPath: out.path, contents: nil)
    _ = FileManager.default.createFile(atPath: err.path, contents: nil)
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
    process.arguments = ["-sS", "--max-time", "20", "-o", body.path, "-D", headers.path] + arguments
    let outHandle = try FileHandle(forWritingTo: out)
    let errHandle = try FileHandle(forWritingTo: err)
    process.standardOutput = outHandle
    process.standardError = errHandle
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
        process.terminationHandler = { _ in continuation.resume() }
        do {
            try process.run()
        } catch {
            process.terminationHandler = nil
            continuation.resume(throwing: error)
        }
    }
    try? outHandle.close()
    try? errHandle.close()
    return CurlResult(
        exitCode: process.terminationStatus,
        written: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
        stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "",
        body: (try? Array(Data(contentsOf: body))) ?? [],
        headers: (try? String(contentsOf: headers, encoding: .utf8)) ?? "")
}

/// Connects a plain TCP socket to 127.0.0.1:port.
func connectSocket(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return -1 }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if connected != 0 {
        close(fd)
        return -1
    }
    return fd
}

/// Sends bytes on a new connection and reads until the server closes it (or 5 s pass), off the cooperative pool.
func rawExchange(port: Int, send text: String) async -> String {
    await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            let fd = connectSocket(port: port)
            guard fd >= 0 else { return continuation.resume(returning: "") }
            defer { close(fd) }
            let bytes = Array(text.utf8)
            _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 { break }
                received += buffer[0..<n]
            }
            continuation.resume(returning: String(decoding: received, as: UTF8.self))
        }
    }
}

let goodToken = "s3cret-token-0123456789abcdef"

/// A running server with its PKI and handler.
struct Fixture {
    let pki: TestPKI
    let server: IngestHTTPServer
    let url: URL
    let handler: EchoHandler

    static func start(_ tweak: (inout ServerConfiguration, TestPKI) -> Void = { _, _ in }) async throws -> Fixture {
        let pki = try TestPKI()
        var configuration = ServerConfiguration(
            host: "127.0.0.1", port: 0, tlsCertificatePath: pki.serverCertPath, tlsKeyPath: pki.serverKeyPath,
            clientCAPath: pki.caPath, allow: ["spiffe://shop.example"],
            tokens: [TokenEntry(name: "ingest", token: goodToken)], eventLoopThreads: 2)
        tweak(&configuration, pki)
        let handler = EchoHandler()
        let server = IngestHTTPServer(configuration: configuration, handler: handler)
        let url = try await server.start()
        return Fixture(pki: pki, server: server, url: url, handler: handler)
    }

    func stop() async {
        try? await server.shutdown()
        pki.remove()
    }

    func curl(_ path: String, _ arguments: [String] = [], tls: Bool = true) async throws -> CurlResult {
        // curl offers h2 by ALPN on its own; HTTP/1.1 unless a test asks for --http2.
        let version = arguments.contains("--http2") ? [] : ["--http1.1"]
        let base = (tls ? ["--cacert", pki.caPath] : []) + version
        return try await TrailServerTests.curl(
            base + ["-w", "%{http_code} %{http_version}"] + arguments + [url.absoluteString + path], in: pki.directory)
    }

    func file(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = pki.directory.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

func withFixture(
    _ tweak: (inout ServerConfiguration, TestPKI) -> Void = { _, _ in }, _ body: (Fixture) async throws -> Void
) async throws {
    let f = try await Fixture.start(tweak)
    do {
        try await body(f)
    } catch {
        await f.stop()
        throw error
    }
    await f.stop()
}

@Suite(.serialized, .timeLimit(.minutes(2)))
struct IngestHTTPServerTests {
    @Test func tokenAuthenticationOverHTTPS() async throws {
        try await withFixture { f in
            #expect(f.url.scheme == "https")
            let ok = try await f.curl("/v1/logs?q=a%20b", ["-H", "Authorization: Bearer \(goodToken)"])
            #expect(ok.exitCode == 0, "\(ok.stderr)")
            #expect(ok.written == "200 1.1")
            #expect(ok.bodyText == "spiffe=- token=ingest enc=identity bytes=0 q=a b\n")
            #expect(f.handler.last?.sender.label == "token:ingest")
            #expect(f.handler.last?.path == "/v1/logs")

            let wrong = try await f.curl("/v1/logs", ["-H", "Authorization: Bearer not-the-token-at-all"])
            #expect(wrong.written == "401 1.1")
            #expect(wrong.headers.lowercased().contains("www-authenticate: bearer"))

            let none = try await f.curl("/v1/logs")
            #expect(none.written == "401 1.1")
            #expect(none.headers.lowercased().contains("www-authenticate: bearer"))
            #expect(none.bodyText.contains("authentication required"))
            #expect(f.handler.count == 1)

            // A refused POST keeps the connection usable: the next request on it is answered.
            let body = try f.file("small.txt", Array(repeating: UInt8(ascii: "x"), count: 500))
            let twice = try await TrailServerTests.curl(
                ["--http1.1", "--cacert", f.pki.caPath, "-w", "%{http_code} %{num_connects}\n", "--data-binary", "@\(body)",
                 f.url.absoluteString + "/a", "--next", "--http1.1", "-o", "/dev/null", "--cacert", f.pki.caPath,
                 "-w", "%{http_code} %{num_connects}\n", "-H", "Authorization: Bearer \(goodToken)", f.url.absoluteString + "/b"],
                in: f.pki.directory)
            #expect(twice.written == "401 1\n200 0\n", "\(twice.stderr)")
        }
    }

    @Test func clientCertificates() async throws {
        try await withFixture { f in
            let allowed = try f.pki.client("web", spiffeID: "spiffe://shop.example/ns/shop/sa/web")
            let ok = try await f.curl("/v1/logs", ["--cert", allowed.cert, "--key", allowed.key])
            #expect(ok.exitCode == 0, "\(ok.stderr)")
            #expect(ok.written == "200 1.1")
            #expect(f.handler.last?.sender.spiffeID == "spiffe://shop.example/ns/shop/sa/web")
            #expect(f.handler.last?.sender.tokenName == nil)

            let other = try f.pki.client("intruder", spiffeID: "spiffe://other.example/ns/x/sa/y")
            let denied = try await f.curl("/v1/logs", ["--cert", other.cert, "--key", other.key])
            #expect(denied.written == "403 1.1")
            #expect(denied.bodyText.contains("spiffe://other.example/ns/x/sa/y is not allowed"))

            // A client certificate from a CA the server does not trust fails the handshake.
            let foreign = try TestPKI(name: "Foreign CA")
            defer { foreign.remove() }
            let stranger = try foreign.client("stranger", spiffeID: "spiffe://shop.example/ns/shop/sa/web")
            let refused = try await f.curl("/v1/logs", ["--cert", stranger.cert, "--key", stranger.key])
            #expect(refused.exitCode != 0)
            #expect(f.handler.count == 1)
        }
    }

    @Test func http2() async throws {
        try await withFixture { f in
            let payload = Array("hello over h2".utf8)
            let path = try f.file("h2.txt", payload)
            let r = try await f.curl(
                "/echo", ["--http2", "-H", "Authorization: Bearer \(goodToken)", "--data-binary", "@\(path)"])
            #expect(r.exitCode == 0, "\(r.stderr)")
            #expect(r.written == "200 2")
            #expect(r.body == payload)
            #expect(f.handler.last?.method == "POST")
            #expect(f.handler.last?.sender.tokenName == "ingest")

            let cert = try f.pki.client("h2", spiffeID: "spiffe://shop.example/ns/a/sa/b")
            let viaCert = try await f.curl("/x", ["--http2", "--cert", cert.cert, "--key", cert.key])
            #expect(viaCert.written == "200 2")
            #expect(f.handler.last?.sender.spiffeID == "spiffe://shop.example/ns/a/sa/b")

            let denied = try await f.curl("/x", ["--http2"])
            #expect(denied.written == "401 2")
        }
    }

    @Test func compressedBodies() async throws {
        try await withFixture { f in
            let original = Array((0..<20000).map { "line \($0) of telemetry\n" }.joined().utf8)
            let auth = ["-H", "Authorization: Bearer \(goodToken)"]

            let gz = try f.file("body.gz", Gzip.compress(original))
            let g = try await f.curl("/echo", auth + ["-H", "Content-Encoding: gzip", "--data-binary", "@\(gz)"])
            #expect(g.written == "200 1.1", "\(g.stderr)")
            #expect(g.body == original)
            #expect(f.handler.last?.contentEncoding == "gzip")

            let zst = try f.file("body.zst", Zstd.compress(original))
            let z = try await f.curl("/echo", auth + ["-H", "Content-Encoding: zstd", "--data-binary", "@\(zst)"])
            #expect(z.written == "200 1.1", "\(z.stderr)")
            #expect(z.body == original)
            #expect(f.handler.last?.contentEncoding == "zstd")

            let z2 = try await f.curl("/echo", auth + ["--http2", "-H", "Content-Encoding: zstd", "--data-binary", "@\(zst)"])
            #expect(z2.written == "200 2", "\(z2.stderr)")
            #expect(z2.body == original)

            let br = try await f.curl("/echo", auth + ["-H", "Content-Encoding: br", "--data-binary", "@\(zst)"])
            #expect(br.written == "415 1.1")

            let corrupt = try f.file("corrupt.gz", [0x1F, 0x8B, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
            let bad = try await f.curl("/echo", auth + ["-H", "Content-Encoding: gzip", "--data-binary", "@\(corrupt)"])
            #expect(bad.written == "400 1.1")

            // Response compression when asked for.
            let plain = try f.file("plain.txt", original)
            let c = try await TrailServerTests.curl(
                ["--http1.1", "--cacert", f.pki.caPath, "--compressed", "-w", "%{http_code} %{size_download}"] + auth
                    + ["--data-binary", "@\(plain)", f.url.absoluteString + "/echo"],
                in: f.pki.directory)
            let parts = c.written.split(separator: " ")
            #expect(parts.first == "200")
            #expect((parts.last.flatMap { Int($0) } ?? .max) < original.count / 4)
            #expect(c.body == original)
            #expect(c.headers.lowercased().contains("content-encoding: gzip"))
        }
    }

    @Test func sizeLimits() async throws {
        try await withFixture({ c, _ in c.maxBodyBytes = 1 << 20 }) { f in
            let auth = ["-H", "Authorization: Bearer \(goodToken)"]

            // 200 MiB of zeros as 200 concatenated gzip members of 1 MiB each: about 200 KiB on the wire.
            let member = Gzip.compress([UInt8](repeating: 0, count: 1 << 20))
            var bomb: [UInt8] = []
            for _ in 0..<200 { bomb += member }
            #expect(bomb.count < 1 << 20)
            let bombPath = try f.file("bomb.gz", bomb)
            let b = try await f.curl("/echo", auth + ["-H", "Content-Encoding: gzip", "--data-binary", "@\(bombPath)"])
            #expect(b.written == "413 1.1", "\(b.stderr)")
            #expect(b.bodyText == "decompressed body exceeds 1048576 bytes\n")

            let zbomb = try f.file("bomb.zst", Zstd.compress([UInt8](repeating: 0, count: 8 << 20)))
            let zb = try await f.curl("/echo", auth + ["-H", "Content-Encoding: zstd", "--data-binary", "@\(zbomb)"])
            #expect(zb.written == "413 1.1")

            let big = try f.file("big.bin", [UInt8](repeating: 7, count: 2 << 20))
            let o = try await f.curl("/echo", auth + ["--data-binary", "@\(big)"])
            #expect(o.written == "413 1.1", "\(o.stderr)")
            #expect(o.bodyText.contains("exceeds 1048576 bytes"))

            // Chunked, so the limit is found while reading.
            let chunked = try await f.curl("/echo", auth + ["-H", "Transfer-Encoding: chunked", "--data-binary", "@\(big)"])
            // The server answers 413 and hangs up mid-upload; curl may see the answer or only the reset.
            #expect(chunked.written.hasPrefix("413") || chunked.exitCode != 0, "\(chunked.written) \(chunked.stderr)")

            let header = try await f.curl("/x", auth + ["-H", "X-Big: " + String(repeating: "a", count: 70 << 10)])
            #expect(header.written == "431 1.1", "\(header.stderr)")
            #expect(f.handler.count == 0)
        }
    }

    @Test func keepAliveReusesTheConnection() async throws {
        try await withFixture { f in
            let r = try await TrailServerTests.curl(
                ["--http1.1", "--cacert", f.pki.caPath, "-H", "Authorization: Bearer \(goodToken)", "-o", "/dev/null",
                 "-w", "%{http_code} %{num_connects}\n",
                 f.url.absoluteString + "/one", f.url.absoluteString + "/two"],
                in: f.pki.directory)
            #expect(r.exitCode == 0, "\(r.stderr)")
            #expect(r.written == "200 1\n200 0\n")
            #expect(f.handler.requests.withLock { $0.map(\.path) } == ["/one", "/two"])
        }
    }

    @Test func insecurePlainHTTP() async throws {
        try await withFixture({ c, _ in
            c = ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true, eventLoopThreads: 2)
        }) { f in
            #expect(f.url.scheme == "http")
            let r = try await f.curl("/plain", [], tls: false)
            #expect(r.exitCode == 0, "\(r.stderr)")
            #expect(r.written == "200 1.1")
            #expect(f.handler.last?.sender.spiffeID == nil)
            #expect(f.handler.last?.sender.tokenName == nil)
            #expect(f.handler.last?.sender.address.hasPrefix("127.0.0.1:") == true)
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withFixture({ c, _ in
            c = ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true, eventLoopThreads: 2)
        }) { f in
            let reply = await rawExchange(
                port: f.url.port!,
                send: "GET /sleep HTTP/1.1\r\nHost: a\r\n\r\nGET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            let slept = reply.range(of: "slept")
            let fast = reply.range(of: "spiffe=-")
            #expect(slept != nil && fast != nil, "\(reply)")
            if let slept, let fast { #expect(slept.lowerBound < fast.lowerBound) }
            #expect(reply.components(separatedBy: "HTTP/1.1 200 OK").count == 3)

            let garbage = await rawExchange(port: f.url.port!, send: "NOT HTTP AT ALL\r\n\r\n")
            #expect(garbage.hasPrefix("HTTP/1.1 400"), "\(garbage)")
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        try await withFixture({ c, _ in
            c = ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true, idleTimeout: .milliseconds(200), eventLoopThreads: 2)
        }) { f in
            let fd = connectSocket(port: f.url.port!)
            #expect(fd >= 0)
            defer { close(fd) }
            for _ in 0..<50 where f.server.openConnections < 1 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(f.server.openConnections == 1)
            for _ in 0..<100 where f.server.openConnections > 0 { try await Task.sleep(for: .milliseconds(20)) }
            #expect(f.server.openConnections == 0)
        }
    }

    @Test func connectionLimitPerSender() async throws {
        try await withFixture({ c, _ in
            c = ServerConfiguration(host: "127.0.0.1", port: 0, insecure: true, maxConnectionsPerSender: 1, eventLoopThreads: 2)
        }) { f in
            // Hold one connection open with a bare socket.
            let fd = connectSocket(port: f.url.port!)
            #expect(fd >= 0)
            defer { close(fd) }
            // Let the server register it.
            for _ in 0..<50 where f.server.openConnections < 1 { try await Task.sleep(for: .milliseconds(20)) }
            let r = try await f.curl("/x", [], tls: false)
            #expect(r.written == "429 1.1", "\(r.stderr)")
            #expect(f.handler.count == 0)
        }
    }

    @Test func configurationErrors() throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        func message(_ c: ServerConfiguration) -> String {
            do {
                try c.validate()
                return ""
            } catch {
                return "\(error)"
            }
        }
        let tokens = [TokenEntry(name: "a", token: goodToken)]
        #expect(message(ServerConfiguration(tlsCertificatePath: pki.serverCertPath, tokens: tokens)).contains("--tls-key"))
        #expect(
            message(ServerConfiguration(tlsCertificatePath: pki.serverCertPath, tlsKeyPath: "/nonexistent/key.pem", tokens: tokens))
                .contains("--tls-key /nonexistent/key.pem: no such file"))
        #expect(
            message(ServerConfiguration(tlsCertificatePath: pki.serverKeyPath, tlsKeyPath: pki.serverKeyPath, tokens: tokens))
                .contains("--tls-cert"))
        #expect(
            message(ServerConfiguration(tlsCertificatePath: pki.serverCertPath, tlsKeyPath: pki.serverKeyPath))
                .contains("no way for senders to authenticate"))
        #expect(
            message(ServerConfiguration(
                tlsCertificatePath: pki.serverCertPath, tlsKeyPath: pki.serverKeyPath, clientCAPath: pki.caPath,
                allow: ["not a domain!"])
            ).contains("--allow"))
        #expect(message(ServerConfiguration()).contains("--insecure"))
        #expect(message(ServerConfiguration(insecure: true)) == "")
        #expect(
            message(ServerConfiguration(tlsCertificatePath: pki.serverCertPath, tlsKeyPath: pki.serverKeyPath, tokens: tokens)) == "")
    }

    @Test func tokenFile() throws {
        let pki = try TestPKI()
        defer { pki.remove() }
        let path = pki.directory.appendingPathComponent("tokens").path
        try pki.write(path, "# senders\n\ncollector-a: \(goodToken)\ncollector-b:another-long-token-98765\n")
        let tokens = try ServerConfiguration.loadTokens(file: path)
        #expect(tokens.map(\.name) == ["collector-a", "collector-b"])
        #expect(tokens[0].sha256 == TokenEntry.hash(goodToken))
        #expect(tokens[0].sha256.count == 32)

        try pki.write(path, "ok:\(goodToken)\njust-a-secret-without-name\n")
        do {
            _ = try ServerConfiguration.loadTokens(file: path)
            Issue.record("expected an error")
        } catch {
            #expect("\(error)".contains("line 2"))
            #expect(!"\(error)".contains("just-a-secret"))
        }
        #expect(throws: ServerConfigurationError.self) { try ServerConfiguration.loadTokens(file: "/nonexistent/tokens") }

        let auth = Authenticator(insecure: false, allowList: AllowList(), tokens: tokens)
        #expect(auth.matchToken("another-long-token-98765") == "collector-b")
        #expect(auth.matchToken("another-long-token-98766") == nil)
        #expect(Authenticator.bearerToken("bearer  abc ") == "abc")
        #expect(Authenticator.bearerToken("Basic abc") == nil)
    }
}
