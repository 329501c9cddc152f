import Testing

@testable import TrailCore

@Suite("W3C traceparent")
struct TraceParentTests {
    @Test func parsesTheSpecExample() throws {
        let tp = try W3CTraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").get()
        #expect(tp.version == 0)
        #expect(tp.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(tp.parentID == "00f067aa0ba902b7")
        #expect(tp.flags == 1)
        #expect(tp.sampled)
        #expect(!tp.randomTraceID)
        #expect(tp.format() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    }

    @Test func flagsAreABitField() throws {
        let tp = try W3CTraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03").get()
        #expect(tp.sampled && tp.randomTraceID)
        let notSampled = try W3CTraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02").get()
        #expect(!notSampled.sampled && notSampled.randomTraceID)
        let reservedBit = try W3CTraceParent.parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09").get()
        #expect(reservedBit.sampled)
        #expect(reservedBit.flags == 9)
    }

    @Test func trimsOptionalWhitespace() throws {
        let tp = try W3CTraceParent.parse(" \t00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ").get()
        #expect(!tp.sampled)
    }

    @Test(arguments: [
        ("", "traceparent: empty header"),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent: version ff is invalid"),
        ("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent: version is not 2 lowercase hex digits"),
        ("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent: version is not 2 lowercase hex digits"),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "traceparent: trace-id is all zero"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "traceparent: parent-id is all zero"),
        ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
         "traceparent: trace-id has uppercase hex (only lowercase is allowed)"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
         "traceparent: parent-id has uppercase hex (only lowercase is allowed)"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0X",
         "traceparent: trace-flags are not 2 lowercase hex digits"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
         "traceparent: too long for version 00 (61 characters, need 55)"),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
         "traceparent: too short for version 00 (54 characters, need 55)"),
        ("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "traceparent: no '-' after the version"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", "traceparent: no '-' after the trace-id"),
        ("00-4bf92f3577b34da6a3ce929d0e0e4z36-00f067aa0ba902b7-01", "traceparent: trace-id has a non-hex character"),
        ("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01.", "traceparent: flags are not followed by '-' or the end"),
    ])
    func rejectsWithAReason(input: String, reason: String) {
        switch W3CTraceParent.parse(input) {
        case .success(let v): Issue.record("accepted \(input) as \(v)")
        case .failure(let e): #expect(e.description == reason)
        }
        #expect(W3CTraceParent(input) == nil)
    }

    @Test func higherVersionsAreLenient() throws {
        let tp = try W3CTraceParent.parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds")
            .get()
        #expect(tp.version == 0xCC)
        #expect(tp.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(tp.parentID == "00f067aa0ba902b7")
        #expect(tp.sampled)
        let exact = try W3CTraceParent.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").get()
        #expect(exact.version == 1)
        // format() writes version 00.
        #expect(exact.format() == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
    }

    @Test func memberwiseInitValidates() {
        #expect(W3CTraceParent(traceID: "4bf92f3577b34da6a3ce929d0e0e4736", parentID: "00f067aa0ba902b7")?.format()
            == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        #expect(W3CTraceParent(traceID: "4BF92F3577B34DA6A3CE929D0E0E4736", parentID: "00f067aa0ba902b7") == nil)
        #expect(W3CTraceParent(traceID: String(repeating: "0", count: 32), parentID: "00f067aa0ba902b7") == nil)
        #expect(W3CTraceParent(traceID: "4bf92f3577b34da6a3ce929d0e0e4736", parentID: "00f067aa") == nil)
        #expect(W3CTraceParent(traceID: "4bf92f3577b34da6a3ce929d0e0e4736", parentID: "00f067aa0ba902b7", version: 0xFF)
            == nil)
    }

    @Test func survivesHostileInput() {
        let inputs = ["-", "--", "---", String(repeating: "-", count: 55), String(repeating: "0", count: 10_000),
                      "00-é4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "\u{0}"]
        for i in inputs { #expect(W3CTraceParent(i) == nil) }
    }
}

@Suite("W3C tracestate")
struct TraceStateTests {
    @Test func parsesMembersInOrder() throws {
        let ts = try TraceState.parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE ,,tenant@vendor=x").get()
        #expect(ts.members.map(\.key) == ["rojo", "congo", "tenant@vendor"])
        #expect(ts.value(forKey: "congo") == "t61rcWkgMzE")
        #expect(ts.value(forKey: "missing") == nil)
        #expect(ts.format() == "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,tenant@vendor=x")
    }

    @Test func combinesSeveralFields() throws {
        let ts = try TraceState.parse(["a=1", "b=2,c=3"]).get()
        #expect(ts.members == [.init(key: "a", value: "1"), .init(key: "b", value: "2"), .init(key: "c", value: "3")])
    }

    @Test func emptyHeaderIsAnEmptyList() throws {
        #expect(try TraceState.parse("").get().members.isEmpty)
        #expect(try TraceState.parse(" , ,").get().members.isEmpty)
    }

    @Test func enforcesTheLimits() {
        let max = (1...32).map { "k\($0)=v" }.joined(separator: ",")
        #expect((try? TraceState.parse(max).get())?.members.count == 32)
        let tooMany = (1...33).map { "k\($0)=v" }.joined(separator: ",")
        #expect(reason(tooMany) == "tracestate: more than 32 list members")
        let longKey = String(repeating: "a", count: 256)
        #expect((try? TraceState.parse(longKey + "=v").get())?.members.count == 1)
        #expect(reason(longKey + "a=v") == "tracestate: member 1 key is longer than 256 characters")
        let longValue = String(repeating: "v", count: 257)
        #expect(reason("a=" + longValue) == "tracestate: member 1 value is longer than 256 characters")
    }

    @Test func rejectsMalformedMembers() {
        #expect(reason("a=1,b") == "tracestate: member 2 has no '='")
        #expect(reason("Rojo=1") == "tracestate: member 1 key must start with a lowercase letter or a digit")
        #expect(reason("ro jo=1") == "tracestate: member 1 key has a character outside a-z 0-9 _ - * / @")
        #expect(reason("a=") == "tracestate: member 1 value is empty")
        #expect(reason("a=x=y") == "tracestate: member 1 value has a character outside printable ASCII or a ',' or '='")
        #expect(reason("a=1,a=2") == "tracestate: duplicate key 'a'")
        #expect(reason("=1") == "tracestate: member 1 key is empty")
    }

    private func reason(_ s: String) -> String? {
        if case .failure(let e) = TraceState.parse(s) { return e.description }
        return nil
    }
}

@Suite("B3 propagation")
struct B3Tests {
    @Test func parsesTheSingleHeaderExample() throws {
        let b3 = try B3Context.parseSingle("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90").get()
        #expect(b3.traceID == "80f198ee56343ba864fe8b2a57d3eff7")
        #expect(b3.spanID == "e457b5a2e4d86bd1")
        #expect(b3.sampling == .accept)
        #expect(b3.parentSpanID == "05e3ac9a4f6e3b90")
        #expect(b3.normalizedTraceID == "80f198ee56343ba864fe8b2a57d3eff7")
        #expect(b3.formatSingle() == "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")
    }

    @Test func sixtyFourBitTraceIDsArePadded() throws {
        let b3 = try B3Context.parseSingle("a3ce929d0e0e4736-00f067aa0ba902b7").get()
        #expect(b3.traceID == "a3ce929d0e0e4736")
        #expect(b3.normalizedTraceID == "0000000000000000a3ce929d0e0e4736")
        #expect(b3.sampling == nil)
        #expect(b3.parentSpanID == nil)
    }

    @Test func samplingOnlyAndDebug() throws {
        let deny = try B3Context.parseSingle("0").get()
        #expect(deny.isSamplingOnly && deny.sampling == .deny && deny.formatSingle() == "0")
        #expect(try B3Context.parseSingle("d").get().sampling == .debug)
        #expect(try B3Context.parseSingle("a3ce929d0e0e4736-00f067aa0ba902b7-d").get().sampling == .debug)
    }

    @Test(arguments: [
        ("", "b3: empty header"),
        ("2", "b3: '2' is not a sampling state"),
        ("a3ce929d0e0e47-00f067aa0ba902b7", "b3: trace id is 14 characters, not 16 or 32"),
        ("A3CE929D0E0E4736-00f067aa0ba902b7", "b3: trace id has uppercase hex (only lowercase is allowed)"),
        ("0000000000000000-00f067aa0ba902b7", "b3: trace id is all zero"),
        ("a3ce929d0e0e4736-0000000000000000", "b3: span id is all zero"),
        ("a3ce929d0e0e4736-00f067aa0ba902b7-x", "b3: sampling state 'x' is not 1, 0 or d"),
        ("a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a", "b3: parent span id is 8 characters, not 16"),
        ("a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90-x", "b3: more than 4 fields"),
    ])
    func rejectsSingleHeaders(input: String, reason: String) {
        if case .failure(let e) = B3Context.parseSingle(input) {
            #expect(e.description == reason)
        } else {
            Issue.record("accepted \(input)")
        }
    }

    @Test func parsesMultiHeaders() throws {
        let b3 = try B3Context.parseMulti(
            traceID: "463ac35c9f6413ad48485a3953bb6124", spanID: "a2fb4a1d1a96d312", parentSpanID: "0020000000000001",
            sampled: "1"
        ).get()
        #expect(b3.traceID == "463ac35c9f6413ad48485a3953bb6124")
        #expect(b3.spanID == "a2fb4a1d1a96d312")
        #expect(b3.parentSpanID == "0020000000000001")
        #expect(b3.sampling == .accept)
        #expect(try B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: "a2fb4a1d1a96d312", sampled: "true").get()
            .sampling == .accept)
        #expect(try B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: "a2fb4a1d1a96d312", sampled: "false").get()
            .sampling == .deny)
        #expect(try B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: "a2fb4a1d1a96d312", flags: "1").get()
            .sampling == .debug)
        #expect(try B3Context.parseMulti(traceID: nil, spanID: nil, sampled: "0").get().isSamplingOnly)
    }

    @Test func rejectsBadMultiHeaders() {
        func reason(_ r: Result<B3Context, TraceContextError>) -> String? {
            if case .failure(let e) = r { return e.description }
            return nil
        }
        #expect(reason(B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: nil))
            == "x-b3-spanid: missing while x-b3-traceid is present")
        #expect(reason(B3Context.parseMulti(traceID: nil, spanID: "a2fb4a1d1a96d312"))
            == "x-b3-traceid: missing while x-b3-spanid is present")
        #expect(reason(B3Context.parseMulti(traceID: "", spanID: "a2fb4a1d1a96d312"))
            == "x-b3-traceid: is 0 characters, not 16 or 32")
        #expect(reason(B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: "a2fb4a1d1a96d31g"))
            == "x-b3-spanid: has a non-hex character")
        #expect(reason(B3Context.parseMulti(traceID: "463ac35c9f6413ad", spanID: "a2fb4a1d1a96d312", sampled: "yes"))
            == "x-b3-sampled: 'yes' is not 1, 0, true or false")
        #expect(reason(B3Context.parseMulti(traceID: nil, spanID: nil)) == "x-b3-traceid: no B3 headers")
    }
}

@Suite("Jaeger and Datadog ids")
struct OtherTraceIDTests {
    @Test func uberTraceID() throws {
        let u = try UberTraceID.parse("7b1d3f5e9a2c4b6d:1a2b3c4d5e6f7a8b:0:1").get()
        #expect(u.traceID == "00000000000000007b1d3f5e9a2c4b6d")
        #expect(u.spanID == "1a2b3c4d5e6f7a8b")
        #expect(u.parentSpanID == nil)
        #expect(u.sampled)
        // Leading zeros dropped, URL-encoded separators.
        let short = try UberTraceID.parse("abc%3Adef%3A12%3A0").get()
        #expect(short.traceID == "00000000000000000000000000000abc")
        #expect(short.spanID == "0000000000000def")
        #expect(short.parentSpanID == "0000000000000012")
        #expect(!short.sampled)
        if case .failure(let e) = UberTraceID.parse("0:1:0:1") {
            #expect(e.description == "uber-trace-id: trace id is all zero")
        } else {
            Issue.record("accepted a zero trace id")
        }
        if case .failure(let e) = UberTraceID.parse("abc:def") {
            #expect(e.description == "uber-trace-id: expected 4 ':'-separated fields, found 2")
        } else {
            Issue.record("accepted two fields")
        }
    }

    @Test func datadogDecimalIDs() {
        #expect(TraceIDs.datadogTraceID(decimal: "1234567890123456789") == "0000000000000000112210f47de98115")
        #expect(TraceIDs.datadogTraceID(decimal: "18446744073709551615") == "0000000000000000ffffffffffffffff")
        #expect(TraceIDs.datadogTraceID(decimal: "18446744073709551616") == "00000000000000010000000000000000")
        #expect(TraceIDs.datadogTraceID(decimal: "340282366920938463463374607431768211455")
            == "ffffffffffffffffffffffffffffffff")
        #expect(TraceIDs.datadogTraceID(decimal: "340282366920938463463374607431768211456") == nil)
        #expect(TraceIDs.datadogTraceID(decimal: "0") == nil)
        #expect(TraceIDs.datadogTraceID(decimal: "12ab") == nil)
        #expect(TraceIDs.datadogTraceID(decimal: "") == nil)
    }
}
