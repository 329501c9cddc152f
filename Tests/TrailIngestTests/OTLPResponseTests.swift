import Foundation
import Testing
import TrailCore
@testable import TrailIngest

/// Decodes response bodies with the reference protobuf implementation (python3 `google.protobuf` with the
/// OpenTelemetry proto package and `google.rpc.status_pb2`). Returns nil when python3 or those modules are
/// missing, so the check is skipped rather than failed on machines without them.
private func pythonDecode(_ cases: [(kind: String, proto: [UInt8], json: String)]) throws -> [String]? {
    let script = #"""
        import sys, json
        try:
            from google.protobuf import json_format
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
            from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
            from google.rpc.status_pb2 import Status
        except ImportError:
            sys.exit(77)
        out = []
        for case in json.load(sys.stdin):
            cls = {"traces": ExportTraceServiceResponse, "logs": ExportLogsServiceResponse, "status": Status}[case["kind"]]
            data = bytes.fromhex(case["proto"])
            msg = cls.FromString(data)
            from_json = json_format.Parse(case["json"], cls())
            same = "same" if from_json == msg else "json-differs"
            canonical = "canonical" if msg.SerializeToString() == data else "not-canonical"
            if case["kind"] == "traces":
                desc = "%s|%d|%s" % (msg.HasField("partial_success"), msg.partial_success.rejected_spans, msg.partial_success.error_message)
            elif case["kind"] == "logs":
                desc = "%s|%d|%s" % (msg.HasField("partial_success"), msg.partial_success.rejected_log_records, msg.partial_success.error_message)
            else:
                desc = "%d|%s|%d" % (msg.code, msg.message, len(msg.details))
            out.append("%s;%s;%s" % (desc, same, canonical))
        json.dump(out, sys.stdout)
        """#
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3", "-c", script]
    let stdin = Pipe()
    let stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = FileHandle.nullDevice
    do {
        try process.run()
    } catch {
        return nil
    }
    let payload = JSONValue.array(cases.map { c in
        .object([("kind", .string(c.kind)), ("proto", .string(Hex.encode(c.proto))), ("json", .string(c.json))])
    })
    stdin.fileHandleForWriting.write(Data(payload.serialized().utf8))
    try stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    // 77: the modules are missing; 127: no python3.
    if process.terminationStatus == 77 || process.terminationStatus == 127 { return nil }
    #expect(process.terminationStatus == 0)
    let value = try JSONParser.parse(Array(output))
    return value.array?.compactMap(\.string)
}

private func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("OTLP responses")
struct OTLPResponseTests {
    @Test func fullSuccessIsTheEmptyMessage() {
        for signal in [OTLPSignal.traces, .logs] {
            #expect(OTLPResponse.success(signal: signal, rejected: 0, message: nil, json: false) == [])
            #expect(OTLPResponse.success(signal: signal, rejected: 0, message: "", json: false) == [])
            #expect(text(OTLPResponse.success(signal: signal, rejected: 0, message: nil, json: true)) == "{}")
        }
    }

    @Test func partialSuccessProtobufBytes() {
        let bytes = OTLPResponse.success(signal: .traces, rejected: 3, message: "bad", json: false)
        #expect(bytes == [0x0A, 0x07, 0x08, 0x03, 0x12, 0x03, 0x62, 0x61, 0x64])
        // The logs message has the same field numbers.
        #expect(OTLPResponse.success(signal: .logs, rejected: 3, message: "bad", json: false) == bytes)
        // A warning: rejected 0 (default, omitted) with a message.
        #expect(
            OTLPResponse.success(signal: .traces, rejected: 0, message: "slow down", json: false)
                == [0x0A, 0x0B, 0x12, 0x09] + Array("slow down".utf8))
        // A large count is a multi-byte varint; no message → no field 2.
        #expect(
            OTLPResponse.success(signal: .logs, rejected: 300, message: nil, json: false)
                == [0x0A, 0x03, 0x08, 0xAC, 0x02])
    }

    @Test func partialSuccessJSON() {
        #expect(
            text(OTLPResponse.success(signal: .traces, rejected: 3, message: "2 spans had no trace id", json: true))
                == #"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"2 spans had no trace id"}}"#)
        #expect(
            text(OTLPResponse.success(signal: .logs, rejected: 9_000_000_000, message: nil, json: true))
                == #"{"partialSuccess":{"rejectedLogRecords":"9000000000"}}"#)
        #expect(
            text(OTLPResponse.success(signal: .logs, rejected: 0, message: "say \"hi\"\n", json: true))
                == #"{"partialSuccess":{"errorMessage":"say \"hi\"\n"}}"#)
    }

    @Test func statusBodies() {
        #expect(
            OTLPResponse.status(httpStatus: 400, message: "bad", json: false)
                == [0x08, 0x03, 0x12, 0x03, 0x62, 0x61, 0x64])
        #expect(OTLPResponse.status(httpStatus: 401, message: "", json: false) == [0x08, 0x10])
        #expect(
            text(OTLPResponse.status(httpStatus: 400, message: "invalid protobuf at byte 7", json: true))
                == #"{"code":3,"message":"invalid protobuf at byte 7"}"#)
        #expect(
            text(OTLPResponse.status(httpStatus: 413, message: "body over 64 MiB", json: true))
                == #"{"code":8,"message":"body over 64 MiB"}"#)
        #expect(text(OTLPResponse.status(httpStatus: 503, message: "", json: true)) == #"{"code":14}"#)
    }

    @Test func httpToGRPCCodes() {
        let expected: [(Int, Int32)] = [
            (400, 3), (401, 16), (403, 7), (404, 5), (405, 12), (408, 4), (409, 10), (411, 3), (412, 9),
            (413, 8), (415, 3), (418, 3), (429, 8), (499, 1), (500, 13), (501, 12), (502, 14), (503, 14),
            (504, 4), (507, 13), (200, 2), (302, 2), (0, 2),
        ]
        for (http, code) in expected {
            #expect(OTLPResponse.grpcCode(httpStatus: http) == code, "HTTP \(http)")
        }
    }

    @Test func referenceDecoderAgrees() throws {
        let message = "2 of 5 rejected: \"traceId\" <empty> é\n"
        var cases: [(kind: String, proto: [UInt8], json: String)] = []
        var expected: [String] = []
        func add(_ signal: OTLPSignal, _ rejected: Int64, _ message: String?, _ description: String) {
            cases.append((
                signal == .traces ? "traces" : "logs",
                OTLPResponse.success(signal: signal, rejected: rejected, message: message, json: false),
                text(OTLPResponse.success(signal: signal, rejected: rejected, message: message, json: true))))
            expected.append(description + ";same;canonical")
        }
        add(.traces, 0, nil, "False|0|")
        add(.traces, 3, message, "True|3|" + message)
        add(.traces, 0, "warning only", "True|0|warning only")
        add(.logs, 0, nil, "False|0|")
        add(.logs, 9_000_000_000, nil, "True|9000000000|")
        add(.logs, -1, "negative", "True|-1|negative")
        for (http, code) in [(400, 3), (401, 16), (403, 7), (413, 8), (429, 8), (503, 14), (500, 13)] {
            cases.append((
                "status", OTLPResponse.status(httpStatus: http, message: message, json: false),
                text(OTLPResponse.status(httpStatus: http, message: message, json: true))))
            expected.append("\(code)|\(message)|0;same;canonical")
        }
        guard let decoded = try pythonDecode(cases) else {
            // python3 or google.protobuf / opentelemetry-proto / google.rpc is not installed: nothing to check.
            return
        }
        #expect(decoded == expected)
    }
}
