import TrailCore

/// Who sent a request, as far as the server could verify it.
public struct SenderIdentity: Sendable, Hashable {
    /// The SPIFFE ID of a verified client certificate (mTLS), if any.
    public var spiffeID: String?
    /// The name of the bearer token used, if any (never the token itself).
    public var tokenName: String?
    /// The peer's IP address and port.
    public var address: String
    /// The serial (normalised hex) of the verified client certificate, if any.
    public var certificateSerial: String?

    public init(spiffeID: String? = nil, tokenName: String? = nil, address: String, certificateSerial: String? = nil) {
        self.spiffeID = spiffeID
        self.tokenName = tokenName
        self.address = address
        self.certificateSerial = certificateSerial
    }

    /// A label for logs, metrics and the `source` of stored records.
    public var label: String { spiffeID ?? tokenName.map { "token:\($0)" } ?? address }
}

/// An HTTP request after transport concerns are handled: TLS terminated, the sender authenticated, the body
/// read up to the size limit and decompressed (`Content-Encoding: gzip` or `zstd`).
public struct ServerRequest: Sendable {
    public var method: String
    /// The path without the query string.
    public var path: String
    /// Query parameters, decoded.
    public var query: [String: String]
    /// Header names lowercased; repeated headers keep every value in order.
    public var headers: [(name: String, value: String)]
    /// The decompressed body.
    public var body: [UInt8]
    /// The Content-Encoding the body arrived in ("identity", "gzip" or "zstd").
    public var contentEncoding: String
    public var sender: SenderIdentity

    public init(
        method: String, path: String, query: [String: String] = [:], headers: [(name: String, value: String)] = [],
        body: [UInt8] = [], contentEncoding: String = "identity", sender: SenderIdentity
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.contentEncoding = contentEncoding
        self.sender = sender
    }

    /// The first value of a header (name in any case).
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name == n }?.value
    }
}

/// What to send back. The server adds Content-Length, and compresses the body when the request asked for it
/// with Accept-Encoding (gzip) and `compressible` is true.
public struct ServerResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    public var compressible: Bool

    public init(status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], compressible: Bool = true) {
        self.status = status
        self.headers = headers
        self.body = body
        self.compressible = compressible
    }

    public static func text(_ status: Int, _ text: String) -> ServerResponse {
        ServerResponse(status: status, headers: [("content-type", "text/plain; charset=utf-8")], body: Array((text + "\n").utf8))
    }
}

/// The application behind the server: routes and answers requests. Called once per request, concurrently.
public protocol ServerRequestHandler: Sendable {
    func handle(_ request: ServerRequest) async -> ServerResponse
}
