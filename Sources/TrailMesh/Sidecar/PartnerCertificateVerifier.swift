import Foundation
import SwiftASN1
import TrailCore
@_spi(DisableValidityCheck) import X509

/// The validity window of a partner's client certificate at one moment, once its chain has verified.
package enum ClientCertificateValidity: String, Sendable, Hashable {
    case valid
    case expired
    case notYetValid = "not-yet-valid"

    /// The leaf's window at `now`.
    package init(notBefore: Timestamp, notAfter: Timestamp, at now: Timestamp) {
        if now > notAfter {
            self = .expired
        } else if now < notBefore {
            self = .notYetValid
        } else {
            self = .valid
        }
    }

    /// nginx's `$ssl_client_verify` for such a certificate (Kong's `request.tls.client_verify`), with OpenSSL's
    /// wording of the error.
    package var clientVerify: String {
        switch self {
        case .valid: "SUCCESS"
        case .expired: "FAILED:certificate has expired"
        case .notYetValid: "FAILED:certificate is not yet valid"
        }
    }
}

/// What the edge decided about a partner's client certificate chain.
package enum PartnerCertificateVerdict: Sendable, Equatable {
    /// The chain verifies to the partner bundle; the leaf's own validity window is judged separately, so an
    /// expired partner certificate completes the handshake and is refused per request (with evidence).
    case verified(ClientCertificateValidity)
    /// Anything else (no chain to the bundle, bad signature, a CA out of its validity, wrong usage): the
    /// handshake fails.
    case rejected(String)
}

/// Verifies a partner's client certificate chain against the partner trust bundle the way the TLS layer did
/// (RFC 5280 path validation, the TLS client purpose: an extended key usage, where present, must allow
/// clientAuth, and the leaf's key usage must allow digitalSignature or keyAgreement), except that the LEAF's
/// validity window does not fail the chain: it is reported in the verdict instead. Issuer certificates must be
/// valid at `now`.
package enum PartnerCertificateVerifier {
    package static func verify(derChain: [[UInt8]], roots: [Certificate], now: Date = Date()) async -> PartnerCertificateVerdict {
        guard let leafDER = derChain.first else { return .rejected("no certificate presented") }
        let leaf: Certificate
        do {
            leaf = try Certificate(derEncoded: leafDER)
        } catch {
            return .rejected("the certificate cannot be parsed")
        }
        var intermediates: [Certificate] = []
        for der in derChain.dropFirst() {
            if let c = try? Certificate(derEncoded: der) { intermediates.append(c) }
        }
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy.withValidityCheckDisabled()
            ValidityExceptLeafPolicy(validationTime: now)
            TLSClientPurposePolicy()
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(intermediates))
        guard case .validCertificate = result else {
            return .rejected("the certificate does not verify against the partner trust bundle")
        }
        let stamp = Timestamp(nanoseconds: Int64(now.timeIntervalSince1970 * 1_000_000_000))
        let notBefore = Timestamp(nanoseconds: Int64(leaf.notValidBefore.timeIntervalSince1970 * 1_000_000_000))
        let notAfter = Timestamp(nanoseconds: Int64(leaf.notValidAfter.timeIntervalSince1970 * 1_000_000_000))
        return .verified(ClientCertificateValidity(notBefore: notBefore, notAfter: notAfter, at: stamp))
    }
}

/// Every certificate's window must be well formed; every certificate above the leaf must be valid at the
/// validation time. (The leaf's window is the verdict's business.)
struct ValidityExceptLeafPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []
    let validationTime: Date

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        for (index, certificate) in chain.enumerated() {
            if certificate.notValidBefore > certificate.notValidAfter {
                return .failsToMeetPolicy(reason: "certificate \(index) in the chain has notValidAfter before notValidBefore")
            }
            if index > 0, validationTime < certificate.notValidBefore || validationTime > certificate.notValidAfter {
                return .failsToMeetPolicy(reason: "issuer certificate \(index) in the chain is outside its validity")
            }
        }
        return .meetsPolicy
    }
}

/// The TLS client purpose BoringSSL checks on the server side: an extended key usage anywhere in the chain
/// must allow clientAuth (or any), and the leaf's key usage, when present, must allow digitalSignature or
/// keyAgreement. Also handles the critical extensions BoringSSL understands and RFC5280Policy does not claim.
struct TLSClientPurposePolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [
        .X509ExtensionID.extendedKeyUsage, .X509ExtensionID.subjectAlternativeName,
    ]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) -> PolicyEvaluationResult {
        for (index, certificate) in chain.enumerated() {
            do {
                if let eku = try certificate.extensions.extendedKeyUsage,
                    !eku.contains(.clientAuth), !eku.contains(.any)
                {
                    return .failsToMeetPolicy(reason: "certificate \(index) in the chain does not allow TLS client authentication")
                }
                if index == 0, let ku = try certificate.extensions.keyUsage, !ku.digitalSignature, !ku.keyAgreement {
                    return .failsToMeetPolicy(reason: "the client certificate's key usage allows neither digitalSignature nor keyAgreement")
                }
            } catch {
                return .failsToMeetPolicy(reason: "certificate \(index) in the chain has a malformed usage extension")
            }
        }
        return .meetsPolicy
    }
}
