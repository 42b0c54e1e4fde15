// TCP on a reactor: accept, pick a task, non-blocking connect (retrying another task while no
// byte has been relayed), then relay both directions until each side has sent FIN (half-close
// passed on with shutdown) or one fails. Small messages are copied through the reactor's scratch
// buffer (one recv and one send); a direction that moves bulk switches to splice(2) through a
// pooled pipe. Bytes the destination cannot take yet wait in a pipe, never in a user buffer, so
// an idle connection holds no memory beyond its slot.

import CShoal
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

/// A recv this large or larger means bulk: the direction switches to splice.
private let spliceThreshold = 16 * 1_024
private let spliceChunk = 1 << 20
private let spliceFlags: UInt32 = 1 | 2  // SPLICE_F_MOVE | SPLICE_F_NONBLOCK
private let proxyHeaderTimeoutMs: UInt64 = 5_000
/// Upstream keepalive is switched on when a connection has lived this long.
private let keepaliveArmMs: UInt64 = 1_000
/// Largest PROXY header accepted from a load balancer (v2 with TLVs).
private let maxProxyHeader = 4_096

private enum Pump {
    case ok
    case failed
}

extension Reactor {
    // MARK: Accept

    func acceptAll(listener li: Int) {
        while listeners[li].fd >= 0 {
            var ss = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &ss) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { shoal_accept4(listeners[li].fd, $0, &len) }
            }
            let port = listeners[li].port
            if fd < 0 {
                let e = errno
                if e == EAGAIN { return }
                if e == EINTR || e == ECONNABORTED || e == EPROTO { continue }
                if e == EMFILE || e == ENFILE {
                    // Without a spare to free, stop here and retry on the next tick (accepting
                    // in a loop would spin while the descriptors that would free up wait).
                    guard refuseWithReserve(listeners[li].fd, port) else {
                        acceptRetry = true
                        return
                    }
                    continue
                }
                return
            }
            port.runtime.count(.accepted)
            let spec = port.spec
            if port.runtime.active.load(ordering: .relaxed) >= spec.maxConnections {
                refuse(fd, port, .refusedMaxConnections)
                continue
            }
            let before = conns.capacity
            guard let slot = conns.allocate(limit: 1 << 24) else {
                refuse(fd, port, .refusedNoSlot)
                continue
            }
            if conns.capacity != before { wheel.grow(to: conns.capacity) }
            port.runtime.active.add(1, ordering: .relaxed)
            let c = conns[slot]
            c.pointee.state = .connecting
            c.pointee.client = fd
            c.pointee.upstream = -1
            c.pointee.port = port
            c.pointee.endpointIndex = -1
            c.pointee.retriesLeft = spec.retries
            c.pointee.clientAddr =
                withUnsafeBytes(of: &ss) { SocketAddress($0.baseAddress!) } ?? SocketAddress(ip: .v4(0), port: 0)
            c.pointee.hash = clientHash(c.pointee.clientAddr.ip)
            c.pointee.up = Direction()
            c.pointee.down = Direction()
            c.pointee.down.writable = true
            c.pointee.lastActivityMs = nowMs
            c.pointee.drainDeadlineMs = 0
            c.pointee.relayed = false
            // TCP_NODELAY and keepalive come from the listener (`tuneListener`).
            _ = shoal_epoll_add(
                epoll, fd, SHOAL_EV_IN | SHOAL_EV_OUT | SHOAL_EV_RDHUP | SHOAL_EV_ET,
                cookie(.client, slot, c.pointee.gen))
            if spec.acceptProxy {
                c.pointee.state = .proxyHeader
                c.pointee.deadlineMs = nowMs &+ proxyHeaderTimeoutMs
                wheel.schedule(slot, atMs: c.pointee.deadlineMs)
                readProxyHeader(slot)
            } else {
                if spec.proxyProtocol != .none { c.pointee.localAddr = Socket.localAddress(fd) ?? c.pointee.localAddr }
                startConnect(slot, exclude: -1)
            }
        }
    }

    /// Out of descriptors: free the spare, accept and reset the connection, take the spare back.
    /// True when a pending connection was taken off the backlog and reset.
    private func refuseWithReserve(_ listenFd: CInt, _ port: PortTable) -> Bool {
        guard reserveFd >= 0 else {
            port.runtime.logOnce(.refusedFdExhausted)
            return false
        }
        Glibc.close(reserveFd)
        reserveFd = -1
        let fd = shoal_accept4(listenFd, nil, nil)
        if fd >= 0 {
            port.runtime.count(.accepted)
            refuse(fd, port, .refusedFdExhausted)
        }
        reserveFd = open("/dev/null", O_RDONLY | O_CLOEXEC)
        return fd >= 0
    }

    /// Accepts again on every TCP listener after descriptors ran out (called each tick while
    /// `acceptRetry` is set); takes the spare back first.
    func retryAccepts() {
        acceptRetry = false
        if reserveFd < 0 { reserveFd = open("/dev/null", O_RDONLY | O_CLOEXEC) }
        for i in listeners.indices where listeners[i].fd >= 0 && listeners[i].port.spec.proto == .tcp {
            acceptAll(listener: i)
        }
    }

    // MARK: PROXY header from a load balancer

    private func readProxyHeader(_ slot: Int) {
        let c = conns[slot]
        let limit = min(maxProxyHeader, scratch.count)
        let n = shoal_recv_peek(c.pointee.client, scratch.baseAddress, limit)
        if n < 0 {
            if errno == EAGAIN { return }
            closeConn(slot, reset: true)
            return
        }
        guard let port = c.pointee.port else { return }
        if n == 0 {
            closeConn(slot, reset: false)  // closed before sending anything
            return
        }
        switch MeshProxy.parse(UnsafeRawBufferPointer(rebasing: scratch[0..<n])) {
        case .needMore:
            if n >= limit {
                port.runtime.count(.badProxyHeader)
                port.runtime.logOnce(.badProxyHeader)
                closeConn(slot, reset: true)
            }
        case .invalid:
            port.runtime.count(.badProxyHeader)
            port.runtime.logOnce(.badProxyHeader)
            closeConn(slot, reset: true)
        case .header(let length, let source, let destination):
            // Consume exactly the header; what follows stays queued for the relay.
            let r = recv(c.pointee.client, scratch.baseAddress, length, 0)
            guard r == length else {
                closeConn(slot, reset: true)
                return
            }
            if let source {
                c.pointee.clientAddr = source
                c.pointee.hash = clientHash(source.ip)
            }
            c.pointee.localAddr = destination ?? Socket.localAddress(c.pointee.client) ?? c.pointee.localAddr
            c.pointee.state = .connecting
            wheel.cancel(slot)
            startConnect(slot, exclude: -1)
        }
    }

    // MARK: Connect

    private func startConnect(_ slot: Int, exclude: Int) {
        let c = conns[slot]
        guard let port = c.pointee.port else { return }
        guard let i = port.pick(clientHash: c.pointee.hash, nowMs: nowMs, rng: &rng, exclude: exclude) else {
            port.runtime.count(.refusedNoHealthyTask)
            port.runtime.logOnce(.refusedNoHealthyTask)
            closeConn(slot, reset: true)
            return
        }
        let e = port.endpoints[i]
        e.active.add(1, ordering: .relaxed)
        e.total.add(1, ordering: .relaxed)
        c.pointee.endpointIndex = i
        c.pointee.endpoint = e
        let fd = socket(
            e.address.family, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0
        )
        guard fd >= 0 else {
            connectFailed(slot, .connectOther, blameTask: false)
            return
        }
        c.pointee.upstream = fd
        let spec = port.spec
        // TCP_NODELAY now; keepalive once the connection outlives `keepaliveArmMs` (armKeepalive):
        // a probe cannot be due before then anyway, and short connections skip four syscalls.
        _ = shoal_tcp_tune(fd, 1, 0, 0, 0)
        c.pointee.keepaliveArmed = spec.keepaliveIdleS == 0
        _ = shoal_epoll_add(
            epoll, fd, SHOAL_EV_IN | SHOAL_EV_OUT | SHOAL_EV_RDHUP | SHOAL_EV_ET, cookie(.upstream, slot, c.pointee.gen)
        )
        var ss = sockaddr_storage()
        let len = e.address.write(to: &ss)
        let r = withUnsafePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        if r == 0 {
            connected(slot)
        } else if errno == EINPROGRESS {
            c.pointee.state = .connecting
            c.pointee.deadlineMs = nowMs &+ spec.connectTimeoutMs
            wheel.schedule(slot, atMs: c.pointee.deadlineMs)
        } else {
            connectFailed(slot, reason(errno), blameTask: true)
        }
    }

    private func reason(_ e: CInt) -> MeshCounter {
        switch e {
        case ECONNREFUSED, ECONNRESET: .connectRefused
        case ETIMEDOUT: .connectTimeout
        case ENETUNREACH, EHOSTUNREACH, EHOSTDOWN, ENETDOWN: .connectUnreachable
        default: .connectOther
        }
    }

    private func connectFailed(_ slot: Int, _ why: MeshCounter, blameTask: Bool) {
        let c = conns[slot]
        guard let port = c.pointee.port, let e = c.pointee.endpoint else { return }
        port.runtime.count(why)
        port.runtime.logOnce(why)
        if blameTask {
            e.connectFailed(nowMs: nowMs, threshold: port.spec.ejectAfterFailures, ejectMs: port.spec.ejectMs)
        }
        e.active.subtract(1, ordering: .relaxed)
        c.pointee.endpoint = nil
        if c.pointee.upstream >= 0 {
            Glibc.close(c.pointee.upstream)  // also leaves the epoll set
            c.pointee.upstream = -1
        }
        wheel.cancel(slot)
        if c.pointee.retriesLeft > 0 && !c.pointee.relayed && blameTask {
            c.pointee.retriesLeft -= 1
            port.runtime.count(.retries)
            startConnect(slot, exclude: c.pointee.endpointIndex)
        } else {
            closeConn(slot, reset: true)
        }
    }

    private func connected(_ slot: Int) {
        let c = conns[slot]
        guard let port = c.pointee.port else { return }
        c.pointee.endpoint?.connectSucceeded()
        if port.spec.proxyProtocol != .none {
            let n = MeshProxy.encode(
                port.spec.proxyProtocol, source: c.pointee.clientAddr, destination: c.pointee.localAddr, into: scratch)
            let w = send(c.pointee.upstream, scratch.baseAddress, n, CInt(MSG_NOSIGNAL))
            guard w == n else {
                connectFailed(slot, .connectOther, blameTask: true)
                return
            }
        }
        c.pointee.state = .relay
        c.pointee.connectedMs = nowMs
        c.pointee.up.writable = true
        c.pointee.lastActivityMs = nowMs
        armIdleTimer(slot)
        relay(slot)
    }

    // MARK: Events

    func connEvent(_ slot: Int, gen: UInt32, upstreamSide: Bool, mask: UInt32) {
        guard slot < conns.capacity else { return }
        let c = conns[slot]
        guard c.pointee.gen & 0xFF_FFFF == gen, c.pointee.state != .free else { return }  // stale
        let readable = mask & (SHOAL_EV_IN | SHOAL_EV_RDHUP | SHOAL_EV_HUP | SHOAL_EV_ERR) != 0
        let peerClosed = mask & (SHOAL_EV_RDHUP | SHOAL_EV_HUP | SHOAL_EV_ERR) != 0
        let writable = mask & (SHOAL_EV_OUT | SHOAL_EV_HUP | SHOAL_EV_ERR) != 0
        if upstreamSide {
            if readable { c.pointee.down.readable = true }
            if peerClosed { c.pointee.down.peerClosed = true }
            if writable { c.pointee.up.writable = true }
        } else {
            if readable { c.pointee.up.readable = true }
            if peerClosed { c.pointee.up.peerClosed = true }
            if writable { c.pointee.down.writable = true }
        }
        switch c.pointee.state {
        case .proxyHeader:
            if !upstreamSide { readProxyHeader(slot) }
        case .connecting:
            guard upstreamSide, writable || peerClosed else { return }
            // EPOLLOUT alone means the connect succeeded; only an error or hangup needs SO_ERROR.
            if mask & (SHOAL_EV_ERR | SHOAL_EV_HUP) != 0, let err = Socket.pendingError(c.pointee.upstream) {
                connectFailed(slot, reason(err.rawValue), blameTask: true)
            } else {
                connected(slot)
            }
        case .relay:
            relay(slot)
        case .free:
            break
        }
    }

    // MARK: Relay

    private func relay(_ slot: Int) {
        let c = conns[slot]
        let client = c.pointee.client
        let upstream = c.pointee.upstream
        guard let port = c.pointee.port else { return }
        let runtime = port.runtime
        if pump(&c.pointee.up, from: client, to: upstream, runtime, .bytesIn, c, otherDone: c.pointee.down.done)
            == .failed
            || pump(&c.pointee.down, from: upstream, to: client, runtime, .bytesOut, c, otherDone: c.pointee.up.done)
                == .failed
        {
            runtime.count(.resets)
            closeConn(slot, reset: true)
            return
        }
        if c.pointee.up.done && c.pointee.down.done { closeConn(slot, reset: false) }
    }

    /// Moves what `src` has to `dst` until one side would block.
    @inline(__always)
    private func pump(
        _ d: inout Direction, from src: CInt, to dst: CInt, _ runtime: PortRuntime, _ counter: MeshCounter,
        _ c: UnsafeMutablePointer<Conn>, otherDone: Bool
    ) -> Pump {
        while true {
            if d.pending > 0 {
                guard d.writable else { return .ok }
                let n = shoal_splice(d.pipeR, dst, d.pending, spliceFlags)
                if n > 0 {
                    d.pending -= n
                    runtime.count(counter, UInt64(n))
                    c.pointee.lastActivityMs = nowMs
                    if d.pending > 0 {
                        d.writable = false
                        return .ok
                    }
                    if !d.splicing { pipes.give(&d) }
                    continue
                }
                if n < 0 && errno == EAGAIN {
                    d.writable = false
                    return .ok
                }
                return .failed
            }
            if d.eof {
                if !d.shut {
                    pipes.give(&d)
                    // The other direction is finished too: the close that follows sends the FIN.
                    if !otherDone { _ = shoal_shutdown_write(dst) }
                    d.shut = true
                }
                return .ok
            }
            guard d.readable else { return .ok }
            if d.splicing {
                guard pipes.take(&d) else { return .failed }
                let n = shoal_splice(src, d.pipeW, spliceChunk, spliceFlags)
                if n > 0 {
                    d.pending = n
                    c.pointee.relayed = true
                    continue
                }
                if n == 0 {
                    d.eof = true
                    continue
                }
                if errno == EAGAIN {
                    d.readable = false
                    if d.pending == 0 { pipes.give(&d) }
                    return .ok
                }
                return .failed
            }
            // Copy mode: one recv, one send; the rest (if the destination is full) into a pipe.
            let n = recv(src, scratch.baseAddress, spliceThreshold, CInt(MSG_DONTWAIT))
            if n > 0 {
                c.pointee.relayed = true
                c.pointee.lastActivityMs = nowMs
                // A short read emptied the socket: its next data raises a new edge. Unless the
                // peer's FIN is already queued (no edge would follow): read on to see it.
                if n < spliceThreshold {
                    if !d.peerClosed { d.readable = false }
                } else {
                    d.splicing = true
                }
                var sent = 0
                if d.writable {
                    let w = send(dst, scratch.baseAddress, n, CInt(MSG_DONTWAIT | MSG_NOSIGNAL))
                    if w < 0 {
                        if errno != EAGAIN { return .failed }
                    } else {
                        sent = w
                        runtime.count(counter, UInt64(w))
                    }
                }
                if sent < n {
                    d.writable = false
                    guard pipes.take(&d) else { return .failed }
                    let rest = n - sent
                    let w = write(d.pipeW, scratch.baseAddress! + sent, rest)
                    guard w == rest else { return .failed }
                    d.pending = rest
                    return .ok
                }
                if !d.readable { return .ok }
                continue
            }
            if n == 0 {
                d.eof = true
                continue
            }
            if errno == EAGAIN {
                d.readable = false
                return .ok
            }
            return .failed
        }
    }

    // MARK: Close and timers

    func closeConn(_ slot: Int, reset: Bool) {
        let c = conns[slot]
        guard c.pointee.state != .free else { return }
        if reset {
            _ = shoal_set_linger_reset(c.pointee.client)
            if c.pointee.upstream >= 0 { _ = shoal_set_linger_reset(c.pointee.upstream) }
        }
        Glibc.close(c.pointee.client)
        if c.pointee.upstream >= 0 { Glibc.close(c.pointee.upstream) }
        pipes.give(&c.pointee.up)
        pipes.give(&c.pointee.down)
        c.pointee.endpoint?.active.subtract(1, ordering: .relaxed)
        c.pointee.port?.runtime.active.subtract(1, ordering: .relaxed)
        wheel.cancel(slot)
        conns.release(slot)
    }

    private func armIdleTimer(_ slot: Int) {
        let c = conns[slot]
        guard let port = c.pointee.port else { return }
        var at = UInt64.max
        if port.spec.idleTimeoutMs > 0 { at = c.pointee.lastActivityMs &+ port.spec.idleTimeoutMs }
        if !c.pointee.keepaliveArmed { at = min(at, c.pointee.connectedMs &+ keepaliveArmMs) }
        if c.pointee.drainDeadlineMs > 0 { at = min(at, c.pointee.drainDeadlineMs) }
        if at != .max { wheel.schedule(slot, atMs: at) }
    }

    func connTimer(_ slot: Int) {
        let c = conns[slot]
        guard let port = c.pointee.port else { return }
        switch c.pointee.state {
        case .proxyHeader:
            if nowMs >= c.pointee.deadlineMs {
                port.runtime.count(.proxyHeaderTimeout)
                port.runtime.logOnce(.proxyHeaderTimeout)
                closeConn(slot, reset: true)
            } else {
                wheel.schedule(slot, atMs: c.pointee.deadlineMs)
            }
        case .connecting:
            if c.pointee.drainDeadlineMs > 0 && nowMs >= c.pointee.drainDeadlineMs {
                closeConn(slot, reset: true)
            } else if nowMs >= c.pointee.deadlineMs {
                connectFailed(slot, .connectTimeout, blameTask: true)
            } else {
                wheel.schedule(slot, atMs: c.pointee.deadlineMs)
            }
        case .relay:
            if !c.pointee.keepaliveArmed && nowMs >= c.pointee.connectedMs &+ keepaliveArmMs {
                let spec = port.spec
                _ = shoal_tcp_tune(
                    c.pointee.upstream, 0, spec.keepaliveIdleS, spec.keepaliveIntervalS, spec.keepaliveCount)
                c.pointee.keepaliveArmed = true
            }
            if c.pointee.drainDeadlineMs > 0 && nowMs >= c.pointee.drainDeadlineMs {
                port.runtime.count(.drainClosed)
                closeConn(slot, reset: true)
            } else if port.spec.idleTimeoutMs > 0 && nowMs >= c.pointee.lastActivityMs &+ port.spec.idleTimeoutMs {
                port.runtime.count(.idleTimeouts)
                closeConn(slot, reset: false)
            } else {
                armIdleTimer(slot)
            }
        case .free:
            break
        }
    }

    /// After a swap: connections to tasks that left, or on ports that closed, drain.
    func startDrains(keeping ports: [PortKey: PortTable]) {
        conns.forEachLive { slot in
            let c = conns[slot]
            guard let port = c.pointee.port, c.pointee.drainDeadlineMs == 0 else { return }
            let portGone = ports[port.spec.key] == nil
            let taskGone = c.pointee.endpoint.map { !$0.present.load(ordering: .relaxed) } ?? false
            guard portGone || taskGone else { return }
            startDrain(slot, drainMs: port.spec.drainTimeoutMs)
        }
    }

    /// No new work for this connection's task or port: it runs on until it ends or `drainMs`.
    func startDrain(_ slot: Int, drainMs: UInt64) {
        let c = conns[slot]
        c.pointee.drainDeadlineMs = max(1, nowMs &+ drainMs)
        if c.pointee.state == .relay { armIdleTimer(slot) }  // otherwise its connect timer runs
    }
}
