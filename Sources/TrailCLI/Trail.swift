import Foundation
import ArgumentParser

@main
struct Trail: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "trail",
        abstract: "Who accessed what, from where, through which chain of services, with which identity at each hop.",
        discussion: """
            Trail reads gateway access logs (Kong, Envoy/Istio), OTLP traces, SPIRE logs, certificates and CRLs,
            joins them into call chains, and answers analysts' questions about them.

            Exit codes: 0 success; 1 the command could not run; 2 (ingest) some records were rejected.
            """,
        version: "0.1.0",
        subcommands: [
            Ingest.self, CorrelateCommand.self, ChainCommand.self, WhoAccessedCommand.self, ActivityCommand.self,
            FindingsCommand.self, IdentitiesCommand.self, QueryCommand.self, ReportCommand.self, VerifyCommand.self,
            EvidenceCommand.self, RejectsCommand.self, Serve.self, CA.self, SidecarCommand.self, Demo.self, Bench.self,
            BenchServe.self, BenchMesh.self, BenchGateway.self, GatewayCommand.self, DemoServiceCommand.self,
        ]
    )

    /// ArgumentParser's `main`, except that its messages (which quote the argument they refuse) are printed with
    /// control characters escaped: a hostile argument can neither drive the terminal nor forge a line.
    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = exitCode(for: error)
            // The error line quotes the refused value: escaped whole (a line feed in it cannot start a line); the
            // usage lines after it are Trail's own.
            let short = code.isSuccess ? "" : message(for: error)
            let full = fullMessage(for: error)
            let message = (short.isEmpty ? full : full.replacingOccurrences(of: short, with: TextTable.sanitize(short)))
                .split(separator: "\n", omittingEmptySubsequences: false).map { TextTable.sanitize(String($0)) }
                .joined(separator: "\n")
            if !message.isEmpty {
                if code.isSuccess { writeOut(message + "\n") } else { printError(message) }
            }
            Foundation.exit(code.rawValue)
        }
    }
}
