import Foundation
import Yams

/// A configuration error naming the file, the key path and the line: `sidecar.yaml: inbound.mode (line 7): ...`.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A YAML node with the key path that led to it, for errors that say exactly where the problem is. Unknown keys
/// are errors (a typo must not silently drop a security setting).
package struct ConfigNode {
    package let node: Node
    package let path: String
    package let file: String

    package static func documents(file: String) throws -> [ConfigNode] {
        let text: String
        do {
            text = try SecureFile.readText(file)
        } catch {
            throw ConfigError("\(file): cannot read it (\(error))")
        }
        return try documents(text: text, file: file)
    }

    package static func documents(text: String, file: String) throws -> [ConfigNode] {
        do {
            let parser = try Parser(yaml: text)
            var documents: [ConfigNode] = []
            while let node = try parser.nextRoot() { documents.append(ConfigNode(node: node, path: "", file: file)) }
            return documents
        } catch let e as YamlError {
            throw ConfigError("\(file): not valid YAML: \(e)")
        } catch {
            throw ConfigError("\(file): not valid YAML: \(error)")
        }
    }

    package var location: String {
        let line = node.mark.map { " (line \($0.line))" } ?? ""
        return "\(file): \(path.isEmpty ? "top level" : path)\(line)"
    }

    package func fail(_ message: String) -> ConfigError { ConfigError("\(location): \(message)") }

    /// The mapping's members; errors if this is not a mapping or has keys outside `allowed`.
    package func mapping(allowed: Set<String>) throws -> [String: ConfigNode] {
        guard let mapping = node.mapping else { throw fail("expected a mapping (key: value)") }
        var out: [String: ConfigNode] = [:]
        for (key, value) in mapping {
            guard let name = key.string else { throw fail("keys must be strings") }
            let child = ConfigNode(node: value, path: path.isEmpty ? name : "\(path).\(name)", file: file)
            guard allowed.contains(name) else {
                throw child.fail("unknown key; expected one of \(allowed.sorted().joined(separator: ", "))")
            }
            guard out[name] == nil else { throw child.fail("the key appears twice") }
            out[name] = child
        }
        return out
    }

    /// The members of a mapping whose keys are names chosen by the user (e.g. consumer usernames), in order.
    package func members() throws -> [(key: String, value: ConfigNode)] {
        guard let mapping = node.mapping else { throw fail("expected a mapping (key: value)") }
        var out: [(key: String, value: ConfigNode)] = []
        for (key, value) in mapping {
            guard let name = key.string else { throw fail("keys must be strings") }
            let child = ConfigNode(node: value, path: path.isEmpty ? name : "\(path).\(name)", file: file)
            guard !out.contains(where: { $0.key == name }) else { throw child.fail("the key appears twice") }
            out.append((name, child))
        }
        return out
    }

    package var isNull: Bool { node.null != nil || (node.scalar?.string == "" && node.scalar?.style == .plain) }

    package func string() throws -> String {
        guard let scalar = node.scalar else { throw fail("expected a string") }
        return scalar.string
    }

    package func int() throws -> Int {
        guard let scalar = node.scalar, let value = Int(scalar.string) else { throw fail("expected an integer") }
        return value
    }

    package func bool() throws -> Bool {
        guard let value = node.bool else { throw fail("expected true or false") }
        return value
    }

    package func list() throws -> [ConfigNode] {
        guard let sequence = node.sequence else { throw fail("expected a list") }
        return sequence.enumerated().map { ConfigNode(node: $1, path: "\(path)[\($0)]", file: file) }
    }

    package func strings() throws -> [String] { try list().map { try $0.string() } }

    /// `HOST:PORT` (IPv6 in brackets).
    package func hostPort() throws -> (host: String, port: Int) {
        let text = try string()
        guard let parsed = HostPort.parse(text) else { throw fail("'\(text)' is not HOST:PORT, e.g. 127.0.0.1:15006") }
        return parsed
    }

    /// A path relative to the config file's folder when not absolute.
    package func filePath() throws -> String {
        let text = try string()
        if text.hasPrefix("/") { return text }
        return ((file as NSString).deletingLastPathComponent as NSString).appendingPathComponent(text)
    }
}

package enum HostPort {
    package static func parse(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }
}
