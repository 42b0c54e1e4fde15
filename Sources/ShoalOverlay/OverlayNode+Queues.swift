// Multi-queue VTEP (`queues: N > 1`): N threads, each owning one queue of every TAP
// (IFF_MULTI_QUEUE), its own underlay sockets (SO_REUSEPORT on the same ports), its own VTEP
// with its buffers and coalescers, and its own ESP engine (cipher contexts are per thread):
//
//   TAP queue q ──► thread q (pinned to CPU q mod CPUs) ──► socket q ──► peer, received on the
//   CPU that sent it ──► reuseport CPU steering ──► peer's socket q ──► peer's thread q ──► TAP queue q
//
// The kernel keeps a flow on one TAP queue (it remembers the queue a flow's frames were last
// written on), so one TCP flow stays on one thread at each end and is not reordered; flows
// spread over the queues. What the threads share, each thing behind its own synchronization:
//   - SA state (`SAStates`): per SA an atomic transmit sequence counter and a replay window
//     behind a small lock (ESPEngine.swift says why this is safe and what it costs);
//   - the key ring (`KeyRingBoard`): the control thread applies a change to its own engine and
//     posts the ring; each queue thread applies it after its next wake, before pumping, so no
//     packet is handled with a ring older than one already acknowledged to the operator;
//   - counters: each thread publishes its VTEP and ESP counters after each drained round into
//     its slot (`QueueSet`), summed by `inspect`.
// The calling thread serves the control socket and signals; `stop()` wakes every queue thread
// through a pipe and waits for all of them.

import Dispatch
import Foundation
import ShoalSystem
import Synchronization

#if canImport(Glibc)
    import CShoal
    import Glibc
#endif

/// A queue thread's sealer: the VTEP's sealer plus what its thread does between batches.
package protocol QueueSealer: OverlaySealer {
    /// On the queue's thread, after a wake and before pumping: apply what changed.
    func catchUp()
    /// This sealer's ESP counters.
    var espCounters: ESPCounters { get }
}

/// The key ring as the control thread last set it, for the queue threads.
package final class KeyRingBoard: Sendable {
    let version = Atomic<UInt64>(0)
    private let ring: Mutex<KeyRing>

    package init(_ ring: KeyRing) { self.ring = Mutex(ring) }

    package func post(_ next: KeyRing) {
        ring.withLock { $0 = next }
        version.wrappingAdd(1, ordering: .releasing)
    }

    var current: KeyRing { ring.withLock { $0 } }
}

/// One queue thread's ESP engine, catching up with the board's key ring.
package final class QueueESP: QueueSealer {
    private let engine: ESPEngine
    private let board: KeyRingBoard
    private var seen: UInt64

    package init(engine: ESPEngine, board: KeyRingBoard) {
        self.engine = engine
        self.board = board
        seen = board.version.load(ordering: .acquiring)
    }

    @inline(__always)
    package func sealVXLAN(_ buffer: UnsafeMutableRawBufferPointer, payload: Range<Int>, peer: Int) -> Range<Int>? {
        engine.seal(buffer, payload: payload, peer: peer)
    }

    @inline(__always)
    package func openVXLAN(_ buffer: UnsafeMutableRawBufferPointer, datagram: Range<Int>) -> (
        vxlan: Range<Int>, peer: Int
    )? {
        engine.openVXLAN(buffer, datagram: datagram)
    }

    package func catchUp() {
        let v = board.version.load(ordering: .acquiring)
        guard v != seen else { return }
        seen = v
        // The control thread's engine accepted this ring: the same checks cannot fail here.
        try? engine.update(keyRing: board.current)
    }

    package var espCounters: ESPCounters { engine.counters }
}

/// What one queue thread last published.
package struct QueueStats: Sendable {
    var counters = OverlayCounters()
    var peers: [PeerCounters]
    var esp = ESPCounters()
}

/// The queue threads of a node.
final class QueueSet: Sendable {
    private let stats: Mutex<[QueueStats]>
    private let stopPipe: (read: CInt, write: CInt)
    private let exited = DispatchSemaphore(value: 0)
    private let setupFailure = Mutex<String?>(nil)
    private let count: Int

    private init(queues: Int, peers: Int) throws(SystemError) {
        var p: [CInt] = [-1, -1]
        _ = try syscallOrThrow("pipe") { pipe(&p) }
        stopPipe = (p[0], p[1])
        count = queues
        stats = Mutex(
            Array(repeating: QueueStats(peers: Array(repeating: PeerCounters(), count: peers)), count: queues))
    }

    /// Starts the threads one after the other (each binds its sockets before the next, so
    /// socket index = queue = CPU for the steering); throws the first thread's setup error.
    static func start(
        plan: OverlayPlan, queueTapFDs: [[CInt]], makeSealer: @escaping @Sendable (Int) throws -> (any QueueSealer)?
    ) throws -> QueueSet {
        let set = try QueueSet(queues: plan.queues, peers: plan.peers.count)
        let cpus = max(1, sysconf(CInt(_SC_NPROCESSORS_ONLN)))
        for q in 0..<plan.queues {
            let ready = DispatchSemaphore(value: 0)
            let fds = queueTapFDs[q]
            let thread = Thread {
                // Pinned: the CPU steering hands this thread what arrived on its CPU. A CPU
                // outside this process's set is refused: the thread then floats.
                _ = shoal_pin_thread_to_cpu(CInt(q % cpus))
                let vtep: VTEP
                let sealer: (any QueueSealer)?
                do {
                    sealer = try makeSealer(q)
                    vtep = try VTEP(plan: plan, tapFDs: fds, sealer: sealer)
                } catch {
                    set.setupFailure.withLock { $0 = "queue \(q): \(error)" }
                    ready.signal()
                    set.exited.signal()
                    return
                }
                ready.signal()
                set.run(q, vtep, sealer, busyPollMicroseconds: plan.busyPollMicroseconds)
                set.exited.signal()
            }
            thread.name = "vtep-q\(q)"
            thread.start()
            ready.wait()
            if let message = set.setupFailure.withLock({ $0 }) {
                set.stop(started: q + 1)
                throw SystemError("start VTEP queue", Errno(EINVAL), message)
            }
        }
        return set
    }

    private func run(_ q: Int, _ vtep: VTEP, _ sealer: (any QueueSealer)?, busyPollMicroseconds: Int) {
        _ = OverlayNode.serve(vtep, extra: [stopPipe.read], busyPollMicroseconds: busyPollMicroseconds) { phase in
            switch phase {
            case .woke:
                sealer?.catchUp()
            case .drained:
                stats.withLock { all in
                    all[q].counters = vtep.counters
                    for i in 0..<vtep.peerCounters.count { all[q].peers[i] = vtep.peerCounters[i] }
                    if let sealer { all[q].esp = sealer.espCounters }
                }
            }
        }
    }

    /// Wakes every thread, waits until all have returned, closes the pipe.
    func stop() { stop(started: count) }

    private func stop(started: Int) {
        var one: UInt8 = 1
        _ = write(stopPipe.write, &one, 1)
        for _ in 0..<started { exited.wait() }
        close(stopPipe.read)
        close(stopPipe.write)
    }

    func traffic() -> (counters: OverlayCounters, peers: [PeerCounters]) {
        stats.withLock { all in
            var c = OverlayCounters()
            var peers = all.first?.peers.map { _ in PeerCounters() } ?? []
            for s in all {
                c.add(s.counters)
                for i in peers.indices { peers[i].add(s.peers[i]) }
            }
            return (c, peers)
        }
    }

    func espCounters() -> ESPCounters {
        stats.withLock { all in
            var e = ESPCounters()
            for s in all { e.add(s.esp) }
            return e
        }
    }

    func queueTraffic() -> [OverlayInspection.Queue] {
        stats.withLock { all in
            all.enumerated().map { q, s in
                OverlayInspection.Queue(
                    queue: q, tapFramesIn: s.counters.tapFramesIn, tapFramesOut: s.counters.tapFramesOut,
                    udpDatagramsIn: s.counters.udpDatagramsIn, udpDatagramsOut: s.counters.udpDatagramsOut)
            }
        }
    }
}
