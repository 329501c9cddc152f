import Crypto
import Foundation
import NIOSSL
import TrailCore
import X509

/// A configuration problem, naming the flag or file at fault and what to do about it.
public struct ServerConfigurationError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// A bearer token the server accepts: its name (used in logs and as the sender label) and the SHA-256 of
/// the token. The token itself is never kept.
public struct TokenEntry: Sendable, Hashable {
    public var name: String
    /// SHA-256 of the token's UTF-8 bytes (32 bytes).
    public var sha256: [UInt8]

    public init(name: String, sha256: [UInt8]) {
        self.name = name
        self.sha256 = sha256
    }

    /// An entry for a token given in clear; only its hash is kept.
    public init(name: String, token: String) {
        self.name = name
        self.sha256 = TokenEntry.hash(token)
    }

    /// SHA-256 of a token's UTF-8 bytes.
    public static func hash(_ token: String) -> [UInt8] {
        Array(SHA256.hash(data: Array(token.utf8)))
    }
}

/// How `trail serve` listens and whom it lets send.
public struct ServerConfiguration: Sendable {
    /// Address to bind ("127.0.0.1", "0.0.0.0", "::").
    public var host: String
    /// Port to bind; 0 picks a free port.
    public var port: Int
    /// Server certificate chain (PEM), leaf first.
    public var tlsCertificatePath: String?
    /// Server private key (PEM).
    public var tlsKeyPath: String?
    /// CA bundle (PEM) that client certificates must chain to. When set, the server asks for a client
    /// certificate (optional: senders may use a bearer token instead).
    public var clientCAPath: String?
    /// SPIFFE IDs (`spiffe://shop.example/ns/x/sa/y`) or trust domains (`spiffe://shop.example` or
    /// `shop.example`) allowed to send with a client certificate.
    public var allow: [String]
    /// Accepted bearer tokens (name and SHA-256).
    public var tokens: [TokenEntry]
    /// Plain HTTP without authentication. Only for local experiments; must be asked for explicitly.
    public var insecure: Bool
    /// Largest request body accepted, both as received and after decompression.
    public var maxBodyBytes: Int
    /// Largest request header section accepted.
    public var maxHeaderBytes: Int
    /// Most simultaneous connections from one sender IP address.
    public var maxConnectionsPerSender: Int
    /// A connection with no traffic and no request in progress for this long is closed.
    public var idleTimeout: Duration
    /// Event loop threads; nil means one per core (at least 2).
    public var eventLoopThreads: Int?
    /// Paths the application authenticates itself (a certificate authority's bundle and join-token
    /// endpoints): requests to them reach the handler without credentials, as an anonymous sender, or with the
    /// verified client certificate's identity when there is one.
    public var openPaths: Set<String> = []
    /// CRL files (PEM or DER), each signed by a CA of `clientCAPath`: a client certificate they revoke counts for
    /// nothing. Re-read when they change.
    public var crlPaths: [String] = []
    /// How often requests on kept-alive connections look for changed CRL files (new connections always look).
    public var crlCheckInterval: Duration = .seconds(2)

    public static let defaultMaxBodyBytes = 64 << 20
    public static let defaultMaxHeaderBytes = 64 << 10

    public init(
        host: String = "127.0.0.1", port: Int = 8443, tlsCertificatePath: String? = nil, tlsKeyPath: String? = nil,
        clientCAPath: String? = nil, allow: [String] = [], tokens: [TokenEntry] = [], insecure: Bool = false,
        maxBodyBytes: Int = ServerConfiguration.defaultMaxBodyBytes,
        maxHeaderBytes: Int = ServerConfiguration.defaultMaxHeaderBytes, maxConnectionsPerSender: Int = 64,
        idleTimeout: Duration = .seconds(60), eventLoopThreads: Int? = nil
    ) {
        self.host = host
        self.port = port
        self.tlsCertificatePath = tlsCertificatePath
        self.tlsKeyPath = tlsKeyPath
        self.clientCAPath = clientCAPath
        self.allow = allow
        self.tokens = tokens
        self.insecure = insecure
        self.maxBodyBytes = maxBodyBytes
        self.maxHeaderBytes = maxHeaderBytes
        self.maxConnectionsPerSender = maxConnectionsPerSender
        self.idleTimeout = idleTimeout
        self.eventLoopThreads = eventLoopThreads
    }

    /// Checks the configuration and that the TLS files can be read; the error names the flag or file and
    /// what to do.
    public func validate() throws {
        _ = try makeTLSConfiguration()
        _ = try makeAllowList()
        _ = try makeRevocationWatcher(log: { _ in })
    }

    /// Reads a token file: one `name:token` per line; blank lines and lines starting with `#` are skipped.
    /// Tokens are hashed as they are read; errors name the line, never its content.
    public static func loadTokens(file: String) throws -> [TokenEntry] {
        let text: String
        do {
            text = try String(contentsOfFile: file, encoding: .utf8)
        } catch {
            throw ServerConfigurationError(
                "--token-file \(file): cannot read the file (\(Self.reason(error))); give a readable UTF-8 file of name:token lines")
        }
        var entries: [TokenEntry] = []
        var names = Set<String>()
        var hashes = Set<[UInt8]>()
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let where_ = "--token-file \(file) line \(index + 1)"
            guard let colon = line.firstIndex(of: ":") else {
                throw ServerConfigurationError("\(where_): expected name:token")
            }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces)
            let token = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard !name.isEmpty else { throw ServerConfigurationError("\(where_): the name before ':' is empty") }
            guard !token.isEmpty else { throw ServerConfigurationError("\(where_): the token after ':' is empty") }
            guard !token.contains(where: { $0.isWhitespace }) else {
                throw ServerConfigurationError("\(where_): the token contains whitespace")
            }
            guard token.utf8.count >= 16 else {
                throw ServerConfigurationError("\(where_): the token is shorter than 16 characters; use a long random token")
            }
            guard names.insert(name).inserted else {
                throw ServerConfigurationError("\(where_): the name \(name) is used twice")
            }
            let entry = TokenEntry(name: name, token: token)
            guard hashes.insert(entry.sha256).inserted else {
                throw ServerConfigurationError("\(where_): the same token is given twice; give each sender its own token")
            }
            entries.append(entry)
        }
        return entries
    }

    // MARK: - Internal

    /// The TLS configuration, or nil in insecure mode.
    func makeTLSConfiguration() throws -> TLSConfiguration? {
        guard port >= 0, port <= 65535 else {
            throw ServerConfigurationError("--listen: port \(port) is not between 0 and 65535 (0 picks a free one)")
        }
        guard maxBodyBytes > 0 else { throw ServerConfigurationError("--max-body must be positive") }
        guard maxHeaderBytes >= 1024 else { throw ServerConfigurationError("--max-header-bytes must be at least 1024") }
        guard maxConnectionsPerSender > 0 else {
            throw ServerConfigurationError("--max-connections-per-sender must be positive")
        }
        guard idleTimeout > .zero else { throw ServerConfigurationError("--idle-timeout must be positive") }
        guard idleTimeout <= .seconds(86_400) else { throw ServerConfigurationError("--idle-timeout must be at most 86400 seconds") }
        if insecure {
            if tlsCertificatePath != nil || tlsKeyPath != nil || clientCAPath != nil {
                throw ServerConfigurationError(
                    "--insecure serves plain HTTP: drop it to use --tls-cert/--tls-key/--client-ca, or drop those")
            }
            return nil
        }
        guard let certPath = tlsCertificatePath, let keyPath = tlsKeyPath else {
            let missing = tlsCertificatePath == nil ? "--tls-cert" : "--tls-key"
            throw ServerConfigurationError(
                "\(missing) is missing: give the server certificate (--tls-cert) and key (--tls-key) as PEM files, or --insecure for plain HTTP without authentication")
        }
        let chain = try Self.loadCertificates(certPath, flag: "--tls-cert")
        try Self.checkReadable(keyPath, flag: "--tls-key")
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw ServerConfigurationError(
                "--tls-key \(keyPath): not a PEM private key (\(Self.reason(error))); give an unencrypted PEM key (BEGIN PRIVATE KEY / EC PRIVATE KEY / RSA PRIVATE KEY)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        tls.applicationProtocols = ["h2", "http/1.1"]
        if let caPath = clientCAPath {
            let cas = try Self.loadCertificates(caPath, flag: "--client-ca")
            tls.trustRoots = .certificates(cas)
            tls.certificateVerification = .optionalVerification
            tls.sendCANameList = true
            if allow.isEmpty && tokens.isEmpty {
                throw ServerConfigurationError(
                    "--client-ca is set but no --allow: say which SPIFFE IDs or trust domains may send (--allow spiffe://example.org), or give --token-file")
            }
        } else {
            tls.certificateVerification = .none
            if !allow.isEmpty {
                throw ServerConfigurationError(
                    "--allow needs --client-ca: give the CA bundle that client certificates chain to")
            }
            if tokens.isEmpty {
                throw ServerConfigurationError(
                    "no way for senders to authenticate: give --client-ca with --allow (mTLS), or --token-file (bearer tokens), or --insecure")
            }
        }
        // Check that the key matches the certificate now rather than at the first handshake.
        do {
            _ = try NIOSSLContext(configuration: tls)
        } catch {
            throw ServerConfigurationError(
                "--tls-cert/--tls-key: cannot set up TLS (\(Self.reason(error))); check that the key belongs to the certificate")
        }
        return tls
    }

    /// The watcher of `crlPaths`, nil without them; every file must read and verify against `--client-ca`.
    func makeRevocationWatcher(log: @escaping @Sendable (String) -> Void) throws -> RevocationWatcher? {
        guard !crlPaths.isEmpty else { return nil }
        guard let caPath = clientCAPath else {
            throw ServerConfigurationError("--crl needs --client-ca: a CRL is checked against the CA that signed it")
        }
        let signers = try Self.loadCertificates(caPath, flag: "--client-ca").map { try Certificate(derEncoded: try $0.toDERBytes()) }
        return try RevocationWatcher(paths: crlPaths, signers: signers, interval: crlCheckInterval, log: log)
    }

    func makeAllowList() throws -> AllowList {
        var list = AllowList()
        for entry in allow {
            let text = entry.trimmingCharacters(in: .whitespaces)
            if text.lowercased().hasPrefix("spiffe://") {
                do {
                    let id = try SPIFFEID(parsing: text)
                    if id.isLeaf { list.ids.insert(id.description) } else { list.trustDomains.insert(id.trustDomain) }
                } catch {
                    throw ServerConfigurationError("--allow \(entry): not a SPIFFE ID (\(error.description))")
                }
            } else {
                do {
                    let id = try SPIFFEID(trustDomain: text.lowercased())
                    list.trustDomains.insert(id.trustDomain)
                } catch {
                    throw ServerConfigurationError(
                        "--allow \(entry): not a trust domain or SPIFFE ID (\(error.description)); write spiffe://domain/path or domain")
                }
            }
        }
        return list
    }

    private static func checkReadable(_ path: String, flag: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ServerConfigurationError("\(flag) \(path): no such file")
        }
        guard !isDirectory.boolValue else { throw ServerConfigurationError("\(flag) \(path): is a directory, give a PEM file") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw ServerConfigurationError("\(flag) \(path): not readable by this user; fix its permissions")
        }
    }

    private static func loadCertificates(_ path: String, flag: String) throws -> [NIOSSLCertificate] {
        try checkReadable(path, flag: flag)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMFile(path)
        } catch {
            throw ServerConfigurationError(
                "\(flag) \(path): not a PEM certificate file (\(reason(error))); give certificates between BEGIN/END CERTIFICATE lines")
        }
        guard !certificates.isEmpty else {
            throw ServerConfigurationError("\(flag) \(path): holds no certificate; give PEM certificates")
        }
        return certificates
    }

    private static func reason(_ error: any Error) -> String {
        if let e = error as? NIOSSLError { return "\(e)" }
        if let e = error as? BoringSSLError { return "\(e)" }
        return (error as NSError).localizedDescription
    }
}

/// The normalised `allow` list.
struct AllowList: Sendable {
    var ids: Set<String> = []
    var trustDomains: Set<String> = []

    func allows(_ id: SPIFFEID) -> Bool {
        ids.contains(id.description) || trustDomains.contains(id.trustDomain)
    }
}
