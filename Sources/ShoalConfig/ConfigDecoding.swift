// Config files (JSON or YAML, chosen by extension or content) decoded into Codable values.
// A malformed file is refused with a message naming the field path, e.g.
// `networks[0].vni: expected an integer in 1...16777215`.

import Foundation
import Yams

/// A config error that names the offending field.
package struct ConfigError: Error, CustomStringConvertible, Sendable {
    package var field: String
    package var reason: String

    package init(field: String, _ reason: String) {
        self.field = field
        self.reason = reason
    }

    package var description: String { field.isEmpty ? reason : "\(field): \(reason)" }
}

package enum ConfigFile {
    /// Decodes `T` from JSON or YAML text. YAML is a superset of JSON, but JSON is decoded
    /// with Foundation when it looks like JSON so error paths match JSON users' expectations.
    package static func decode<T: Decodable>(_ type: T.Type, from text: String) throws(ConfigError) -> T {
        do {
            let trimmed = text.drop { $0.isWhitespace }
            if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") {
                return try JSONDecoder().decode(T.self, from: Data(text.utf8))
            }
            return try YAMLDecoder().decode(T.self, from: text)
        } catch let e as ConfigError {
            throw e
        } catch let e as DecodingError {
            throw ConfigError(decoding: e)
        } catch {
            throw ConfigError(field: "", "cannot parse: \(error)")
        }
    }

    /// Reads and decodes a file.
    package static func load<T: Decodable>(_ type: T.Type, path: String) throws(ConfigError) -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(field: "", "cannot read config file \(path)")
        }
        return try decode(T.self, from: String(decoding: data, as: UTF8.self))
    }
}

extension ConfigError {
    /// Turns a DecodingError into a field-naming message.
    package init(decoding error: DecodingError) {
        func path(_ keys: [any CodingKey]) -> String {
            var out = ""
            for k in keys {
                if let i = k.intValue {
                    out += "[\(i)]"
                } else {
                    out += out.isEmpty ? k.stringValue : ".\(k.stringValue)"
                }
            }
            return out
        }
        switch error {
        case .keyNotFound(let key, let ctx):
            let parent = path(ctx.codingPath)
            self.init(field: parent.isEmpty ? key.stringValue : "\(parent).\(key.stringValue)", "missing")
        case .typeMismatch(let t, let ctx):
            self.init(field: path(ctx.codingPath), "expected \(t)")
        case .valueNotFound(let t, let ctx):
            self.init(field: path(ctx.codingPath), "expected \(t), found null")
        case .dataCorrupted(let ctx):
            if let underlying = ctx.underlyingError as? ConfigError {
                let p = path(ctx.codingPath)
                self.init(field: p.isEmpty ? underlying.field : p, underlying.reason)
            } else {
                self.init(field: path(ctx.codingPath), ctx.debugDescription)
            }
        @unknown default:
            self.init(field: "", "\(error)")
        }
    }
}

/// The fields a config document may hold, so that a misspelt key is refused by name rather
/// than silently ignored (a typo in `ballancer:` must not run round robin without a word).
package indirect enum ConfigSchema: Sendable {
    case object([String: ConfigSchema])
    case array(ConfigSchema)
    case value

    /// Throws a `ConfigError` naming the first field that `text` holds but the schema does not.
    /// YAML is walked as Yams' node tree (never constructed into `Any`: Yams traps on mapping
    /// keys that are not strings, so such keys are refused here, before any decoder sees them).
    package func check(_ text: String) throws(ConfigError) {
        let trimmed = text.drop { $0.isWhitespace }
        if trimmed.hasPrefix("{") || trimmed.hasPrefix("[") {
            let tree: Any
            do {
                tree = try JSONSerialization.jsonObject(with: Data(text.utf8))
            } catch {
                throw ConfigError(field: "", "cannot parse: \(error)")
            }
            try walk(tree, path: "")
            return
        }
        let node: Node?
        do {
            node = try Yams.compose(yaml: text)
        } catch {
            throw ConfigError(field: "", "cannot parse: \(error)")
        }
        if let node { try walk(node, path: "") }
    }

    private func walk(_ node: Node, path: String) throws(ConfigError) {
        switch self {
        case .value:
            return
        case .array(let element):
            guard let items = node.sequence else { return }  // type errors come from decoding
            for (i, item) in items.enumerated() { try element.walk(item, path: "\(path)[\(i)]") }
        case .object(let fields):
            guard let mapping = node.mapping else { return }
            for (k, v) in mapping {
                guard let key = k.scalar?.string else {
                    throw ConfigError(field: path, "mapping keys must be plain strings")
                }
                let sub = path.isEmpty ? key : "\(path).\(key)"
                guard let schema = fields[key] else {
                    let known = fields.keys.sorted().joined(separator: ", ")
                    throw ConfigError(field: sub, "unknown field (known here: \(known))")
                }
                try schema.walk(v, path: sub)
            }
        }
    }

    private func walk(_ node: Any, path: String) throws(ConfigError) {
        switch self {
        case .value:
            return
        case .array(let element):
            guard let items = node as? [Any] else { return }  // type errors come from decoding
            for (i, item) in items.enumerated() { try element.walk(item, path: "\(path)[\(i)]") }
        case .object(let fields):
            guard let raw = node as? [AnyHashable: Any] else { return }
            var dict: [String: Any] = [:]
            for (k, v) in raw { dict["\(k.base)"] = v }
            for key in dict.keys.sorted() {
                let sub = path.isEmpty ? key : "\(path).\(key)"
                guard let schema = fields[key] else {
                    let known = fields.keys.sorted().joined(separator: ", ")
                    throw ConfigError(field: sub, "unknown field (known here: \(known))")
                }
                try schema.walk(dict[key]!, path: sub)
            }
        }
    }
}
