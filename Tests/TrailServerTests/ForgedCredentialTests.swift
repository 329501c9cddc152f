import Crypto
import Foundation
import Testing
import TrailCore

@testable import TrailServer

/// Forged, guessed and misplaced bearer tokens against `trail serve`'s listener, sent by curl over HTTPS. The token
/// file holds one token (`goodToken`); each attempt must be answered 401 and never reach the handler. The scheme is
/// case-insensitive (RFC 7235 §2.1), so `bearer` and `BEARER` with the right token are accepted: those are the
/// controls, with the plain `Bearer` one.
@Suite("forged sender credentials against trail serve", .serialized, .timeLimit(.minutes(2)))
struct ForgedCredentialTests {
    /// (what, curl arguments, path and query).
    static var forgeries: [(String, [String], String)] {
        let hash = Hex.encode(Array(SHA256.hash(data: Array(goodToken.utf8))))
        let basic = Data("ingest:\(goodToken)".utf8).base64EncodedString()
        return [
            ("wrong token", ["-H", "Authorization: Bearer not-the-token-at-all"], "/v1/logs"),
            ("empty token", ["-H", "Authorization: Bearer "], "/v1/logs"),
            ("scheme without token", ["-H", "Authorization: Bearer"], "/v1/logs"),
            ("empty header", ["-H", "Authorization;"], "/v1/logs"),
            ("prefix of the token", ["-H", "Authorization: Bearer \(goodToken.dropLast())"], "/v1/logs"),
            ("first byte of the token", ["-H", "Authorization: Bearer \(goodToken.prefix(1))"], "/v1/logs"),
            ("token and one more byte", ["-H", "Authorization: Bearer \(goodToken)x"], "/v1/logs"),
            ("token in upper case", ["-H", "Authorization: Bearer \(goodToken.uppercased())"], "/v1/logs"),
            ("token with a space inside", ["-H", "Authorization: Bearer \(goodToken.prefix(6)) \(goodToken.dropFirst(6))"], "/v1/logs"),
            ("the token's SHA-256", ["-H", "Authorization: Bearer \(hash)"], "/v1/logs"),
            ("token as Basic credentials", ["-H", "Authorization: Basic \(basic)"], "/v1/logs"),
            ("token without a scheme", ["-H", "Authorization: \(goodToken)"], "/v1/logs"),
            ("scheme glued to the token", ["-H", "Authorization: Bearer\(goodToken)"], "/v1/logs"),
            ("token in the query", [], "/v1/logs?access_token=\(goodToken)"),
            ("token in another header", ["-H", "X-Api-Key: \(goodToken)", "-H", "Token: \(goodToken)"], "/v1/logs"),
            ("token as a cookie", ["-H", "Cookie: token=\(goodToken)"], "/v1/logs"),
            ("wrong token, then the right one", ["-H", "Authorization: Bearer wrong", "-H", "Authorization: Bearer \(goodToken)"], "/v1/logs"),
            ("the right token, then a wrong one", ["-H", "Authorization: Bearer \(goodToken)", "-H", "Authorization: Bearer wrong"], "/v1/logs"),
            ("token name instead of the token", ["-H", "Authorization: Bearer ingest"], "/v1/logs"),
        ]
    }

    @Test func everyForgedBearerTokenIsRefusedWith401() async throws {
        try await withFixture { f in
            for (what, arguments, path) in Self.forgeries {
                let r = try await f.curl(path, arguments + ["--data-binary", "x"])
                #expect(r.written == "401 1.1", "\(what): \(r.written) \(r.bodyText)")
                #expect(r.headers.lowercased().contains("www-authenticate: bearer"), "\(what)")
                // The answer never repeats what was presented.
                #expect(!r.bodyText.contains(goodToken), "\(what)")
            }
            #expect(f.handler.count == 0, "a forged token reached the handler")
            // Controls: the right token, the scheme in any case.
            for scheme in ["Bearer", "bearer", "BEARER"] {
                let r = try await f.curl("/v1/logs", ["-H", "Authorization: \(scheme) \(goodToken)"])
                #expect(r.written == "200 1.1", "\(scheme): \(r.written) \(r.stderr)")
            }
            #expect(f.handler.count == 3)
            #expect(f.handler.requests.withLock { $0.allSatisfy { $0.sender.tokenName == "ingest" } })
        }
    }

    /// Over HTTP/2 the same forgeries are refused: the header is read the same way.
    @Test func forgedTokensOverHTTP2AreRefused() async throws {
        try await withFixture { f in
            for (what, arguments, path) in Self.forgeries.prefix(8) {
                let r = try await f.curl(path, ["--http2"] + arguments)
                #expect(r.written == "401 2", "\(what): \(r.written)")
            }
            #expect(f.handler.count == 0)
        }
    }

    /// A client certificate the server's CA issued, but with another trust domain's ID, and a valid one whose
    /// SPIFFE ID is not allowed, combined with a forged token: refused either way, never taken for the token.
    @Test func aCertificateDoesNotLendWeightToAForgedToken() async throws {
        try await withFixture { f in
            let other = try f.pki.client("other", spiffeID: "spiffe://other.example/ns/x/sa/y")
            let r = try await f.curl("/v1/logs", ["--cert", other.cert, "--key", other.key, "-H", "Authorization: Bearer wrong"])
            #expect(r.written == "401 1.1", "\(r.written) \(r.bodyText)")
            #expect(f.handler.count == 0)
        }
    }
}
