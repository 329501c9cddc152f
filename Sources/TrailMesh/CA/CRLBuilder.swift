import Crypto
import Foundation
import SwiftASN1
import X509

/// Writes an X.509 v2 certificate revocation list (RFC 5280 §5) signed with ECDSA P-256 / SHA-256.
struct CRLBuilder {
    struct Entry: Sendable, Hashable {
        /// The certificate serial's bytes (big-endian, as in the certificate).
        var serial: [UInt8]
        var revoked: Date
        /// RFC 5280 CRLReason value (1 = keyCompromise); nil writes no reasonCode extension.
        var reasonCode: Int?
    }

    var issuer: DistinguishedName
    var issuerKeyIdentifier: [UInt8]?
    var thisUpdate: Date
    var nextUpdate: Date
    /// The CRL number (monotonic).
    var number: Int
    var entries: [Entry]

    static let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
    static let reasonCodeOID: ASN1ObjectIdentifier = [2, 5, 29, 21]
    static let crlNumberOID: ASN1ObjectIdentifier = [2, 5, 29, 20]
    static let authorityKeyIdentifierOID: ASN1ObjectIdentifier = [2, 5, 29, 35]

    /// The DER encoding, signed with `key`.
    func der(signedWith key: P256.Signing.PrivateKey) throws -> [UInt8] {
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { c in
            try c.serialize(1)  // v2
            try Self.algorithm(&c)
            try c.serialize(issuer)
            try Self.time(thisUpdate, &c)
            try Self.time(nextUpdate, &c)
            if !entries.isEmpty {
                try c.appendConstructedNode(identifier: .sequence) { list in
                    for e in entries.sorted(by: { $0.serial.lexicographicallyPrecedes($1.serial) }) {
                        try list.appendConstructedNode(identifier: .sequence) { entry in
                            entry.appendPrimitiveNode(identifier: .integer) { $0.append(contentsOf: Self.positiveInteger(e.serial)) }
                            try Self.time(e.revoked, &entry)
                            if let code = e.reasonCode {
                                try entry.appendConstructedNode(identifier: .sequence) { exts in
                                    try exts.appendConstructedNode(identifier: .sequence) { ext in
                                        try ext.serialize(Self.reasonCodeOID)
                                        let value = [0x0A, 0x01, UInt8(truncatingIfNeeded: code)]
                                        try ext.serialize(ASN1OctetString(contentBytes: ArraySlice(value)))
                                    }
                                }
                            }
                        }
                    }
                }
            }
            try c.appendConstructedNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) { wrapper in
                try wrapper.appendConstructedNode(identifier: .sequence) { exts in
                    if let aki = issuerKeyIdentifier {
                        try exts.appendConstructedNode(identifier: .sequence) { ext in
                            try ext.serialize(Self.authorityKeyIdentifierOID)
                            var inner = DER.Serializer()
                            inner.appendConstructedNode(identifier: .sequence) { seq in
                                seq.appendPrimitiveNode(identifier: ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific)) {
                                    $0.append(contentsOf: aki)
                                }
                            }
                            try ext.serialize(ASN1OctetString(contentBytes: ArraySlice(inner.serializedBytes)))
                        }
                    }
                    try exts.appendConstructedNode(identifier: .sequence) { ext in
                        try ext.serialize(Self.crlNumberOID)
                        var inner = DER.Serializer()
                        try inner.serialize(number)
                        try ext.serialize(ASN1OctetString(contentBytes: ArraySlice(inner.serializedBytes)))
                    }
                }
            }
        }
        let tbsBytes = tbs.serializedBytes
        let signature = try key.signature(for: tbsBytes).derRepresentation
        var out = DER.Serializer()
        try out.appendConstructedNode(identifier: .sequence) { c in
            c.serializeRawBytes(tbsBytes)
            try Self.algorithm(&c)
            try c.serialize(ASN1BitString(bytes: ArraySlice(signature)))
        }
        return out.serializedBytes
    }

    /// PEM (`X509 CRL`).
    func pem(signedWith key: P256.Signing.PrivateKey) throws -> String {
        let der = try der(signedWith: key)
        return PEMDocument(type: "X509 CRL", derBytes: der).pemString + "\n"
    }

    private static func algorithm(_ c: inout DER.Serializer) throws {
        try c.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256) }
    }

    /// UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 §5.1.2.4).
    private static func time(_ date: Date, _ c: inout DER.Serializer) throws {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let p = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        if p.year! < 2050 {
            try c.serialize(UTCTime(
                year: p.year!, month: p.month!, day: p.day!, hours: p.hour!, minutes: p.minute!, seconds: p.second!))
        } else {
            try c.serialize(GeneralizedTime(
                year: p.year!, month: p.month!, day: p.day!, hours: p.hour!, minutes: p.minute!, seconds: p.second!,
                fractionalSeconds: 0))
        }
    }

    /// DER INTEGER content for a non-negative big-endian number: no redundant leading zeros, a zero byte
    /// added when the high bit is set.
    static func positiveInteger(_ bytes: [UInt8]) -> [UInt8] {
        var b = bytes.drop { $0 == 0 }
        if b.isEmpty { b = [0] }
        if b.first! & 0x80 != 0 { return [0] + b }
        return Array(b)
    }
}
