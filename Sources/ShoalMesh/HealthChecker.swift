// Active health checks: a TCP connect to each task of a port that asks for checks, every
// interval, with a timeout; `fall` failures in a row take the task out of rotation, `rise`
// successes bring it back (HAProxy's semantics). One thread for the node, all checks in flight
// at once through one poll set; the verdict is an atomic the reactors read.

import CShoal
import Foundation
import ShoalSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

final class HealthChecker: Sendable {
    private struct Probe {
        var fd: CInt
        var endpoint: EndpointRuntime
        var spec: HealthCheckSpec
        var deadlineMs: UInt64
    }

    private struct Record {
        var nextMs: UInt64 = 0
        var successes = 0
        var failures = 0
    }

    private let state = Mutex<(table: MeshTable?, running: Bool)>((nil, false))
    private let done = DispatchSemaphore(value: 0)

    func start(_ table: MeshTable) {
        state.withLock { $0 = (table, true) }
        let thread = Thread { [self] in
            loop()
            done.signal()
        }
        thread.name = "shoal-mesh-health"
        thread.start()
    }

    func update(_ table: MeshTable) { state.withLock { $0.table = table } }

    func stop() {
        let wasRunning = state.withLock { s -> Bool in
            let r = s.running
            s.running = false
            return r
        }
        if wasRunning { done.wait() }
    }

    private func loop() {
        var records: [ObjectIdentifier: Record] = [:]
        var probes: [Probe] = []
        var pollfds: [pollfd] = []
        var prunedFor: ObjectIdentifier?
        while true {
            let (table, running) = state.withLock { ($0.table, $0.running) }
            guard running, let table else { break }
            // Nothing to check: sleep without touching the allocator (the per-connection
            // malloc benchmark runs with this thread alive).
            if probes.isEmpty && !table.ports.contains(where: { $0.spec.health != nil }) {
                usleep(50_000)
                continue
            }
            let now = shoal_now_ms()
            // Launch the checks that are due.
            for p in table.ports {
                guard let spec = p.spec.health else { continue }
                for e in p.endpoints {
                    let id = ObjectIdentifier(e)
                    var r = records[id] ?? Record()
                    guard now >= r.nextMs, !probes.contains(where: { $0.endpoint === e }) else { continue }
                    r.nextMs = now + spec.intervalMs
                    records[id] = r
                    if let fd = Self.startConnect(e.address) {
                        probes.append(Probe(fd: fd, endpoint: e, spec: spec, deadlineMs: now + spec.timeoutMs))
                    } else {
                        Self.verdict(false, e, spec, &records[id]!)
                    }
                }
            }
            // Wait a little for answers.
            pollfds = probes.map { pollfd(fd: $0.fd, events: Int16(POLLOUT), revents: 0) }
            _ = poll(&pollfds, nfds_t(pollfds.count), 20)
            let after = shoal_now_ms()
            var kept: [Probe] = []
            for (k, probe) in probes.enumerated() {
                let answered = pollfds[k].revents != 0
                guard answered || after >= probe.deadlineMs else {
                    kept.append(probe)
                    continue
                }
                let ok = answered && Socket.pendingError(probe.fd) == nil
                Glibc.close(probe.fd)
                let id = ObjectIdentifier(probe.endpoint)
                if records[id] != nil { Self.verdict(ok, probe.endpoint, probe.spec, &records[id]!) }
            }
            probes = kept
            // Forget tasks that left the table (once per revision, not every round).
            if prunedFor != ObjectIdentifier(table) {
                prunedFor = ObjectIdentifier(table)
                let live = Set(table.ports.flatMap { $0.endpoints.map(ObjectIdentifier.init) })
                records = records.filter { live.contains($0.key) }
            }
            if probes.isEmpty { usleep(10_000) }
        }
        for p in probes { Glibc.close(p.fd) }
    }

    private static func startConnect(_ address: SocketAddress) -> CInt? {
        let fd = socket(
            address.family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        var ss = sockaddr_storage()
        let len = address.write(to: &ss)
        let r = withUnsafePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        if r == 0 || errno == EINPROGRESS { return fd }
        Glibc.close(fd)
        return nil
    }

    private static func verdict(_ ok: Bool, _ e: EndpointRuntime, _ spec: HealthCheckSpec, _ r: inout Record) {
        let healthy = e.checkHealthy.load(ordering: .relaxed)
        if ok {
            r.failures = 0
            r.successes += 1
            if !healthy && r.successes >= spec.rise {
                e.checkHealthy.store(true, ordering: .relaxed)
                meshLog("task \(e.address) is up (\(spec.rise) check(s) passed)")
            }
        } else {
            r.successes = 0
            r.failures += 1
            if healthy && r.failures >= spec.fall {
                e.checkHealthy.store(false, ordering: .relaxed)
                meshLog("task \(e.address) is down (\(spec.fall) check(s) failed)")
            }
        }
    }
}
