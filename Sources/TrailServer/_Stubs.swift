import Foundation
// Temporary until the HTTPS server lands.
public struct TokenEntry: Sendable {}
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 4318
    public var tlsCertificatePath: String?
    public var tlsKeyPath: String?
    public var clientCAPath: String?
    public var allow: [String] = []
    public var tokens: [TokenEntry] = []
    public var insecure = false
    public var maxBodyBytes = 64 << 20
    public var maxConnectionsPerSender = 64
    public init() {}
    public func validate() throws {}
    public static func loadTokens(file: String) throws -> [TokenEntry] { [] }
}
public final class IngestHTTPServer: @unchecked Sendable {
    public init(configuration: ServerConfiguration, handler: any ServerRequestHandler) {}
    public func start() async throws -> URL { URL(string: "http://127.0.0.1:0")! }
    public func shutdown() async throws {}
}
