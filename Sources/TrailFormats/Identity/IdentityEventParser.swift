import TrailCore

/// Reads Trail's identity-event NDJSON (`InputFormat.identityNDJSON`).
///
/// ## Schema
///
/// One JSON object per line (a top-level JSON array of such objects is read too):
///
/// ```json
/// {"event":"issued","time":"2026-05-04T09:00:00Z","spiffe_id":"spiffe://shop.example/ns/shop/sa/web",
///  "serial":"10:01","sha256":"9f86…","not_before":"2026-05-04T09:00:00Z","not_after":"2026-05-04T21:00:00Z",
///  "issuer":"CN=Trail Fixture Root CA,O=Trail Fixture","reason":"keyCompromise"}
/// ```
///
/// | key          | required | meaning                                                                          |
/// |--------------|----------|----------------------------------------------------------------------------------|
/// | `event`      | yes      | `issued`, `renewed`, `revoked` or `expired` (any case)                           |
/// | `time`       | yes      | when it happened: RFC 3339 text, or epoch seconds as a number (or numeric text)  |
/// | `spiffe_id`  | one of   | the SPIFFE ID the certificate names; validated, stored in canonical form         |
/// | `serial`     | these two| certificate serial in hex, with or without `:`, any case (`10:0A` = `100a`)     |
/// | `sha256`     | no       | SHA-256 fingerprint of the DER certificate, 64 hex digits, `:` allowed           |
/// | `not_before` | no       | validity start, RFC 3339 or epoch seconds                                        |
/// | `not_after`  | no       | validity end, RFC 3339 or epoch seconds                                          |
/// | `issuer`     | no       | issuer distinguished name as text                                                |
/// | `reason`     | no       | revocation reason (RFC 5280 name such as `keyCompromise`) or a short note        |
///
/// Unknown keys are ignored, and `null` counts as absent. A line is rejected, with the reason, when it is
/// not a JSON object, lacks `event` or `time`, has neither `serial` nor `spiffe_id`, or has a value of the
/// wrong shape (unknown event, unreadable time, invalid SPIFFE ID, non-hex serial, malformed fingerprint).
public struct IdentityEventParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        let format = InputFormat.identityNDJSON
        return JSONRecordReader.parse(input, format: format) { value, location, raw in
            switch Self.event(from: value) {
            case .success(let ev):
                return .record(ParsedRecord(format: format, location: location, raw: raw, identityEvents: [ev]))
            case .failure(let e):
                return .rejected(Rejection(format: format, location: location, raw: raw, reason: e.reason))
            }
        }
    }

    static func event(from value: JSONValue) -> Result<IdentityEvent, IdentityParseError> {
        guard value.object != nil else { return .failure(IdentityParseError("not a JSON object")) }
        func present(_ key: String) -> JSONValue? {
            guard let v = value[key], !v.isNull else { return nil }
            return v
        }
        func string(_ key: String) -> Result<String?, IdentityParseError> {
            guard let v = present(key) else { return .success(nil) }
            guard let s = v.string else { return .failure(IdentityParseError("\(key): must be a string")) }
            return .success(s.isEmpty ? nil : s)
        }
        func time(_ key: String) -> Result<Timestamp?, IdentityParseError> {
            guard let v = present(key) else { return .success(nil) }
            guard let t = IdentityTime.from(json: v) else {
                return .failure(IdentityParseError("\(key): not an RFC 3339 time or epoch seconds"))
            }
            return .success(t)
        }
        do throws(IdentityParseError) {
            guard let eventText = try string("event").get() else { return .failure(IdentityParseError("missing event")) }
            guard let kind = IdentityEventKind(rawValue: eventText.lowercased()) else {
                return .failure(IdentityParseError(
                    "event: unknown event \"\(eventText)\" (expected issued, renewed, revoked or expired)"))
            }
            guard let when = try time("time").get() else { return .failure(IdentityParseError("missing time")) }
            var spiffe: String?
            if let s = try string("spiffe_id").get() {
                do {
                    spiffe = try SPIFFEID(parsing: s).description
                } catch {
                    return .failure(IdentityParseError("spiffe_id: \(error.description)"))
                }
            }
            var serial: String?
            if let s = try string("serial").get() {
                guard let n = CertificateSerial.normalize(s) else {
                    return .failure(IdentityParseError("serial: \"\(s)\" is not hex"))
                }
                serial = n
            }
            guard spiffe != nil || serial != nil else {
                return .failure(IdentityParseError("missing serial and spiffe_id (one is required)"))
            }
            var fingerprint: String?
            if let s = try string("sha256").get() {
                guard let f = Fingerprint.normalize(s) else {
                    return .failure(IdentityParseError("sha256: not a SHA-256 digest (64 hex digits)"))
                }
                fingerprint = f
            }
            let notBefore = try time("not_before").get()
            let notAfter = try time("not_after").get()
            let issuer = try string("issuer").get()
            let reason = try string("reason").get()
            return .success(IdentityEvent(
                kind: kind, spiffeID: spiffe, serial: serial, fingerprintSHA256: fingerprint, notBefore: notBefore,
                notAfter: notAfter, issuer: issuer, time: when, reason: reason, format: InputFormat.identityNDJSON.rawValue))
        } catch {
            return .failure(error)
        }
    }
}
