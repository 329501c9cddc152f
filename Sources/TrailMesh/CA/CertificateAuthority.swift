import Crypto
import Foundation
import SwiftASN1
import TrailCore
import TrailFormats
import X509

/// An X509-SVID as issued: the leaf, the chain up to (not including) the trust bundle's root, and its facts.
public struct IssuedSVID: Sendable {
    public var spiffeID: String
    /// Normalised serial (lower-case hex, no leading zeros).
    public var serial: String
    public var fingerprintSHA256: String
    public var notBefore: Date
    public var notAfter: Date
    /// Leaf first, then intermediates (PEM).
    public var chainPEM: String
    /// The trust bundle (PEM roots).
    public var bundlePEM: String
}

/// A SPIFFE trust domain's certificate authority, kept in one directory:
///
/// | file | what |
/// |---|---|
/// | `ca.json` | trust domain and default SVID TTL |
/// | `ca.pem`, `ca.key` (0600) | the signing certificate (root, or intermediate under a given root) and key |
/// | `bundle.pem`, `bundle.spiffe.json` | the trust bundle (PEM roots; SPIFFE bundle JWKS) |
/// | `crl.pem`, `crl.der` | the current CRL |
/// | `issued.ndjson`, `revoked.json` | every SVID issued; every revocation |
/// | `tokens.json` | join tokens (SHA-256 only), single use |
/// | `events.ndjson` | identity events in Trail's NDJSON, the outbox `trail ca serve` ships |
///
/// Every change happens under an advisory lock on `lock`, so `trail ca revoke` and a running `trail ca serve`
/// can share the directory.
public final class CertificateAuthority: Sendable {
    public struct Settings: Codable, Sendable {
        public var trustDomain: String
        public var svidTTLSeconds: Int
        public var crlTTLSeconds: Int

        enum CodingKeys: String, CodingKey {
            case trustDomain = "trust_domain"
            case svidTTLSeconds = "svid_ttl_seconds"
            case crlTTLSeconds = "crl_ttl_seconds"
        }
    }

    public struct IssuedRecord: Codable, Sendable, Hashable {
        public var serial: String
        public var spiffeID: String
        public var notBefore: Date
        public var notAfter: Date
        public var sha256: String

        enum CodingKeys: String, CodingKey {
            case serial, sha256
            case spiffeID = "spiffe_id"
            case notBefore = "not_before"
            case notAfter = "not_after"
        }
    }

    public struct RevokedRecord: Codable, Sendable, Hashable {
        public var serial: String
        public var spiffeID: String
        public var time: Date
        public var reason: String

        enum CodingKeys: String, CodingKey {
            case serial, time, reason
            case spiffeID = "spiffe_id"
        }
    }

    struct TokenRecord: Codable, Sendable {
        var sha256: String
        var spiffeID: String
        var expires: Date
        var used: Bool

        enum CodingKeys: String, CodingKey {
            case sha256, expires, used
            case spiffeID = "spiffe_id"
        }
    }

    public let directory: String
    public let settings: Settings
    public var trustDomain: String { settings.trustDomain }
    let signingCertificate: Certificate
    let signingKey: P256.Signing.PrivateKey
    /// Certificates between a leaf and the bundle's roots (the signing certificate when it is an intermediate).
    let intermediates: [Certificate]
    public let bundlePEM: String

    static let reasonCodes: [String: Int] = [
        "unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3, "superseded": 4,
        "cessationOfOperation": 5, "certificateHold": 6, "privilegeWithdrawn": 9,
    ]

    func path(_ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    // MARK: Creating and opening

    /// Creates a new CA in `directory` (which must not hold one): a self-signed root, or an intermediate
    /// signed by the given root certificate and key.
    public static func initialize(
        directory: String, trustDomain: String, svidTTLSeconds: Int = 3600, crlTTLSeconds: Int = 86_400,
        rootCertificatePath: String? = nil, rootKeyPath: String? = nil, now: Date = Date()
    ) throws -> CertificateAuthority {
        let domain: SPIFFEID
        do {
            domain = try SPIFFEID(trustDomain: trustDomain.lowercased())
        } catch {
            throw MeshError("--trust-domain '\(trustDomain)': \(error.description); write e.g. shop.example")
        }
        guard svidTTLSeconds >= 10 else { throw MeshError("--svid-ttl must be at least 10 seconds") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let settingsPath = (directory as NSString).appendingPathComponent("ca.json")
        guard !FileManager.default.fileExists(atPath: settingsPath) else {
            throw MeshError("\(directory) already holds a CA (ca.json); choose an empty directory")
        }
        let key = P256.Signing.PrivateKey()
        let publicKey = Certificate.PublicKey(key.publicKey)
        let subject = try DistinguishedName {
            OrganizationName("Trail")
            CommonName("Trail CA \(domain.trustDomain)")
        }
        let skid = Array(Insecure.SHA1.hash(data: publicKey.subjectPublicKeyInfoBytes))
        let certificate: Certificate
        var bundle: [Certificate]
        if let rootCertificatePath, let rootKeyPath {
            let root = try Certificate(pemEncoded: try SecureFile.readText(rootCertificatePath))
            let rootKey: P256.Signing.PrivateKey
            do {
                rootKey = try P256.Signing.PrivateKey(pemRepresentation: try SecureFile.readText(rootKeyPath))
            } catch {
                throw MeshError("--root-key \(rootKeyPath): not an ECDSA P-256 private key in PEM")
            }
            guard root.publicKey == Certificate.PublicKey(rootKey.publicKey) else {
                throw MeshError("--root-key does not belong to --root-cert")
            }
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(bytes: randomSerial()), publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-60), notValidAfter: min(root.notValidAfter, now.addingTimeInterval(5 * 365 * 86_400)),
                issuer: root.subject, subject: subject,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(keyIdentifier: ArraySlice(skid))
                    SubjectAlternativeNames([.uniformResourceIdentifier(domain.description)])
                },
                issuerPrivateKey: Certificate.PrivateKey(rootKey))
            bundle = [root]
        } else if rootCertificatePath != nil || rootKeyPath != nil {
            throw MeshError("an intermediate CA needs both --root-cert and --root-key")
        } else {
            certificate = try Certificate(
                version: .v3, serialNumber: Certificate.SerialNumber(bytes: randomSerial()), publicKey: publicKey,
                notValidBefore: now.addingTimeInterval(-60), notValidAfter: now.addingTimeInterval(10 * 365 * 86_400),
                issuer: subject, subject: subject,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                    SubjectKeyIdentifier(keyIdentifier: ArraySlice(skid))
                    SubjectAlternativeNames([.uniformResourceIdentifier(domain.description)])
                },
                issuerPrivateKey: Certificate.PrivateKey(key))
            bundle = [certificate]
        }
        try SecureFile.write(key.pemRepresentation + "\n", to: (directory as NSString).appendingPathComponent("ca.key"), mode: 0o600)
        try SecureFile.write(try certificate.serializeAsPEM().pemString + "\n", to: (directory as NSString).appendingPathComponent("ca.pem"))
        let bundlePEM = try bundle.map { try $0.serializeAsPEM().pemString + "\n" }.joined()
        try SecureFile.write(bundlePEM, to: (directory as NSString).appendingPathComponent("bundle.pem"))
        try SecureFile.write(try SPIFFEBundle.json(roots: bundle, sequence: 1), to: (directory as NSString).appendingPathComponent("bundle.spiffe.json"))
        let settings = Settings(trustDomain: domain.trustDomain, svidTTLSeconds: svidTTLSeconds, crlTTLSeconds: crlTTLSeconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try SecureFile.write(Array(try encoder.encode(settings)), to: settingsPath)
        let ca = try open(directory: directory)
        try ca.withLock { try ca.writeCRL(now: now) }
        return ca
    }

    /// Opens the CA in `directory`.
    public static func open(directory: String) throws -> CertificateAuthority {
        let settingsPath = (directory as NSString).appendingPathComponent("ca.json")
        guard FileManager.default.fileExists(atPath: settingsPath) else {
            throw MeshError("\(directory) holds no CA (no ca.json); create one with: trail ca init --dir \(directory) --trust-domain DOMAIN")
        }
        let settings: Settings
        do {
            settings = try JSONDecoder().decode(Settings.self, from: Data(try SecureFile.read(settingsPath)))
        } catch let e as MeshError {
            throw e
        } catch {
            throw MeshError("\(settingsPath): not a Trail CA settings file (\(error))")
        }
        return try CertificateAuthority(directory: directory, settings: settings)
    }

    private init(directory: String, settings: Settings) throws {
        self.directory = directory
        self.settings = settings
        let join = { (directory as NSString).appendingPathComponent($0) }
        signingCertificate = try Certificate(pemEncoded: try SecureFile.readText(join("ca.pem")))
        do {
            signingKey = try P256.Signing.PrivateKey(pemRepresentation: try SecureFile.readText(join("ca.key")))
        } catch let e as MeshError {
            throw e
        } catch {
            throw MeshError("\(join("ca.key")): not an ECDSA P-256 private key in PEM")
        }
        bundlePEM = try SecureFile.readText(join("bundle.pem"))
        let roots = try PEMDocument.parseMultiple(pemString: bundlePEM).map { try Certificate(pemDocument: $0) }
        intermediates = roots.contains(signingCertificate) ? [] : [signingCertificate]
    }

    func withLock<T>(_ body: () throws -> T) throws -> T {
        try SecureFile.withLock(path("lock"), body)
    }

    // MARK: Issuing

    /// Issues an X509-SVID for `spiffeID` over `publicKey` (one URI SAN; not a CA; digitalSignature;
    /// serverAuth and clientAuth). `dnsNames` and `ipAddresses` are added for servers that clients outside
    /// the mesh reach by name (the X509-SVID standard allows other SAN types). Records it and writes an
    /// identity event (`issued`, or `renewed` when `renewal`).
    public func issue(
        spiffeID text: String, publicKey: Certificate.PublicKey, ttlSeconds: Int? = nil, dnsNames: [String] = [],
        ipAddresses: [String] = [], renewal: Bool = false, now: Date = Date()
    ) throws -> IssuedSVID {
        let id = try checkedID(text)
        let ttl = ttlSeconds ?? settings.svidTTLSeconds
        guard ttl >= 10 else { throw MeshError("--ttl must be at least 10 seconds") }
        var names: [GeneralName] = [.uniformResourceIdentifier(id.description)]
        for dns in dnsNames { names.append(.dnsName(dns)) }
        for ip in ipAddresses {
            guard let bytes = Self.ipBytes(ip) else { throw MeshError("--ip '\(ip)' is not an IPv4 or IPv6 address") }
            names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
        }
        let notBefore = now.addingTimeInterval(-10)
        let notAfter = min(now.addingTimeInterval(TimeInterval(ttl)), signingCertificate.notValidAfter)
        let signingSKID = try signingCertificate.extensions.subjectKeyIdentifier?.keyIdentifier
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(bytes: Self.randomSerial()), publicKey: publicKey,
            notValidBefore: notBefore, notValidAfter: notAfter, issuer: signingCertificate.subject,
            subject: try DistinguishedName {
                OrganizationName("Trail")
                CommonName(String(id.path.split(separator: "/").last ?? "workload"))
            },
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectKeyIdentifier(keyIdentifier: ArraySlice(Insecure.SHA1.hash(data: publicKey.subjectPublicKeyInfoBytes)))
                if let signingSKID { AuthorityKeyIdentifier(keyIdentifier: signingSKID) }
                SubjectAlternativeNames(names)
            },
            issuerPrivateKey: Certificate.PrivateKey(signingKey))
        var der = DER.Serializer()
        try der.serialize(certificate)
        let summary = try CertificateSummary.summarize(der: der.serializedBytes)
        let chainPEM = try ([certificate] + intermediates).map { try $0.serializeAsPEM().pemString + "\n" }.joined()
        let record = IssuedRecord(
            serial: summary.serial, spiffeID: id.description, notBefore: notBefore, notAfter: notAfter,
            sha256: summary.fingerprintSHA256)
        try withLock {
            try SecureFile.appendLine(try Self.jsonLine(record), to: path("issued.ndjson"))
            try appendEvent(renewal ? "renewed" : "issued", time: now, record: record)
        }
        return IssuedSVID(
            spiffeID: id.description, serial: summary.serial, fingerprintSHA256: summary.fingerprintSHA256,
            notBefore: notBefore, notAfter: notAfter, chainPEM: chainPEM, bundlePEM: bundlePEM)
    }

    /// Issues an SVID with a new P-256 key; returns the key's PEM (PKCS#8) too.
    public func issueWithNewKey(
        spiffeID: String, ttlSeconds: Int? = nil, dnsNames: [String] = [], ipAddresses: [String] = [], now: Date = Date()
    ) throws -> (IssuedSVID, String) {
        let key = P256.Signing.PrivateKey()
        let svid = try issue(
            spiffeID: spiffeID, publicKey: Certificate.PublicKey(key.publicKey), ttlSeconds: ttlSeconds,
            dnsNames: dnsNames, ipAddresses: ipAddresses, now: now)
        return (svid, key.pemRepresentation + "\n")
    }

    /// Issues an SVID for a CSR: the CSR's signature must verify; its subject and requested names are ignored
    /// (the SPIFFE ID comes from the caller's proof, never from the request).
    public func issue(csrPEM: String, spiffeID: String, renewal: Bool, now: Date = Date()) throws -> IssuedSVID {
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateSigningRequest(pemEncoded: csrPEM)
        } catch {
            throw MeshError("the certificate signing request is not a PEM CSR (\(error))")
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else {
            throw MeshError("the certificate signing request's signature does not verify")
        }
        guard P256.Signing.PublicKey(csr.publicKey) != nil else {
            throw MeshError("the certificate signing request's key is not ECDSA P-256")
        }
        return try issue(spiffeID: spiffeID, publicKey: csr.publicKey, renewal: renewal, now: now)
    }

    // MARK: Revoking

    /// Revokes by serial or by SPIFFE ID (every unexpired SVID issued to it); rewrites the CRL and writes
    /// `revoked` events. Returns what was revoked (already revoked serials are not repeated).
    public func revoke(serial: String? = nil, spiffeID: String? = nil, reason: String = "unspecified", now: Date = Date()) throws -> [RevokedRecord] {
        guard Self.reasonCodes[reason] != nil else {
            throw MeshError("--reason '\(reason)' is not an RFC 5280 reason; use one of \(Self.reasonCodes.keys.sorted().joined(separator: ", "))")
        }
        return try withLock {
            let issued = try issuedRecords()
            var revoked = try revokedRecords()
            let already = Set(revoked.map(\.serial))
            var targets: [IssuedRecord]
            if let serial {
                guard let normal = CertificateSerial.normalize(serial) else {
                    throw MeshError("--serial '\(serial)' is not hex")
                }
                targets = issued.filter { $0.serial == normal }
                guard !targets.isEmpty else { throw MeshError("no SVID with serial \(normal) was issued by this CA") }
            } else if let spiffeID {
                let id = try checkedID(spiffeID)
                targets = issued.filter { $0.spiffeID == id.description && $0.notAfter > now }
                guard !targets.isEmpty else { throw MeshError("this CA holds no unexpired SVID for \(id)") }
            } else {
                throw MeshError("say what to revoke: --serial S or --spiffe-id ID")
            }
            targets = targets.filter { !already.contains($0.serial) }
            var added: [RevokedRecord] = []
            for t in targets {
                let r = RevokedRecord(serial: t.serial, spiffeID: t.spiffeID, time: now, reason: reason)
                revoked.append(r)
                added.append(r)
                try appendEvent("revoked", time: now, record: t, reason: reason)
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            try SecureFile.write(Array(try encoder.encode(revoked)), to: path("revoked.json"))
            try writeCRL(now: now)
            return added
        }
    }

    /// Serials revoked so far.
    public func revokedSerials() throws -> Set<String> { Set(try revokedRecords().map(\.serial)) }

    func revokedRecords() throws -> [RevokedRecord] {
        guard FileManager.default.fileExists(atPath: path("revoked.json")) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode([RevokedRecord].self, from: Data(try SecureFile.read(path("revoked.json"))))
    }

    public func issuedRecords() throws -> [IssuedRecord] {
        guard FileManager.default.fileExists(atPath: path("issued.ndjson")) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try SecureFile.readText(path("issued.ndjson")).split(separator: "\n").map {
            try decoder.decode(IssuedRecord.self, from: Data($0.utf8))
        }
    }

    /// Rewrites `crl.der` and `crl.pem` from `revoked.json`. Call under the lock.
    func writeCRL(now: Date) throws {
        let revoked = try revokedRecords()
        let number = (try? Int(SecureFile.readText(path("crl.number")).trimmingCharacters(in: .whitespacesAndNewlines))) ?? 0
        let builder = CRLBuilder(
            issuer: signingCertificate.subject,
            issuerKeyIdentifier: try signingCertificate.extensions.subjectKeyIdentifier.map { Array($0.keyIdentifier) },
            thisUpdate: now.addingTimeInterval(-10), nextUpdate: now.addingTimeInterval(TimeInterval(settings.crlTTLSeconds)),
            number: number + 1,
            entries: revoked.map {
                CRLBuilder.Entry(serial: Hex.decode($0.serial.count % 2 == 1 ? "0" + $0.serial : $0.serial) ?? [], revoked: $0.time, reasonCode: Self.reasonCodes[$0.reason])
            })
        let der = try builder.der(signedWith: signingKey)
        try SecureFile.write(der, to: path("crl.der"))
        try SecureFile.write(PEMDocument(type: "X509 CRL", derBytes: der).pemString + "\n", to: path("crl.pem"))
        try SecureFile.write("\(number + 1)\n", to: path("crl.number"))
    }

    /// The current CRL (DER).
    public func crlDER() throws -> [UInt8] { try SecureFile.read(path("crl.der")) }

    // MARK: Expiry

    /// Writes an `expired` event for every issued SVID whose validity ended and that has none yet.
    @discardableResult
    public func recordExpiries(now: Date = Date()) throws -> Int {
        try withLock {
            let reported = Set(try SecureFile.readTextIfPresent(path("expired.txt")).split(separator: "\n").map(String.init))
            var count = 0
            for record in try issuedRecords() where record.notAfter <= now && !reported.contains(record.serial) {
                try appendEvent("expired", time: record.notAfter, record: record)
                try SecureFile.appendLine(record.serial, to: path("expired.txt"))
                count += 1
            }
            return count
        }
    }

    // MARK: Join tokens

    /// A new single-use join token for `spiffeID`, valid for `ttlSeconds`. Only its SHA-256 is stored.
    public func createJoinToken(spiffeID: String, ttlSeconds: Int = 3600, now: Date = Date()) throws -> String {
        let id = try checkedID(spiffeID)
        var random = SystemRandomNumberGenerator()
        let token = Hex.encode((0..<24).map { _ in UInt8.random(in: 0...255, using: &random) })
        try withLock {
            var tokens = try tokenRecords()
            tokens.removeAll { $0.expires < now }
            tokens.append(TokenRecord(sha256: Self.sha256Hex(token), spiffeID: id.description, expires: now.addingTimeInterval(TimeInterval(ttlSeconds)), used: false))
            try writeTokens(tokens)
        }
        return token
    }

    /// Redeems a join token: the SPIFFE ID it was made for. Each token works once.
    public func redeemJoinToken(_ token: String, now: Date = Date()) throws -> String {
        let hash = Self.sha256Hex(token)
        return try withLock {
            var tokens = try tokenRecords()
            guard let i = tokens.firstIndex(where: { Self.constantTimeEqual($0.sha256, hash) }) else {
                throw MeshError("the join token is not known to this CA")
            }
            guard !tokens[i].used else { throw MeshError("the join token was already used; make a new one with trail ca token") }
            guard tokens[i].expires > now else { throw MeshError("the join token expired; make a new one with trail ca token") }
            tokens[i].used = true
            try writeTokens(tokens)
            return tokens[i].spiffeID
        }
    }

    private func tokenRecords() throws -> [TokenRecord] {
        guard FileManager.default.fileExists(atPath: path("tokens.json")) else { return [] }
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode([TokenRecord].self, from: Data(try SecureFile.read(path("tokens.json"))))
    }

    private func writeTokens(_ tokens: [TokenRecord]) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try SecureFile.write(Array(try encoder.encode(tokens)), to: path("tokens.json"), mode: 0o600)
    }

    // MARK: Events

    /// Appends one identity event in Trail's NDJSON (see README, "Identity events"). Call under the lock.
    private func appendEvent(_ event: String, time: Date, record: IssuedRecord, reason: String? = nil) throws {
        var members: [(String, JSONValue)] = [
            ("event", .string(event)),
            ("time", .string(Self.rfc3339(time))),
            ("spiffe_id", .string(record.spiffeID)),
            ("serial", .string(record.serial)),
            ("sha256", .string(record.sha256)),
            ("not_before", .string(Self.rfc3339(record.notBefore))),
            ("not_after", .string(Self.rfc3339(record.notAfter))),
            ("issuer", .string(signingCertificate.subject.description)),
        ]
        if let reason { members.append(("reason", .string(reason))) }
        try SecureFile.appendLine(JSONValue.object(members).serialized(), to: path("events.ndjson"))
    }

    // MARK: Helpers

    private func checkedID(_ text: String) throws -> SPIFFEID {
        let id: SPIFFEID
        do {
            id = try SPIFFEID(parsing: text)
        } catch {
            throw MeshError("--spiffe-id '\(text)': \(error.description)")
        }
        guard id.isLeaf else { throw MeshError("--spiffe-id '\(text)' names a trust domain, not a workload: add a path") }
        guard id.trustDomain == settings.trustDomain else {
            throw MeshError("--spiffe-id '\(text)' is not in this CA's trust domain \(settings.trustDomain)")
        }
        return id
    }

    static func randomSerial() -> [UInt8] {
        var random = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &random) }
        bytes[0] = (bytes[0] & 0x7F) | 0x40
        return bytes
    }

    static func sha256Hex(_ text: String) -> String { Hex.encode(Array(SHA256.hash(data: Array(text.utf8)))) }

    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var d: UInt8 = 0
        for i in 0..<x.count { d |= x[i] ^ y[i] }
        return d == 0
    }

    static func rfc3339(_ date: Date) -> String {
        Timestamp(nanoseconds: Int64((date.timeIntervalSince1970 * 1_000_000_000).rounded())).rfc3339(fractionDigits: 0)
    }

    static func jsonLine<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func ipBytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }
}

extension SecureFile {
    static func readTextIfPresent(_ path: String) throws -> String {
        FileManager.default.fileExists(atPath: path) ? try readText(path) : ""
    }
}

/// The SPIFFE trust bundle format (JWKS with `use: x509-svid` keys, SPIFFE Trust Domain and Bundle §4).
enum SPIFFEBundle {
    static func json(roots: [Certificate], sequence: Int, refreshHintSeconds: Int = 300) throws -> String {
        var keys: [JSONValue] = []
        for root in roots {
            var der = DER.Serializer()
            try der.serialize(root)
            guard let key = P256.Signing.PublicKey(root.publicKey) else { continue }
            let raw = Array(key.x963Representation)  // 0x04 || X || Y
            keys.append(.object([
                ("use", .string("x509-svid")),
                ("kty", .string("EC")),
                ("crv", .string("P-256")),
                ("x", .string(base64URL(raw[1..<33]))),
                ("y", .string(base64URL(raw[33..<65]))),
                ("x5c", .array([.string(Data(der.serializedBytes).base64EncodedString())])),
            ]))
        }
        return JSONValue.object([
            ("keys", .array(keys)),
            ("spiffe_sequence", .int(Int64(sequence))),
            ("spiffe_refresh_hint", .int(Int64(refreshHintSeconds))),
        ]).serialized(pretty: true) + "\n"
    }

    static func base64URL(_ bytes: ArraySlice<UInt8>) -> String {
        Data(bytes).base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
}
