import Testing
@testable import TrailCore

@Suite("JSON")
struct JSONTests {
    @Test func parsesAllValueKindsExactly() throws {
        let v = try JSONParser.parse(Array(#"{"a":[1,-2,3.5,1e3,"x\u00e9\ud83d\ude00\n",true,false,null],"big":18446744073709551615,"ns":"1544712660000000000"}"#.utf8))
        #expect(v["a"]?.array?.count == 8)
        #expect(v["a"]?.array?[0] == .int(1))
        #expect(v["a"]?.array?[1] == .int(-2))
        #expect(v["a"]?.array?[2] == .double(3.5))
        #expect(v["a"]?.array?[3].int == 1000)
        #expect(v["a"]?.array?[4] == .string("xé😀\n"))
        #expect(v["big"] == .double(18446744073709551615))
        #expect(v["ns"]?.int == 1_544_712_660_000_000_000)
    }

    @Test(arguments: ["{", "[1,]", "{\"a\" 1}", "01", "\"\u{01}\"", "tru", "{\"a\":1}x", "\"\\x\"", "-", "1e"])
    func rejectsInvalidDocuments(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(text.utf8)) }
    }

    /// Log lines and reports are JSON written from attacker-controlled text: C0 and C1 controls, DEL, the line
    /// and paragraph separators, bidirectional controls and `< > &` are escaped, so a line reader (Python's
    /// `splitlines` ends a line at U+0085 and U+2028), a terminal or an HTML page cannot be driven by them, and a
    /// JSON reader gets the very same string back.
    @Test func hostileTextIsEscapedLosslessly() throws {
        let hostile = "a\u{1B}[2J\u{07}\r\n\u{0}\u{7F}\u{85}\u{9B}31m\u{9F}\u{A0}\u{2028}\u{2029}\u{202A}\u{202E}\u{2066}\u{2069}"
            + "\u{2027}\u{202F}\u{2065}\u{206A}</script><!--&é😀"
        let text = JSONValue.string(hostile).serialized()
        #expect(text == #""a\u001b[2J\u0007\r\n\u0000\u007f\u0085\u009b31m\u009f\#u{A0}\u2028\u2029\u202a\u202e\u2066\u2069\#u{2027}\#u{202F}\#u{2065}\#u{206A}\u003c/script\u003e\u003c!--\u0026é😀""#)
        #expect(try JSONParser.parse(Array(text.utf8)) == .string(hostile))
        // What stays raw is printable: no scalar of the output is a control, separator or bidi control.
        #expect(!text.unicodeScalars.contains { $0.value < 0x20 || (0x7F...0x9F).contains($0.value) || (0x2028...0x202E).contains($0.value) || (0x2066...0x2069).contains($0.value) })
    }

    @Test func deepNestingIsRefusedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONParser.parse(Array(deep.utf8)) }
    }

    @Test func recordReaderKeepsGoodRecordsAroundBadOnes() {
        let input = Array("{\"a\":1}\n{\"b\":\n{\"c\":3}\n\n  {\"d\"  :  4}\n".utf8)
        let records = JSONRecordReader.records(in: input)
        #expect(records.map(\.line) == [1, 2, 3, 5])
        #expect(records.map { (try? $0.value.get()) != nil } == [true, false, true, true])
        #expect(records[1].raw == Array("{\"b\":".utf8))
    }

    @Test func recordReaderSplitsArraysAndPrettyPrintedObjects() {
        let array = JSONRecordReader.records(in: Array("[\n {\"a\":1},\n {\"a\":2}\n]".utf8))
        #expect(array.map(\.arrayIndex) == [0, 1])
        #expect(array.map(\.line) == [2, 3])
        let pretty = JSONRecordReader.records(in: Array("{\n  \"a\": 1\n}\n{\n  \"a\": 2\n}\n".utf8))
        #expect(pretty.count == 2)
        #expect(pretty.map(\.line) == [1, 4])
    }

    @Test func serialisationEscapesHTMLAndControlCharacters() {
        let v = JSONValue.object([("k", .string("<script>\u{1B}&\u{2028}\"\\"))])
        #expect(v.serialized() == #"{"k":"\u003cscript\u003e\u001b\u0026\u2028\"\\"}"#)
        #expect((try? JSONParser.parse(Array(v.serialized().utf8))) == v)
    }
}

@Suite("Timestamps")
struct TimestampTests {
    @Test func parsesTheFormsLogsWrite() {
        let t = Timestamp.utc(year: 2026, month: 5, day: 4, hour: 10, minute: 0, second: 0, nanosecond: 123_456_789)
        #expect(Timestamp.parseRFC3339("2026-05-04T10:00:00.123456789Z") == t)
        #expect(Timestamp.parseRFC3339("2026-05-04T12:00:00.123456789+02:00") == t)
        #expect(Timestamp.parseRFC3339("2026-05-04 10:00:00.123456789") == t)
        #expect(Timestamp.parseRFC3339("2026-05-04T10:00:00Z")?.rfc3339(fractionDigits: 3) == "2026-05-04T10:00:00.000Z")
        #expect(Timestamp.parseRFC3339("2026-13-04T10:00:00Z") == nil)
        #expect(Timestamp.parseRFC3339("9999-12-31T23:59:59Z") == nil)
        #expect(Timestamp.parseRFC3339("2026-05-04T10:00:00Zjunk") == nil)
    }

    @Test func formatsBeforeTheEpochToo() {
        #expect(Timestamp(nanoseconds: -1).rfc3339(fractionDigits: 9) == "1969-12-31T23:59:59.999999999Z")
        #expect(Timestamp(epochSeconds: .infinity).nanoseconds == Int64.max)
    }

    @Test func serialsAndFingerprintsNormalise() {
        #expect(CertificateSerial.normalize("00:0A:fF") == "aff")
        #expect(CertificateSerial.normalize("0") == "0")
        #expect(CertificateSerial.normalize("xyz") == nil)
        #expect(Fingerprint.normalize(String(repeating: "AB:", count: 31) + "AB") == String(repeating: "ab", count: 32))
        #expect(TraceIDs.normalizeTraceID("80F198EE56343BA8") == "000000000000000080f198ee56343ba8")
        #expect(TraceIDs.normalizeTraceID(String(repeating: "0", count: 32)) == nil)
    }
}
