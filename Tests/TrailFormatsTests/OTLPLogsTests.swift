import Foundation
import Testing
import TrailCore
@testable import TrailFormats

// MARK: Helpers

/// Logs-specific builders on the shared test protobuf writer.
extension PB {
    /// A KeyValue with a string value in `field`.
    mutating func stringKV(_ field: UInt64, _ key: String, _ value: String) {
        message(field) { kv in
            kv.stringField(1, key)
            kv.message(2) { $0.stringField(1, value) }
        }
    }
    /// A KeyValue with an int value in `field`.
    mutating func intKV(_ field: UInt64, _ key: String, _ value: Int64) {
        message(field) { kv in
            kv.stringField(1, key)
            kv.message(2) { $0.varintField(3, UInt64(bitPattern: value)) }
        }
    }
}

/// An ExportLogsServiceRequest with one resource (service.name) and one scope holding `records`.
private func logsRequest(service: String, records: [(inout PB) -> Void]) -> [UInt8] {
    var pb = PB()
    pb.message(1) { rl in
        rl.message(1) { $0.stringKV(1, "service.name", service) }
        rl.message(2) { sl in
            sl.message(1) { $0.stringField(1, "test-scope") }
            for build in records { sl.message(2, build) }
        }
    }
    return pb.bytes
}

private let traceBytes: [UInt8] = Array(1...16)
private let spanBytes: [UInt8] = [0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8]
private let t0: UInt64 = 1_777_888_800_000_000_000
private let ms: UInt64 = 1_000_000

private func onlyRecord(_ results: [ParseResult]) throws -> ParsedRecord {
    #expect(results.count == 1)
    return try #require(results.first?.record)
}

// MARK: SDK fixtures

@Suite("OTLP logs")
struct OTLPLogsTests {
    /// The three access logs of `sdk-logs.*` (made by `generate_otlp_logs.py` with the Python SDK's encoder).
    func checkSDKObservations(_ record: ParsedRecord, format: InputFormat) throws {
        #expect(record.format == format)
        #expect(record.partialRejections.isEmpty)
        #expect(record.observations.count == 3)
        guard record.observations.count == 3 else { return }

        // [0] Kong access log as a JSON string body.
        let kong = record.observations[0]
        #expect(kong.kind == .gateway)
        #expect(kong.format == format.rawValue)
        #expect(kong.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(kong.spanID == "00f067aa0ba90301")
        #expect(kong.parentSpanID == "00f067aa0ba902b7")
        #expect(kong.requestID == "2f6946328ffc4946b8c9120704a4a155")
        #expect(kong.start == Timestamp(milliseconds: 1_777_888_800_000))
        #expect(kong.durationNanos == 173_000_000)
        #expect(kong.method == "GET")
        #expect(kong.path == "/example-route")
        #expect(kong.authority == "localhost:8000")
        #expect(kong.status == 200)
        #expect(kong.route == "example_route")
        #expect(kong.responseFlags == "upstream")
        #expect(kong.userAgent == "HTTPie/3.2.3")
        #expect(kong.caller.address == "192.168.65.1")
        #expect(kong.callee == Endpoint(service: "example_service", address: "34.237.204.224", port: 80))
        #expect(kong.transport == .plaintext)
        #expect(kong.principal == Principal(name: "alice", type: .consumer, credential: "7e2c"))

        // [2] inbound access log in semconv attributes.
        let inbound = record.observations[1]
        #expect(inbound.kind == .inbound)
        #expect(inbound.format == format.rawValue)
        #expect(inbound.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(inbound.spanID == "00f067aa0ba90302")
        #expect(inbound.parentSpanID == nil)
        #expect(inbound.start == Timestamp(nanoseconds: Int64(t0 + 2 * ms)))
        #expect(inbound.durationNanos == 7_000_000)
        #expect(inbound.method == "GET")
        #expect(inbound.path == "/cart")
        #expect(inbound.status == 200)
        #expect(inbound.authority == "checkout.shop.svc.cluster.local")
        #expect(inbound.requestID == "7c0d6a2e-1f0b-4c57-9a43-1e2f0a9b8c7d")
        #expect(inbound.userAgent == "curl/8.5.0")
        #expect(inbound.caller == Endpoint(address: "10.1.2.3", port: 51234))
        #expect(inbound.callee == Endpoint(service: "checkout"))
        #expect(inbound.principal == Principal(name: "bob", type: .consumer))
        #expect(inbound.transport == nil)

        // [3] access log as a kvlist body with a consumer: gateway, no trace context.
        let gateway = record.observations[2]
        #expect(gateway.kind == .gateway)
        #expect(gateway.traceID == nil)
        #expect(gateway.spanID == nil)
        #expect(gateway.start == Timestamp(nanoseconds: Int64(t0 + 20 * ms)))
        #expect(gateway.method == "POST")
        #expect(gateway.path == "/orders")
        #expect(gateway.authority == "api.example.com")
        #expect(gateway.status == 503)
        #expect(gateway.caller == Endpoint(address: "203.0.113.9"))
        #expect(gateway.callee == Endpoint())
        #expect(gateway.principal == Principal(name: "carol", type: .consumer))
        #expect(gateway.transport == .tls)
    }

    @Test func sdkProtobufFixture() throws {
        let input = try otlpFixture("sdk-logs.binpb")
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(input))
        #expect(record.raw == input)
        #expect(record.location == RecordLocation(line: 1))
        try checkSDKObservations(record, format: .otlpLogsProto)
    }

    @Test func sdkJSONFixture() throws {
        let input = try otlpFixture("sdk-logs.json")
        let record = try onlyRecord(OTLPLogsJSONParser().parse(input))
        #expect(record.location == RecordLocation(line: 1))
        try checkSDKObservations(record, format: .otlpLogsJSON)
    }

    @Test func protobufAndJSONAgree() throws {
        let proto = try onlyRecord(OTLPLogsProtobufParser().parse(try otlpFixture("sdk-logs.binpb")))
        let json = try onlyRecord(OTLPLogsJSONParser().parse(try otlpFixture("sdk-logs.json")))
        let normalized = json.observations.map { o -> Observation in
            var o = o
            o.format = InputFormat.otlpLogsProto.rawValue
            return o
        }
        #expect(proto.observations == normalized)
    }

    // MARK: Hand-built protobuf

    @Test func oldStyleAttributesOnKongResourceAreAGatewayRecord() throws {
        let body = logsRequest(service: "kong", records: [
            { r in
                r.fixed64Field(1, t0)
                r.varintField(2, 9)
                r.message(5) { $0.stringField(1, "access") }
                r.stringKV(6, "http.method", "DELETE")
                r.stringKV(6, "http.target", "/items/7?force=1")
                r.intKV(6, "http.status_code", 204)
                r.stringKV(6, "http.client_ip", "198.51.100.4")
                r.stringKV(6, "http.host", "shop.example")
                r.stringKV(6, "http.scheme", "http")
                r.stringKV(6, "kong.request.id", "abc123")
                r.stringKV(6, "enduser.id", "dave")
                r.fixed32Field(8, 1)
                r.bytesField(9, traceBytes)
                r.bytesField(10, spanBytes)
                r.fixed64Field(11, t0 + 5 * ms)
                r.stringField(12, "kong.access")
                r.varintField(900, 1)  // unknown field
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        #expect(record.partialRejections.isEmpty)
        let o = try #require(record.observations.first)
        #expect(record.observations.count == 1)
        #expect(o.kind == .gateway)
        #expect(o.format == "otlp-logs-proto")
        #expect(o.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(o.spanID == "a1a2a3a4a5a6a7a8")
        #expect(o.start == Timestamp(nanoseconds: Int64(t0)))
        #expect(o.method == "DELETE")
        #expect(o.path == "/items/7")
        #expect(o.status == 204)
        #expect(o.authority == "shop.example")
        #expect(o.requestID == "abc123")
        #expect(o.caller.address == "198.51.100.4")
        #expect(o.callee.service == nil)
        #expect(o.transport == .plaintext)
        #expect(o.principal == Principal(name: "dave", type: .consumer))
    }

    @Test func kongRecordAsKvlistBody() throws {
        let body = logsRequest(service: "kong", records: [
            { r in
                r.fixed64Field(1, t0)
                r.bytesField(9, traceBytes)
                r.bytesField(10, spanBytes)
                r.message(5) { any in
                    any.message(6) { list in
                        list.intKV(1, "started_at", 1_777_888_800_123)
                        list.stringKV(1, "client_ip", "192.0.2.1")
                        list.message(1) { kv in
                            kv.stringField(1, "request")
                            kv.message(2) { v in
                                v.message(6) { req in
                                    req.stringKV(1, "method", "PUT")
                                    req.stringKV(1, "uri", "/a/b?c=d")
                                    req.stringKV(1, "id", "kongreq1")
                                }
                            }
                        }
                        list.message(1) { kv in
                            kv.stringField(1, "response")
                            kv.message(2) { v in v.message(6) { $0.intKV(1, "status", 401) } }
                        }
                    }
                }
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        #expect(record.partialRejections.isEmpty)
        let o = try #require(record.observations.first)
        #expect(o.kind == .gateway)
        #expect(o.format == "otlp-logs-proto")
        #expect(o.start == Timestamp(milliseconds: 1_777_888_800_123))
        #expect(o.method == "PUT")
        #expect(o.path == "/a/b")
        #expect(o.status == 401)
        #expect(o.requestID == "kongreq1")
        #expect(o.caller.address == "192.0.2.1")
        // Kong's record has no trace id: the log record's ids are used.
        #expect(o.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(o.spanID == "a1a2a3a4a5a6a7a8")
        #expect(o.principal == Principal(name: "anonymous", type: .anonymous))
    }

    @Test func kongBodyWithBadStartIsRejectedAlone() throws {
        let body = logsRequest(service: "kong", records: [
            { r in
                r.fixed64Field(1, t0)
                r.message(5) { $0.stringField(1, #"{"started_at":"soon","request":{"method":"GET"}}"#) }
            },
            { r in
                r.fixed64Field(1, t0)
                r.stringKV(6, "http.request.method", "GET")
                r.stringKV(6, "url.path", "/ok")
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        #expect(record.observations.count == 1)
        #expect(record.observations.first?.path == "/ok")
        #expect(record.observations.first?.kind == .gateway)  // resource service.name is kong
        #expect(record.partialRejections.count == 1)
        let rejection = try #require(record.partialRejections.first)
        #expect(rejection.reason == "body: started_at: 'soon' is not epoch milliseconds")
        #expect(rejection.location == RecordLocation(line: 1, detail: "resourceLogs[0].scopeLogs[0].logRecords[0]"))
        // The raw bytes of the rejected log record are its own message bytes.
        var only = PB()
        only.fixed64Field(1, t0)
        only.message(5) { $0.stringField(1, #"{"started_at":"soon","request":{"method":"GET"}}"#) }
        #expect(rejection.raw == only.bytes)
    }

    @Test func badIdsAreDroppedAndReportedButTheAccessLogIsKept() throws {
        let body = logsRequest(service: "api", records: [
            { r in
                r.fixed64Field(1, t0)
                r.stringKV(6, "http.request.method", "GET")
                r.intKV(6, "http.response.status_code", 500)
                r.bytesField(9, [1, 2, 3, 4, 5])
                r.bytesField(10, [0, 0, 0, 0, 0, 0, 0, 0])
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        let o = try #require(record.observations.first)
        #expect(o.kind == .inbound)
        #expect(o.callee.service == "api")
        #expect(o.traceID == nil)
        #expect(o.spanID == nil)
        #expect(o.status == 500)
        #expect(record.partialRejections.map(\.reason) == [
            "invalid traceId: 5 bytes, expected 16", "invalid spanId: all zero",
        ])
    }

    @Test func observedTimeIsTheFallbackAndNoTimeIsRejected() throws {
        let body = logsRequest(service: "api", records: [
            { r in
                r.fixed64Field(11, t0 + 3 * ms)
                r.stringKV(6, "http.request.method", "GET")
                r.stringKV(6, "url.full", "https://h.example:8443/p/q?x")
            },
            { r in
                r.stringKV(6, "http.request.method", "GET")
                r.stringKV(6, "url.path", "/never")
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        #expect(record.observations.count == 1)
        let o = try #require(record.observations.first)
        #expect(o.start == Timestamp(nanoseconds: Int64(t0 + 3 * ms)))
        #expect(o.path == "/p/q")
        #expect(o.authority == "h.example")
        #expect(record.partialRejections.map(\.reason) == ["access log record: missing timeUnixNano"])
        #expect(record.partialRejections.first?.location.detail == "resourceLogs[0].scopeLogs[0].logRecords[1]")
    }

    @Test func nonAccessLogsAreKeptWithoutObservations() throws {
        let body = logsRequest(service: "api", records: [
            { r in
                r.fixed64Field(1, t0)
                r.message(5) { $0.stringField(1, "{not json at all") }
            },
            { r in
                r.fixed64Field(1, t0)
                r.message(5) { $0.stringField(1, "user logged in") }
                r.stringKV(6, "http.request.method", "GET")  // one HTTP field alone is not an access log
            },
            { r in
                r.message(5) { $0.varintField(3, 42) }
            },
        ])
        let record = try onlyRecord(OTLPLogsProtobufParser().parse(body))
        #expect(record.observations.isEmpty)
        #expect(record.partialRejections.isEmpty)
        #expect(record.raw == body)
    }

    @Test func emptyBodyIsAnEmptyRecord() throws {
        let record = try onlyRecord(OTLPLogsProtobufParser().parse([]))
        #expect(record.observations.isEmpty)
        #expect(record.partialRejections.isEmpty)
    }

    @Test func malformedProtobufIsRejected() throws {
        let input = try otlpFixture("sdk-logs.binpb")
        let truncated = Array(input.dropLast(7))
        let results = OTLPLogsProtobufParser().parse(truncated)
        #expect(results.count == 1)
        let rejection = try #require(results.first?.rejection)
        #expect(rejection.format == .otlpLogsProto)
        #expect(rejection.raw == truncated)
        #expect(rejection.reason.hasPrefix("invalid protobuf at byte "))

        let json = OTLPLogsProtobufParser().parse(Array(#"{"resourceLogs":[]}"#.utf8))
        let jsonRejection = try #require(json.first?.rejection)
        #expect(jsonRejection.reason.hasSuffix("(the body looks like JSON: use the otlp-logs-json format, or Content-Type: application/json)"))

        // A group wire type inside a log record.
        var bad = PB()
        bad.message(1) { rl in rl.message(2) { sl in sl.message(2) { $0.bytes += [0x0B] } } }
        let group = try #require(OTLPLogsProtobufParser().parse(bad.bytes).first?.rejection)
        #expect(group.reason == "invalid protobuf at byte 6 in resourceLogs[0].scopeLogs[0].logRecords[0]: group (wire type 3) in field 1 is not supported")
    }

    // MARK: JSON

    @Test func jsonRecordsDocumentsAndBadRecords() throws {
        let text = """
            {"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},"scopeLogs":[{"logRecords":[{"timeUnixNano":1777888800000000000,"severityNumber":"SEVERITY_NUMBER_INFO","traceId":"0102030405060708090A0B0C0D0E0F10","spanId":"A1A2A3A4A5A6A7A8","attributes":[{"key":"http.request.method","value":{"stringValue":"GET"}},{"key":"http.response.status_code","value":{"intValue":"404"}},{"key":"url.path","value":{"stringValue":"/missing"}},{"key":"client.address","value":{"stringValue":"10.0.0.9"}}]},{"timeUnixNano":"x"},{"body":{"stringValue":"hello"}}]}]}]}
            {"resource_logs":[{"scope_logs":[{"log_records":[{"time_unix_nano":"1777888800000000001","body":{"kvlistValue":{"values":[{"key":"http.method","value":{"stringValue":"HEAD"}},{"key":"http.target","value":{"stringValue":"/h"}}]}}}]}]}]}
            {"resourceLogs": 
            [1,2]
            """
        let results = OTLPLogsJSONParser().parse(Array(text.utf8))
        #expect(results.count == 4)
        guard results.count == 4 else { return }

        let first = try #require(results[0].record)
        #expect(first.format == .otlpLogsJSON)
        #expect(first.location == RecordLocation(line: 1))
        #expect(first.observations.count == 1)
        let o = try #require(first.observations.first)
        #expect(o.kind == .inbound)
        #expect(o.format == "otlp-logs-json")
        #expect(o.traceID == "0102030405060708090a0b0c0d0e0f10")
        #expect(o.spanID == "a1a2a3a4a5a6a7a8")
        #expect(o.status == 404)
        #expect(o.path == "/missing")
        #expect(o.caller.address == "10.0.0.9")
        #expect(o.callee.service == "web")
        #expect(first.partialRejections.count == 1)
        let bad = try #require(first.partialRejections.first)
        #expect(bad.reason == "timeUnixNano: expected an unsigned 64-bit integer")
        #expect(bad.location == RecordLocation(line: 1, detail: "resourceLogs[0].scopeLogs[0].logRecords[1]"))
        #expect(bad.raw == Array(#"{"timeUnixNano":"x"}"#.utf8))

        let second = try #require(results[1].record)
        #expect(second.location == RecordLocation(line: 2))
        #expect(second.observations.map(\.method) == ["HEAD"])
        #expect(second.observations.map(\.path) == ["/h"])
        #expect(second.observations.first?.start == Timestamp(nanoseconds: 1_777_888_800_000_000_001))

        let third = try #require(results[2].rejection)
        #expect(third.format == .otlpLogsJSON)
        #expect(third.location.line == 3)
        let fourth = try #require(results[3].rejection)
        #expect(fourth.reason == "expected a JSON object (an OTLP ExportLogsServiceRequest)")
    }

    @Test func jsonHexIdsThatAreNotHexRejectTheRecord() throws {
        let text = #"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":5},{"timeUnixNano":"1","spanId":"zz","attributes":[{"key":"http.method","value":{"stringValue":"GET"}},{"key":"http.status_code","value":{"intValue":200}}]}]}]}]}"#
        let record = try onlyRecord(OTLPLogsJSONParser().parse(Array(text.utf8)))
        #expect(record.partialRejections.map(\.reason) == [
            "traceId: expected a hex string", "invalid spanId: not a hex string",
        ])
        #expect(record.observations.count == 1)
        #expect(record.observations.first?.spanID == nil)
        #expect(record.observations.first?.status == 200)
    }

    @Test func severityNames() {
        #expect(OTLPLogsJSONDecoder.severityNames["SEVERITY_NUMBER_TRACE"] == 1)
        #expect(OTLPLogsJSONDecoder.severityNames["SEVERITY_NUMBER_INFO"] == 9)
        #expect(OTLPLogsJSONDecoder.severityNames["SEVERITY_NUMBER_WARN4"] == 16)
        #expect(OTLPLogsJSONDecoder.severityNames["SEVERITY_NUMBER_FATAL4"] == 24)
    }
}
