import Foundation
import Testing

@testable import TrailCore

/// Inputs libFuzzer found (`.ci/fuzz`), kept under `fixtures/fuzz-regressions/<target>/` and fed through the same
/// entry points as the fuzz targets of `Sources/TrailFuzz/FuzzTargets.swift`.
@Suite("fuzz regressions: headers")
struct CoreFuzzRegressionTests {
    static func inputs(_ target: String) throws -> [(name: String, bytes: [UInt8])] {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            let parent = dir.deletingLastPathComponent()
            guard parent.path != dir.path else { throw CocoaError(.fileNoSuchFile) }
            dir = parent
        }
        let folder = dir.appendingPathComponent("fixtures/fuzz-regressions/\(target)")
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        return try names.map { ($0, Array(try Data(contentsOf: folder.appendingPathComponent($0)))) }
    }

    @Test func xfccRoundTripsWhatItParses() throws {
        let inputs = try Self.inputs("xfcc")
        #expect(!inputs.isEmpty)
        for input in inputs {
            let text = String(decoding: input.bytes, as: UTF8.self)
            guard case .success(let elements) = XFCC.parse(text) else { continue }
            let known = elements.filter { $0 != XFCCElement() }
            #expect(try XFCC.parse(XFCC.format(known)).get() == known, "\(input.name)")
        }
    }

    /// A value ending in a backslash used to be written as `"...\"`, whose closing quote then read as escaped.
    @Test func xfccQuotesBackslashes() throws {
        let element = XFCCElement(by: "spiffe://shop.example/ns/shop/sa/web", subject: "CN=a\\", uris: ["x\\\";y"])
        let header = XFCC.format([element])
        #expect(header == "By=spiffe://shop.example/ns/shop/sa/web;Subject=\"CN=a\\\\\";URI=\"x\\\\\\\";y\"")
        #expect(try XFCC.parse(header).get() == [element])
        // Envoy's own unescaped backslashes (RFC 4514 escapes in Subject) are kept.
        #expect(try XFCC.parse("Subject=\"CN=a\\,b\"").get().first?.subject == "CN=a\\,b")
        #expect(try XFCC.parse("Subject=\\").get().first?.subject == "\\")
    }

    /// An element of unknown keys only is still an element (the last hop had no URI), with nothing to format.
    @Test func xfccElementOfUnknownKeys() throws {
        let elements = try XFCC.parse("U\0\0RI=spiffe://shop.example/ns/shop/sa/gateway").get()
        #expect(elements == [XFCCElement()])
        #expect(elements.last?.uri == nil)
    }

    @Test func traceparentFutureVersionIsWrittenAsVersion00() throws {
        for input in try Self.inputs("traceparent") {
            let text = String(decoding: input.bytes, as: UTF8.self)
            guard case .success(let tp) = W3CTraceParent.parse(text) else { continue }
            let again = try W3CTraceParent.parse(tp.format()).get()
            #expect(again.version == 0 && again.traceID == tp.traceID && again.parentID == tp.parentID && again.flags == tp.flags)
        }
    }
}
