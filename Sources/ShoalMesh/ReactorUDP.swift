// UDP on a reactor: a flow table keyed by (listener, client address and port) maps each client
// to a task through a connected socket of its own (so replies are told apart by the kernel),
// with lazy idle expiry on a timer wheel. Datagrams arrive in recvmmsg batches; replies leave
// from the published port's socket in sendmmsg batches. A flow whose task leaves the table,
// fails its health or refuses (ICMP port unreachable) moves to another task at once.

import CShoal
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

struct Flow {
    var gen: UInt32 = 0
    var listener: Int32 = -1
    var fd: CInt = -1
    var client = SocketAddress(ip: .v4(0), port: 0)
    var port: PortTable? = nil
    var endpointIndex = -1
    var endpoint: EndpointRuntime? = nil
    var lastActivityMs: UInt64 = 0
    /// The address the client sent to, when the listener is a wildcard (IP_PKTINFO).
    var local: IPAddress? = nil
}

/// The reactor's UDP state: flow slots, their open-addressing index, batch buffers.
struct UDPRelay: ~Copyable {
    static let batch = 32
    static let datagramMax = 65_536

    var flows: UnsafeMutablePointer<Flow>
    var capacity: Int
    var freeList: [Int32]
    var flowCount = 0
    /// Linear-probing index: slot → flow index + 1 (0 empty); power-of-two size ≥ 2 × capacity.
    var index: UnsafeMutablePointer<Int32>
    var indexMask: Int
    var wheel: TimerWheel
    let buffers: UnsafeMutableRawPointer
    let iovecs: UnsafeMutablePointer<iovec>
    let names: UnsafeMutablePointer<sockaddr_storage>
    let msgs: UnsafeMutablePointer<shoal_mmsghdr>
    let controls: UnsafeMutableRawPointer
    let controlSpace = shoal_pktinfo_space()

    init(capacity: Int, nowMs: UInt64) {
        self.capacity = capacity
        flows = .allocate(capacity: capacity)
        flows.initialize(repeating: Flow(), count: capacity)
        freeList = (0..<capacity).reversed().map { Int32($0) }
        let size = Self.indexSize(for: capacity)
        index = .allocate(capacity: size)
        index.initialize(repeating: 0, count: size)
        indexMask = size - 1
        wheel = TimerWheel(capacity: capacity, nowMs: nowMs)
        buffers = .allocate(byteCount: Self.batch * Self.datagramMax, alignment: 64)
        iovecs = .allocate(capacity: Self.batch)
        names = .allocate(capacity: Self.batch)
        msgs = .allocate(capacity: Self.batch)
        msgs.initialize(repeating: shoal_mmsghdr(), count: Self.batch)
        controls = .allocate(byteCount: Self.batch * shoal_pktinfo_space(), alignment: 16)
    }

    deinit {
        flows.deinitialize(count: capacity)
        flows.deallocate()
        index.deallocate()
        buffers.deallocate()
        iovecs.deallocate()
        names.deallocate()
        msgs.deallocate()
        controls.deallocate()
    }

    static func indexSize(for capacity: Int) -> Int {
        var s = 16
        while s < capacity * 2 { s <<= 1 }
        return s
    }

    @inline(__always)
    func hash(_ listener: Int, _ a: SocketAddress) -> Int {
        let ipHash: UInt64
        switch a.ip {
        case .v4(let v): ipHash = UInt64(v)
        case .v6(let hi, let lo): ipHash = mix64(hi) ^ lo
        }
        return Int(truncatingIfNeeded: mix64(ipHash ^ (UInt64(a.port) << 32) ^ (UInt64(listener) << 48)))
    }

    func find(_ listener: Int, _ a: SocketAddress) -> Int? {
        var h = hash(listener, a) & indexMask
        while true {
            let v = Int(index[h])
            if v == 0 { return nil }
            let f = flows[v - 1]
            if Int(f.listener) == listener && f.client == a { return v - 1 }
            h = (h + 1) & indexMask
        }
    }

    mutating func insert(_ i: Int) {
        var h = hash(Int(flows[i].listener), flows[i].client) & indexMask
        while index[h] != 0 { h = (h + 1) & indexMask }
        index[h] = Int32(i + 1)
    }

    /// Removes flow `i` from the index (backward-shift deletion: no tombstones).
    mutating func unindex(_ i: Int) {
        var h = hash(Int(flows[i].listener), flows[i].client) & indexMask
        while Int(index[h]) != i + 1 {
            if index[h] == 0 { return }
            h = (h + 1) & indexMask
        }
        var hole = h
        var j = (h + 1) & indexMask
        while index[j] != 0 {
            let k = Int(index[j]) - 1
            let home = hash(Int(flows[k].listener), flows[k].client) & indexMask
            // Move j into the hole unless its home lies cyclically in (hole, j].
            let inRange = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j)
            if !inRange {
                index[hole] = index[j]
                hole = j
            }
            j = (j + 1) & indexMask
        }
        index[hole] = 0
    }

    /// A free flow slot, growing (off the steady state) when full.
    mutating func allocate() -> Int? {
        if freeList.isEmpty {
            guard capacity < 1 << 22 else { return nil }
            grow(to: capacity * 2)
        }
        flowCount += 1
        return Int(freeList.removeLast())
    }

    mutating func release(_ i: Int) {
        unindex(i)
        wheel.cancel(i)
        flows[i].gen &+= 1
        flows[i].fd = -1
        flows[i].listener = -1
        flows[i].port = nil
        flows[i].endpoint = nil
        flows[i].local = nil
        freeList.append(Int32(i))
        flowCount -= 1
    }

    private mutating func grow(to newCapacity: Int) {
        let nf = UnsafeMutablePointer<Flow>.allocate(capacity: newCapacity)
        nf.moveInitialize(from: flows, count: capacity)
        (nf + capacity).initialize(repeating: Flow(), count: newCapacity - capacity)
        flows.deallocate()
        flows = nf
        freeList.reserveCapacity(newCapacity)
        for i in stride(from: newCapacity - 1, through: capacity, by: -1) { freeList.append(Int32(i)) }
        wheel.grow(to: newCapacity)
        capacity = newCapacity
        // Rebuild the index at the new size.
        index.deallocate()
        let size = Self.indexSize(for: newCapacity)
        index = .allocate(capacity: size)
        index.initialize(repeating: 0, count: size)
        indexMask = size - 1
        for i in 0..<capacity where flows[i].listener >= 0 { insert(i) }
    }

    /// Points message k at buffer k (and at a name buffer when `named`).
    @inline(__always)
    func prepare(_ k: Int, length: Int, named: Bool) {
        iovecs[k] = iovec(iov_base: buffers + k * Self.datagramMax, iov_len: length)
        msgs[k].msg_hdr = msghdr()
        msgs[k].msg_hdr.msg_iov = iovecs + k
        msgs[k].msg_hdr.msg_iovlen = 1
        if named {
            msgs[k].msg_hdr.msg_name = UnsafeMutableRawPointer(names + k)
            msgs[k].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
            msgs[k].msg_hdr.msg_control = controls + k * controlSpace
            msgs[k].msg_hdr.msg_controllen = controlSpace
        }
        msgs[k].msg_len = 0
    }
}

extension Reactor {
    func udpListenerReadable(_ li: Int) {
        let fd = listeners[li].fd
        while fd >= 0 && listeners[li].fd == fd {
            for k in 0..<UDPRelay.batch { udp.prepare(k, length: UDPRelay.datagramMax, named: true) }
            let n = shoal_recvmmsg(fd, udp.msgs, CUnsignedInt(UDPRelay.batch), CInt(MSG_DONTWAIT))
            if n <= 0 { return }
            let port = listeners[li].port
            for k in 0..<Int(n) {
                guard let client = SocketAddress(UnsafeRawPointer(udp.names + k)) else { continue }
                port.runtime.count(.udpDatagramsIn)
                forwardToTask(
                    li, port, client, buffer: udp.buffers + k * UDPRelay.datagramMax, length: Int(udp.msgs[k].msg_len),
                    message: k)
            }
            if Int(n) < UDPRelay.batch { return }
        }
    }

    private func forwardToTask(
        _ li: Int, _ port: PortTable, _ client: SocketAddress, buffer: UnsafeMutableRawPointer, length: Int,
        message k: Int
    ) {
        var f = udp.find(li, client)
        if let i = f, let e = udp.flows[i].endpoint, udp.flows[i].port !== port || !stillEligible(i, e) {
            moveFlow(i, port)  // its task left, failed its checks or was ejected
            f = udp.flows[i].fd >= 0 ? i : nil
        }
        if f == nil {
            f = openFlow(li, port, client)
            if let i = f { udp.flows[i].local = localAddress(of: k) }
        }
        guard let i = f else {
            port.runtime.count(.udpDropped)
            return
        }
        udp.flows[i].lastActivityMs = nowMs
        let w = send(udp.flows[i].fd, buffer, length, CInt(MSG_DONTWAIT | MSG_NOSIGNAL))
        if w < 0 {
            port.runtime.count(.udpDropped)
            if errno == ECONNREFUSED { taskRefusedFlow(i) }
        }
    }

    @inline(__always)
    private func stillEligible(_ i: Int, _ e: EndpointRuntime) -> Bool {
        guard let p = udp.flows[i].port, e.present.load(ordering: .relaxed) else { return false }
        return p.eligible(udp.flows[i].endpointIndex, nowMs: nowMs)
    }

    /// A new flow to a task picked by the port's balancer; nil when none is eligible.
    private func openFlow(_ li: Int, _ port: PortTable, _ client: SocketAddress) -> Int? {
        guard let i = udp.allocate() else { return nil }
        udp.flows[i].listener = Int32(li)
        udp.flows[i].client = client
        udp.flows[i].port = port
        udp.flows[i].lastActivityMs = nowMs
        udp.insert(i)
        guard connectFlow(i, exclude: -1) else {
            udp.release(i)
            port.runtime.count(.refusedNoHealthyTask)
            port.runtime.logOnce(.refusedNoHealthyTask)
            return nil
        }
        port.runtime.count(.udpFlowsCreated)
        udp.wheel.schedule(i, atMs: nowMs &+ port.spec.flowTimeoutMs)
        return i
    }

    /// Picks a task for flow `i` and connects its socket there.
    private func connectFlow(_ i: Int, exclude: Int) -> Bool {
        guard let port = udp.flows[i].port else { return false }
        let hash = clientHash(udp.flows[i].client.ip)
        guard let t = port.pick(clientHash: hash, nowMs: nowMs, rng: &rng, exclude: exclude) else { return false }
        let e = port.endpoints[t]
        let fd = socket(
            e.address.family, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        var ss = sockaddr_storage()
        let len = e.address.write(to: &ss)
        let r = withUnsafePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        guard r == 0 else {
            Glibc.close(fd)
            return false
        }
        udp.flows[i].fd = fd
        udp.flows[i].endpointIndex = t
        udp.flows[i].endpoint = e
        e.active.add(1, ordering: .relaxed)
        e.total.add(1, ordering: .relaxed)
        _ = shoal_epoll_add(epoll, fd, SHOAL_EV_IN | SHOAL_EV_ET, cookie(.udpFlow, i, udp.flows[i].gen))
        return true
    }

    private func disconnectFlow(_ i: Int) {
        if udp.flows[i].fd >= 0 { Glibc.close(udp.flows[i].fd) }
        udp.flows[i].fd = -1
        udp.flows[i].endpoint?.active.subtract(1, ordering: .relaxed)
        udp.flows[i].endpoint = nil
        udp.flows[i].gen &+= 1  // events of the old socket are stale now
    }

    /// Moves flow `i` to another task of `port` (the current revision of its listener's port).
    private func moveFlow(_ i: Int, _ port: PortTable, exclude: Int = -1) {
        let previous = udp.flows[i].port
        disconnectFlow(i)
        udp.flows[i].port = port
        if connectFlow(i, exclude: exclude) {
            port.runtime.count(.udpFlowsMoved)
        } else {
            (previous ?? port).runtime.count(.udpFlowsExpired)
            udp.release(i)
        }
    }

    /// The task answered with ICMP port unreachable: count it against the task, move the flow.
    private func taskRefusedFlow(_ i: Int) {
        guard let port = udp.flows[i].port, let e = udp.flows[i].endpoint else { return }
        port.runtime.count(.connectRefused)
        e.connectFailed(nowMs: nowMs, threshold: port.spec.ejectAfterFailures, ejectMs: port.spec.ejectMs)
        moveFlow(i, port, exclude: udp.flows[i].endpointIndex)
    }

    func udpFlowReadable(_ i: Int, gen: UInt32) {
        guard i < udp.capacity, udp.flows[i].gen & 0xFF_FFFF == gen, udp.flows[i].fd >= 0 else { return }
        let li = Int(udp.flows[i].listener)
        guard li >= 0, li < listeners.count, listeners[li].fd >= 0 else { return }
        while true {
            for k in 0..<UDPRelay.batch { udp.prepare(k, length: UDPRelay.datagramMax, named: false) }
            let n = shoal_recvmmsg(udp.flows[i].fd, udp.msgs, CUnsignedInt(UDPRelay.batch), CInt(MSG_DONTWAIT))
            if n < 0 {
                if errno == ECONNREFUSED { taskRefusedFlow(i) }
                return
            }
            if n == 0 { return }
            udp.flows[i].lastActivityMs = nowMs
            // Replies leave from the published port, addressed to the client.
            var client = sockaddr_storage()
            let len = udp.flows[i].client.write(to: &client)
            let local = udp.flows[i].local
            for k in 0..<Int(n) {
                udp.names[k] = client
                udp.iovecs[k].iov_len = Int(udp.msgs[k].msg_len)
                udp.msgs[k].msg_hdr.msg_name = UnsafeMutableRawPointer(udp.names + k)
                udp.msgs[k].msg_hdr.msg_namelen = len
                if let local { setReplySource(k, local) }
            }
            let port = listeners[li].port
            var sent = 0
            while sent < Int(n) {
                let s = shoal_sendmmsg(
                    listeners[li].fd, udp.msgs + sent, CUnsignedInt(Int(n) - sent), CInt(MSG_DONTWAIT))
                if s <= 0 { break }
                sent += Int(s)
            }
            port.runtime.count(.udpDatagramsOut, UInt64(sent))
            if sent < Int(n) { port.runtime.count(.udpDropped, UInt64(Int(n) - sent)) }
            if Int(n) < UDPRelay.batch { return }
        }
    }

    /// The destination address of received message `k` (IP_PKTINFO), if the listener asks.
    private func localAddress(of k: Int) -> IPAddress? {
        var bytes: (UInt64, UInt64) = (0, 0)
        let n = withUnsafeMutableBytes(of: &bytes) { raw in
            withUnsafePointer(to: &udp.msgs[k].msg_hdr) {
                shoal_pktinfo_get($0, raw.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        switch n {
        case 4: return .v4(UInt32(bigEndian: UInt32(truncatingIfNeeded: bytes.0)))
        case 16: return .v6(UInt64(bigEndian: bytes.0), UInt64(bigEndian: bytes.1))
        default: return nil
        }
    }

    /// Makes reply `k` leave from `local`.
    private func setReplySource(_ k: Int, _ local: IPAddress) {
        udp.msgs[k].msg_hdr.msg_control = udp.controls + k * udp.controlSpace
        udp.msgs[k].msg_hdr.msg_controllen = udp.controlSpace
        var bytes: (UInt64, UInt64)
        let len: CInt
        switch local {
        case .v4(let a):
            bytes = (UInt64(a.bigEndian), 0)
            len = 4
        case .v6(let hi, let lo):
            bytes = (hi.bigEndian, lo.bigEndian)
            len = 16
        }
        withUnsafeBytes(of: &bytes) { raw in
            shoal_pktinfo_put(&udp.msgs[k].msg_hdr, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), len)
        }
    }

    func udpExpire() {
        udp.wheel.collect(nowMs: nowMs)
        while let i = udp.wheel.popDue() {
            guard let port = udp.flows[i].port else { continue }
            let due = udp.flows[i].lastActivityMs &+ port.spec.flowTimeoutMs
            if nowMs >= due {
                port.runtime.count(.udpFlowsExpired)
                disconnectFlow(i)
                udp.release(i)
            } else {
                udp.wheel.schedule(i, atMs: due)
            }
        }
    }

    /// After a swap: flows follow their port's new revision; those whose task left move now.
    func udpTableChanged(_ ports: [PortKey: PortTable]) {
        for i in 0..<udp.capacity where udp.flows[i].listener >= 0 {
            guard let old = udp.flows[i].port, let port = ports[old.spec.key] else { continue }
            guard let e = udp.flows[i].endpoint, let t = port.endpoints.firstIndex(where: { $0 === e }) else {
                moveFlow(i, port)
                continue
            }
            udp.flows[i].port = port
            udp.flows[i].endpointIndex = t
            if !port.eligible(t, nowMs: nowMs) { moveFlow(i, port) }
        }
    }

    /// A UDP listener closed: its flows end.
    func udpListenerClosed(_ li: Int) {
        for i in 0..<udp.capacity where Int(udp.flows[i].listener) == li {
            disconnectFlow(i)
            udp.release(i)
        }
    }

    func udpCloseAll() {
        for i in 0..<udp.capacity where udp.flows[i].listener >= 0 {
            disconnectFlow(i)
            udp.release(i)
        }
    }
}
