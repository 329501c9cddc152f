import Foundation
import NIOCore
import NIOSSL

/// How a mesh component (sidecar, gateway) reaches `trail serve`: its URL, the roots its certificate must chain to,
/// and the credential: a bearer token from a file, or else the component's SVID (mTLS). Makes the disk-buffered
/// outboxes that deliver each record stream.
package struct TrailServeDelivery: Sendable {
    let endpoint: HTTPSClient.Endpoint
    let authorization: [(String, String)]
    let client: HTTPSClient

    package init(url: String, tokenFile: String?, rootsPath: String?, identity: WorkloadIdentity?, group: any EventLoopGroup) throws {
        endpoint = try HTTPSClient.Endpoint(url: url)
        var token: String?
        if let tokenFile { token = try SecureFile.readText(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines) }
        authorization = token.map { [("authorization", "Bearer \($0)")] } ?? []
        let roots = try rootsPath.map { try NIOSSLCertificate.fromPEMFile($0) }
        let svid = token == nil ? identity : nil
        client = HTTPSClient(group: group) {
            var tls = TLSConfiguration.makeClientConfiguration()
            if let roots { tls.trustRoots = .certificates(roots) }
            tls.certificateVerification = .noHostnameVerification
            if let svid { try svid.presentSVID(&tls) }
            return try NIOSSLContext(configuration: tls)
        }
    }

    package func outbox(
        directory: String, path: String, contentType: String, maxBytes: Int, flushInterval: Duration,
        log: @escaping @Sendable (String) -> Void, encode: @escaping @Sendable ([String]) -> [UInt8] = Self.ndjson
    ) throws -> Outbox {
        try Outbox(
            directory: directory, endpoint: endpoint, path: path, headers: authorization + [("content-type", contentType)],
            client: client, maxBytes: maxBytes, flushInterval: flushInterval, log: log, encode: encode)
    }

    /// Records as NDJSON lines.
    package static let ndjson: @Sendable ([String]) -> [UInt8] = { lines in Array((lines.joined(separator: "\n") + "\n").utf8) }
}
