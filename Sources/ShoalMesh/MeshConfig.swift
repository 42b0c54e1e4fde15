// The endpoint table as an operator writes it (JSON or YAML), and its validation. A table is
// accepted whole or refused whole with a message naming the field; defaults are filled in here
// so the data plane never sees an optional.

import Foundation
import ShoalConfig
import ShoalSystem

private func readTextFile(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

private func onlineCPUs() -> Int { max(1, ProcessInfo.processInfo.activeProcessorCount) }

package enum PortProtocol: String, Codable, Sendable {
    case tcp, udp
}

package enum BalancerKind: String, Codable, Sendable, CaseIterable {
    case roundRobin = "round-robin"
    case leastConnections = "least-connections"
    case powerOfTwo = "p2c"
    case maglev
}

package enum ProxyProtocolMode: String, Codable, Sendable {
    case none, v1, v2
}

/// The file: a revision and the published ports.
package struct MeshConfig: Decodable, Sendable {
    package var revision: UInt64
    /// Address the listeners bind (default 0.0.0.0: every address of the node).
    package var listen: String?
    /// Reactor threads (default: online CPUs).
    package var reactors: Int?
    /// Control socket for `shoal mesh apply|inspect` (default /run/shoal/mesh.sock).
    package var control: String?
    /// How long SIGTERM waits for connections to end (default 30 s).
    package var drainTimeoutMs: Int?
    package var ports: [PortConfig]

    /// Computed, not stored: a global of indirect enum boxes reads as a leak to LeakSanitizer
    /// (its pointers carry enum tag bits), which fails the fuzz runs.
    package static var schema: ConfigSchema {
        .object([
            "revision": .value, "listen": .value, "reactors": .value, "control": .value,
            "drainTimeoutMs": .value, "ports": .array(PortConfig.schema),
        ])
    }

    /// Decodes and validates; the message names the field at fault.
    package static func parse(_ text: String) throws(ConfigError) -> MeshSpec {
        try schema.check(text)
        let raw = try ConfigFile.decode(MeshConfig.self, from: text)
        return try MeshSpec(raw)
    }

    package static func load(path: String) throws(ConfigError) -> MeshSpec {
        guard let text = readTextFile(path) else {
            throw ConfigError(field: "", "cannot read config file \(path)")
        }
        return try parse(text)
    }
}

package struct PortConfig: Decodable, Sendable {
    package var port: Int
    package var `protocol`: PortProtocol?
    package var balancer: BalancerKind?
    /// PROXY protocol header sent to tasks.
    package var proxyProtocol: ProxyProtocolMode?
    /// Expect a PROXY v1/v2 header from an external load balancer on this listener.
    package var acceptProxy: Bool?
    package var connectTimeoutMs: Int?
    /// Close a TCP connection idle this long (0: never; keepalive still detects dead peers).
    package var idleTimeoutMs: Int?
    /// UDP flow idle expiry.
    package var flowTimeoutMs: Int?
    package var keepalive: KeepaliveConfig?
    package var maxConnections: Int?
    package var drainTimeoutMs: Int?
    /// Other tasks tried when a connect fails before any byte was relayed.
    package var retries: Int?
    package var healthCheck: HealthCheckConfig?
    package var passiveEjection: EjectionConfig?
    package var endpoints: [EndpointConfig]

    static var schema: ConfigSchema {
        .object([
            "port": .value, "protocol": .value, "balancer": .value, "proxyProtocol": .value,
            "acceptProxy": .value, "connectTimeoutMs": .value, "idleTimeoutMs": .value,
            "flowTimeoutMs": .value, "keepalive": KeepaliveConfig.schema, "maxConnections": .value,
            "drainTimeoutMs": .value, "retries": .value, "healthCheck": HealthCheckConfig.schema,
            "passiveEjection": EjectionConfig.schema, "endpoints": .array(EndpointConfig.schema),
        ])
    }
}

package struct KeepaliveConfig: Decodable, Sendable {
    /// Seconds of silence before the first probe (0 turns keepalive off).
    package var idleS: Int?
    package var intervalS: Int?
    package var count: Int?

    static var schema: ConfigSchema { .object(["idleS": .value, "intervalS": .value, "count": .value]) }
}

package struct HealthCheckConfig: Decodable, Sendable {
    package var intervalMs: Int?
    package var timeoutMs: Int?
    /// Consecutive successes that bring a task back, failures that take it out.
    package var rise: Int?
    package var fall: Int?

    static var schema: ConfigSchema {
        .object([
            "intervalMs": .value, "timeoutMs": .value, "rise": .value, "fall": .value,
        ])
    }
}

package struct EjectionConfig: Decodable, Sendable {
    /// Consecutive connect failures that eject a task (0 turns passive ejection off).
    package var failures: Int?
    /// How long an ejected task gets no new connections before it is tried again.
    package var ejectMs: Int?

    static var schema: ConfigSchema { .object(["failures": .value, "ejectMs": .value]) }
}

package struct EndpointConfig: Decodable, Sendable {
    /// "ip:port" or "[v6]:port".
    package var address: String
    package var node: String?
    package var weight: Int?
    /// Health as the control plane reports it; false: no new connections.
    package var healthy: Bool?

    static var schema: ConfigSchema {
        .object([
            "address": .value, "node": .value, "weight": .value, "healthy": .value,
        ])
    }
}

// MARK: - Validated form

package struct MeshSpec: Sendable {
    package var revision: UInt64
    package var listen: IPAddress
    package var reactors: Int
    package var control: String
    package var drainTimeoutMs: UInt64
    package var ports: [PortSpec]
}

/// One published port with every option resolved.
package struct PortSpec: Sendable, Equatable {
    package var port: UInt16
    package var proto: PortProtocol
    package var balancer: BalancerKind
    package var proxyProtocol: ProxyProtocolMode
    package var acceptProxy: Bool
    package var connectTimeoutMs: UInt64
    package var idleTimeoutMs: UInt64
    package var flowTimeoutMs: UInt64
    package var keepaliveIdleS: Int32
    package var keepaliveIntervalS: Int32
    package var keepaliveCount: Int32
    package var maxConnections: Int
    package var drainTimeoutMs: UInt64
    package var retries: Int
    package var health: HealthCheckSpec?
    package var ejectAfterFailures: Int
    package var ejectMs: UInt64
    package var endpoints: [EndpointSpec]

    /// Identity of a listener across table revisions.
    package var key: PortKey { PortKey(port: port, proto: proto) }
}

package struct PortKey: Hashable, Sendable, CustomStringConvertible {
    package var port: UInt16
    package var proto: PortProtocol
    package var description: String { "\(port)/\(proto.rawValue)" }
}

package struct HealthCheckSpec: Sendable, Equatable {
    package var intervalMs: UInt64
    package var timeoutMs: UInt64
    package var rise: Int
    package var fall: Int
}

package struct EndpointSpec: Sendable, Equatable {
    package var address: SocketAddress
    package var node: String
    package var weight: Int
    package var healthy: Bool
}

extension MeshSpec {
    package static let maxEndpointsPerPort = 65_536

    package init(_ c: MeshConfig) throws(ConfigError) {
        revision = c.revision
        let listenText = c.listen ?? "0.0.0.0"
        guard let ip = IPAddress(listenText) else {
            throw ConfigError(field: "listen", "not an IP address: \(listenText)")
        }
        listen = ip
        reactors = try bounded(c.reactors, "reactors", default: onlineCPUs(), 1...256)
        control = c.control ?? "/run/shoal/mesh.sock"
        guard !control.isEmpty, control.utf8.count < 108 else {
            throw ConfigError(field: "control", "a unix socket path of 1 to 107 bytes")
        }
        drainTimeoutMs = UInt64(try bounded(c.drainTimeoutMs, "drainTimeoutMs", default: 30_000, 0...86_400_000))
        var seen = Set<PortKey>()
        ports = []
        for (i, p) in c.ports.enumerated() {
            let spec = try PortSpec(p, field: "ports[\(i)]", defaultDrainMs: drainTimeoutMs)
            guard seen.insert(spec.key).inserted else {
                throw ConfigError(field: "ports[\(i)].port", "\(spec.key) is published twice")
            }
            ports.append(spec)
        }
    }
}

extension PortSpec {
    init(_ p: PortConfig, field f: String, defaultDrainMs: UInt64) throws(ConfigError) {
        guard (1...65_535).contains(p.port) else { throw ConfigError(field: "\(f).port", "must be in 1...65535") }
        port = UInt16(p.port)
        proto = p.protocol ?? .tcp
        balancer = p.balancer ?? .roundRobin
        proxyProtocol = p.proxyProtocol ?? .none
        acceptProxy = p.acceptProxy ?? false
        if proto == .udp && (proxyProtocol != .none || acceptProxy) {
            throw ConfigError(field: "\(f).proxyProtocol", "PROXY protocol is for TCP ports only")
        }
        let day = 86_400_000
        connectTimeoutMs = UInt64(try bounded(p.connectTimeoutMs, "\(f).connectTimeoutMs", default: 2_000, 1...600_000))
        idleTimeoutMs = UInt64(try bounded(p.idleTimeoutMs, "\(f).idleTimeoutMs", default: 3_600_000, 0...day))
        flowTimeoutMs = UInt64(try bounded(p.flowTimeoutMs, "\(f).flowTimeoutMs", default: 30_000, 100...day))
        let ka = p.keepalive
        keepaliveIdleS = Int32(try bounded(ka?.idleS, "\(f).keepalive.idleS", default: 60, 0...86_400))
        keepaliveIntervalS = Int32(try bounded(ka?.intervalS, "\(f).keepalive.intervalS", default: 10, 1...3_600))
        keepaliveCount = Int32(try bounded(ka?.count, "\(f).keepalive.count", default: 6, 1...127))
        maxConnections = try bounded(p.maxConnections, "\(f).maxConnections", default: 100_000, 1...10_000_000)
        drainTimeoutMs = UInt64(
            try bounded(p.drainTimeoutMs, "\(f).drainTimeoutMs", default: Int(defaultDrainMs), 0...day))
        retries = try bounded(p.retries, "\(f).retries", default: 2, 0...16)
        if let h = p.healthCheck {
            let interval = try bounded(h.intervalMs, "\(f).healthCheck.intervalMs", default: 2_000, 10...3_600_000)
            let timeout = try bounded(
                h.timeoutMs, "\(f).healthCheck.timeoutMs", default: min(1_000, interval), 1...interval)
            health = HealthCheckSpec(
                intervalMs: UInt64(interval), timeoutMs: UInt64(timeout),
                rise: try bounded(h.rise, "\(f).healthCheck.rise", default: 2, 1...100),
                fall: try bounded(h.fall, "\(f).healthCheck.fall", default: 3, 1...100))
        } else {
            health = nil
        }
        ejectAfterFailures = try bounded(
            p.passiveEjection?.failures, "\(f).passiveEjection.failures", default: 3, 0...1_000)
        ejectMs = UInt64(
            try bounded(p.passiveEjection?.ejectMs, "\(f).passiveEjection.ejectMs", default: 10_000, 1...day))
        guard p.endpoints.count <= MeshSpec.maxEndpointsPerPort else {
            throw ConfigError(field: "\(f).endpoints", "at most \(MeshSpec.maxEndpointsPerPort) endpoints per port")
        }
        var seen = Set<SocketAddress>()
        endpoints = []
        for (j, e) in p.endpoints.enumerated() {
            let ef = "\(f).endpoints[\(j)]"
            guard let address = SocketAddress(e.address) else {
                throw ConfigError(field: "\(ef).address", "expected ip:port or [ipv6]:port, got \"\(e.address)\"")
            }
            guard address.port != 0 else { throw ConfigError(field: "\(ef).address", "port 0") }
            guard seen.insert(address).inserted else {
                throw ConfigError(field: "\(ef).address", "\(address) is listed twice")
            }
            let weight = try bounded(e.weight, "\(ef).weight", default: 1, 0...10_000)
            endpoints.append(
                EndpointSpec(address: address, node: e.node ?? "", weight: weight, healthy: e.healthy ?? true))
        }
    }
}

private func bounded(_ v: Int?, _ field: String, default d: Int, _ range: ClosedRange<Int>) throws(ConfigError) -> Int {
    let value = v ?? d
    guard range.contains(value) else {
        throw ConfigError(field: field, "must be in \(range.lowerBound)...\(range.upperBound), got \(value)")
    }
    return value
}
