import Foundation
import Testing
import TrailCore
@testable import TrailFormats

// MARK: Helpers

/// Reads `fixtures/otlp/<name>` from the package root.
func otlpFixture(_ name: String) throws -> [UInt8] {
    var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
        let parent = dir.deletingLastPathComponent()
        guard parent.path != dir.path else { throw CocoaError(.fileNoSuchFile) }
        dir = parent
    }
    return Array(try Data(contentsOf: dir.appendingPathComponent("fixtures/otlp/\(name)")))
}

/// A minimal protobuf writer for building test bodies (OTLP traces and logs tests).
struct PB {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    mutating func tag(_ field: UInt64, _ wire: UInt64) { varint(field << 3 | wire) }
    mutating func varintField(_ field: UInt64, _ value: UInt64) {
        tag(field, 0)
        varint(value)
    }
    mutating func fixed64Field(_ field: UInt64, _ value: UInt64) {
        tag(field, 1)
        for k in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(k)))) }
    }
    mutating func fixed32Field(_ field: UInt64, _ value: UInt32) {
        tag(field, 5)
        for k in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt32(k)))) }
    }
    mutating func bytesField(_ field: UInt64, _ data: [UInt8]) {
        tag(field, 2)
        varint(UInt64(data.count))
        bytes.append(contentsOf: data)
    }
    mutating func stringField(_ field: UInt64, _ s: String) { bytesField(field, Array(s.utf8)) }
    mutating func message(_ field: UInt64, _ build: (inout PB) -> Void) {
        var sub = PB()
        build(&sub)
        bytesField(field, sub.bytes)
    }
    /// One unknown field of every valid wire type.
    mutating func unknownFields() {
        varintField(900, 12345)
        fixed64Field(901, 0xDEAD_BEEF)
        bytesField(902, [1, 2, 3, 0xFF])
        fixed32Field(903, 7)
    }
    mutating func stringAttribute(_ key: String, _ value: String) {
        message(9) { kv in
            kv.stringField(1, key)
            kv.message(2) { $0.stringField(1, value) }
        }
    }
}

private let traceBytes: [UInt8] = Array(1...16)
private let spanBytes: [UInt8] = [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8]

/// A span message with the given ids and kind.
private func spanMessage(
    trace: [UInt8] = traceBytes, span: [UInt8] = spanBytes, kind: UInt64 = 2, name: String = "op",
    extra: (inout PB) -> Void = { _ in }
) -> [UInt8] {
    var s = PB()
    s.bytesField(1, trace)
    s.bytesField(2, span)
    s.stringField(5, name)
    s.varintField(6, kind)
    s.fixed64Field(7, 1_777_888_800_000_000_000)
    s.fixed64Field(8, 1_777_888_800_000_500_000)
    extra(&s)
    return s.bytes
}

/// A request with one resource (`service.name` = svc) and one scope holding the given span messages.
private func request(service: String = "svc", spans: [[UInt8]]) -> [UInt8] {
    var r = PB()
    r.message(1) { rs in
        rs.message(1) { res in
            res.message(1) { kv in
                kv.stringField(1, "service.name")
                kv.message(2) { $0.stringField(1, service) }
            }
        }
        rs.message(2) { ss in
            ss.message(1) { $0.stringField(1, "scope") }
            for span in spans { ss.bytesField(2, span) }
        }
    }
    return r.bytes
}

private func onlyRecord(_ results: [ParseResult]) throws -> ParsedRecord {
    try #require(results.count == 1)
    guard case .record(let record) = results[0] else {
        Issue.record("expected a record, got \(results[0])")
        throw CocoaError(.coderInvalidValue)
    }
    return record
}

private func onlyRejection(_ results: [ParseResult]) throws -> Rejection {
    try #require(results.count == 1)
    guard case .rejected(let rejection) = results[0] else {
        Issue.record("expected a rejection, got \(results[0])")
        throw CocoaError(.coderInvalidValue)
    }
    return rejection
}

private let t0: Int64 = 1_777_888_800_000_000_000
private let ms: Int64 = 1_000_000

// MARK: Protobuf, from the OpenTelemetry Python SDK

@Suite("OTLP protobuf from the OpenTelemetry SDK")
struct OTLPSDKExportTests {
    @Test func sdkExportMapsEverySpan() throws {
        let body = try otlpFixture("sdk-export.binpb")
        let record = try onlyRecord(OTLPProtobufParser().parse(body))
        #expect(record.format == .otlpProto)
        #expect(record.location == RecordLocation(line: 1))
        #expect(record.raw == body)
        #expect(record.partialRejections.isEmpty)
        // 8 spans: 2 INTERNAL ones give no observation.
        let o = record.observations
        try #require(o.count == 6)
        #expect(o.allSatisfy { $0.format == "otlp-proto" })

        // frontend: CLIENT "GET" with old semconv.
        let get = o[0]
        #expect(get.kind == .clientSpan)
        #expect(get.traceID == "4bf92f3577b34da6a3ce929d0e0e4701")
        #expect(get.spanID == "00f067aa0ba90202")
        #expect(get.parentSpanID == "00f067aa0ba90201")
        #expect(get.start == Timestamp(nanoseconds: t0 + 2 * ms))
        #expect(get.durationNanos == 10 * ms)
        #expect(get.method == "GET")
        #expect(get.path == "/items/42")
        #expect(get.authority == "inventory")
        #expect(get.status == 503)
        #expect(get.operation == nil)
        #expect(get.caller == Endpoint(spiffeID: "spiffe://example.org/ns/shop/sa/frontend", service: "frontend"))
        #expect(get.callee == Endpoint(service: "inventory", address: "10.0.0.9", port: 8080))
        #expect(get.transport == nil)
        #expect(get.principal == nil)

        // frontend: gRPC CLIENT span.
        let grpc = o[1]
        #expect(grpc.kind == .clientSpan)
        #expect(grpc.spanID == "00f067aa0ba90204")
        #expect(grpc.operation == "inventory.v1.Stock/Reserve")
        #expect(grpc.callee == Endpoint(service: "stock", address: "10.0.0.9", port: 50051))
        #expect(grpc.authority == "10.0.0.9")
        #expect(grpc.method == nil)
        #expect(grpc.status == nil)
        #expect(grpc.durationNanos == 5 * ms)

        // frontend: SERVER span with stable semconv and identity attributes.
        let server = o[2]
        #expect(server.kind == .serverSpan)
        #expect(server.traceID == "4bf92f3577b34da6a3ce929d0e0e4701")
        #expect(server.spanID == "00f067aa0ba90201")
        #expect(server.parentSpanID == nil)
        #expect(server.start == Timestamp(nanoseconds: t0))
        #expect(server.durationNanos == 25 * ms)
        #expect(server.method == "GET")
        #expect(server.path == "/checkout/42")
        #expect(server.authority == "shop.example.com")
        #expect(server.status == 200)
        #expect(server.operation == "GET /checkout/{id}")
        #expect(server.requestID == "req-abc-1")
        #expect(server.userAgent == "curl/8.5.0")
        #expect(server.callee == Endpoint(spiffeID: "spiffe://example.org/ns/shop/sa/frontend", service: "frontend"))
        #expect(server.caller == Endpoint(spiffeID: "spiffe://example.org/ns/edge/sa/gateway", address: "203.0.113.7"))
        #expect(server.transport == .mtls)
        #expect(server.tlsVersion == "TLSv1.3")
        let cert = try #require(server.callerCertificate)
        #expect(cert.fingerprintSHA256 == "0f2a6c1e9b3d5a7c8e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f")
        #expect(cert.serial == "1a35f")
        #expect(cert.notBefore == Timestamp.utc(year: 2026, month: 5, day: 4, hour: 9))
        #expect(cert.notAfter == Timestamp(nanoseconds: t0))
        #expect(cert.subject == "O=SPIRE, C=US")
        #expect(server.principal == Principal(name: "alice", type: .jwt))
        #expect(server.policy == .allow)

        // kong: balancer CLIENT span, then the root SERVER span "kong".
        let balancer = o[3]
        #expect(balancer.kind == .clientSpan)
        #expect(balancer.traceID == "0af7651916cd43dd8448eb211c80319c")
        #expect(balancer.spanID == "b7ad6b7169203303")
        #expect(balancer.parentSpanID == "b7ad6b7169203301")
        #expect(balancer.operation == "kong.balancer")
        #expect(balancer.caller == Endpoint(service: "kong"))
        #expect(balancer.callee == Endpoint(service: "orders.internal", address: "10.2.0.3", port: 8000))
        #expect(balancer.start == Timestamp(nanoseconds: t0 + 103 * ms))
        #expect(balancer.durationNanos == 37 * ms)

        let kong = o[4]
        #expect(kong.kind == .serverSpan)
        #expect(kong.spanID == "b7ad6b7169203301")
        #expect(kong.operation == "kong")
        #expect(kong.method == "POST")
        #expect(kong.path == "/orders")
        #expect(kong.authority == "api.example.com")
        #expect(kong.status == 201)
        #expect(kong.requestID == "1c2b4f0a7e0d2f45c0ffee00deadbeef")
        #expect(kong.callee == Endpoint(service: "kong"))
        #expect(kong.caller == Endpoint(address: "198.51.100.4"))
        #expect(kong.transport == nil)

        // istio-proxy: Envoy tags, service from istio.canonical_service.
        let envoy = o[5]
        #expect(envoy.kind == .serverSpan)
        #expect(envoy.traceID == "80f198ee56343ba864fe8b2a57d3eff7")
        #expect(envoy.callee == Endpoint(service: "reviews"))
        #expect(envoy.caller == Endpoint(address: "10.4.0.7"))
        #expect(envoy.requestID == "8f3c1b2a-5d6e-4f70-8a9b-0c1d2e3f4a5b")
        #expect(envoy.method == "GET")
        #expect(envoy.path == "/reviews/0")
        #expect(envoy.authority == "reviews")
        #expect(envoy.status == 200)
        #expect(envoy.userAgent == "python-requests/2.31.0")
        #expect(envoy.transport == .tls)
        #expect(envoy.responseFlags == nil)
        #expect(envoy.operation == "reviews.default.svc.cluster.local:9080/*")
        #expect(envoy.durationNanos == 30 * ms)
    }

    @Test func sdkExportDecodesAllValueKinds() throws {
        let body = try otlpFixture("sdk-export.binpb")
        let request = try OTLPProtobufDecoder.decodeRequest(body)
        #expect(request.resourceSpans.count == 3)
        let frontend = request.resourceSpans[0]
        #expect(frontend.resourceAttributes.first == OTLPKeyValue(key: "service.name", value: .string("frontend")))
        let scope = try #require(frontend.scopeSpans.first?.scope)
        #expect(scope == OTLPScope(name: "trail.fixtures", version: "1.0.0"))
        let spans = frontend.scopeSpans[0].spans
        #expect(spans.map(\.name) == ["GET", "compute-price", "inventory.v1.Stock/Reserve", "GET /checkout/{id}"])
        #expect(spans[0].status == OTLPStatus(code: 2, message: "upstream unavailable"))
        #expect(spans[0].flags == 0x100)
        let attrs = OTLPAttributes(spans[3].attributes)
        #expect(attrs["custom.ratio"] == .double(0.25))
        #expect(attrs["custom.flags"] == .array([.bool(true), .bool(false)]))
        #expect(attrs["custom.ints"] == .array([.int(1), .int(2), .int(3)]))
        #expect(attrs["server.port"] == .int(443))
        #expect(attrs["http.request.header.x-request-id"] == .array([.string("req-abc-1")]))
    }

    @Test func sdkJSONGivesTheSameObservationsAsProtobuf() throws {
        let proto = try onlyRecord(OTLPProtobufParser().parse(try otlpFixture("sdk-export.binpb")))
        let json = try onlyRecord(OTLPJSONParser().parse(try otlpFixture("sdk-export.json")))
        #expect(json.format == .otlpJSON)
        #expect(json.location == RecordLocation(line: 1))
        #expect(json.partialRejections.isEmpty)
        var expected = proto.observations
        for i in expected.indices { expected[i].format = "otlp-json" }
        #expect(json.observations == expected)
    }

    @Test func badFixturesAreRejectedWithOffsets() throws {
        let truncated = try otlpFixture("bad_truncated.binpb")
        let r1 = try onlyRejection(OTLPProtobufParser().parse(truncated))
        #expect(r1.raw == truncated)
        #expect(r1.location == RecordLocation(line: 1))
        #expect(r1.format == .otlpProto)
        // The third ResourceSpans' length prefix (2 bytes at 2892) claims more than the 687 bytes after it.
        #expect(r1.reason == "invalid protobuf at byte 2892: length 694 exceeds the 687 bytes left in the message")

        let group = try onlyRejection(OTLPProtobufParser().parse(try otlpFixture("bad_group.binpb")))
        #expect(group.reason == "invalid protobuf at byte 2 in resourceSpans[0]: group (wire type 3) in field 2 is not supported")

        let length = try onlyRejection(OTLPProtobufParser().parse(try otlpFixture("bad_length.binpb")))
        #expect(length.reason == "invalid protobuf at byte 3 in resourceSpans[0]: length 100 exceeds the 3 bytes left in the message")
    }
}

// MARK: Protobuf wire decoder

@Suite("OTLP protobuf wire decoder")
struct OTLPWireTests {
    @Test func emptyBodyIsAnEmptyRequest() throws {
        let record = try onlyRecord(OTLPProtobufParser().parse([]))
        #expect(record.observations.isEmpty)
        #expect(record.partialRejections.isEmpty)
    }

    @Test func unknownFieldsOfEveryWireTypeAreSkippedAtEveryLevel() throws {
        var r = PB()
        r.unknownFields()
        r.message(1) { rs in
            rs.unknownFields()
            rs.message(1) { res in
                res.unknownFields()
                res.message(1) { kv in
                    kv.unknownFields()
                    kv.stringField(1, "service.name")
                    kv.message(2) { v in
                        v.unknownFields()
                        v.stringField(1, "billing")
                    }
                }
            }
            rs.message(2) { ss in
                ss.unknownFields()
                ss.bytesField(2, spanMessage(kind: 3) { s in
                    s.unknownFields()
                    s.varintField(10, 3)  // dropped_attributes_count
                    s.message(11) { $0.stringField(2, "event") }  // an event
                    s.message(15) { st in
                        st.unknownFields()
                        st.varintField(3, 2)
                    }
                    s.stringAttribute("peer.service", "ledger")
                })
                ss.unknownFields()
            }
        }
        let record = try onlyRecord(OTLPProtobufParser().parse(r.bytes))
        #expect(record.partialRejections.isEmpty)
        let o = try #require(record.observations.first)
        #expect(record.observations.count == 1)
        #expect(o.kind == .clientSpan)
        #expect(o.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(o.spanID == "a1a2a3a4a5a6a7a8")
        #expect(o.caller.service == "billing")
        #expect(o.callee.service == "ledger")
        #expect(o.durationNanos == 500_000)
    }

    @Test func knownFieldWithWrongWireTypeIsSkipped() throws {
        var s = PB()
        s.varintField(1, 99)  // trace_id as a varint: skipped, so the trace id is empty
        s.bytesField(2, spanBytes)
        s.varintField(6, 2)
        s.fixed64Field(7, 1)
        let record = try onlyRecord(OTLPProtobufParser().parse(request(spans: [s.bytes])))
        #expect(record.observations.isEmpty)
        #expect(record.partialRejections.map(\.reason) == ["invalid traceId: empty"])
    }

    @Test func truncationsAndBadTags() throws {
        func reason(_ bytes: [UInt8]) throws -> String {
            try onlyRejection(OTLPProtobufParser().parse(bytes)).reason
        }
        #expect(try reason([0x0A]) == "invalid protobuf at byte 1: truncated varint")
        #expect(try reason([0x0A, 0x80]) == "invalid protobuf at byte 1: truncated varint")
        #expect(try reason([0x0A, 0x05, 0x0A]) == "invalid protobuf at byte 1: length 5 exceeds the 1 bytes left in the message")
        #expect(try reason([0x07]) == "invalid protobuf at byte 0: invalid field number 0")
        #expect(try reason([0x0E]) == "invalid protobuf at byte 0: invalid wire type 6 for field 1")
        #expect(try reason([0x02, 0x00]) == "invalid protobuf at byte 0: invalid field number 0")
        #expect(try reason([0x0C]) == "invalid protobuf at byte 0: group (wire type 4) in field 1 is not supported")
        #expect(try reason([0x08] + Array(repeating: 0xFF, count: 10) + [0x01]) == "invalid protobuf at byte 1: varint longer than 64 bits")
        #expect(try reason([0x09, 1, 2, 3]) == "invalid protobuf at byte 1: truncated fixed64: 3 of 8 bytes left")
        #expect(try reason([0x0D, 1]) == "invalid protobuf at byte 1: truncated fixed32: 1 of 4 bytes left")
        // A huge length varint never allocates or crashes.
        #expect(try reason([0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]).contains("exceeds the 0 bytes left"))
    }

    @Test func jsonSentAsProtobufIsRejectedWithAHint() throws {
        let r = try onlyRejection(OTLPProtobufParser().parse(Array(#"{"resourceSpans":[]}"#.utf8)))
        #expect(r.reason == "invalid protobuf at byte 0: group (wire type 3) in field 15 is not supported (the body looks like JSON: use the otlp-json format)")
    }

    @Test func truncationInsideASpanNamesItsPath() throws {
        var body = request(spans: [spanMessage(), spanMessage { $0.stringAttribute("k", "v") }])
        // Corrupt the last attribute's value length: the string claims 50 bytes.
        let index = try #require(body.lastIndex(of: 0x01))  // the "v" string's length prefix
        body[index] = 50
        let r = try onlyRejection(OTLPProtobufParser().parse(body))
        #expect(r.reason == "invalid protobuf at byte \(index) in resourceSpans[0].scopeSpans[0].spans[1].attributes[0].value: length 50 exceeds the 1 bytes left in the message")
    }

    @Test func negativeIntsAndEveryAnyValueCase() throws {
        var r = PB()
        r.message(1) { rs in
            rs.message(1) { res in
                func attr(_ key: String, _ build: @escaping (inout PB) -> Void) {
                    res.message(1) { kv in
                        kv.stringField(1, key)
                        kv.message(2, build)
                    }
                }
                attr("s") { $0.stringField(1, "text") }
                attr("b") { $0.varintField(2, 1) }
                attr("i") { $0.varintField(3, UInt64(bitPattern: -5)) }
                attr("d") { $0.fixed64Field(4, (1.5).bitPattern) }
                attr("a") { v in
                    v.message(5) { arr in
                        arr.message(1) { $0.varintField(3, 1) }
                        arr.message(1) { $0.stringField(1, "two") }
                        arr.message(1) { _ in }
                    }
                }
                attr("m") { v in
                    v.message(6) { list in
                        list.message(1) { kv in
                            kv.stringField(1, "inner")
                            kv.message(2) { $0.varintField(2, 0) }
                        }
                    }
                }
                attr("y") { $0.bytesField(7, [0xDE, 0xAD]) }
                attr("e") { _ in }
                res.message(1) { $0.stringField(1, "novalue") }
            }
        }
        let request = try OTLPProtobufDecoder.decodeRequest(r.bytes)
        let attrs = try #require(request.resourceSpans.first?.resourceAttributes)
        #expect(attrs == [
            OTLPKeyValue(key: "s", value: .string("text")),
            OTLPKeyValue(key: "b", value: .bool(true)),
            OTLPKeyValue(key: "i", value: .int(-5)),
            OTLPKeyValue(key: "d", value: .double(1.5)),
            OTLPKeyValue(key: "a", value: .array([.int(1), .string("two"), .empty])),
            OTLPKeyValue(key: "m", value: .kvlist([OTLPKeyValue(key: "inner", value: .bool(false))])),
            OTLPKeyValue(key: "y", value: .bytes([0xDE, 0xAD])),
            OTLPKeyValue(key: "e", value: .empty),
            OTLPKeyValue(key: "novalue", value: .empty),
        ])
    }

    /// An AnyValue holding `levels` nested single-element arrays.
    private func nestedValue(_ levels: Int) -> [UInt8] {
        var inner = PB()
        inner.stringField(1, "leaf")
        for _ in 0..<levels {
            var array = PB()
            array.bytesField(1, inner.bytes)
            var value = PB()
            value.bytesField(5, array.bytes)
            inner = value
        }
        return inner.bytes
    }

    @Test func deepNestingIsRejected() throws {
        func body(_ levels: Int) -> [UInt8] {
            request(spans: [spanMessage { s in
                s.message(9) { kv in
                    kv.stringField(1, "deep")
                    kv.bytesField(2, nestedValue(levels))
                }
            }])
        }
        let ok = try onlyRecord(OTLPProtobufParser().parse(body(20)))
        #expect(ok.observations.count == 1)
        let bad = try onlyRejection(OTLPProtobufParser().parse(body(100)))
        #expect(bad.reason.contains("in resourceSpans[0].scopeSpans[0].spans[0].attributes[0].value.arrayValue[0]"))
        #expect(bad.reason.hasSuffix("values nested deeper than 64 levels"))
    }

    @Test func badSpanIsAPartialRejectionAndSiblingsAreKept() throws {
        let good1 = spanMessage(span: [1, 1, 1, 1, 1, 1, 1, 1], kind: 2)
        let badTrace = spanMessage(trace: Array(1...8), span: [2, 2, 2, 2, 2, 2, 2, 2], kind: 3)
        let zeroSpan = spanMessage(span: [0, 0, 0, 0, 0, 0, 0, 0], kind: 2)
        let badParent = spanMessage(span: [3, 3, 3, 3, 3, 3, 3, 3], kind: 3) { $0.bytesField(4, [0, 0, 0, 0, 0, 0, 0, 0]) }
        let good2 = spanMessage(span: [4, 4, 4, 4, 4, 4, 4, 4], kind: 3) { $0.bytesField(4, [1, 1, 1, 1, 1, 1, 1, 1]) }
        let body = request(spans: [good1, badTrace, zeroSpan, badParent, good2])
        let record = try onlyRecord(OTLPProtobufParser().parse(body))
        #expect(record.raw == body)
        #expect(record.observations.map(\.spanID) == ["0101010101010101", "0404040404040404"])
        #expect(record.observations.map(\.parentSpanID) == [nil, "0101010101010101"])
        let rejections = record.partialRejections
        try #require(rejections.count == 3)
        #expect(rejections.map(\.reason) == [
            "invalid traceId: 8 bytes, expected 16", "invalid spanId: all zero", "invalid parentSpanId: all zero",
        ])
        #expect(rejections.map(\.location) == [
            RecordLocation(line: 1, detail: "resourceSpans[0].scopeSpans[0].spans[1]"),
            RecordLocation(line: 1, detail: "resourceSpans[0].scopeSpans[0].spans[2]"),
            RecordLocation(line: 1, detail: "resourceSpans[0].scopeSpans[0].spans[3]"),
        ])
        #expect(rejections[0].raw == badTrace)
        #expect(rejections[2].raw == badParent)
        #expect(rejections.allSatisfy { $0.format == .otlpProto })
    }

    @Test func onlyServerAndClientSpansBecomeObservations() throws {
        let spans = (0...6).map { kind in spanMessage(span: [UInt8](repeating: UInt8(kind + 1), count: 8), kind: UInt64(kind)) }
        let record = try onlyRecord(OTLPProtobufParser().parse(request(spans: spans)))
        #expect(record.observations.map(\.kind) == [.serverSpan, .clientSpan])
        #expect(record.partialRejections.isEmpty)
    }

    @Test func missingStartTimeIsAPartialRejection() throws {
        var s = PB()
        s.bytesField(1, traceBytes)
        s.bytesField(2, spanBytes)
        s.varintField(6, 2)
        let record = try onlyRecord(OTLPProtobufParser().parse(request(spans: [s.bytes])))
        #expect(record.observations.isEmpty)
        #expect(record.partialRejections.map(\.reason) == ["missing startTimeUnixNano"])
    }

    @Test func tracesDataWithRepeatedResourceMergesAttributes() throws {
        var r = PB()
        r.message(1) { rs in
            rs.message(1) { $0.message(1) { kv in kv.stringField(1, "service.name"); kv.message(2) { $0.stringField(1, "a") } } }
            rs.message(1) { $0.message(1) { kv in kv.stringField(1, "host.name"); kv.message(2) { $0.stringField(1, "h") } } }
        }
        let request = try OTLPProtobufDecoder.decodeRequest(r.bytes)
        #expect(request.resourceSpans[0].resourceAttributes.map(\.key) == ["service.name", "host.name"])
    }
}

// MARK: OTLP/JSON

@Suite("OTLP/JSON")
struct OTLPJSONTests {
    @Test func specExampleShape() throws {
        let input = try otlpFixture("spec-example.json")
        let record = try onlyRecord(OTLPJSONParser().parse(input))
        #expect(record.format == .otlpJSON)
        #expect(record.location == RecordLocation(line: 1))
        #expect(record.raw == Array(input.dropLast()))  // the document without the final newline
        #expect(record.partialRejections.isEmpty)
        try #require(record.observations.count == 2)

        let server = record.observations[0]
        #expect(server.kind == .serverSpan)
        #expect(server.format == "otlp-json")
        #expect(server.traceID == "5b8efff798038103d269b633813fc60c")
        #expect(server.spanID == "eee19b7ec3c1b174")
        #expect(server.parentSpanID == "eee19b7ec3c1b173")
        #expect(server.start == Timestamp(nanoseconds: 1_544_712_660_000_000_000))
        #expect(server.durationNanos == 1_000_000_000)
        #expect(server.method == "POST")
        #expect(server.path == "/api/v1/orders")
        #expect(server.authority == "orders.example.com")
        #expect(server.status == 201)
        #expect(server.operation == "mutation CreateOrder")
        #expect(server.callee == Endpoint(service: "my.service"))
        #expect(server.caller == Endpoint(address: "10.20.30.40"))
        #expect(server.transport == .tls)
        #expect(server.callerCertificate == nil)
        #expect(server.principal == Principal(name: "bob", type: .consumer))
        #expect(server.policy == .dryRunDeny)

        let client = record.observations[1]
        #expect(client.kind == .clientSpan)
        #expect(client.traceID == "5b8efff798038103d269b633813fc60c")
        #expect(client.spanID == "a1b2c3d4e5f60718")
        #expect(client.parentSpanID == "eee19b7ec3c1b174")
        #expect(client.start == Timestamp(nanoseconds: 1_544_712_660_100_000_000))
        #expect(client.durationNanos == 250_000_000)
        #expect(client.path == "/v2/charge")
        #expect(client.authority == "payments.example.com")
        #expect(client.status == 402)
        #expect(client.caller == Endpoint(service: "my.service"))
        #expect(client.callee == Endpoint(service: "payments", address: "10.20.30.50", port: 8443))
    }

    @Test func specExampleValues() throws {
        let value = try JSONParser.parse(try otlpFixture("spec-example.json"))
        var decoder = OTLPJSONDecoder()
        let request = try decoder.decodeRequest(value)
        let span = try #require(request.resourceSpans.first?.scopeSpans.first?.spans.first)
        #expect(span.flags == 769)
        #expect(span.status == OTLPStatus(code: 0, message: ""))
        #expect(request.resourceSpans[0].scopeSpans[0].scope?.attributes.first?.key == "my.scope.attribute")
        #expect(request.resourceSpans[0].scopeSpans[0].schemaURL == "https://opentelemetry.io/schemas/1.24.0")
        let a = OTLPAttributes(span.attributes)
        #expect(a["http.response.status_code"] == .int(201))
        #expect(a["my.double"] == .double(2.5))
        #expect(a["my.array"] == .array([.int(7), .string("x")]))
        #expect(a["my.map"] == .kvlist([OTLPKeyValue(key: "inner", value: .bool(false))]))
        #expect(a["my.bytes"] == .bytes([0xDE, 0xAD, 0xBE, 0xEF]))
        #expect(request.resourceSpans[0].scopeSpans[0].spans[1].status == OTLPStatus(code: 2, message: "Payment Required"))
    }

    @Test func collectorFileExporterNDJSON() throws {
        let input = try otlpFixture("collector-file.ndjson")
        let results = OTLPJSONParser().parse(input)
        try #require(results.count == 2)
        let lines = input.split(separator: 0x0A).map(Array.init)
        for (n, result) in results.enumerated() {
            guard case .record(let record) = result else {
                Issue.record("line \(n + 1) was rejected")
                continue
            }
            #expect(record.location == RecordLocation(line: n + 1))
            #expect(record.raw == lines[n])
            #expect(record.observations.count == 1)
        }
        guard case .record(let first) = results[0], case .record(let second) = results[1] else { return }
        let server = first.observations[0]
        #expect(server.kind == .serverSpan)
        #expect(server.parentSpanID == nil)
        #expect(server.callee.service == "cart")
        #expect(server.caller.address == "10.9.8.7")
        #expect(server.status == 200)
        #expect(server.operation == "POST /cart/items")
        let client = second.observations[0]
        #expect(client.kind == .clientSpan)
        #expect(client.parentSpanID == "6e0c63257de34c92")
        #expect(client.callee == Endpoint(service: "pricing", port: 8080))
        #expect(client.path == "/price")
        #expect(client.authority == "pricing")
        #expect(client.durationNanos == 20 * ms)
    }

    @Test func badSpansArePartialRejections() throws {
        let record = try onlyRecord(OTLPJSONParser().parse(try otlpFixture("bad_span_ids.json")))
        #expect(record.observations.map(\.spanID) == ["2222222222222222", "6666666666666666"])
        // end < start: no duration.
        #expect(record.observations.map(\.durationNanos) == [5 * ms, nil])
        #expect(record.partialRejections.map(\.reason) == [
            "invalid traceId: all zero",
            "invalid spanId: 3 bytes, expected 8",
            "invalid parentSpanId: not a hex string",
            "kind: expected an integer enum value",
            "missing startTimeUnixNano",
        ])
        #expect(record.partialRejections.map(\.location.detail) == [1, 2, 3, 5, 6].map {
            "resourceSpans[0].scopeSpans[0].spans[\($0)]"
        })
        #expect(record.partialRejections.allSatisfy { $0.location.line == 1 && $0.format == .otlpJSON })
        // The raw bytes of a rejected span are its JSON.
        let raw = String(decoding: record.partialRejections[0].raw, as: UTF8.self)
        #expect(raw == #"{"traceId":"00000000000000000000000000000000","spanId":"3333333333333333","name":"zero trace id","kind":2,"startTimeUnixNano":"1777888802000000000"}"#)
    }

    @Test func badDocumentsAreRejectedOneByOne() throws {
        let results = OTLPJSONParser().parse(try otlpFixture("bad_documents.json"))
        try #require(results.count == 6)
        guard case .record(let empty) = results[0] else { Issue.record("line 1"); return }
        #expect(empty.observations.isEmpty && empty.partialRejections.isEmpty)
        var reasons: [Int: String] = [:]
        for result in results {
            if case .rejected(let r) = result { reasons[r.location.line] = r.reason }
        }
        #expect(reasons[2]?.hasPrefix("invalid JSON at byte ") == true)
        #expect(reasons[3] == "expected a JSON object (an OTLP ExportTraceServiceRequest)")
        #expect(reasons[4] == "resourceSpans: expected an array")
        #expect(reasons[5] == "resourceSpans[0].resource.attributes[0].value: expected an AnyValue object")
        guard case .record(let last) = results[5] else { Issue.record("line 6"); return }
        #expect(last.location.line == 6)
        #expect(last.observations.count == 1)
        #expect(last.observations.first?.callee.service == nil)
    }

    @Test func concatenatedDocumentsSnakeCaseEnumNamesAndOddNumbers() throws {
        let text = """
            {
              "resource_spans": [{"scope_spans": [{"spans": [{
                "trace_id": "0102030405060708090A0B0C0D0E0F10", "span_id": "0102030405060708",
                "kind": "SPAN_KIND_CLIENT", "start_time_unix_nano": 1777888800000000000,
                "end_time_unix_nano": "1777888800000001000",
                "attributes": [{"key": "server.port", "value": {"intValue": 443.0}},
                               {"key": "server.address", "value": {"stringValue": "2001:db8::1"}},
                               {"key": "future", "value": {"somethingNew": 1}}]
              }]}]}]
            }
            {"resourceSpans": [{"scopeSpans": [{"spans": [
              {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060709", "kind": 2,
               "startTimeUnixNano": "18446744073709551615"},
              {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "010203040506070a", "kind": 2,
               "startTimeUnixNano": "-1"},
              {"traceId": 12, "spanId": "010203040506070b", "kind": 2, "startTimeUnixNano": "1"},
              {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "010203040506070c", "kind": 2,
               "startTimeUnixNano": "1", "attributes": [{"key": "x", "value": {"bytesValue": "not base64!"}}]},
              {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "010203040506070d", "kind": 2,
               "startTimeUnixNano": "1", "attributes": {"key": "x"}},
              "not a span"
            ]}]}]}
            """
        let results = OTLPJSONParser().parse(Array(text.utf8))
        try #require(results.count == 2)
        guard case .record(let first) = results[0], case .record(let second) = results[1] else {
            Issue.record("expected two records")
            return
        }
        #expect(first.location.line == 1)
        #expect(second.location.line == 11)
        let o = try #require(first.observations.first)
        #expect(o.kind == .clientSpan)
        #expect(o.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(o.durationNanos == 1000)
        #expect(o.callee == Endpoint(address: "2001:db8::1", port: 443))
        #expect(o.authority == "2001:db8::1")
        #expect(second.observations.isEmpty)
        #expect(second.partialRejections.map(\.reason) == [
            "startTimeUnixNano 18446744073709551615 is out of range",
            "startTimeUnixNano: expected an unsigned 64-bit integer",
            "traceId: expected a hex string",
            "attributes[0].value.bytesValue: expected a base64 string",
            "attributes: expected an array",
            "expected a span object",
        ])
    }
}

// MARK: Mapping rules

@Suite("OTLP span mapping")
struct OTLPMappingTests {
    private func map(
        kind: Int32 = 2, service: String? = "svc", _ attributes: [String: OTLPAnyValue]
    ) throws -> Observation {
        let span = OTLPSpan(
            traceID: traceBytes, spanID: spanBytes, name: "span", kind: kind, startTimeUnixNano: 10,
            endTimeUnixNano: 15,
            attributes: attributes.sorted { $0.key < $1.key }.map { OTLPKeyValue(key: $0.key, value: $0.value) })
        let result = OTLPSpanMapper.observation(for: span, serviceName: service, format: .otlpProto)
        guard case .success(let o?) = result else {
            Issue.record("no observation: \(result)")
            throw CocoaError(.coderInvalidValue)
        }
        return o
    }

    @Test func serviceNameFallsBackToIstioCanonicalService() throws {
        let canonical: [String: OTLPAnyValue] = ["istio.canonical_service": .string("ratings")]
        #expect(try map(service: "unknown_service", canonical).callee.service == "ratings")
        #expect(try map(service: "unknown_service:java", canonical).callee.service == "ratings")
        #expect(try map(service: "istio-proxy", canonical).callee.service == "ratings")
        #expect(try map(service: nil, canonical).callee.service == "ratings")
        #expect(try map(service: "ratings.prod", canonical).callee.service == "ratings.prod")
        #expect(try map(service: "unknown_service", [:]).callee.service == nil)
        #expect(try map(kind: 3, service: "istio-proxy", canonical).caller.service == "ratings")
    }

    @Test func transportRules() throws {
        #expect(try map(["trail.caller.serial": .string("0A")]).transport == .mtls)
        #expect(try map(["trail.caller.serial": .string("0A")]).callerCertificate == PresentedCertificate(serial: "a"))
        #expect(try map(["tls.client.issuer": .string("CN=ca")]).transport == .mtls)
        #expect(try map(["tls.client.issuer": .string("CN=ca")]).callerCertificate == nil)
        #expect(try map(["tls.established": .bool(true)]).transport == .tls)
        #expect(try map(["tls.established": .bool(false)]).transport == .plaintext)
        #expect(try map(["tls.established": .string("false")]).transport == .plaintext)
        #expect(try map([:]).transport == nil)
    }

    @Test func callerAddressPrecedenceAndPorts() throws {
        #expect(try map(["net.peer.ip": .string("10.0.0.1"), "net.sock.peer.addr": .string("10.0.0.2")]).caller.address == "10.0.0.2")
        #expect(try map(["peer.address": .string("[2001:db8::7]:443")]).caller.address == "2001:db8::7")
        #expect(try map(["peer.address": .string("10.1.2.3:8080")]).caller.address == "10.1.2.3")
        #expect(try map(["client.address": .string("::1"), "network.peer.address": .string("10.0.0.3")]).caller.address == "::1")
        #expect(try map(["trail.caller.service": .string("edge")]).caller.service == "edge")
        #expect(try map(["user.id": .string("u1"), "trail.principal.type": .string("api-key")]).principal
            == Principal(name: "u1", type: .apiKey))
    }

    @Test func clientCalleeRules() throws {
        let a = try map(kind: 3, ["server.address": .string("10.9.9.9"), "net.peer.name": .string("billing")])
        #expect(a.callee == Endpoint(service: "billing", address: "10.9.9.9"))
        let b = try map(kind: 3, ["peer.service": .string("old"), "service.peer.name": .string("new"),
                                   "net.peer.port": .string("9000")])
        #expect(b.callee == Endpoint(service: "new", port: 9000))
        let c = try map(kind: 3, ["upstream_cluster": .string("outbound|9080||reviews.default.svc.cluster.local"),
                                   "upstream_address": .string("10.4.0.20:9080")])
        #expect(c.callee == Endpoint(service: "reviews.default.svc.cluster.local", address: "10.4.0.20", port: 9080))
        let d = try map(kind: 3, ["server.port": .int(70000)])
        #expect(d.callee.port == nil)
    }

    @Test func requestFieldsPrecedence() throws {
        let o = try map([
            "http.method": .string("PUT"), "http.target": .string("/a/b?c=d"), "http.url": .string("http://x/ignored"),
            "http.status_code": .string("404"), "http.user_agent": .string("ua"),
            "guid:x-request-id": .string("g"), "kong.request.id": .string("k"),
            "response_flags": .string("UF,URX"),
        ])
        #expect(o.method == "PUT")
        #expect(o.path == "/a/b")
        #expect(o.authority == "x")
        #expect(o.status == 404)
        #expect(o.userAgent == "ua")
        #expect(o.requestID == "g")
        #expect(o.responseFlags == "UF,URX")
        #expect(o.operation == "span")
        let p = try map(["http.url": .string("https://h.example:8443"), "rpc.service": .string("S"),
                         "graphql.operation.type": .string("query")])
        #expect(p.path == "/")
        #expect(p.authority == "h.example")
        #expect(p.operation == "span")
        #expect(try map(["http.response.status_code": .int(1234)]).status == nil)
    }

    @Test func addressHelpers() {
        #expect(OTLPAddress.isIPLiteral("192.168.0.1"))
        #expect(!OTLPAddress.isIPLiteral("192.168.0.256"))
        #expect(!OTLPAddress.isIPLiteral("1.2.3"))
        #expect(OTLPAddress.isIPLiteral("[fe80::1%eth0]"))
        #expect(!OTLPAddress.isIPLiteral("inventory"))
        #expect(!OTLPAddress.isIPLiteral("cafe.be"))
        #expect(OTLPAddress.stripPort("host:80") == "host")
        #expect(OTLPAddress.stripPort("fe80::1") == "fe80::1")
        #expect(OTLPAddress.stripPort("host:http") == "host:http")
        #expect(OTLPAddress.port("[::1]:9443") == 9443)
        #expect(OTLPAddress.port("::1") == nil)
        #expect(OTLPAddress.clusterHost("inbound|9080||") == nil)
        #expect(OTLPAddress.clusterHost("my_cluster") == "my_cluster")
        #expect(OTLPBase64.decode("3q2-7w") == [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(OTLPBase64.decode("3q2+7w==") == [0xDE, 0xAD, 0xBE, 0xEF])
        #expect(OTLPBase64.decode("3q=2") == nil)
        #expect(OTLPBase64.decode("") == [])
    }
}
