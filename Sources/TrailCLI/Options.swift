import ArgumentParser
import Foundation
import TrailCore
import TrailStore

/// `--db PATH`, else `$TRAIL_DB`, else `./trail.db`.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "The store (SQLite file). Default: $TRAIL_DB, else ./trail.db.")
    var db: String?

    var path: String { db ?? ProcessInfo.processInfo.environment["TRAIL_DB"] ?? "trail.db" }

    func open(readOnly: Bool) throws -> TrailStore {
        try TrailStore(path: path, readOnly: readOnly)
    }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json, csv
}

struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "Output format: table, json or csv.")
    var format: OutputFormat = .table
}

struct WindowOptions: ParsableArguments {
    @Option(name: .long, help: "Only at or after this time: RFC 3339 or a duration before now (2h, 30m, 7d).")
    var since: String?

    @Option(name: .long, help: "Only at or before this time: RFC 3339 or a duration before now.")
    var until: String?

    func window(now: Timestamp = .now) throws -> TimeWindow {
        func parse(_ text: String?, _ flag: String) throws -> Timestamp? {
            guard let text else { return nil }
            guard let t = TimeArgument.parse(text, now: now) else {
                throw CLIError("\(flag) '\(text)' is neither RFC 3339 (2026-05-04T10:00:00Z) nor a duration (2h)")
            }
            return t
        }
        return TimeWindow(since: try parse(since, "--since"), until: try parse(until, "--until"))
    }
}

/// Runs a command body, turning any error into one clear line on stderr and exit code 1.
func runReporting(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        // Messages may quote arguments and stored telemetry: one line, controls shown escaped.
        printError("error: " + TextTable.sanitize("\(error)"))
        throw ExitCode.failure
    }
}

/// An error in what the user asked for, found while running (printed as one line, exit code 1).
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Writes text to stdout, flushing through FileHandle so large outputs are not held back.
func writeOut(_ text: String) {
    FileHandle.standardOutput.write(Data(text.utf8))
}

enum FixtureDirectory {
    /// `--fixtures`, else ./fixtures, else the fixtures folder of the checkout the executable was built in.
    static func locate(_ explicit: String?) throws -> String {
        let fm = FileManager.default
        if let explicit { return explicit }
        if fm.fileExists(atPath: "fixtures/scenarios") { return "fixtures" }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<5 {
            let candidate = dir.appendingPathComponent("fixtures").path
            if fm.fileExists(atPath: candidate + "/scenarios") { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        throw StoreError("no fixtures folder found: run from Trail's checkout, or pass --fixtures DIR")
    }
}
