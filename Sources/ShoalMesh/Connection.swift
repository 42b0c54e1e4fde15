// Preallocated connection slots and pooled pipes. A slot is a plain struct in a buffer the
// reactor owns; its generation number is in every epoll cookie, so an event for a slot that was
// closed and reused within one batch is recognised and dropped.

import CShoal
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

enum ConnState: UInt8 {
    case free
    /// Reading a PROXY header from an external load balancer.
    case proxyHeader
    case connecting
    case relay
}

/// One direction of a relay (client→task or task→client).
struct Direction {
    /// A pooled pipe, held only while it holds bytes the destination has not taken.
    var pipeR: CInt = -1
    var pipeW: CInt = -1
    var pending = 0
    /// Readiness of the source for reading and of the destination for writing (edge-triggered:
    /// set by events, cleared by EAGAIN or a short read).
    var readable = false
    var peerClosed = false
    var writable = false
    /// The source sent FIN; we passed it on with shutdown(SHUT_WR).
    var eof = false
    var shut = false
    /// Bulk transfer seen: relay with splice(2) instead of copying through the scratch buffer.
    var splicing = false

    var done: Bool { shut && pending == 0 }
}

struct Conn {
    var gen: UInt32 = 0
    var state: ConnState = .free
    var client: CInt = -1
    var upstream: CInt = -1
    var port: PortTable? = nil
    var endpointIndex = -1
    var endpoint: EndpointRuntime? = nil
    var retriesLeft = 0
    var clientAddr = SocketAddress(ip: .v4(0), port: 0)
    var localAddr = SocketAddress(ip: .v4(0), port: 0)
    var hash: UInt64 = 0
    /// client→task and task→client.
    var up = Direction()
    var down = Direction()
    var deadlineMs: UInt64 = 0
    var lastActivityMs: UInt64 = 0
    var drainDeadlineMs: UInt64 = 0
    var connectedMs: UInt64 = 0
    /// Keepalive set on the upstream socket (the client's inherits it from the listener).
    var keepaliveArmed = false
    /// Bytes relayed in either direction (a connect retry is transparent only before any).
    var relayed = false
}

struct ConnSlots: ~Copyable {
    private(set) var base: UnsafeMutablePointer<Conn>
    private(set) var capacity: Int
    private var freeList: UnsafeMutablePointer<Int32>
    private var freeCount: Int
    private(set) var live = 0

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
        base.initialize(repeating: Conn(), count: capacity)
        freeList = .allocate(capacity: capacity)
        freeCount = capacity
        for i in 0..<capacity { freeList[i] = Int32(capacity - 1 - i) }
    }

    deinit {
        base.deinitialize(count: capacity)
        base.deallocate()
        freeList.deallocate()
    }

    @inline(__always)
    subscript(_ i: Int) -> UnsafeMutablePointer<Conn> { base + i }

    /// A free slot, growing the table (doubling) when it is full and below `limit`.
    mutating func allocate(limit: Int) -> Int? {
        if freeCount == 0 {
            guard capacity < limit else { return nil }
            grow(to: min(limit, capacity * 2))
        }
        freeCount -= 1
        live += 1
        return Int(freeList[freeCount])
    }

    mutating func release(_ i: Int) {
        base[i].gen &+= 1
        base[i].state = .free
        base[i].port = nil
        base[i].endpoint = nil
        freeList[freeCount] = Int32(i)
        freeCount += 1
        live -= 1
    }

    private mutating func grow(to newCapacity: Int) {
        let nb = UnsafeMutablePointer<Conn>.allocate(capacity: newCapacity)
        nb.moveInitialize(from: base, count: capacity)
        (nb + capacity).initialize(repeating: Conn(), count: newCapacity - capacity)
        base.deallocate()
        base = nb
        let nf = UnsafeMutablePointer<Int32>.allocate(capacity: newCapacity)
        var k = 0
        for i in stride(from: newCapacity - 1, through: capacity, by: -1) {
            nf[k] = Int32(i)
            k += 1
        }
        freeList.deallocate()
        freeList = nf
        freeCount = k
        capacity = newCapacity
    }

    func forEachLive(_ body: (Int) -> Void) {
        for i in 0..<capacity where base[i].state != .free { body(i) }
    }
}

/// Pipes for splice, reused: a pipe returns to the pool only when empty.
struct PipePool: ~Copyable {
    private var fds: UnsafeMutablePointer<CInt>  // pairs: read, write
    private var count = 0
    private let capacity: Int
    private(set) var created = 0

    init(capacity: Int, prefill: Int) {
        self.capacity = capacity
        fds = .allocate(capacity: capacity * 2)
        for _ in 0..<prefill {
            var p: (CInt, CInt) = (-1, -1)
            guard
                withUnsafeMutablePointer(
                    to: &p, { $0.withMemoryRebound(to: CInt.self, capacity: 2) { shoal_pipe_nonblocking($0) } }) == 0
            else { break }
            created += 1
            fds[count * 2] = p.0
            fds[count * 2 + 1] = p.1
            count += 1
        }
    }

    deinit {
        for k in 0..<count * 2 { Glibc.close(fds[k]) }
        fds.deallocate()
    }

    /// A pipe for `d`, from the pool or new; false when the process is out of descriptors.
    @inline(__always)
    mutating func take(_ d: inout Direction) -> Bool {
        if d.pipeR >= 0 { return true }
        if count > 0 {
            count -= 1
            d.pipeR = fds[count * 2]
            d.pipeW = fds[count * 2 + 1]
            return true
        }
        var p: (CInt, CInt) = (-1, -1)
        guard
            withUnsafeMutablePointer(
                to: &p, { $0.withMemoryRebound(to: CInt.self, capacity: 2) { shoal_pipe_nonblocking($0) } }) == 0
        else { return false }
        created += 1
        d.pipeR = p.0
        d.pipeW = p.1
        return true
    }

    /// Gives `d`'s pipe back (closed instead if it still holds bytes or the pool is full).
    @inline(__always)
    mutating func give(_ d: inout Direction) {
        guard d.pipeR >= 0 else { return }
        if d.pending == 0 && count < capacity {
            fds[count * 2] = d.pipeR
            fds[count * 2 + 1] = d.pipeW
            count += 1
        } else {
            Glibc.close(d.pipeR)
            Glibc.close(d.pipeW)
        }
        d.pipeR = -1
        d.pipeW = -1
        d.pending = 0
    }

    mutating func closeAll() {
        while count > 0 {
            count -= 1
            Glibc.close(fds[count * 2])
            Glibc.close(fds[count * 2 + 1])
        }
    }
}
