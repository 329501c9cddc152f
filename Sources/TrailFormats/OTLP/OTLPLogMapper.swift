import TrailCore

/// Turns decoded OTLP log records into ``Observation``s. Only access logs give an observation; any other log
/// record stays in its request's record with no observation and no rejection.
///
/// A log record is an access log when one of these holds:
/// 1. Its body is a Kong logging record (`kong.log.serialize()` output: an object with `started_at` and a
///    `request` or `session` object), either as a JSON string or as a kvlist. It is mapped by
///    ``KongLogParser`` (a `.gateway` observation; formats.md §1.2), then `format` is the OTLP format, and the
///    trace id (when Kong's record has none) and span id come from the log record.
/// 2. Its attributes — plus the members of a kvlist body or of a JSON-object string body, nested objects
///    flattened to dotted keys, the record's own attributes winning — carry at least two of: method
///    (`http.request.method`, `http.method`), target (`url.path`, `http.target`, `url.full`, `http.url`),
///    status (`http.response.status_code`, `http.status_code`).
///
/// Attribute mapping (case 2):
/// - kind: `.gateway` when the resource `service.name` is `kong` or any key starts with `kong.` or is
///   `consumer` / `consumer.*`; else `.inbound` (the access log of the server that answered).
/// - start: `time_unix_nano`, else `observed_time_unix_nano` (neither → the record is rejected);
///   durationNanos: `duration_ms` or `duration` (milliseconds, Envoy `%DURATION%`).
/// - traceID / spanID: the record's `trace_id` / `span_id` (an invalid id is dropped and reported).
/// - method; path: `url.path`, else `http.target` or the `url.full`/`http.url` path without the query;
///   authority: `server.address`, `http.host`, the `url.full` host, `http.request.header.host`;
///   status: `http.response.status_code`, `http.status_code`.
/// - requestID: `http.request.header.x-request-id`, `kong.request.id`, `request.id`, `guid:x-request-id`.
/// - userAgent: `user_agent.original`, `http.user_agent`; responseFlags: `response_flags`;
///   policy: `trail.policy`; tlsVersion: `tls.protocol.name`/`.version`.
/// - caller: address from `client.address`, `http.client_ip`, `network.peer.address`, `net.sock.peer.addr`,
///   `net.peer.ip`, `peer.address` (port stripped), port from `client.port`; spiffeID/service from
///   `trail.caller.*`; certificate from `tls.client.*` (then transport is mTLS), else transport from
///   `tls.established` — exactly as for a SERVER span.
/// - callee: `.inbound` → the resource `service.name`; `.gateway` → `kong.service.name`, address and port
///   from `upstream_address`.
/// - principal: `enduser.id`, `user.id`, else `consumer.username`, `consumer.custom_id`, `consumer.id`,
///   `consumer` (type `trail.principal.type`, else consumer; credential `authenticated_entity.id`).
/// - gateway only: route from `kong.route.name`, `route.name`, `route_name`; transport plaintext/tls from
///   `url.scheme`/`http.scheme` (or the `url.full` scheme) when the TLS attributes say nothing.
///   inbound: route from `route_name`.
enum OTLPLogMapper {
    /// One record for one decoded logs request. `logRaw(i, j, k)` gives the bytes to keep for a rejected log
    /// record.
    static func record(
        for request: OTLPLogsRequest, format: InputFormat, location: RecordLocation, raw: [UInt8],
        logRaw: (Int, Int, Int) -> [UInt8]
    ) -> ParsedRecord {
        var observations: [Observation] = []
        var rejections: [Rejection] = []
        for (i, resourceLogs) in request.resourceLogs.enumerated() {
            let resource = OTLPAttributes(resourceLogs.resourceAttributes)
            let serviceName = resource.string("service.name")
            for (j, scopeLogs) in resourceLogs.scopeLogs.enumerated() {
                for (k, logRecord) in scopeLogs.logRecords.enumerated() {
                    let (observation, problems) = Self.observation(
                        for: logRecord, serviceName: serviceName, format: format)
                    if let observation { observations.append(observation) }
                    if !problems.isEmpty {
                        let detail = "resourceLogs[\(i)].scopeLogs[\(j)].logRecords[\(k)]"
                        let bytes = logRaw(i, j, k)
                        for problem in problems {
                            rejections.append(Rejection(
                                format: format, location: RecordLocation(line: location.line, detail: detail),
                                raw: bytes, reason: problem))
                        }
                    }
                }
            }
        }
        return ParsedRecord(
            format: format, location: location, raw: raw, observations: observations, partialRejections: rejections)
    }

    // MARK: One log record

    /// The observation of one log record (nil when it is not an access log, or is rejected) and the reasons
    /// for what was rejected or ignored.
    static func observation(
        for record: OTLPLogRecord, serviceName: String?, format: InputFormat
    ) -> (Observation?, [String]) {
        if let problem = record.problem { return (nil, [problem]) }

        let bodyObject = Self.bodyObject(record.body)
        if let bodyObject, isKongRecord(bodyObject) {
            switch KongLogParser.map(bodyObject) {
            case .failure(let reason):
                return (nil, ["body: " + reason.description])
            case .success(let (mapped, kongProblems)):
                var obs = mapped
                var problems = kongProblems.map { "body: " + $0 }
                obs.format = format.rawValue
                let ids = Self.ids(record, problems: &problems)
                if obs.traceID == nil { obs.traceID = ids.traceID }
                if obs.spanID == nil, obs.traceID == ids.traceID { obs.spanID = ids.spanID }
                return (obs, problems)
            }
        }

        var list: [OTLPKeyValue] = []
        list.reserveCapacity(record.attributes.count)
        flatten(record.attributes, prefix: "", into: &list)
        switch record.body {
        case .kvlist(let members): flatten(members, prefix: "", into: &list)
        default:
            if let members = bodyObject?.object { flatten(json: members, prefix: "", into: &list) }
        }
        let a = OTLPAttributes(list)

        let method = a.string("http.request.method", "http.method")
        let url = a.string("url.full", "http.url").map(OTLPURL.init)
        var path: String?
        if let p = a.string("url.path") {
            path = p
        } else if let target = a.string("http.target") {
            path = OTLPURL.stripQuery(target)
        } else {
            path = url?.path
        }
        var status: Int?
        if let s = a.int("http.response.status_code", "http.status_code"), (1...999).contains(s) { status = Int(s) }
        let evidence = (method != nil ? 1 : 0) + (path != nil ? 1 : 0) + (status != nil ? 1 : 0)
        guard evidence >= 2 else { return (nil, []) }

        var problems: [String] = []
        let time = record.timeUnixNano != 0 ? record.timeUnixNano : record.observedTimeUnixNano
        guard time != 0 else { return (nil, ["access log record: missing timeUnixNano"]) }
        guard time <= UInt64(Int64.max) else {
            return (nil, ["access log record: timeUnixNano \(time) is out of range"])
        }

        let isGateway =
            serviceName?.lowercased() == "kong" || a.containsKey(withPrefix: "kong.") || a.contains("consumer")
            || a.containsKey(withPrefix: "consumer.")
        let ids = Self.ids(record, problems: &problems)
        var obs = Observation(
            kind: isGateway ? .gateway : .inbound, format: format.rawValue, traceID: ids.traceID,
            spanID: ids.spanID, start: Timestamp(nanoseconds: Int64(time)))
        obs.method = method
        obs.path = path
        obs.status = status
        obs.authority = a.string("server.address", "http.host") ?? url?.host ?? a.string("http.request.header.host")
        if let ms = a.int("duration_ms", "duration"), ms >= 0, ms < Int64.max / 1_000_000 {
            obs.durationNanos = ms * 1_000_000
        }
        obs.requestID = a.string("http.request.header.x-request-id", "kong.request.id", "request.id", "guid:x-request-id")
        obs.userAgent = a.string("user_agent.original", "http.user_agent")
        obs.policy = a.string("trail.policy").flatMap(PolicyDecision.init(rawValue:))
        obs.responseFlags = a.string("response_flags").flatMap { $0 == "-" ? nil : $0 }
        if let version = a.string("tls.protocol.version") {
            let name = a.string("tls.protocol.name")?.lowercased() ?? "tls"
            obs.tlsVersion = (name == "ssl" ? "SSLv" : "TLSv") + version
        }

        // Caller, certificate, transport and end-user principal, as for a SERVER span.
        OTLPSpanMapper.mapServer(&obs, attributes: a, service: isGateway ? nil : serviceName)
        if let port = a.int("client.port"), (0...65535).contains(port) { obs.caller.port = Int(port) }
        if obs.principal == nil,
            let name = a.string("consumer.username", "consumer.custom_id", "consumer.id", "consumer")
        {
            let type = a.string("trail.principal.type").flatMap(PrincipalType.init(rawValue:)) ?? .consumer
            obs.principal = Principal(name: name, type: type, credential: a.string("authenticated_entity.id"))
        }

        if isGateway {
            obs.callee.service = a.string("kong.service.name")
            if let upstream = a.string("upstream_address") {
                obs.callee.address = OTLPAddress.stripPort(upstream)
                if let port = OTLPAddress.port(upstream), (0...65535).contains(port) { obs.callee.port = Int(port) }
            }
            obs.route = a.string("kong.route.name", "route.name", "route_name")
            if obs.transport == nil {
                var scheme = a.string("url.scheme", "http.scheme")?.lowercased()
                if scheme == nil, let full = a.string("url.full", "http.url")?.lowercased() {
                    if full.hasPrefix("https://") { scheme = "https" } else if full.hasPrefix("http://") { scheme = "http" }
                }
                switch scheme {
                case "http"?: obs.transport = .plaintext
                case "https"?: obs.transport = .tls
                default: break
                }
            }
        } else {
            obs.route = a.string("route_name")
        }
        return (obs, problems)
    }

    /// The record's trace and span ids as lowercase hex; an unset id is nil, an invalid one is nil and reported.
    static func ids(_ record: OTLPLogRecord, problems: inout [String]) -> (traceID: String?, spanID: String?) {
        var traceID: String?
        var spanID: String?
        if record.traceID?.isEmpty != true {
            if let p = OTLPSpanMapper.idProblem(record.traceID, name: "traceId", length: 16) {
                problems.append(p)
            } else {
                traceID = record.traceID.flatMap(TraceIDs.traceID(bytes:))
            }
        }
        if record.spanID?.isEmpty != true {
            if let p = OTLPSpanMapper.idProblem(record.spanID, name: "spanId", length: 8) {
                problems.append(p)
            } else {
                spanID = record.spanID.flatMap(TraceIDs.spanID(bytes:))
            }
        }
        return (traceID, spanID)
    }

    // MARK: Bodies

    /// The body as a JSON object: a kvlist, or a string holding a JSON object. Nil otherwise.
    static func bodyObject(_ body: OTLPAnyValue) -> JSONValue? {
        switch body {
        case .kvlist:
            return json(body)
        case .string(let s):
            let bytes = Array(s.utf8)
            guard let first = bytes.first(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0A && $0 != 0x0D }),
                first == UInt8(ascii: "{")
            else { return nil }
            guard let value = try? JSONParser.parse(bytes), value.object != nil else { return nil }
            return value
        default:
            return nil
        }
    }

    /// A Kong `kong.log.serialize()` record: `started_at` plus a `request` (HTTP) or `session` (stream) object.
    static func isKongRecord(_ v: JSONValue) -> Bool {
        guard let startedAt = v["started_at"], !startedAt.isNull else { return false }
        return v["request"]?.object != nil || v["session"]?.object != nil
    }

    /// An AnyValue as JSON (bytes become base64-free nulls: Kong records hold none).
    static func json(_ value: OTLPAnyValue) -> JSONValue {
        switch value {
        case .empty, .bytes: return .null
        case .string(let s): return .string(s)
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .array(let items): return .array(items.map(json))
        case .kvlist(let members): return .object(members.map { ($0.key, json($0.value)) })
        }
    }

    /// Appends `list`, each kvlist value also expanded to `key.member` entries (recursively).
    static func flatten(_ list: [OTLPKeyValue], prefix: String, into out: inout [OTLPKeyValue], depth: Int = 0) {
        for kv in list {
            let key = prefix + kv.key
            out.append(OTLPKeyValue(key: key, value: kv.value))
            if case .kvlist(let members) = kv.value, depth < 16 {
                flatten(members, prefix: key + ".", into: &out, depth: depth + 1)
            }
        }
    }

    /// Appends the members of a JSON object as attributes, nested objects flattened to dotted keys.
    static func flatten(json members: [(String, JSONValue)], prefix: String, into out: inout [OTLPKeyValue], depth: Int = 0) {
        for (k, v) in members {
            let key = prefix + k
            switch v {
            case .object(let inner):
                if depth < 16 { flatten(json: inner, prefix: key + ".", into: &out, depth: depth + 1) }
            default:
                if let value = anyValue(v) { out.append(OTLPKeyValue(key: key, value: value)) }
            }
        }
    }

    static func anyValue(_ v: JSONValue) -> OTLPAnyValue? {
        switch v {
        case .null, .object: return nil
        case .bool(let b): return .bool(b)
        case .int(let i): return .int(i)
        case .double(let d): return .double(d)
        case .string(let s): return .string(s)
        case .array(let items): return .array(items.compactMap(anyValue))
        }
    }
}
