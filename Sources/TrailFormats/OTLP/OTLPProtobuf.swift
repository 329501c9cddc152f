import TrailCore

/// Parses an OTLP/HTTP protobuf body (`application/x-protobuf`): one `ExportTraceServiceRequest` (or
/// `TracesData`, which has the same field 1). One input is one request and becomes one ``ParsedRecord``
/// (raw = the whole body, line 1), or one ``Rejection`` if the body cannot be decoded.
public struct OTLPProtobufParser: Sendable {
    public init() {}

    public func parse(_ input: [UInt8]) -> [ParseResult] {
        let location = RecordLocation(line: 1)
        let request: OTLPTraceRequest
        do throws(OTLPProtobufError) {
            request = try OTLPProtobufDecoder.decodeRequest(input)
        } catch {
            var reason = error.description
            if let first = input.first(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }),
                first == UInt8(ascii: "{") || first == UInt8(ascii: "[")
            {
                reason += " (the body looks like JSON: use the otlp-json format)"
            }
            return [.rejected(Rejection(format: .otlpProto, location: location, raw: input, reason: reason))]
        }
        let record = OTLPSpanMapper.record(
            for: request, format: .otlpProto, location: location, raw: input,
            spanRaw: { i, j, k in
                let range = request.resourceSpans[i].scopeSpans[j].spans[k].rawRange
                return Array(input[range])
            })
        return [.record(record)]
    }
}

/// Why a protobuf body could not be decoded: the byte offset, where in the message tree, and what failed.
public struct OTLPProtobufError: Error, Sendable, Hashable, CustomStringConvertible {
    public var offset: Int
    /// Dotted field path (`resourceSpans[0].scopeSpans[1].spans[2].attributes[0]`), empty at the top.
    public var path: String
    public var message: String

    public var description: String {
        path.isEmpty
            ? "invalid protobuf at byte \(offset): \(message)"
            : "invalid protobuf at byte \(offset) in \(path): \(message)"
    }

    func inside(_ component: String) -> OTLPProtobufError {
        var e = self
        e.path = e.path.isEmpty ? component : component + (e.path.hasPrefix("[") ? "" : ".") + e.path
        return e
    }
}

/// The protobuf wire-format primitives over a byte buffer, bounded by `end`.
struct OTLPWireReader {
    static let maximumAnyValueDepth = 64

    let bytes: UnsafeBufferPointer<UInt8>
    var position: Int
    var end: Int

    enum WireType: UInt8 {
        case varint = 0, fixed64 = 1, lengthDelimited = 2, startGroup = 3, endGroup = 4, fixed32 = 5
    }

    func fail(_ message: String, at offset: Int? = nil) -> OTLPProtobufError {
        OTLPProtobufError(offset: offset ?? position, path: "", message: message)
    }

    var isAtEnd: Bool { position >= end }

    @inline(__always)
    mutating func readVarint() throws(OTLPProtobufError) -> UInt64 {
        let start = position
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < end else { throw fail("truncated varint", at: start) }
            let b = bytes[position]
            position += 1
            if shift == 63 && b > 1 { throw fail("varint longer than 64 bits", at: start) }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw fail("varint longer than 10 bytes", at: start) }
        }
    }

    /// The next field's number and wire type. Rejects field number 0, groups and unknown wire types.
    @inline(__always)
    mutating func readTag() throws(OTLPProtobufError) -> (field: UInt64, wire: WireType) {
        let start = position
        let key = try readVarint()
        let field = key >> 3
        guard field != 0, field <= 0x1FFF_FFFF else { throw fail("invalid field number \(field)", at: start) }
        guard let wire = WireType(rawValue: UInt8(key & 7)) else {
            throw fail("invalid wire type \(key & 7) for field \(field)", at: start)
        }
        if wire == .startGroup || wire == .endGroup {
            throw fail("group (wire type \(wire.rawValue)) in field \(field) is not supported", at: start)
        }
        return (field, wire)
    }

    mutating func readFixed64() throws(OTLPProtobufError) -> UInt64 {
        guard end - position >= 8 else { throw fail("truncated fixed64: \(end - position) of 8 bytes left") }
        var v: UInt64 = 0
        for k in 0..<8 { v |= UInt64(bytes[position + k]) << (8 * UInt64(k)) }
        position += 8
        return v
    }

    mutating func readFixed32() throws(OTLPProtobufError) -> UInt32 {
        guard end - position >= 4 else { throw fail("truncated fixed32: \(end - position) of 4 bytes left") }
        var v: UInt32 = 0
        for k in 0..<4 { v |= UInt32(bytes[position + k]) << (8 * UInt32(k)) }
        position += 4
        return v
    }

    /// A length prefix and the range of the bytes it covers (checked against the enclosing message).
    mutating func readLengthDelimited() throws(OTLPProtobufError) -> Range<Int> {
        let start = position
        let length = try readVarint()
        let left = end - position
        guard length <= UInt64(left) else {
            throw fail("length \(length) exceeds the \(left) bytes left in the message", at: start)
        }
        let range = position..<(position + Int(length))
        position = range.upperBound
        return range
    }

    mutating func readBytes() throws(OTLPProtobufError) -> [UInt8] {
        let r = try readLengthDelimited()
        return Array(UnsafeBufferPointer(rebasing: bytes[r]))
    }

    mutating func readString() throws(OTLPProtobufError) -> String {
        let r = try readLengthDelimited()
        return String(decoding: UnsafeBufferPointer(rebasing: bytes[r]), as: UTF8.self)
    }

    /// Skips a field of the given wire type (an unknown field, or a known one with an unexpected wire type).
    mutating func skip(_ wire: WireType) throws(OTLPProtobufError) {
        switch wire {
        case .varint: _ = try readVarint()
        case .fixed64: _ = try readFixed64()
        case .fixed32: _ = try readFixed32()
        case .lengthDelimited: _ = try readLengthDelimited()
        case .startGroup, .endGroup: throw fail("group wire type is not supported")
        }
    }

    /// A reader for an embedded message's bytes.
    func sub(_ range: Range<Int>) -> OTLPWireReader {
        OTLPWireReader(bytes: bytes, position: range.lowerBound, end: range.upperBound)
    }

    /// Decodes the sub-message at `range` with `body`, naming it (`resourceSpans[0]`) in any error it throws.
    func within<T>(
        _ range: Range<Int>, _ label: @autoclosure () -> String,
        _ body: (inout OTLPWireReader) throws(OTLPProtobufError) -> T
    ) throws(OTLPProtobufError) -> T {
        do throws(OTLPProtobufError) {
            var sub = self.sub(range)
            return try body(&sub)
        } catch {
            throw error.inside(label())
        }
    }
}

/// Decodes the OTLP trace messages from the protobuf wire format (no generated code).
enum OTLPProtobufDecoder {
    static func decodeRequest(_ input: [UInt8]) throws(OTLPProtobufError) -> OTLPTraceRequest {
        try input.withUnsafeBufferPointer { (buf) throws(OTLPProtobufError) -> OTLPTraceRequest in
            var r = OTLPWireReader(bytes: buf, position: 0, end: buf.count)
            var request = OTLPTraceRequest()
            while !r.isAtEnd {
                let (field, wire) = try r.readTag()
                if field == 1 && wire == .lengthDelimited {
                    let index = request.resourceSpans.count
                    let range = try r.readLengthDelimited()
                    try r.within(range, "resourceSpans[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                        request.resourceSpans.append(try decodeResourceSpans(&sub))
                    }
                } else {
                    try r.skip(wire)
                }
            }
            return request
        }
    }

    static func decodeResourceSpans(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPResourceSpans {
        var out = OTLPResourceSpans()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited):
                // Resource: a repeated embedded message merges, so attributes accumulate.
                let range = try r.readLengthDelimited()
                try r.within(range, "resource") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    try decodeResource(&sub, into: &out.resourceAttributes)
                }
            case (2, .lengthDelimited):
                let index = out.scopeSpans.count
                let range = try r.readLengthDelimited()
                try r.within(range, "scopeSpans[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    out.scopeSpans.append(try decodeScopeSpans(&sub))
                }
            case (3, .lengthDelimited):
                out.schemaURL = try r.readString()
            default:
                try r.skip(wire)
            }
        }
        return out
    }

    static func decodeResource(
        _ r: inout OTLPWireReader, into attributes: inout [OTLPKeyValue]
    ) throws(OTLPProtobufError) {
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            if field == 1 && wire == .lengthDelimited {
                attributes.append(try decodeAttribute(&r, index: attributes.count))
            } else {
                try r.skip(wire)
            }
        }
    }

    static func decodeScopeSpans(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPScopeSpans {
        var out = OTLPScopeSpans()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "scope") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                var scope = out.scope ?? OTLPScope()
                try decodeScope(&sub, into: &scope)
                out.scope = scope
                }
            case (2, .lengthDelimited):
                let index = out.spans.count
                let range = try r.readLengthDelimited()
                try r.within(range, "spans[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                var span = try decodeSpan(&sub)
                span.rawRange = range
                out.spans.append(span)
                }
            case (3, .lengthDelimited):
                out.schemaURL = try r.readString()
            default:
                try r.skip(wire)
            }
        }
        return out
    }

    static func decodeScope(_ r: inout OTLPWireReader, into scope: inout OTLPScope) throws(OTLPProtobufError) {
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): scope.name = try r.readString()
            case (2, .lengthDelimited): scope.version = try r.readString()
            case (3, .lengthDelimited): scope.attributes.append(try decodeAttribute(&r, index: scope.attributes.count))
            default: try r.skip(wire)
            }
        }
    }

    static func decodeSpan(_ r: inout OTLPWireReader) throws(OTLPProtobufError) -> OTLPSpan {
        var span = OTLPSpan()
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): span.traceID = try r.readBytes()
            case (2, .lengthDelimited): span.spanID = try r.readBytes()
            case (3, .lengthDelimited): span.traceState = try r.readString()
            case (4, .lengthDelimited): span.parentSpanID = try r.readBytes()
            case (5, .lengthDelimited): span.name = try r.readString()
            case (6, .varint): span.kind = Int32(truncatingIfNeeded: try r.readVarint())
            case (7, .fixed64): span.startTimeUnixNano = try r.readFixed64()
            case (8, .fixed64): span.endTimeUnixNano = try r.readFixed64()
            case (9, .lengthDelimited): span.attributes.append(try decodeAttribute(&r, index: span.attributes.count))
            case (15, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "status") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                var status = span.status ?? OTLPStatus()
                try decodeStatus(&sub, into: &status)
                span.status = status
                }
            case (16, .fixed32): span.flags = try r.readFixed32()
            default:
                // trace_state aside, events (11), links (13) and the dropped counts are not used; their
                // lengths are still checked by skip.
                try r.skip(wire)
            }
        }
        return span
    }

    static func decodeStatus(_ r: inout OTLPWireReader, into status: inout OTLPStatus) throws(OTLPProtobufError) {
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (2, .lengthDelimited): status.message = try r.readString()
            case (3, .varint): status.code = Int32(truncatingIfNeeded: try r.readVarint())
            default: try r.skip(wire)
            }
        }
    }

    /// Reads a length-delimited `KeyValue` at the reader's position.
    static func decodeAttribute(
        _ r: inout OTLPWireReader, index: Int, depth: Int = 0
    ) throws(OTLPProtobufError) -> OTLPKeyValue {
        let range = try r.readLengthDelimited()
        return try r.within(range, "attributes[\(index)]") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
            try decodeKeyValue(&sub, depth: depth)
        }
    }

    static func decodeKeyValue(_ r: inout OTLPWireReader, depth: Int) throws(OTLPProtobufError) -> OTLPKeyValue {
        var kv = OTLPKeyValue(key: "", value: .empty)
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): kv.key = try r.readString()
            case (2, .lengthDelimited):
                let range = try r.readLengthDelimited()
                try r.within(range, "value") { (sub: inout OTLPWireReader) throws(OTLPProtobufError) in
                    kv.value = try decodeAnyValue(&sub, depth: depth + 1)
                }
            default: try r.skip(wire)
            }
        }
        return kv
    }

    static func decodeAnyValue(_ r: inout OTLPWireReader, depth: Int) throws(OTLPProtobufError) -> OTLPAnyValue {
        guard depth <= OTLPWireReader.maximumAnyValueDepth else {
            throw r.fail("values nested deeper than \(OTLPWireReader.maximumAnyValueDepth) levels")
        }
        var value = OTLPAnyValue.empty
        while !r.isAtEnd {
            let (field, wire) = try r.readTag()
            switch (field, wire) {
            case (1, .lengthDelimited): value = .string(try r.readString())
            case (2, .varint): value = .bool(try r.readVarint() != 0)
            case (3, .varint): value = .int(Int64(bitPattern: try r.readVarint()))
            case (4, .fixed64): value = .double(Double(bitPattern: try r.readFixed64()))
            case (5, .lengthDelimited):
                let range = try r.readLengthDelimited()
                var sub = r.sub(range)
                var items: [OTLPAnyValue] = []
                while !sub.isAtEnd {
                    let (f, w) = try sub.readTag()
                    if f == 1 && w == .lengthDelimited {
                        let itemRange = try sub.readLengthDelimited()
                        do throws(OTLPProtobufError) {
                            var item = sub.sub(itemRange)
                            items.append(try decodeAnyValue(&item, depth: depth + 1))
                        } catch {
                            throw error.inside("arrayValue[\(items.count)]")
                        }
                    } else {
                        try sub.skip(w)
                    }
                }
                value = .array(items)
            case (6, .lengthDelimited):
                let range = try r.readLengthDelimited()
                var sub = r.sub(range)
                var members: [OTLPKeyValue] = []
                while !sub.isAtEnd {
                    let (f, w) = try sub.readTag()
                    if f == 1 && w == .lengthDelimited {
                        let memberRange = try sub.readLengthDelimited()
                        do throws(OTLPProtobufError) {
                            var member = sub.sub(memberRange)
                            members.append(try decodeKeyValue(&member, depth: depth))
                        } catch {
                            throw error.inside("kvlistValue[\(members.count)]")
                        }
                    } else {
                        try sub.skip(w)
                    }
                }
                value = .kvlist(members)
            case (7, .lengthDelimited): value = .bytes(try r.readBytes())
            default: try r.skip(wire)
            }
        }
        return value
    }
}
