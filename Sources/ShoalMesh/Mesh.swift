// The mesh on one node: validates tables, opens listeners, runs the reactors (one thread each)
// and the health checker, applies new revisions as one swap per reactor, and answers inspect.
// Everything here is off the per-connection path.

import CShoal
import Foundation
import ShoalConfig
import ShoalSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

package final class Mesh: Sendable {
    package let reactors: [Reactor]
    private let current: Mutex<MeshTable>
    /// Serialises applies (each opens listeners, posts, waits for every reactor).
    private let applying = Mutex<Void>(())
    private let threadsDone: [DispatchSemaphore]
    private let health: HealthChecker
    private let startedAt = Date()

    /// Opens every listener and starts the reactors; a port that cannot be bound fails the start.
    package init(_ spec: MeshSpec) throws {
        _ = shoal_raise_nofile()
        let table = MeshTable.build(spec, previous: nil)
        var opened: [[PortKey: CInt]] = []
        do {
            for _ in 0..<spec.reactors { opened.append(try Self.openListeners(spec, ports: spec.ports)) }
        } catch {
            for o in opened { for fd in o.values { Glibc.close(fd) } }
            throw error
        }
        var rs: [Reactor] = []
        for i in 0..<spec.reactors { rs.append(try Reactor(id: i, table: table, listeners: opened[i])) }
        reactors = rs
        current = Mutex(table)
        health = HealthChecker()
        var done: [DispatchSemaphore] = []
        for r in rs {
            let sem = DispatchSemaphore(value: 0)
            done.append(sem)
            let thread = Thread {
                r.run()
                sem.signal()
            }
            thread.name = "shoal-mesh-reactor-\(r.id)"
            thread.stackSize = 1 << 20
            thread.start()
        }
        threadsDone = done
        health.start(table)
    }

    /// The revision in service.
    package var table: MeshTable { current.withLock { $0 } }

    /// Opens one reactor's sockets for `ports` (SO_REUSEPORT, so every reactor has its own).
    private static func openListeners(_ spec: MeshSpec, ports: [PortSpec]) throws(ConfigError) -> [PortKey: CInt] {
        var out: [PortKey: CInt] = [:]
        for p in ports {
            let address = SocketAddress(ip: spec.listen, port: p.port)
            do {
                let fd: FileDescriptor =
                    p.proto == .tcp
                    ? try Socket.listenTCP(address, backlog: 65_535, reusePort: true)
                    : try Socket.bindUDP(address, reusePort: true)
                if p.proto == .tcp { tuneListener(fd.rawValue, p) }
                // A wildcard UDP listener learns each datagram's destination, so replies leave
                // from the address the client used (a node has several).
                if p.proto == .udp && spec.listen.isUnspecified {
                    _ = shoal_enable_pktinfo(fd.rawValue, address.family)
                }
                out[p.key] = fd.release()
            } catch {
                for fd in out.values { Glibc.close(fd) }
                let i = spec.ports.firstIndex { $0.key == p.key } ?? 0
                throw ConfigError(
                    field: "ports[\(i)].port", "cannot listen on \(address)/\(p.proto.rawValue): \(error.errno)")
            }
        }
        return out
    }

    /// Replaces the table as one swap per reactor: listeners for new ports open first (a port
    /// that cannot be bound refuses the whole table, and the old one keeps serving), removed
    /// ports close, and connections to tasks that left drain. Returns once every reactor serves
    /// the new revision.
    package func apply(_ spec: MeshSpec) throws(ConfigError) {
        try applying.withLock { _ throws(ConfigError) in
            let old = table
            guard spec.listen == old.spec.listen else {
                throw ConfigError(field: "listen", "cannot change while running (restart the mesh)")
            }
            guard spec.reactors == old.spec.reactors else {
                throw ConfigError(field: "reactors", "cannot change while running (restart the mesh)")
            }
            let oldKeys = Set(old.ports.map(\.spec.key))
            let added = spec.ports.filter { !oldKeys.contains($0.key) }
            var opened: [[PortKey: CInt]] = []
            do throws(ConfigError) {
                for _ in reactors { opened.append(try Self.openListeners(spec, ports: added)) }
            } catch {
                for o in opened { for fd in o.values { Glibc.close(fd) } }
                throw error
            }
            let table = MeshTable.build(spec, previous: old)
            current.withLock { $0 = table }
            for (r, o) in zip(reactors, opened) { r.post(.swap(table, opened: o)) }
            health.update(table)
            let deadline = Date().addingTimeInterval(5)
            while reactors.contains(where: { $0.servedRevision < table.revision && $0.servedRevision != .max })
                && Date() < deadline
            {
                usleep(1_000)
            }
        }
    }

    /// Stops accepting, lets connections finish for up to `drainMs`, stops the reactors.
    package func shutdown(drainMs: UInt64) {
        health.stop()
        for r in reactors { r.post(.stop(drainMs: drainMs)) }
        for s in threadsDone { s.wait() }
    }

    // MARK: Inspect

    package func inspect() -> MeshInspection {
        let t = table
        let now = shoal_now_ms()
        return MeshInspection(
            revision: t.revision, reactors: reactors.count,
            servedRevisions: reactors.map { $0.servedRevision == .max ? -1 : Int64($0.servedRevision) },
            uptimeSeconds: Int(Date().timeIntervalSince(startedAt)),
            kernelListenOverflows: Self.listenOverflows(),
            listeners: t.ports.map { p in
                MeshInspection.Listener(
                    port: Int(p.spec.port), protocol: p.spec.proto.rawValue,
                    address: "\(SocketAddress(ip: t.spec.listen, port: p.spec.port))",
                    balancer: p.spec.balancer.rawValue, proxyProtocol: p.spec.proxyProtocol.rawValue,
                    acceptProxy: p.spec.acceptProxy, active: p.runtime.active.load(ordering: .relaxed),
                    counters: Dictionary(
                        uniqueKeysWithValues: MeshCounter.allCases.map { ($0.name, p.runtime.value($0)) }),
                    tasks: p.endpoints.indices.map { i in
                        let e = p.endpoints[i]
                        let ejectedUntil = e.ejectedUntilMs.load(ordering: .relaxed)
                        return MeshInspection.Task(
                            address: "\(e.address)", node: e.node, weight: p.weights[i],
                            tableHealthy: p.tableHealthy[i], checkHealthy: e.checkHealthy.load(ordering: .relaxed),
                            ejected: ejectedUntil > now, eligible: p.eligible(i, nowMs: now),
                            active: e.active.load(ordering: .relaxed), total: e.total.load(ordering: .relaxed),
                            connectFailures: e.connectFailures.load(ordering: .relaxed),
                            ejections: e.ejections.load(ordering: .relaxed))
                    })
            })
    }
}

/// `shoal mesh inspect --json`.
package struct MeshInspection: Codable, Sendable {
    package var revision: UInt64
    package var reactors: Int
    /// Each reactor's revision (all equal outside an apply).
    package var servedRevisions: [Int64]
    package var uptimeSeconds: Int
    /// The namespace's TcpExt ListenOverflows (connections the kernel dropped on a full backlog;
    /// counted by the kernel for every listener of the namespace, not only ours).
    package var kernelListenOverflows: UInt64?
    package var listeners: [Listener]

    package struct Listener: Codable, Sendable {
        package var port: Int
        package var `protocol`: String
        package var address: String
        package var balancer: String
        package var proxyProtocol: String
        package var acceptProxy: Bool
        package var active: Int
        package var counters: [String: UInt64]
        package var tasks: [Task]
    }

    package struct Task: Codable, Sendable {
        package var address: String
        package var node: String
        package var weight: Int
        package var tableHealthy: Bool
        package var checkHealthy: Bool
        package var ejected: Bool
        package var eligible: Bool
        package var active: Int
        package var total: UInt64
        package var connectFailures: UInt64
        package var ejections: UInt64
    }

    /// The human form.
    package var text: String {
        var out = "revision \(revision), \(reactors) reactor(s), up \(uptimeSeconds)s"
        if let o = kernelListenOverflows { out += ", kernel listen overflows \(o) (namespace)" }
        out += "\n"
        for l in listeners {
            let c = l.counters
            out += "\(l.address)/\(l.protocol)  \(l.balancer)"
            if l.proxyProtocol != "none" { out += "  proxy-protocol \(l.proxyProtocol)" }
            if l.acceptProxy { out += "  accept-proxy" }
            out += "  active \(l.active)\n"
            let refused =
                (c["refusedMaxConnections"] ?? 0) + (c["refusedNoHealthyTask"] ?? 0)
                + (c["refusedFdExhausted"] ?? 0) + (c["refusedNoSlot"] ?? 0)
            let failed =
                (c["connectRefused"] ?? 0) + (c["connectTimeout"] ?? 0) + (c["connectUnreachable"] ?? 0)
                + (c["connectOther"] ?? 0)
            out += "  accepted \(c["accepted"] ?? 0)  refused \(refused)  connect-failures \(failed)"
            out += "  retries \(c["retries"] ?? 0)  bytes in \(c["bytesIn"] ?? 0) out \(c["bytesOut"] ?? 0)\n"
            for t in l.tasks {
                var state = t.eligible ? "up" : "down"
                if !t.tableHealthy { state += " (table)" }
                if !t.checkHealthy { state += " (check)" }
                if t.ejected { state += " (ejected)" }
                out += "    \(t.address)  node \(t.node.isEmpty ? "-" : t.node)  weight \(t.weight)  \(state)"
                out += "  active \(t.active)  total \(t.total)  connect-failures \(t.connectFailures)\n"
            }
        }
        return out
    }
}
