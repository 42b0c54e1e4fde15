// The live endpoint table: an immutable snapshot per revision, built off the hot path and handed
// to every reactor, which swaps its reference between two events (readers never lock and never
// see half a table). What must outlive a revision (connection counts, health, counters) lives in
// runtime objects that a new revision takes over from the old one by identity (port, address).

import ShoalSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Per-task state shared by all reactors and the health checker.
package final class EndpointRuntime: Sendable {
    package let address: SocketAddress
    package let node: String
    /// Connections picked for this task and not yet closed (least-connections reads it).
    package let active = Atomic<Int>(0)
    package let total = Atomic<UInt64>(0)
    package let connectFailures = Atomic<UInt64>(0)
    /// Active health checks' verdict (true until a check says otherwise).
    package let checkHealthy = Atomic<Bool>(true)
    /// Passive ejection: consecutive connect failures, and the time (ms) until which the task
    /// gets no new connections.
    package let consecutiveFailures = Atomic<Int>(0)
    package let ejectedUntilMs = Atomic<UInt64>(0)
    package let ejections = Atomic<UInt64>(0)
    /// False once a revision no longer lists the task: its connections drain.
    package let present = Atomic<Bool>(true)

    init(address: SocketAddress, node: String) {
        self.address = address
        self.node = node
    }

    /// Records a failed connect; ejects after `threshold` in a row (0: never).
    func connectFailed(nowMs: UInt64, threshold: Int, ejectMs: UInt64) {
        connectFailures.add(1, ordering: .relaxed)
        let n = consecutiveFailures.add(1, ordering: .relaxed).newValue
        if threshold > 0 && n >= threshold {
            ejectedUntilMs.store(nowMs &+ ejectMs, ordering: .relaxed)
            consecutiveFailures.store(0, ordering: .relaxed)
            ejections.add(1, ordering: .relaxed)
        }
    }

    func connectSucceeded() {
        if consecutiveFailures.load(ordering: .relaxed) != 0 { consecutiveFailures.store(0, ordering: .relaxed) }
    }
}

/// Why a connection or datagram was refused or failed; indexes `PortRuntime.counts`.
package enum MeshCounter: Int, CaseIterable, Sendable {
    case accepted, refusedMaxConnections, refusedNoHealthyTask, refusedFdExhausted, refusedNoSlot
    case badProxyHeader, proxyHeaderTimeout
    case connectRefused, connectTimeout, connectUnreachable, connectOther, retries
    case idleTimeouts, drainClosed, resets
    case bytesIn, bytesOut
    case udpDatagramsIn, udpDatagramsOut, udpFlowsCreated, udpFlowsExpired, udpFlowsMoved, udpDropped

    package var name: String { "\(self)" }

    var explanation: String {
        switch self {
        case .refusedMaxConnections: "refusing a connection: maxConnections reached"
        case .refusedNoHealthyTask: "refusing a connection: no healthy task"
        case .refusedFdExhausted: "refusing a connection: out of file descriptors (raise `ulimit -n`)"
        case .refusedNoSlot: "refusing a connection: no connection slot left"
        case .badProxyHeader: "closing a connection: malformed PROXY protocol header"
        case .proxyHeaderTimeout: "closing a connection: no PROXY protocol header in time"
        case .connectRefused: "a task refused a connection"
        case .connectTimeout: "a connect to a task timed out"
        case .connectUnreachable: "a task is unreachable"
        case .connectOther: "a connect to a task failed"
        case .udpDropped: "dropping a datagram"
        default: "\(self)"
        }
    }
}

/// One line on stderr, prefixed; off the hot path (first occurrences, state changes).
package func meshLog(_ message: String) {
    var line = "shoal mesh: " + message + "\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// Per published port counters, shared by the reactors (relaxed atomics).
package final class PortRuntime: Sendable {
    package let key: PortKey
    package let active = Atomic<Int>(0)
    private let counts: InlineArray<32, Atomic<UInt64>>

    init(key: PortKey) {
        precondition(MeshCounter.allCases.count <= 32, "PortRuntime.counts needs more room")
        self.key = key
        counts = InlineArray { _ in Atomic<UInt64>(0) }
    }

    @inline(__always)
    package func count(_ c: MeshCounter, _ n: UInt64 = 1) { counts[c.rawValue].add(n, ordering: .relaxed) }

    package func value(_ c: MeshCounter) -> UInt64 { counts[c.rawValue].load(ordering: .relaxed) }

    private let logged = Atomic<UInt64>(0)

    /// Logs the first refusal of each kind on this port; later ones are only counted.
    package func logOnce(_ c: MeshCounter) {
        let bit: UInt64 = 1 << UInt64(c.rawValue)
        guard logged.bitwiseOr(bit, ordering: .relaxed).oldValue & bit == 0 else { return }
        meshLog("port \(key): \(c.explanation) (further ones are counted, see `shoal mesh inspect`)")
    }
}

/// One published port in one revision: its options, tasks and balancer.
package final class PortTable: Sendable {
    package let spec: PortSpec
    package let runtime: PortRuntime
    package let endpoints: [EndpointRuntime]
    /// Weights and control-plane health of this revision (parallel to `endpoints`).
    package let weights: [Int]
    package let tableHealthy: [Bool]
    package let balancer: Balancer

    init(spec: PortSpec, runtime: PortRuntime, endpoints: [EndpointRuntime]) {
        self.spec = spec
        self.runtime = runtime
        self.endpoints = endpoints
        self.weights = spec.endpoints.map(\.weight)
        self.tableHealthy = spec.endpoints.map(\.healthy)
        self.balancer = Balancer(kind: spec.balancer, endpoints: spec.endpoints)
    }

    /// Whether task `i` may take a new connection now.
    @inline(__always)
    package func eligible(_ i: Int, nowMs: UInt64) -> Bool {
        let e = endpoints[i]
        return tableHealthy[i] && weights[i] > 0 && e.checkHealthy.load(ordering: .relaxed)
            && e.ejectedUntilMs.load(ordering: .relaxed) <= nowMs
    }

    /// Picks a task for a new connection from `client`, avoiding `exclude` (the task whose
    /// connect just failed) when another is eligible.
    @inline(__always)
    package func pick(clientHash: UInt64, nowMs: UInt64, rng: inout SplitMix64, exclude: Int = -1) -> Int? {
        balancer.pick(self, clientHash: clientHash, nowMs: nowMs, rng: &rng, exclude: exclude)
    }
}

/// A whole revision.
package final class MeshTable: Sendable {
    package let spec: MeshSpec
    package let ports: [PortTable]

    init(spec: MeshSpec, ports: [PortTable]) {
        self.spec = spec
        self.ports = ports
    }

    package var revision: UInt64 { spec.revision }

    /// Builds a revision, taking over runtime state from `previous` for ports and tasks it
    /// keeps; marks tasks that leave as no longer present (their connections drain).
    package static func build(_ spec: MeshSpec, previous: MeshTable?) -> MeshTable {
        var oldPorts: [PortKey: PortTable] = [:]
        for p in previous?.ports ?? [] { oldPorts[p.spec.key] = p }
        var kept = Set<ObjectIdentifier>()
        var ports: [PortTable] = []
        for ps in spec.ports {
            let old = oldPorts[ps.key]
            var oldEndpoints: [SocketAddress: EndpointRuntime] = [:]
            for e in old?.endpoints ?? [] { oldEndpoints[e.address] = e }
            let endpoints = ps.endpoints.map { es in
                let e = oldEndpoints[es.address] ?? EndpointRuntime(address: es.address, node: es.node)
                kept.insert(ObjectIdentifier(e))
                return e
            }
            ports.append(PortTable(spec: ps, runtime: old?.runtime ?? PortRuntime(key: ps.key), endpoints: endpoints))
        }
        for p in previous?.ports ?? [] {
            for e in p.endpoints where !kept.contains(ObjectIdentifier(e)) {
                e.present.store(false, ordering: .relaxed)
            }
        }
        return MeshTable(spec: spec, ports: ports)
    }
}

/// A small fast PRNG (SplitMix64), one per reactor.
package struct SplitMix64: Sendable {
    package var state: UInt64
    package init(seed: UInt64) { state = seed }

    @inline(__always)
    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
