// One reactor per core: an edge-triggered epoll loop that owns its listeners (SO_REUSEPORT, one
// per published port per reactor), its connection slots, its pooled pipes and its timer wheel.
// Nothing here locks on the per-connection path: the table is a reference the reactor swaps
// between two events when the controller posts a new revision through the mailbox.

import CShoal
import ShoalSystem
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// What the controller posts to a reactor.
enum ReactorCommand: Sendable {
    /// Take `table`; `opened` holds this reactor's new listener sockets (raw fds, now owned by
    /// the reactor) for the ports the revision adds.
    case swap(MeshTable, opened: [PortKey: CInt])
    /// Stop accepting, drain until `deadlineMs`, then exit.
    case stop(drainMs: UInt64)
}

/// TCP_NODELAY and keepalive on a listening socket: Linux copies them into every accepted
/// socket, which saves five setsockopt calls per connection.
func tuneListener(_ fd: CInt, _ spec: PortSpec) {
    _ = shoal_tcp_tune(fd, 1, spec.keepaliveIdleS, spec.keepaliveIntervalS, spec.keepaliveCount)
}

extension PortSpec {
    func sameSocketOptions(_ o: PortSpec) -> Bool {
        keepaliveIdleS == o.keepaliveIdleS && keepaliveIntervalS == o.keepaliveIntervalS
            && keepaliveCount == o.keepaliveCount
    }
}

/// Cookie kinds in the epoll event data.
enum EventKind: UInt64 {
    case wake = 1
    case tcpListener, client, upstream, udpListener, udpFlow
}

@inline(__always)
func cookie(_ kind: EventKind, _ index: Int, _ gen: UInt32 = 0) -> UInt64 {
    (kind.rawValue << 56) | (UInt64(gen & 0xFF_FFFF) << 32) | UInt64(UInt32(truncatingIfNeeded: index))
}

struct Listener {
    var fd: CInt = -1
    var key: PortKey
    var port: PortTable
}

package final class Reactor: @unchecked Sendable {
    let id: Int
    let epoll: CInt
    let wakeFd: CInt
    private let mailbox = Mutex<[ReactorCommand]>([])
    private let acknowledged = Atomic<UInt64>(0)
    package private(set) var table: MeshTable

    var listeners: [Listener] = []
    var conns: ConnSlots
    var wheel: TimerWheel
    var pipes: PipePool
    var udp: UDPRelay
    let events: UnsafeMutablePointer<epoll_event>
    static let maxEvents = 256
    /// Scratch space for small relays, PROXY headers and UDP batches.
    let scratch: UnsafeMutableRawBufferPointer
    static let scratchSize = 64 * 1_024
    var rng: SplitMix64
    var nowMs: UInt64
    var stopping = false
    var stopDeadlineMs: UInt64 = 0
    /// A spare descriptor closed to accept-and-refuse when the process runs out of them.
    var reserveFd: CInt
    /// Descriptors ran out with connections still queued: accept again on the next tick.
    var acceptRetry = false

    init(id: Int, table: MeshTable, listeners opened: [PortKey: CInt], slots: Int = 1_024) throws(SystemError) {
        self.id = id
        self.table = table
        epoll = try syscallOrThrow("epoll_create1") { shoal_epoll_create() }
        wakeFd = try syscallOrThrow("eventfd") { shoal_eventfd() }
        nowMs = shoal_now_ms()
        conns = ConnSlots(capacity: slots)
        wheel = TimerWheel(capacity: slots, nowMs: nowMs)
        pipes = PipePool(capacity: 4_096, prefill: 16)
        udp = UDPRelay(capacity: 1_024, nowMs: nowMs)
        events = shoal_epoll_events(CInt(Self.maxEvents))
        scratch = .allocate(byteCount: Self.scratchSize, alignment: 64)
        rng = SplitMix64(seed: shoal_now_ns() ^ UInt64(id) &* 0x9E37_79B9)
        reserveFd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        _ = shoal_epoll_add(epoll, wakeFd, SHOAL_EV_IN | SHOAL_EV_ET, cookie(.wake, 0))
        addListeners(opened, table: table)
    }

    deinit {
        Glibc.close(epoll)
        Glibc.close(wakeFd)
        if reserveFd >= 0 { Glibc.close(reserveFd) }
        free(events)
        scratch.deallocate()
    }

    // MARK: Mailbox

    /// Posts a command; the reactor takes it between two events.
    func post(_ c: ReactorCommand) {
        mailbox.withLock { $0.append(c) }
        shoal_eventfd_signal(wakeFd)
    }

    /// The revision this reactor serves (after its last swap).
    var servedRevision: UInt64 { acknowledged.load(ordering: .acquiring) }

    private func drainMailbox() {
        let commands = mailbox.withLock { m -> [ReactorCommand] in
            let c = m
            m.removeAll(keepingCapacity: true)
            return c
        }
        for c in commands {
            switch c {
            case .swap(let t, let opened): swap(to: t, opened: opened)
            case .stop(let drainMs): beginStop(drainMs: drainMs)
            }
        }
    }

    // MARK: Loop

    /// Runs until stopped and drained.
    func run() {
        acknowledged.store(table.revision, ordering: .releasing)
        while true {
            let timeout: CInt =
                wheel.count > 0 || udp.flowCount > 0 || stopping || acceptRetry
                ? CInt(wheel.msToNextTick(nowMs: shoal_now_ms())) : 1_000
            let n = shoal_epoll_wait(epoll, events, CInt(Self.maxEvents), timeout)
            nowMs = shoal_now_ms()
            if n > 0 {
                for k in 0..<Int(n) {
                    dispatch(
                        mask: shoal_epoll_event_mask(events, CInt(k)), data: shoal_epoll_event_data(events, CInt(k)))
                }
            }
            expireTimers()
            if acceptRetry { retryAccepts() }
            if stopping && (conns.live == 0 || nowMs >= stopDeadlineMs) { break }
        }
        finish()
    }

    @inline(__always)
    private func dispatch(mask: UInt32, data: UInt64) {
        let index = Int(UInt32(truncatingIfNeeded: data))
        let gen = UInt32((data >> 32) & 0xFF_FFFF)
        switch EventKind(rawValue: data >> 56) {
        case .wake?:
            shoal_eventfd_drain(wakeFd)
            drainMailbox()
        case .tcpListener?:
            acceptAll(listener: index)
        case .client?:
            connEvent(index, gen: gen, upstreamSide: false, mask: mask)
        case .upstream?:
            connEvent(index, gen: gen, upstreamSide: true, mask: mask)
        case .udpListener?:
            udpListenerReadable(index)
        case .udpFlow?:
            udpFlowReadable(index, gen: gen)
        case nil:
            break
        }
    }

    private func expireTimers() {
        wheel.collect(nowMs: nowMs)
        while let slot = wheel.popDue() { connTimer(slot) }
        udpExpire()
    }

    // MARK: Listeners and table swaps

    private func addListeners(_ opened: [PortKey: CInt], table: MeshTable) {
        for p in table.ports {
            guard let fd = opened[p.spec.key] else { continue }
            let l = Listener(fd: fd, key: p.spec.key, port: p)
            let index: Int
            if let free = listeners.firstIndex(where: { $0.fd < 0 }) {
                listeners[free] = l
                index = free
            } else {
                listeners.append(l)
                index = listeners.count - 1
            }
            let kind: EventKind = p.spec.proto == .tcp ? .tcpListener : .udpListener
            _ = shoal_epoll_add(epoll, fd, SHOAL_EV_IN | SHOAL_EV_ET, cookie(kind, index))
            if kind == .tcpListener { acceptAll(listener: index) }  // connections queued before epoll knew
        }
    }

    private func swap(to newTable: MeshTable, opened: [PortKey: CInt]) {
        var byKey: [PortKey: PortTable] = [:]
        for p in newTable.ports { byKey[p.spec.key] = p }
        for i in listeners.indices where listeners[i].fd >= 0 {
            if let p = byKey[listeners[i].key] {
                if p.spec.proto == .tcp && !p.spec.sameSocketOptions(listeners[i].port.spec) {
                    tuneListener(listeners[i].fd, p.spec)
                }
                listeners[i].port = p
            } else {
                closeListener(i)
            }
        }
        table = newTable
        addListeners(opened, table: newTable)
        startDrains(keeping: byKey)
        udpTableChanged(byKey)
        acknowledged.store(newTable.revision, ordering: .releasing)
    }

    private func closeListener(_ i: Int) {
        let fd = listeners[i].fd
        _ = shoal_epoll_del(epoll, fd)
        Glibc.close(fd)
        udpListenerClosed(i)
        listeners[i].fd = -1
    }

    private func beginStop(drainMs: UInt64) {
        for i in listeners.indices where listeners[i].fd >= 0 { closeListener(i) }
        stopping = true
        stopDeadlineMs = nowMs &+ drainMs
        udpCloseAll()
        conns.forEachLive { startDrain($0, drainMs: drainMs) }
    }

    private func finish() {
        conns.forEachLive { closeConn($0, reset: true) }
        for i in listeners.indices where listeners[i].fd >= 0 { closeListener(i) }
        udpCloseAll()
        pipes.closeAll()
        acknowledged.store(UInt64.max, ordering: .releasing)
    }

    // MARK: Refusals

    /// Closes an accepted socket with a reset and counts why.
    @inline(__always)
    func refuse(_ fd: CInt, _ port: PortTable, _ reason: MeshCounter) {
        // Counted before the reset leaves: whoever sees the reset sees the count.
        port.runtime.count(reason)
        _ = shoal_set_linger_reset(fd)
        Glibc.close(fd)
        port.runtime.logOnce(reason)
    }
}
