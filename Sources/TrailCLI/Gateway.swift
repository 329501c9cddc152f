import ArgumentParser
import Foundation
import NIOCore
import TrailGateway
import TrailMesh

struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run the edge gateway: routes, API-key/JWT/client-certificate authentication, ACL, rate limits, Kong access log.",
        discussion: "The first line on stdout is `listening on URL`. Ctrl-C or SIGTERM stops it.")
    @Option(name: .long, help: "The gateway's YAML config file.") var config: String
    @Option(name: .long, help: "HOST:PORT to listen on (overrides the file's listen).") var listen: String?
    @Option(name: .long, help: "Event-loop threads (default: the number of cores, at most 4).") var threads: Int?

    func run() async throws {
        do {
            var override: (host: String, port: Int)?
            if let listen {
                guard let hp = splitHostPort(listen) else { throw ValidationError("--listen: '\(listen)' is not HOST:PORT") }
                override = (hp.0, hp.1)
            }
            if let threads, threads < 1 { throw ValidationError("--threads: at least 1") }
            let configuration = try GatewayConfiguration.load(file: config)
            let gateway = try GatewayServer(
                configuration: configuration, file: config, listen: override, threads: threads ?? min(System.coreCount, 4)
            ) { printError($0) }
            let url = try await gateway.start()
            writeOut("listening on \(url)\n")
            await SignalWaiter.waitForTermination()
            await gateway.stop()
        } catch let error as ValidationError {
            throw error
        } catch {
            printError("error: \(error)")
            throw ExitCode.failure
        }
    }
}
