// The overlay daemon of one node (`shoal overlay run`): sets up, per network, a Linux bridge and
// a TAP on it (netlink, libnl), binds the underlay sockets, then runs the VTEP on the calling
// thread until SIGINT/SIGTERM/SIGHUP, serving the control socket between batches; on the way
// out it removes what it created (the TAPs vanish with their descriptors; bridges are deleted).
//
//   poll([TAP per network, UDP vxlan, UDP esp?, control?, signalfd])
//     └─ readable TAP → VTEP.pumpTap   readable UDP → VTEP.pumpUDP   control → one request
//
// With `queues: N > 1` the VTEPs run on N queue threads instead (OverlayNode+Queues.swift) and
// the calling thread serves only the control socket and the signals.
//
// Contract: construct, `run()`, then `tearDown()` (also after a failed `run`); one thread.

import Foundation
import ShoalConfig
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

package final class OverlayNode {
    package let plan: OverlayPlan
    private let netlink: Netlink
    private var createdBridges: [String] = []
    /// Per queue, per network: the TAP descriptors (one queue each with IFF_MULTI_QUEUE).
    private var queueTapFDs: [[CInt]] = []
    private var controlFD: CInt = -1
    /// The VTEP and its sealer when they run on the calling thread (`queues == 1`).
    package private(set) var vtep: VTEP?
    private var sealer: (any QueueSealer)?
    /// The queue threads' shared state (`queues > 1`).
    var queueSet: QueueSet?
    /// Key-ring handling (add / promote / retire), set when the ESP engine is in use.
    package var keyControl: ((ControlRequest) throws -> String)?
    package var espReport: (() -> ESPReport)?
    /// The offloads the TAPs were given: TCP always, UDP (USO) when the kernel takes it.
    package private(set) var tapOffloads: [String] = []

    /// Default control socket of `node`.
    package static func defaultControlPath(node: String) -> String { "/run/shoal/overlay-\(node).sock" }

    /// Creates bridges and TAPs and binds the sockets (starting the queue threads when
    /// `plan.queues > 1`, each with the sealer `makeSealer` gives it on its thread). On failure,
    /// what was created is removed.
    package init(plan: OverlayPlan, makeSealer: @escaping @Sendable (_ queue: Int) throws -> (any QueueSealer)?) throws
    {
        self.plan = plan
        netlink = try Netlink()
        queueTapFDs = Array(repeating: [], count: plan.queues)
        do {
            for n in plan.networks {
                // A bridge left by a crashed run of ours has our name: replace it.
                netlink.deleteLink(n.bridgeName)
                try netlink.addBridge(n.bridgeName, mtu: n.mtu)
                createdBridges.append(n.bridgeName)
                // IFF_VNET_HDR with checksum, TSO and USO offloads: TCP, and UDP sent with
                // UDP_SEGMENT, arrive in 64 KiB superframes. A kernel without USO (before 6.2)
                // refuses it with EINVAL: TCP only, then.
                for q in 0..<plan.queues {
                    let tap = try Tap(name: n.tapName, vnetHeader: true, multiQueue: plan.queues > 1)
                    if let refused = try tap.setSegmentationOffloads() {
                        var line =
                            "shoal overlay: \(n.tapName): the kernel refused USO (\(refused)); TCP offload only\n"
                        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
                        tapOffloads = ["csum", "tso4", "tso6"]
                    } else if tapOffloads.isEmpty {
                        tapOffloads = ["csum", "tso4", "tso6", "uso4", "uso6"]
                    }
                    queueTapFDs[q].append(tap.releaseDescriptor())  // closed in tearDown
                }
                try netlink.setLink(n.tapName, up: true, mtu: n.mtu, master: n.bridgeName)
                try netlink.setLink(n.bridgeName, up: true)
            }
            if plan.queues == 1 {
                sealer = try makeSealer(0)
                vtep = try VTEP(plan: plan, tapFDs: queueTapFDs[0], sealer: sealer)
            } else {
                queueSet = try QueueSet.start(plan: plan, queueTapFDs: queueTapFDs, makeSealer: makeSealer)
            }
            let path = plan.control ?? Self.defaultControlPath(node: plan.node)
            try? FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            controlFD = try UnixStream.listen(path: path).release()
        } catch {
            tearDown()
            throw error
        }
    }

    package func tearDown() {
        queueSet?.stop()
        queueSet = nil
        if controlFD >= 0 {
            close(controlFD)
            controlFD = -1
            unlink(plan.control ?? Self.defaultControlPath(node: plan.node))
        }
        for fd in queueTapFDs.joined() { close(fd) }
        queueTapFDs = []
        for b in createdBridges { netlink.deleteLink(b) }
        createdBridges = []
    }

    /// Runs until a termination signal arrives.
    package func run(signals: borrowing TerminationSignals) {
        let extra = [controlFD, signals.fd.rawValue]
        while true {
            let ready: Int
            if let vtep {
                ready = Self.serve(vtep, extra: extra, busyPollMicroseconds: plan.busyPollMicroseconds) { phase in
                    if phase == .woke { sealer?.catchUp() }
                }
            } else {
                ready = Self.waitReadable(extra)
            }
            if ready == 1, signals.take() != nil { return }
            if ready == 0 { serveControl() }
        }
    }

    /// Where `serve` is between polls.
    enum ServePhase { case woke, drained }

    /// The VTEP's loop: polls its TAPs and sockets and `extra`; drains what is readable, one
    /// batch per source per round so no source starves another; returns the index in `extra`
    /// of a readable one once the VTEP's sources are drained. `between` runs after each wake,
    /// before pumping, and after draining.
    static func serve(
        _ vtep: VTEP, extra: [CInt], busyPollMicroseconds: Int, between: (ServePhase) -> Void
    ) -> Int {
        let taps = vtep.networks.count
        var fds: [pollfd] = vtep.networks.map { pollfd(fd: $0.tapFD, events: Int16(POLLIN), revents: 0) }
        let vxlanIndex = fds.count
        fds.append(pollfd(fd: vtep.vxlan.fd.rawValue, events: Int16(POLLIN), revents: 0))
        let espIndex = vtep.esp == nil ? -1 : fds.count
        if let esp = vtep.esp { fds.append(pollfd(fd: esp.fd.rawValue, events: Int16(POLLIN), revents: 0)) }
        let extraIndex = fds.count
        for fd in extra { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        // Busy-poll for a short while after traffic before sleeping: a request/response pair
        // then finds the VTEP awake instead of paying a thread wake-up on each hop.
        let spinNanoseconds = UInt64(busyPollMicroseconds) * 1000
        var lastActivity: UInt64 = 0
        while true {
            let spinning = spinNanoseconds > 0 && Self.monotonicNanoseconds() &- lastActivity < spinNanoseconds
            let r = poll(&fds, nfds_t(fds.count), spinning ? 0 : -1)
            if r <= 0 { continue }  // nothing yet while spinning, or EINTR
            if spinNanoseconds > 0 { lastActivity = Self.monotonicNanoseconds() }
            between(.woke)
            var busy = true
            while busy {
                busy = false
                for t in 0..<taps where fds[t].revents != 0 {
                    if vtep.pumpTap(t) == VTEP.batchPackets { busy = true } else { fds[t].revents = 0 }
                }
                if fds[vxlanIndex].revents != 0 {
                    if vtep.pumpUDP(encrypted: false) == VTEP.batchPackets {
                        busy = true
                    } else {
                        fds[vxlanIndex].revents = 0
                    }
                }
                if espIndex >= 0, fds[espIndex].revents != 0 {
                    if vtep.pumpUDP(encrypted: true) == VTEP.batchPackets {
                        busy = true
                    } else {
                        fds[espIndex].revents = 0
                    }
                }
            }
            between(.drained)
            for i in extraIndex..<fds.count where fds[i].revents != 0 { return i - extraIndex }
        }
    }

    /// Blocks until one of `fds` is readable; returns its index.
    static func waitReadable(_ fds: [CInt]) -> Int {
        var p = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while true {
            if poll(&p, nfds_t(p.count), -1) > 0, let i = p.firstIndex(where: { $0.revents != 0 }) { return i }
        }
    }

    @inline(__always)
    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    // MARK: control

    private func serveControl() {
        guard let conn = UnixStream.accept(listener: controlFD) else { return }
        guard let line = UnixStream.readLine(conn) else { return }
        var response = ControlResponse(ok: true)
        do {
            let request = try JSONDecoder().decode(ControlRequest.self, from: Data(line))
            switch request.op {
            case "inspect":
                response.inspection = inspection()
            default:
                guard let keyControl else {
                    throw ConfigError(field: "op", "\(request.op): this node has no encrypted network")
                }
                response.text = try keyControl(request)
            }
        } catch {
            response = ControlResponse(ok: false, error: "\(error)")
        }
        let bytes = (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false}".utf8)
        UnixStream.writeAll(conn, Array(bytes) + [10])
    }

    /// The ESP engines' counters, summed over the queues.
    package func espCounters() -> ESPCounters {
        if vtep != nil { return sealer?.espCounters ?? ESPCounters() }
        return queueSet?.espCounters() ?? ESPCounters()
    }

    /// The VTEP counters, summed over the queues.
    package func traffic() -> (counters: OverlayCounters, peers: [PeerCounters]) {
        if let vtep { return (vtep.counters, vtep.peerCounters) }
        return queueSet?.traffic() ?? (OverlayCounters(), [])
    }

    package func inspection() -> OverlayInspection {
        let (counters, peerCounters) = traffic()
        var peers: [OverlayInspection.Peer] = []
        for (i, p) in plan.peers.enumerated() {
            peers.append(.init(node: p.node, underlay: "\(p.underlay)", traffic: peerCounters[i]))
        }
        let nets = plan.networks.map { n in
            OverlayInspection.Network(
                name: n.name, vni: n.vni, subnet: "\(n.subnet)", subnet6: n.subnet6.map { "\($0)" }, mtu: n.mtu,
                encrypted: n.encrypted,
                bridge: n.bridgeName, tap: n.tapName,
                fdb: n.fdb.map {
                    .init(
                        mac: "\($0.mac)", ip: "\(IPAddress.v4($0.ip))", ip6: $0.ip6.map { "\($0)" }, node: $0.node,
                        underlay: "\($0.underlay)",
                        local: $0.node == plan.node)
                })
        }
        return OverlayInspection(
            node: plan.node, underlay: "\(plan.underlayAddress)", underlayMTU: plan.underlayMTU,
            vxlanPort: plan.vxlanPort, espPort: plan.espPort, networks: nets, peers: peers,
            counters: counters, esp: espReport?(), queues: queueSet?.queueTraffic(), tapOffloads: tapOffloads)
    }
}

/// One control request (a JSON line). `op`: inspect | keys-add | keys-promote | keys-retire | export-sa.
package struct ControlRequest: Codable, Sendable {
    package var op: String
    package var id: UInt32?
    package var key: String?
    package var localAddress: String?
    package init(op: String, id: UInt32? = nil, key: String? = nil) {
        self.op = op
        self.id = id
        self.key = key
    }
}

package struct ControlResponse: Codable, Sendable {
    package var ok: Bool
    package var error: String?
    package var inspection: OverlayInspection?
    package var text: String?
    package init(ok: Bool, error: String? = nil) {
        self.ok = ok
        self.error = error
    }
}
