import Testing

@testable import TrailGateway

@Suite struct TraceContextTests {
    static let trace = "4bf92f3577b34da6a3ce929d0e0e4736"

    /// (headers, expected "traceID/parent/sampled" or nil).
    static let cases: [([(name: String, value: String)], String?)] = [
        ([("traceparent", "00-\(trace)-00f067aa0ba902b7-01")], "\(trace)/00f067aa0ba902b7/true"),
        ([("traceparent", "00-\(trace)-00f067aa0ba902b7-00")], "\(trace)/00f067aa0ba902b7/false"),
        ([("traceparent", "01-\(trace)-00f067aa0ba902b7-01")], nil),                                // version 00 only
        ([("traceparent", "00-\(trace.uppercased())-00f067aa0ba902b7-01")], nil),                    // lowercase only
        ([("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")], nil),         // zero trace id
        ([("traceparent", "00-\(trace)-0000000000000000-01")], nil),                                 // zero parent
        ([("traceparent", "00-\(trace)-00f067aa0ba902b7-1")], nil),                                  // flags are 2 digits
        ([("traceparent", "garbage"), ("b3", "\(trace)-00f067aa0ba902b7-1")], "\(trace)/00f067aa0ba902b7/true"),
        ([("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-0-05e3ac9a4f6e3b90")], "0000000000000000a3ce929d0e0e4736/00f067aa0ba902b7/false"),
        ([("b3", "0")], nil),
        ([("x-b3-traceid", "a3ce929d0e0e4736"), ("x-b3-spanid", "00f067aa0ba902b7"), ("x-b3-sampled", "1")],
         "0000000000000000a3ce929d0e0e4736/00f067aa0ba902b7/true"),
        ([("x-b3-traceid", "a3ce929d0e0e4736")], nil),
        ([], nil),
    ]

    @Test(arguments: cases)
    func extraction(_ c: ([(name: String, value: String)], String?)) {
        let context = TraceContext.extract(headers: c.0)
        #expect(context.map { "\($0.traceID)/\($0.parentSpanID ?? "-")/\($0.sampled)" } == c.1, "\(c.0)")
    }

    struct CountingGenerator: RandomNumberGenerator {
        var state: UInt64 = 0
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            return state
        }
    }

    @Test func policyTrustOrRestart() {
        let headers = [(name: "traceparent", value: "00-\(Self.trace)-00f067aa0ba902b7-01")]
        var random = CountingGenerator()
        #expect(TraceContext.resolve(headers: headers, policy: .trust, random: &random).traceID == Self.trace)
        let restarted = TraceContext.resolve(headers: headers, policy: .restart, random: &random)
        #expect(restarted.traceID != Self.trace)
        #expect(restarted.traceID.count == 32)
        #expect(restarted.parentSpanID == nil)
        #expect(TraceContext.w3c(restarted.traceparent(spanID: "00f067aa0ba902b7"))?.traceID == restarted.traceID)
        var again = CountingGenerator()
        _ = TraceContext.resolve(headers: headers, policy: .trust, random: &again)
        #expect(TraceContext.resolve(headers: headers, policy: .restart, random: &again) == restarted)  // deterministic
    }
}
