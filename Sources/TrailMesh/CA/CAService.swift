import Foundation
import TrailCore
import TrailServer

/// The CA's HTTPS API (the workload API of `trail ca serve`):
///
/// - `GET /v1/bundle` (PEM), `GET /v1/bundle.json` (SPIFFE bundle), `GET /v1/crl` (DER; `?format=pem`): public,
///   as a trust bundle endpoint is.
/// - `POST /v1/svid`: bootstrap. `Authorization: Bearer JOIN_TOKEN` (single use) and a PEM CSR as the body; the
///   SVID is for the SPIFFE ID the token was made for.
/// - `POST /v1/svid/renew`: renewal over mTLS with the workload's current, unrevoked SVID; the new SVID has the
///   same SPIFFE ID.
///
/// Answers SVIDs as JSON: `spiffe_id`, `serial`, `not_before`, `not_after`, `svid_pem` (leaf first), `bundle_pem`.
public struct CAService: ServerRequestHandler {
    public static let openPaths: Set<String> = ["/v1/bundle", "/v1/bundle.json", "/v1/crl", "/v1/svid", "/v1/svid/renew"]

    let ca: CertificateAuthority
    let log: @Sendable (String) -> Void

    public init(ca: CertificateAuthority, log: @escaping @Sendable (String) -> Void) {
        self.ca = ca
        self.log = log
    }

    public func handle(_ request: ServerRequest) async -> ServerResponse {
        do {
            switch (request.method, request.path) {
            case ("GET", "/v1/bundle"), ("HEAD", "/v1/bundle"):
                return ServerResponse(status: 200, headers: [("content-type", "application/x-pem-file")], body: Array(ca.bundlePEM.utf8))
            case ("GET", "/v1/bundle.json"):
                let json = try SecureFile.read(ca.path("bundle.spiffe.json"))
                return ServerResponse(status: 200, headers: [("content-type", "application/json")], body: json)
            case ("GET", "/v1/crl"):
                if request.query["format"] == "pem" {
                    return ServerResponse(status: 200, headers: [("content-type", "application/x-pem-file")], body: try SecureFile.read(ca.path("crl.pem")))
                }
                return ServerResponse(status: 200, headers: [("content-type", "application/pkix-crl")], body: try ca.crlDER())
            case ("POST", "/v1/svid"):
                return try bootstrap(request)
            case ("POST", "/v1/svid/renew"):
                return try renew(request)
            case ("GET", "/healthz"), ("GET", "/readyz"):
                return .text(200, "ok")
            default:
                if Self.openPaths.contains(request.path) { return .text(405, "method \(request.method) not allowed on \(request.path)") }
                return .text(404, "no such endpoint: \(request.path)")
            }
        } catch let e as MeshError {
            return .text(400, e.description)
        } catch {
            log("trail ca: error answering \(request.method) \(request.path): \(error)")
            return .text(500, "internal error; see the CA's log")
        }
    }

    private func bootstrap(_ request: ServerRequest) throws -> ServerResponse {
        guard let header = request.header("authorization"), header.lowercased().hasPrefix("bearer "),
            case let token = header.dropFirst(7).trimmingCharacters(in: .whitespaces), !token.isEmpty
        else {
            return .text(401, "a join token is required: Authorization: Bearer TOKEN (make one with trail ca token)")
        }
        let spiffeID: String
        do {
            spiffeID = try ca.redeemJoinToken(token)
        } catch let e as MeshError {
            log("trail ca: refused a join token from \(request.sender.address): \(e.description)")
            return .text(403, e.description)
        }
        let svid = try ca.issue(csrPEM: String(decoding: request.body, as: UTF8.self), spiffeID: spiffeID, renewal: false)
        log("trail ca: issued \(svid.spiffeID) serial \(svid.serial) to \(request.sender.address) (join token)")
        return Self.answer(svid)
    }

    private func renew(_ request: ServerRequest) throws -> ServerResponse {
        guard let spiffeID = request.sender.spiffeID, let serial = request.sender.certificateSerial else {
            return .text(401, "renewal needs mTLS with the workload's current SVID")
        }
        guard SPIFFEID.parse(spiffeID)?.trustDomain == ca.trustDomain else {
            return .text(403, "\(spiffeID) is not in trust domain \(ca.trustDomain)")
        }
        if try ca.revokedSerials().contains(serial) {
            log("trail ca: refused renewal for \(spiffeID): serial \(serial) is revoked")
            return .text(403, "certificate \(serial) is revoked; the workload needs a new join token")
        }
        let svid = try ca.issue(csrPEM: String(decoding: request.body, as: UTF8.self), spiffeID: spiffeID, renewal: true)
        log("trail ca: renewed \(svid.spiffeID): serial \(serial) → \(svid.serial)")
        return Self.answer(svid)
    }

    static func answer(_ svid: IssuedSVID) -> ServerResponse {
        let json = JSONValue.object([
            ("spiffe_id", .string(svid.spiffeID)),
            ("serial", .string(svid.serial)),
            ("not_before", .string(CertificateAuthority.rfc3339(svid.notBefore))),
            ("not_after", .string(CertificateAuthority.rfc3339(svid.notAfter))),
            ("svid_pem", .string(svid.chainPEM)),
            ("bundle_pem", .string(svid.bundlePEM)),
        ]).serialized()
        return ServerResponse(status: 200, headers: [("content-type", "application/json"), ("cache-control", "no-store")], body: Array(json.utf8))
    }
}
