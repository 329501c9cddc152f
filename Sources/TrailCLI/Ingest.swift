import ArgumentParser
import Foundation
import TrailCompression
import TrailCore
import TrailFormats
import GRDB
import TrailStore

struct Ingest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read telemetry files into the store and correlate them into chains.",
        discussion: """
            FILE may be plain, gzip or zstd compressed; '-' reads stdin. The format is detected from the content;
            --format names it: \(InputFormat.allCases.map(\.rawValue).joined(separator: ", ")).
            Exit codes: 0 nothing rejected, 2 some records were rejected (see `trail rejects`), 1 could not run.
            """)

    @OptionGroup var store: StoreOptions

    @Option(name: .long, help: "Input format (default: detected per file).")
    var format: InputFormat?

    @Option(name: .long, help: "Envoy format string for envoy-text input (default: Istio's default TEXT format).")
    var envoyFormat: String?

    @Option(name: .long, help: "A SPIFFE ID or trust domain allowed to start chains inside the mesh (no edge-bypass finding). Repeatable; remembered in the store.")
    var allowEntryPoint: [String] = []

    @Option(name: .long, help: "Clock-skew tolerance when joining observations (e.g. 2s, 500ms). Remembered in the store.")
    var clockSkew: String?

    @Option(name: .long, help: "Earlier gateway requests a principal needs before a request from a new address on a new route is a credential-anomaly finding (default \(TrailStore.defaultCredentialAnomalyBaseline)). Remembered in the store.")
    var credentialBaseline: Int?

    @Flag(name: [.short, .long], help: "Do not print the summary.")
    var quiet = false

    @Argument(help: "Files to read ('-' for stdin).")
    var files: [String]

    func validate() throws {
        if files.isEmpty { throw ValidationError("name at least one FILE (or - for stdin)") }
        if let clockSkew, Duration.parseNanos(clockSkew) == nil {
            throw ValidationError("--clock-skew '\(clockSkew)' is not a duration like 2s or 500ms, at most 1h")
        }
        if let credentialBaseline, credentialBaseline < 1 {
            throw ValidationError("--credential-baseline must be at least 1")
        }
    }

    func run() throws {
        var rejectedAny = false
        try runReporting {
            let store = try store.open(readOnly: false)
            if !allowEntryPoint.isEmpty {
                try store.setAllowedEntryPoints(try store.allowedEntryPoints() + allowEntryPoint)
            }
            if let credentialBaseline { try store.setCredentialAnomalyBaseline(credentialBaseline) }
            var rebuildAll = false
            if let clockSkew, let ns = Duration.parseNanos(clockSkew), try store.clockSkewNanos() != ns {
                try store.setSetting("clock_skew_ns", String(ns))
                rebuildAll = true
            }
            var driver = IngestDriver(store: store, format: format, options: ParseOptions(envoyFormat: envoyFormat))
            driver.rebuildAll = rebuildAll
            let summary = try driver.ingest(files: files)
            if !quiet { writeOut(summary.render()) }
            rejectedAny = summary.totals.rejected > 0
            if summary.unreadable > 0 { throw ExitCode.failure }
        }
        if rejectedAny { throw ExitCode(2) }
    }
}

extension InputFormat: ExpressibleByArgument {}

enum Duration {
    /// `2s`, `500ms`, `1m`, `100us` → nanoseconds.
    /// Durations above an hour are refused: a clock-skew tolerance that large joins unrelated requests.
    static func parseNanos(_ text: String, maximum: Double = 3600e9) -> Int64? {
        let units: [(String, Double)] = [("ms", 1e6), ("us", 1e3), ("ns", 1), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            guard let v = Double(text.dropLast(suffix.count)), v.isFinite, v >= 0, v * factor <= maximum else { return nil }
            return Int64(v * factor)
        }
        return nil
    }
}

/// Per-format counts and the first rejections, for the summary.
struct IngestSummary {
    var perFormat: [String: IngestCounts] = [:]
    var totals = IngestCounts()
    var correlation = CorrelationCounts()
    var firstRejections: [String] = []
    var unreadable = 0
    var files = 0
    var findingsInStore = 0

    func render() -> String {
        var out = "read \(files) input\(files == 1 ? "" : "s"): \(totals.records) records, \(totals.stored) stored, "
            + "\(totals.duplicates) already stored, \(totals.rejected) rejected\n"
        let rows = perFormat.keys.sorted().map { f -> [String] in
            let c = perFormat[f]!
            return [f, String(c.records), String(c.stored), String(c.duplicates), String(c.rejected),
                    String(c.observations), String(c.identityEvents)]
        }
        if !rows.isEmpty {
            out += TextTable.render(
                columns: ["format", "records", "stored", "duplicates", "rejected", "observations", "identity events"],
                rows: rows)
        }
        out += "correlated \(correlation.traces) trace\(correlation.traces == 1 ? "" : "s") (\(correlation.hops) hops); "
            + "the store holds \(findingsInStore) finding\(findingsInStore == 1 ? "" : "s")\n"
        if !firstRejections.isEmpty {
            out += "rejected records (first \(firstRejections.count); all in `trail rejects`):\n"
            for r in firstRejections { out += "  " + TextTable.sanitize(r) + "\n" }
        }
        return out
    }
}

/// Reads inputs, detects formats, parses in chunks and stores batch by batch, then correlates once.
struct IngestDriver: Sendable {
    let store: TrailStore
    let format: InputFormat?
    let options: ParseOptions
    /// Inputs larger than this are parsed and stored in chunks split at newlines.
    var chunkSize = 4 << 20
    /// Correlate every stored trace afterwards, not only those the inputs touched (a setting changed).
    var rebuildAll = false

    func ingest(files: [String]) throws -> IngestSummary {
        var summary = IngestSummary()
        var dirty = DirtySet()
        let progress = Progress(enabled: isatty(2) == 1)
        for file in files {
            summary.files += 1
            let input: [UInt8]
            do {
                input = try Decompressor.decompress(try readInput(file))
            } catch {
                printError("error: \(file): \(error)")
                summary.unreadable += 1
                continue
            }
            guard let fmt = format ?? FormatRegistry.detect(input) else {
                if input.allSatisfy({ [0x20, 0x09, 0x0A, 0x0D].contains($0) }) { continue }
                printError("error: \(file): cannot detect the format; name it with --format (one of \(InputFormat.allCases.map(\.rawValue).joined(separator: ", ")))")
                summary.unreadable += 1
                continue
            }
            let source = file == "-" ? "stdin" : file
            var bytesDone = 0
            // Parse the next chunks on another core while this one is stored.
            let pieces = chunks(input, format: fmt)
            let prefetch = Prefetch(capacity: 2)
            let (format, options) = (fmt, options)
            DispatchQueue.global().async {
                for (i, piece) in pieces.enumerated() {
                    prefetch.put(i, FormatRegistry.parse(piece.1, format: format, options: options))
                }
            }
            for (index, (lineOffset, chunk)) in pieces.enumerated() {
                bytesDone += chunk.count
                var results = prefetch.take(index)
                if lineOffset > 0 {
                    for i in results.indices {
                        switch results[i] {
                        case .record(var r):
                            r.location.line += lineOffset
                            for j in r.partialRejections.indices { r.partialRejections[j].location.line += lineOffset }
                            results[i] = .record(r)
                        case .rejected(var r):
                            r.location.line += lineOffset
                            results[i] = .rejected(r)
                        }
                    }
                }
                for r in results {
                    guard summary.firstRejections.count < 10 else { break }
                    switch r {
                    case .rejected(let rej):
                        summary.firstRejections.append("\(source):\(rej.location.line)\(rej.location.detail.map { " \($0)" } ?? ""): \(rej.reason)")
                    case .record(let rec):
                        for rej in rec.partialRejections.prefix(10 - summary.firstRejections.count) {
                            summary.firstRejections.append("\(source):\(rej.location.line)\(rej.location.detail.map { " \($0)" } ?? ""): \(rej.reason)")
                        }
                    }
                }
                let (counts, d) = try store.ingest(results, source: source)
                summary.perFormat[fmt.rawValue, default: IngestCounts()] += counts
                summary.totals += counts
                dirty.formUnion(d)
                progress.update(file: source, fraction: Double(bytesDone) / Double(max(1, input.count)),
                                records: summary.totals.records)
            }
        }
        progress.finish()
        summary.correlation = try store.correlate(dirty, all: rebuildAll)
        summary.findingsInStore = try store.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM finding") ?? 0 }
        return summary
    }

    func readInput(_ file: String) throws -> [UInt8] {
        if file == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw FormatError(FileManager.default.fileExists(atPath: file) ? "cannot read the file (permissions?)" : "no such file")
        }
        return Array(data)
    }

    /// Splits line-oriented input at newlines into chunks, with the number of lines before each chunk.
    func chunks(_ input: [UInt8], format: InputFormat) -> [(Int, [UInt8])] {
        guard input.count > chunkSize, FormatRegistry.isLineOriented(format, input) else { return [(0, input)] }
        var out: [(Int, [UInt8])] = []
        var start = 0
        var linesBefore = 0
        while start < input.count {
            var end = min(start + chunkSize, input.count)
            while end < input.count, input[end - 1] != 0x0A { end += 1 }
            let chunk = Array(input[start..<end])
            out.append((linesBefore, chunk))
            linesBefore += chunk.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) }
            start = end
        }
        return out
    }
}

/// Parse results handed from the parsing thread to the storing one, in order, at most `capacity` ahead.
final class Prefetch: @unchecked Sendable {
    private let condition = NSCondition()
    private var ready: [Int: [ParseResult]] = [:]
    private var taken = 0
    private let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func put(_ index: Int, _ results: [ParseResult]) {
        condition.lock()
        while index >= taken + capacity { condition.wait() }
        ready[index] = results
        condition.broadcast()
        condition.unlock()
    }

    func take(_ index: Int) -> [ParseResult] {
        condition.lock()
        defer { condition.unlock() }
        while ready[index] == nil { condition.wait() }
        taken = index + 1
        condition.broadcast()
        return ready.removeValue(forKey: index) ?? []
    }
}

/// A progress bar on stderr when it is a terminal (never in pipes, files or CI logs).
final class Progress {
    let enabled: Bool
    var shown = false
    init(enabled: Bool) { self.enabled = enabled }

    func update(file: String, fraction: Double, records: Int) {
        guard enabled else { return }
        shown = true
        let width = 30
        let filled = max(0, min(width, Int(fraction * Double(width))))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let name = TextTable.sanitize((file as NSString).lastPathComponent)
        FileHandle.standardError.write(Data("\r\u{1B}[K[\(bar)] \(Int(fraction * 100))% \(name): \(records) records".utf8))
    }

    func finish() {
        if shown { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
