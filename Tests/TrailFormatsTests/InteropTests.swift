import Foundation
import Testing
import TrailCompression
import TrailCore

@testable import TrailFormats

/// Inputs made by tools nobody here wrote: openssl (certificates, CRLs) and the OpenTelemetry Python SDK's
/// OTLP exporter encoder. `.ci/run` regenerates them fresh into $TRAIL_INTEROP_DIR before the suite runs;
/// without it the committed outputs of the same generators are used.
@Suite("Interop with real tools")
struct InteropTests {
    static let base: URL = {
        if let dir = ProcessInfo.processInfo.environment["TRAIL_INTEROP_DIR"] { return URL(fileURLWithPath: dir) }
        return IdentityFixtures.root.deletingLastPathComponent()
    }()

    static func bytes(_ path: String) throws -> [UInt8] {
        Array(try Data(contentsOf: base.appendingPathComponent(path)))
    }

    /// `openssl x509 -fingerprint -sha256` output written by make-certs.sh: name, serial, fingerprint.
    static func opensslFingerprints() throws -> [String: (serial: String, sha256: String)] {
        var out: [String: (String, String)] = [:]
        for line in String(decoding: try bytes("identity/fingerprints.txt"), as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ").map(String.init)
            guard parts.count == 3 else { continue }
            out[parts[0]] = (CertificateSerial.normalize(parts[1]) ?? "", Fingerprint.normalize(parts[2]) ?? "")
        }
        return out
    }

    @Test func opensslMadeSVIDsBecomeIssuedEventsWithOpensslsFingerprints() throws {
        let expected = try Self.opensslFingerprints()
        let results = FormatRegistry.parse(try Self.bytes("identity/svids.pem"), format: .pem)
        let events = results.compactMap { r -> IdentityEvent? in
            if case .record(let rec) = r { return rec.identityEvents.first }
            return nil
        }
        #expect(events.count == 9)
        let names = ["gateway", "web", "orders", "orders-renewed", "payments", "ledger", "inventory", "scheduler", "inventory-old"]
        for (event, name) in zip(events, names) {
            let e = try #require(expected[name])
            #expect(event.kind == .issued)
            #expect(event.serial == e.serial, "\(name)")
            #expect(event.fingerprintSHA256 == e.sha256, "\(name)")
            let workload = name.replacingOccurrences(of: "-renewed", with: "").replacingOccurrences(of: "-old", with: "")
            #expect(event.spiffeID == "spiffe://shop.example/ns/shop/sa/\(workload)")
        }
    }

    @Test func opensslMadeNegativesAreRejected() throws {
        for name in ["bad_two_uri_sans", "bad_ca_leaf", "bad_not_spiffe"] {
            let results = FormatRegistry.parse(try Self.bytes("identity/\(name).pem"), format: .pem)
            #expect(results.count == 1)
            guard case .rejected = results.first else {
                Issue.record("\(name) was accepted")
                continue
            }
        }
    }

    @Test(arguments: ["identity/crl.pem", "identity/crl.der"])
    func opensslMadeCRLRevokesOrders(path: String) throws {
        let input = try Self.bytes(path)
        #expect(FormatRegistry.detect(input) == .crl)
        let results = FormatRegistry.parse(input, format: .crl)
        guard case .record(let rec) = try #require(results.first) else {
            Issue.record("CRL rejected: \(results)")
            return
        }
        #expect(rec.identityEvents.count == 1)
        let e = try #require(rec.identityEvents.first)
        #expect(e.kind == .revoked)
        #expect(e.serial == "1002")
        #expect(e.time == Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10, minute: 5))
        #expect(e.reason == "keyCompromise")
    }

    @Test func otelPythonSDKExportIsDetectedAndParsed() throws {
        let input = try Self.bytes("otlp/sdk-export.binpb")
        #expect(FormatRegistry.detect(input) == .otlpProto)
        let results = FormatRegistry.parse(input, format: .otlpProto)
        guard case .record(let rec) = try #require(results.first) else {
            Issue.record("rejected: \(results)")
            return
        }
        #expect(rec.partialRejections.isEmpty)
        #expect(rec.observations.count == 6)
        #expect(Set(rec.observations.map(\.kind)) == [.serverSpan, .clientSpan])
        #expect(rec.observations.allSatisfy { $0.traceID?.utf8.count == 32 })
        // The SDK's JSON rendering of the same spans gives the same observations.
        let json = FormatRegistry.parse(try Self.bytes("otlp/sdk-export.json"), format: .otlpJSON)
        guard case .record(let jrec) = try #require(json.first) else {
            Issue.record("JSON rejected")
            return
        }
        #expect(jrec.observations.map { $0.with(format: "") } == rec.observations.map { $0.with(format: "") })
    }

    @Test func compressedInputsAreReadLikePlainOnes() throws {
        let plain = try Self.bytes("otlp/sdk-export.json")
        #expect(try Decompressor.decompress(Gzip.compress(plain)) == plain)
        #expect(try Decompressor.decompress(Zstd.compress(plain)) == plain)
        // Larger than the decoders' buffers, and concatenated frames / members as zstdcat and zcat read them.
        let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: ($0 &* 2_654_435_761) >> 13) }
        #expect(try Decompressor.decompress(Zstd.compress(big) + Zstd.compress(plain)) == big + plain)
        #expect(try Decompressor.decompress(Gzip.compress(big) + Gzip.compress(plain)) == big + plain)
        #expect(throws: CompressionError.self) { try Zstd.decompress(Zstd.compress(big), limit: 1 << 20) }
        #expect(throws: CompressionError.self) { try Decompressor.decompress(Array(Gzip.compress(plain).prefix(40))) }
        #expect(throws: CompressionError.self) { try Decompressor.decompress(Array(Zstd.compress(plain).dropLast(5))) }
    }
}

extension Observation {
    func with(format: String) -> Observation {
        var o = self
        o.format = format
        return o
    }
}
