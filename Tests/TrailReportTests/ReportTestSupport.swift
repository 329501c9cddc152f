import Foundation
import TrailCore
@testable import TrailReport
import TrailStore

/// A report built by hand around one chain whose telemetry is hostile, for renderer tests without a store.
enum HostileReport {
    static let userAgent = "<script>alert(1)</script>\u{1B}[31m=HYPERLINK(\"x\")"
    static let path = "/a\"><img src=x onerror=alert(2)>|`|```"

    static func make() -> IncidentReport {
        let t0 = Timestamp.parseRFC3339("2026-05-04T10:00:00Z")!
        func hop(_ i: Int, parent: Int?, caller: String, callee: String, state: CertificateState, serial: String?) -> Hop {
            Hop(index: i, parent: parent, caller: caller, callerSPIFFEID: caller, callerService: nil, callerAddress: "10.0.0.\(i + 1):8080",
                callee: callee, calleeSPIFFEID: callee, calleeService: "svc\(i)", calleeAddress: nil, method: "POST", path: path,
                operation: nil, authority: nil, status: 200, start: t0.adding(nanoseconds: Int64(i) * 1_000_000), durationNanos: 5_000_000,
                transport: .mtls, tlsVersion: nil, serial: serial, fingerprintSHA256: nil, certificateState: state, policy: .allow,
                requestID: "req-\(i)", userAgent: userAgent, principal: nil, observedBy: [.inbound], observationIDs: [Int64(i + 1)],
                rawRecordIDs: [Int64(i + 1)], chainPath: [])
        }
        let a = "spiffe://x.example/ns/a/sa/front", b = "spiffe://x.example/ns/a/sa/back<b>", c = "spiffe://x.example/ns/a/sa/store"
        let hops = [hop(0, parent: nil, caller: a, callee: b, state: .valid, serial: "10"),
                    hop(1, parent: 0, caller: b, callee: c, state: .revoked, serial: "11")]
        let finding = Finding(kind: .revokedCertificate, traceID: "4bf92f3577b34da6a3ce929d0e0e4736", hopIndex: 1, principal: a,
                              identity: b, serial: "11", time: hops[1].start, detail: "detail with | pipe and <tag>", rawRecordIDs: [2])
        let chain = Chain(traceID: "4bf92f3577b34da6a3ce929d0e0e4736",
                          origin: ChainOrigin(principal: "mallory\"<x>", principalType: .workload, clientIP: "10.0.0.1", viaGateway: false),
                          hops: hops, gaps: [], findings: [finding])
        let records = [
            EvidenceRecord(id: 1, sha256: EvidenceManifest.sha256(Array("one".utf8)), format: "envoy-json", source: "a.log", line: 1, bytes: Array("one".utf8)),
            EvidenceRecord(id: 2, sha256: EvidenceManifest.sha256(Array("two ``` </pre><script>x</script>".utf8)), format: "envoy-json", source: "a.log", line: 2,
                           bytes: Array("two ``` </pre><script>x</script>".utf8)),
            EvidenceRecord(id: 3, sha256: EvidenceManifest.sha256([0xFF, 0x00, 0x01]), format: "otlp-proto", source: "b.bin", line: 1, bytes: [0xFF, 0x00, 0x01]),
        ]
        return IncidentReport(
            title: "Trail incident report: trace \(chain.traceID)", scope: .trace(chain.traceID), window: TimeWindow(),
            summary: ReportBuilder.summary(chains: [chain], findings: [finding]), chains: [chain],
            timeline: ReportBuilder.timeline(chains: [chain], findings: [ReportFinding(id: "f1", finding: finding, why: finding.kind.explanation)], identities: []),
            findings: [ReportFinding(id: "f1", finding: finding, why: finding.kind.explanation)], identities: [],
            evidence: EvidenceManifest(records: records), judgedAt: chain.end, reportArguments: ["--trace", chain.traceID],
            storePath: "store; rm -rf /.db")
    }
}

/// Runs the real `trail` binary (built beside the tests).
enum TrailBinary {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
            url = url.deletingLastPathComponent()
        }
        return url
    }()

    static let path: URL = {
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("trail")
        if FileManager.default.isExecutableFile(atPath: beside.path) { return beside }
        return root.appendingPathComponent(".build/debug/trail")
    }()

    @discardableResult
    static func run(_ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let p = Process()
        p.executableURL = path
        p.arguments = args
        p.currentDirectoryURL = root
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
