import Foundation
import NIOHTTP1
import TrailCore

/// Delivers records to `trail serve` in batches, buffered on disk so that nothing is lost while it is
/// unreachable: records gather in memory, every flush interval they are written to a spool file (fsynced), and
/// spool files are sent oldest first and deleted once `trail serve` acknowledged them (2xx). The spool holds at
/// most `maxBytes` (or else one batch that alone is larger): before a batch is written, the oldest files are
/// dropped, and counted, to make room for it. A 4xx other than 408/429 means the batch itself is refused: it is
/// moved to `rejected/` and not retried.
public final class Outbox: Sendable {
    public struct Counters: Sendable, Hashable {
        public var sent = 0
        public var dropped = 0
        public var rejected = 0
    }

    let directory: String
    let endpoint: HTTPSClient.Endpoint
    let path: String
    let headers: [(String, String)]
    let encode: @Sendable ([String]) -> [UInt8]
    let client: HTTPSClient
    let maxBytes: Int
    let flushInterval: Duration
    let log: @Sendable (String) -> Void
    private let pending = Locked<[String]>([])
    private let counters = Locked(Counters())
    private let sequence = Locked(0)
    private let task = Locked<Task<Void, Never>?>(nil)
    /// The status of the last "will retry" line, so that a refusal repeated every cycle is logged once.
    private let retryingOn = Locked<Int?>(nil)

    public init(
        directory: String, endpoint: HTTPSClient.Endpoint, path: String, headers: [(String, String)],
        client: HTTPSClient, maxBytes: Int, flushInterval: Duration, log: @escaping @Sendable (String) -> Void,
        encode: @escaping @Sendable ([String]) -> [UInt8]
    ) throws {
        self.directory = directory
        self.endpoint = endpoint
        self.path = path
        self.headers = headers
        self.client = client
        self.maxBytes = maxBytes
        self.flushInterval = flushInterval
        self.log = log
        self.encode = encode
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let last = (try? FileManager.default.contentsOfDirectory(atPath: directory))?.compactMap { Int($0.split(separator: ".").first ?? "") }.max() ?? 0
        sequence.withLock { $0 = last }
    }

    public var snapshot: Counters { counters.withLock { $0 } }

    public func append(_ line: String) {
        pending.withLock { $0.append(line) }
    }

    public func start() {
        let t = Task { [self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: flushInterval)
                await cycle()
            }
        }
        task.withLock { $0 = t }
    }

    /// Waits for a delivery in flight, then writes what is pending and makes one last delivery attempt (no request
    /// may outlive the event loops, which are shut down next).
    public func stop() async {
        let running = task.withLock { t in defer { t = nil }; return t }
        running?.cancel()
        await running?.value
        await cycle()
    }

    /// Spools what is pending, then sends spool files until one fails.
    func cycle() async {
        spool()
        for file in spoolFiles() {
            let full = (directory as NSString).appendingPathComponent(file)
            guard let text = try? SecureFile.readText(full) else { continue }
            let lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            do {
                let response = try await client.request(.POST, endpoint, path: path, headers: headers, body: encode(lines))
                if (200..<300).contains(response.status) {
                    unlink(full)
                    counters.withLock { $0.sent += lines.count }
                    retryingOn.withLock { $0 = nil }
                } else if (400..<500).contains(response.status) && response.status != 408 && response.status != 429
                    && response.status != 401 && response.status != 403
                {
                    let rejected = (directory as NSString).appendingPathComponent("rejected")
                    try? FileManager.default.createDirectory(atPath: rejected, withIntermediateDirectories: true)
                    rename(full, (rejected as NSString).appendingPathComponent(file))
                    counters.withLock { $0.rejected += lines.count }
                    log("trail: \(endpoint.description)\(path) refused a batch (\(response.status)): \(response.text.prefix(200)); kept in \(rejected)")
                } else {
                    let status = response.status
                    if retryingOn.withLock({ last in defer { last = status }; return last != status }) {
                        log("trail: \(endpoint.description)\(path) answered \(status); will retry (logged again when the answer changes)")
                    }
                    return
                }
            } catch {
                return  // unreachable: keep the spool, retry next cycle
            }
        }
    }

    private func spool() {
        let lines = pending.withLock { p -> [String] in
            defer { p.removeAll(keepingCapacity: true) }
            return p
        }
        guard !lines.isEmpty else { return }
        let n = sequence.withLock { s -> Int in
            s += 1
            return s
        }
        let name = String(format: "%020d.ndjson", n)
        let bytes = Array((lines.joined(separator: "\n") + "\n").utf8)
        makeRoom(for: bytes.count)
        do {
            try SecureFile.write(bytes, to: (directory as NSString).appendingPathComponent(name), mode: 0o600)
        } catch {
            counters.withLock { $0.dropped += lines.count }
            log("trail: cannot spool \(lines.count) records to \(directory): \(error); they are dropped")
        }
    }

    private func spoolFiles() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".ndjson") }.sorted()
    }

    /// Drops the oldest spool files until `incoming` more bytes fit within `maxBytes` (all of them if it never fits).
    private func makeRoom(for incoming: Int) {
        var files = spoolFiles().map { name -> (String, Int) in
            let full = (directory as NSString).appendingPathComponent(name)
            let size = ((try? FileManager.default.attributesOfItem(atPath: full))?[.size] as? NSNumber)?.intValue ?? 0
            return (full, size)
        }
        var total = files.reduce(0) { $0 + $1.1 }
        while total + incoming > maxBytes, !files.isEmpty {
            let (oldest, size) = files.removeFirst()
            let count = ((try? SecureFile.readText(oldest)) ?? "").split(separator: "\n").count
            unlink(oldest)
            total -= size
            counters.withLock { $0.dropped += count }
            log("trail: spool full (\(maxBytes) bytes); dropped the oldest \(count) records (\(oldest))")
        }
    }
}
