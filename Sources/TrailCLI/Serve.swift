import ArgumentParser
import Foundation
import TrailCore
import TrailFormats
import TrailIngest
import TrailServer
import TrailStore

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Receive OTLP traces and logs, gateway access logs and identity events over HTTPS, store them durably and correlate them.",
        discussion: """
            Endpoints: POST /v1/traces and /v1/logs (OTLP/HTTP, protobuf or JSON, gzip or zstd), POST /v1/access-logs
            (Kong, Envoy/Istio; ?format= to name it), POST /v1/identity-events (Trail NDJSON, SPIRE logs, PEM, CRL),
            GET /healthz, /readyz, /metrics. Senders authenticate with a client certificate whose SPIFFE ID (or trust
            domain) is allowed by --allow, or a bearer token from --token-file; a certificate that a --crl revokes counts
            for nothing, from the next request on. The first line on stdout is `listening on URL`.
            """)

    @OptionGroup var store: StoreOptions

    @Option(name: .long, help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:4318"

    @Option(name: .long, help: "Server certificate chain (PEM).") var tlsCert: String?
    @Option(name: .long, help: "Server private key (PEM).") var tlsKey: String?
    @Option(name: .long, help: "CA bundle (PEM) that client certificates must chain to; enables mTLS.") var clientCA: String?
    @Option(name: .long, help: "SPIFFE ID or trust domain allowed to send with a client certificate (repeatable).")
    var allow: [String] = []
    @Option(name: .long, help: "CRL (PEM or DER) signed by a CA of --client-ca, e.g. a `trail ca` directory's crl.pem; re-read when it changes (repeatable).")
    var crl: [String] = []
    @Option(name: .long, help: "File of bearer tokens, one `name:token` per line (# comments). Tokens are kept hashed.")
    var tokenFile: String?
    @Flag(name: .long, help: "Plain HTTP without authentication. Only for local experiments; /metrics and the log say so.")
    var insecure = false

    @Option(name: .long, help: "Largest request body in bytes, compressed and after decompression.")
    var maxBody = 64 << 20
    @Option(name: .long, help: "Most records (or spans) in one request.")
    var maxRecordsPerRequest = 100_000
    @Option(name: .long, help: "Most records waiting to be stored before senders get 429 with Retry-After.")
    var maxQueueRecords = 100_000
    @Option(name: .long, help: "Most concurrent connections from one address.")
    var maxConnectionsPerSender = 64
    @Option(name: .long, help: "Largest request header section in bytes (431 beyond).")
    var maxHeaderBytes = 64 << 10
    @Option(name: .long, help: "Seconds before an idle connection is closed.")
    var idleTimeout = 60

    func validate() throws {
        guard listen.split(separator: ":").count >= 2, Int(listen.split(separator: ":").last!) != nil else {
            throw ValidationError("--listen '\(listen)' must be HOST:PORT, e.g. 127.0.0.1:4318")
        }
        if !insecure {
            if tlsCert == nil || tlsKey == nil {
                throw ValidationError("TLS needs --tls-cert and --tls-key (or pass --insecure for plain HTTP without authentication)")
            }
            if clientCA == nil && tokenFile == nil {
                throw ValidationError("senders must authenticate: give --client-ca with --allow, or --token-file (or pass --insecure)")
            }
            if clientCA != nil && allow.isEmpty && tokenFile == nil {
                throw ValidationError("--client-ca needs at least one --allow SPIFFE_ID_OR_TRUST_DOMAIN")
            }
        }
    }

    func run() async throws {
        do {
            let s = try store.open(readOnly: false)
            var config = ServerConfiguration()
            let parts = listen.split(separator: ":")
            config.host = parts.dropLast().joined(separator: ":").trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
            config.port = Int(parts.last!) ?? 4318
            config.tlsCertificatePath = tlsCert
            config.tlsKeyPath = tlsKey
            config.clientCAPath = clientCA
            config.allow = allow
            config.crlPaths = crl
            config.insecure = insecure
            config.maxBodyBytes = maxBody
            config.maxConnectionsPerSender = maxConnectionsPerSender
            config.maxHeaderBytes = maxHeaderBytes
            config.idleTimeout = .seconds(idleTimeout)
            if let tokenFile { config.tokens = try ServerConfiguration.loadTokens(file: tokenFile) }
            try config.validate()

            let metrics = IngestMetrics(insecure: insecure)
            var pipelineConfig = IngestPipeline.Configuration()
            pipelineConfig.maxQueuedRecords = maxQueueRecords
            let pipeline = IngestPipeline(store: s, configuration: pipelineConfig) { _, seconds in
                metrics.observeBatch(seconds: seconds)
            }
            pipeline.start()
            let service = IngestService(pipeline: pipeline, metrics: metrics, maxRecordsPerRequest: maxRecordsPerRequest)
            let server = IngestHTTPServer(configuration: config, handler: service) { printError($0) }
            let url = try await server.start()
            writeOut("listening on \(url.absoluteString)\n")
            if insecure {
                printError("warning: --insecure: plain HTTP, and anyone who can reach \(url.absoluteString) may write to \(s.path)")
            }
            await SignalWaiter.waitForTermination()
            printError("trail serve: shutting down; storing what is queued")
            try? await server.shutdown()
            pipeline.shutdown()
        } catch let e as ValidationError {
            throw e
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}

/// Waits for SIGINT or SIGTERM.
enum SignalWaiter {
    static func waitForTermination() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            var sources: [any DispatchSourceSignal] = []
            for sig in [SIGINT, SIGTERM] {
                signal(sig, SIG_IGN)
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    if once.claim() { continuation.resume() }
                }
                source.resume()
                sources.append(source)
            }
            SignalSources.keep(sources)
        }
    }
}

/// Keeps signal sources alive for the life of the process.
enum SignalSources {
    nonisolated(unsafe) static var sources: [any DispatchSourceSignal] = []
    static func keep(_ s: [any DispatchSourceSignal]) { sources += s }
}

final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false
    func claim() -> Bool {
        lock.lock()
        defer { lock.unlock() }
        if claimed { return false }
        claimed = true
        return true
    }
}
