import Crypto
import Foundation
import NIOSSL
import SwiftASN1
import TrailCore
import TrailFormats
import X509

/// What a peer certificate says, kept whether the certificate was accepted or refused (a refused certificate is
/// evidence too).
public struct PeerCertificateFacts: Sendable, Hashable {
    public var spiffeID: String?
    public var uriSANs: [String]
    public var serial: String
    public var fingerprintSHA256: String
    public var subject: String
    public var notBefore: Timestamp
    public var notAfter: Timestamp

    init(_ summary: CertificateSummary) {
        spiffeID = summary.spiffeID
        uriSANs = summary.uriSANs
        serial = summary.serial
        fingerprintSHA256 = summary.fingerprintSHA256
        subject = summary.subject
        notBefore = summary.notBefore
        notAfter = summary.notAfter
    }
}

/// The outcome of checking a peer's certificate chain.
public enum PeerVerdict: Sendable {
    case accepted(PeerCertificateFacts)
    /// The certificate's facts when it could be read, and why it was refused.
    case refused(PeerCertificateFacts?, reason: String)
}

/// The trust a workload holds at one moment: its trust domain's bundle and the serials its CRL revokes.
public struct TrustSnapshot: Sendable {
    public var trustDomain: String
    public var roots: [Certificate]
    public var revokedSerials: Set<String>

    public init(trustDomain: String, roots: [Certificate], revokedSerials: Set<String> = []) {
        self.trustDomain = trustDomain
        self.roots = roots
        self.revokedSerials = revokedSerials
    }
}

/// Checks a peer's X509-SVID as the SPIFFE X509-SVID standard says: the chain verifies to the trust bundle at
/// the current time, the leaf is not a CA, it has exactly one URI SAN holding a SPIFFE ID of the expected
/// trust domain, and its serial is not revoked.
public enum SVIDVerifier {
    public static func verify(chain: [NIOSSLCertificate], trust: TrustSnapshot, now: Date = Date()) async -> PeerVerdict {
        guard !chain.isEmpty else { return .refused(nil, reason: "no certificate presented") }
        let ders: [[UInt8]]
        do {
            ders = try chain.map { try $0.toDERBytes() }
        } catch {
            return .refused(nil, reason: "the certificate cannot be read")
        }
        return await verify(derChain: ders, trust: trust, now: now)
    }

    public static func verify(derChain: [[UInt8]], trust: TrustSnapshot, now: Date = Date()) async -> PeerVerdict {
        guard let leafDER = derChain.first else { return .refused(nil, reason: "no certificate presented") }
        let summary: CertificateSummary
        let leaf: Certificate
        do {
            summary = try CertificateSummary.summarize(der: leafDER)
            leaf = try Certificate(derEncoded: leafDER)
        } catch {
            return .refused(nil, reason: "the certificate cannot be parsed: \(error)")
        }
        let facts = PeerCertificateFacts(summary)
        if summary.uriSANs.isEmpty { return .refused(facts, reason: "the certificate has no URI SAN; an X509-SVID has exactly one") }
        if summary.uriSANs.count > 1 {
            return .refused(facts, reason: "the certificate has \(summary.uriSANs.count) URI SANs; an X509-SVID has exactly one")
        }
        guard let id = SPIFFEID.parse(summary.uriSANs[0]), id.isLeaf else {
            return .refused(facts, reason: "the certificate's URI SAN is not a workload SPIFFE ID")
        }
        if summary.isCA { return .refused(facts, reason: "the certificate is a CA certificate, not an X509-SVID") }
        guard id.trustDomain == trust.trustDomain else {
            return .refused(facts, reason: "\(id) is not in trust domain \(trust.trustDomain)")
        }
        let nowStamp = Timestamp(nanoseconds: Int64(now.timeIntervalSince1970 * 1_000_000_000))
        if nowStamp > summary.notAfter {
            return .refused(facts, reason: "the certificate expired at \(summary.notAfter.rfc3339(fractionDigits: 0))")
        }
        if nowStamp < summary.notBefore {
            return .refused(facts, reason: "the certificate is not valid before \(summary.notBefore.rfc3339(fractionDigits: 0))")
        }
        var intermediates: [Certificate] = []
        for der in derChain.dropFirst() {
            if let c = try? Certificate(derEncoded: der) { intermediates.append(c) }
        }
        var verifier = Verifier(rootCertificates: CertificateStore(trust.roots)) { RFC5280Policy() }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        guard case .validCertificate = result else {
            return .refused(facts, reason: "the certificate does not chain to the trust bundle of \(trust.trustDomain)")
        }
        if trust.revokedSerials.contains(summary.serial) {
            return .refused(facts, reason: "certificate \(summary.serial) is revoked")
        }
        return .accepted(facts)
    }
}

/// Chains a workload already verified against its current bundle: a peer reconnecting with the same SVID skips
/// parsing and path building. Validity time, trust domain and revocation are still checked at every use, and
/// the cache is emptied when the bundle changes.
final class VerifiedChainCache: Sendable {
    private let entries = Locked<[[UInt8]: PeerCertificateFacts]>([:])
    let capacity: Int

    init(capacity: Int = 4096) { self.capacity = capacity }

    func clear() { entries.withLock { $0.removeAll() } }

    /// Verifies `certificates` with `trust`, from the cache when it can; calls `completion` once, synchronously on
    /// a cache hit.
    func verify(_ certificates: [NIOSSLCertificate], trust: TrustSnapshot, completion: @escaping @Sendable (PeerVerdict) -> Void) {
        guard let ders = try? certificates.map({ try $0.toDERBytes() }), !ders.isEmpty else {
            completion(.refused(nil, reason: "no certificate presented"))
            return
        }
        var hasher = SHA256()
        for der in ders { hasher.update(data: der) }
        let key = Array(hasher.finalize())
        if let facts = entries.withLock({ $0[key] }) {
            let now = Timestamp(nanoseconds: Int64(Date().timeIntervalSince1970 * 1_000_000_000))
            if now >= facts.notBefore, now <= facts.notAfter, !trust.revokedSerials.contains(facts.serial),
                facts.spiffeID.flatMap(SPIFFEID.parse)?.trustDomain == trust.trustDomain
            {
                completion(.accepted(facts))
                return
            }
        }
        Task {
            let verdict = await SVIDVerifier.verify(derChain: ders, trust: trust)
            if case .accepted(let facts) = verdict {
                entries.withLock { entries in
                    if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
                    entries[key] = facts
                }
            }
            completion(verdict)
        }
    }
}
