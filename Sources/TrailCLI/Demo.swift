import ArgumentParser
import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOPosix
import TrailCore
import TrailDemo
import TrailStore

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a small estate on loopback (CA, trail serve, sidecars, gateway, sample services), drive traffic with incidents, and show what Trail finds.",
        discussion: """
            Every component is the real one in its own process, over real sockets with real mTLS: `trail ca serve` for
            shop.example, `trail serve` on the store (--db), a `trail sidecar` in front of each sample service (web,
            orders, payments, ledger, inventory, scheduler) and `trail gateway` with JWT users, an API-key integration
            and a partner with a client certificate. During the run it plays six incidents: a dry-run policy that
            would deny, an edge bypass, a plaintext hop, a partner certificate that expires, a stolen API key and a
            revoked workload certificate. Trail finds them from the telemetry alone. Ctrl-C stops everything cleanly.
            """)

    @OptionGroup var store: StoreOptions
    @Option(name: .long, help: "How long traffic runs, in seconds.") var duration: Double = 45
    @Option(name: .long, help: "Gateway requests per second.") var rate: Double = 10
    @Flag(name: .long, help: "Leave the estate running after the summary, until Ctrl-C.") var keep = false
    @Option(name: .long, help: "Directory for the estate's files (default: a new temporary one, removed at exit unless --keep).")
    var dir: String?
    @Option(name: .long, help: ArgumentHelp("Write what the demo played (incidents and their traces) as JSON to FILE, for tests.", visibility: .hidden))
    var groundTruth: String?

    func validate() throws {
        guard duration >= 10 && duration <= 3600 else { throw ValidationError("--duration is between 10 and 3600 seconds") }
        guard rate > 0 && rate <= 200 else { throw ValidationError("--rate is between 0 and 200 requests per second") }
    }

    func run() async throws {
        let signals = DemoSignals()
        let work = try dir.map { try Self.prepare($0) } ?? Self.temporaryDirectory()
        let database = (store.path as NSString).isAbsolutePath ? store.path : FileManager.default.currentDirectoryPath + "/" + store.path
        let began = Timestamp.now
        writeOut("Trail demo: starting the estate in \(work)\n")
        // The scheduler is an internal job that calls services directly by design: an allowed entry point.
        let s = try store.open(readOnly: false)
        try s.setAllowedEntryPoints(Array(Set(try s.allowedEntryPoints() + [DemoTopology.spiffeID("scheduler")])).sorted())
        let estate = Estate(directory: work, trailExecutable: Self.executable, database: database) { writeOut("  \($0)\n") }
        let traffic = NIOLockedValueBox<Task<TrafficResult, any Error>?>(nil)
        signals.onInterrupt {
            // Traffic stops first and its requests finish; while the estate is starting, it stops at once.
            if let task = traffic.withLockedValue({ $0 }) { task.cancel() } else { estate.stop() }
        }
        var result = TrafficResult()
        var interrupted = false
        do {
            try estate.start()
            writeOut("Gateway at \(estate.gatewayURL); traffic for \(Int(duration)) s at \(rate) requests/s\n")
            let generator = TrafficGenerator(estate: estate, duration: duration, rate: rate, group: MultiThreadedEventLoopGroup.singleton) {
                writeOut("  \($0)\n")
            }
            let task = Task { try await generator.run() }
            traffic.withLockedValue { $0 = task }
            result = try await task.value
            interrupted = signals.interrupted
            if let groundTruth { try result.json.write(toFile: groundTruth, atomically: true, encoding: .utf8) }
        } catch {
            interrupted = signals.interrupted
            estate.stop()
            if !interrupted {
                if dir == nil { try? FileManager.default.removeItem(atPath: work) }
                throw CLIError("\(error)")
            }
        }
        if keep && !interrupted {
            // Let the sidecars' and the gateway's last batches land before the summary reads the store.
            try await Task.sleep(for: .seconds(2))
        } else {
            writeOut("Stopping the estate (its last records reach trail serve first)\n")
            estate.stop()
        }

        try summarize(since: began, traffic: result, from: try store.open(readOnly: true))
        if keep && !interrupted {
            writeOut("\nThe estate is still running (files in \(work)); Ctrl-C stops it.\n")
            await signals.wait()
            estate.stop()
        }
        if dir == nil && !keep { try? FileManager.default.removeItem(atPath: work) }
        if interrupted { throw ExitCode(130) }
    }

    /// Chains, identities and findings of this run (from its start on), read back from the store.
    func summarize(since began: Timestamp, traffic: TrafficResult, from s: TrailStore) throws {
        let window = TimeWindow(since: began)
        let chains = try s.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM chain WHERE start >= ?", arguments: [began.nanoseconds]) ?? 0
        }
        let gaps = try s.read { db in
            try Int.fetchOne(db, sql: "SELECT count(*) FROM chain WHERE start >= ? AND gap_count > 0", arguments: [began.nanoseconds]) ?? 0
        }
        let identities = try s.identities(at: .now).filter { $0.spiffeID.hasPrefix("spiffe://\(DemoTopology.trustDomain)/") }
        let findings = try s.findings(kinds: [], window: window)
        let classes = traffic.byStatusClass.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        writeOut("\n\(traffic.requests) requests (\(classes)); Trail stored \(chains) chains (\(gaps) with gaps), ")
        writeOut("\(identities.count) workload identities, \(findings.count) findings:\n")
        var byKind: [String: [FindingRow]] = [:]
        for f in findings { byKind[f.kind, default: []].append(f) }
        for (kind, list) in byKind.sorted(by: { $0.key < $1.key }) {
            let who = Set(list.compactMap { $0.principal }).sorted().prefix(3).joined(separator: ", ")
            writeOut("  \(kind.padding(toLength: 22, withPad: " ", startingAt: 0)) \(String(format: "%4d", list.count))  \(who)\n")
        }

        let db = store.db == nil ? "" : " --db '\(store.path.replacingOccurrences(of: "'", with: "'\\''"))'"
        let trail = CommandLine.arguments[0].contains("/") ? CommandLine.arguments[0] : "trail"
        let since = began.rfc3339(fractionDigits: 0)
        writeOut("\nExplore:\n")
        writeOut("  \(trail) who-accessed 'POST /pay/*' --since \(since)\(db)\n")
        for kind in ["credential-anomaly", "revoked-certificate", "edge-bypass", "expired-certificate"] {
            if let f = byKind[kind]?.first { writeOut("  \(trail) chain \(f.traceID)\(db)    # \(kind)\n") }
        }
        writeOut("  \(trail) findings --since \(since)\(db)\n")
        writeOut("  \(trail) activity \(Estate.integration)\(db)\n")
        writeOut("  \(trail) identities\(db)\n")
        writeOut("  \(trail) report --principal \(Estate.integration) --since \(since) --format html -o \(Estate.integration)-report.html\(db)\n")
    }

    /// The running binary, so the estate runs exactly this build.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    static func temporaryDirectory() throws -> String {
        var template = Array(((NSTemporaryDirectory() as NSString).appendingPathComponent("trail-demo-XXXXXX")).utf8CString)
        guard let made = mkdtemp(&template) else { throw CLIError("cannot create a temporary directory: \(String(cString: strerror(errno)))") }
        return String(cString: made)
    }

    static func prepare(_ dir: String) throws -> String {
        let absolute = (dir as NSString).isAbsolutePath ? dir : FileManager.default.currentDirectoryPath + "/" + dir
        if let contents = try? FileManager.default.contentsOfDirectory(atPath: absolute), !contents.isEmpty {
            throw CLIError("--dir \(dir) is not empty; give a new or empty directory")
        }
        try FileManager.default.createDirectory(atPath: absolute, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return absolute
    }
}

/// Ctrl-C and SIGTERM during the demo: stop the estate, then finish.
final class DemoSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var fired = false
    private var handlers: [@Sendable () -> Void] = []
    private var waiters: [CheckedContinuation<Void, Never>] = []
    private var sources: [any DispatchSourceSignal] = []

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [weak self] in self?.fire() }
            source.resume()
            sources.append(source)
        }
    }

    var interrupted: Bool { lock.withLock { fired } }

    func onInterrupt(_ handler: @escaping @Sendable () -> Void) { lock.withLock { handlers.append(handler) } }

    private func fire() {
        let (run, wake): ([@Sendable () -> Void], [CheckedContinuation<Void, Never>]) = lock.withLock {
            if fired { return ([], []) }
            fired = true
            defer { handlers = []; waiters = [] }
            return (handlers, waiters)
        }
        writeOut("\nInterrupted: stopping the estate\n")
        for h in run { h() }
        for w in wake { w.resume() }
    }

    /// Waits for Ctrl-C or SIGTERM.
    func wait() async {
        await withCheckedContinuation { c in
            let already = lock.withLock {
                if fired { return true }
                waiters.append(c)
                return false
            }
            if already { c.resume() }
        }
    }
}

/// `trail demo-service`: one of the demo's sample services (started by `trail demo`).
struct DemoServiceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo-service", abstract: "Run one sample service of `trail demo`.", shouldDisplay: false)

    @Option(name: .long) var name: String
    @Option(name: .long) var ingest: String?
    @Option(name: .long) var tokenFile: String?
    @Option(name: .long) var trustBundle: String?
    @Option(name: .long) var bufferDir: String
    @Option(name: .long) var controlTokenFile: String

    func run() async throws {
        let control = try String(contentsOfFile: controlTokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let service = try SampleService(
            settings: .init(name: name, ingestURL: ingest, tokenFile: tokenFile, trustBundle: trustBundle, bufferDirectory: bufferDir, controlToken: control),
            group: MultiThreadedEventLoopGroup.singleton)
        let port = try await service.start()
        writeOut("ready \(port)\n")
        // The sidecar's outbound listener, once the demo knows it: `outbound URL` (or `outbound -`).
        if let line = readLine(), line.hasPrefix("outbound "), !line.hasSuffix(" -") {
            try service.setOutbound(String(line.dropFirst("outbound ".count)))
        }
        await SignalWaiter.waitForTermination()
        await service.stop()
    }
}
