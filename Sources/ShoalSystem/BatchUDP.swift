// Batched UDP I/O: recvmmsg(2) / sendmmsg(2) over message arrays allocated once, so the hot
// path builds no per-packet structures. The caller owns the packet memory (pooled buffers with
// headroom) and points slot `i` at it before each call.
//
// Contract: single-threaded (one VTEP thread owns one BatchUDP); the socket is blocking for
// sends (a full socket buffer is back-pressure, not loss) and receives with MSG_DONTWAIT.
// IPv4 or IPv6, the family of the bound address; each slot's address room is a
// `sockaddr_in6`, which holds either.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

package final class BatchUDP {
    package let fd: FileDescriptor
    package let capacity: Int
    private let msgs: UnsafeMutablePointer<shoal_mmsghdr>
    private let iovs: UnsafeMutablePointer<iovec>
    private let addrs: UnsafeMutablePointer<sockaddr_in6>
    /// Per-slot control buffers: UDP_SEGMENT on send, UDP_GRO on receive.
    private let control: UnsafeMutableRawPointer
    private static let controlBytes = 64
    package private(set) var groEnabled = false

    /// A UDP socket bound to `address`, with `capacity` message slots and socket buffers of
    /// `bufferBytes` each way. `reusePort`: one of a group of sockets on the same address (one
    /// per VTEP queue thread), see `steerByCPU`.
    package init(
        bind address: SocketAddress, capacity: Int, bufferBytes: Int = 4 << 20, reusePort: Bool = false
    ) throws(SystemError) {
        let fd = try Socket.bindUDP(address, reusePort: reusePort)
        let flags = fcntl(fd.rawValue, F_GETFL)
        _ = try syscallOrThrow("fcntl(F_SETFL, blocking)", "\(address)") {
            fcntl(fd.rawValue, F_SETFL, flags & ~O_NONBLOCK)
        }
        try? Socket.setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, CInt(bufferBytes), "SO_RCVBUFFORCE")
        try? Socket.setOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, CInt(bufferBytes), "SO_SNDBUFFORCE")
        self.fd = fd
        self.capacity = capacity
        msgs = .allocate(capacity: capacity)
        iovs = .allocate(capacity: capacity)
        addrs = .allocate(capacity: capacity)
        msgs.initialize(repeating: shoal_mmsghdr(), count: capacity)
        iovs.initialize(repeating: iovec(), count: capacity)
        addrs.initialize(repeating: sockaddr_in6(), count: capacity)
        control = .allocate(byteCount: Self.controlBytes * capacity, alignment: 16)
        control.initializeMemory(as: UInt8.self, repeating: 0, count: Self.controlBytes * capacity)
        for i in 0..<capacity {
            msgs[i].msg_hdr.msg_iov = iovs + i
            msgs[i].msg_hdr.msg_iovlen = 1
            msgs[i].msg_hdr.msg_name = UnsafeMutableRawPointer(addrs + i)
        }
    }

    deinit {
        msgs.deallocate()
        iovs.deallocate()
        addrs.deallocate()
        control.deallocate()
    }

    /// Steers the datagrams of this socket's SO_REUSEPORT group to the socket whose bind order
    /// equals the receiving CPU mod `queues` (a classic BPF program), so a thread pinned to CPU
    /// q receives what arrived on CPU q.
    package func steerByCPU(queues: Int) throws(SystemError) {
        _ = try syscallOrThrow("setsockopt(SO_ATTACH_REUSEPORT_CBPF)") {
            shoal_reuseport_steer_by_cpu(fd.rawValue, UInt32(queues))
        }
    }

    /// UDP_GRO: the kernel may coalesce datagrams of one flow into one receive, with equal-size
    /// segments (the last may be shorter); `segmentSize(i)` tells the size.
    package func enableGRO() throws(SystemError) {
        try Socket.setOption(fd, shoal_sol_udp(), shoal_udp_gro(), 1, "UDP_GRO")
        groEnabled = true
    }

    /// The GRO segment size of received slot `i`, or nil if it holds one datagram.
    @inline(__always)
    package func segmentSize(_ i: Int) -> Int? {
        guard groEnabled else { return nil }
        let v = withUnsafePointer(to: &msgs[i].msg_hdr) { shoal_cmsg_get_int($0, shoal_sol_udp(), shoal_udp_gro()) }
        return v > 0 ? Int(v) : nil
    }

    /// Asks the kernel to split slot `i` into datagrams of `size` bytes (UDP GSO, UDP_SEGMENT);
    /// call after `setSlot`.
    @inline(__always)
    package func setSegmentSize(_ i: Int, _ size: Int) {
        msgs[i].msg_hdr.msg_control = control + i * Self.controlBytes
        msgs[i].msg_hdr.msg_controllen = Self.controlBytes
        _ = shoal_cmsg_put_u16(&msgs[i].msg_hdr, shoal_sol_udp(), shoal_udp_segment(), UInt16(size))
    }

    /// Points slot `i` at `count` bytes at `base` (to receive into, or to send).
    @inline(__always)
    package func setSlot(_ i: Int, base: UnsafeMutableRawPointer, count: Int) {
        iovs[i].iov_base = base
        iovs[i].iov_len = count
        msgs[i].msg_hdr.msg_control = nil
        msgs[i].msg_hdr.msg_controllen = 0
    }

    /// Sets slot `i`'s destination.
    @inline(__always)
    package func setDestination(_ i: Int, _ dest: UDPDestination) {
        addrs[i] = dest.storage
        msgs[i].msg_hdr.msg_namelen = dest.length
    }

    /// Receives up to `count` datagrams into slots 0..<count; returns how many arrived
    /// (`.wouldBlock` when none). Lengths: `length(i)`; sources: `sourceAddress(i)`.
    @inline(__always)
    package func receive(_ count: Int) -> Result<Int, Errno> {
        for i in 0..<count {
            msgs[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in6>.size)
            if groEnabled {
                msgs[i].msg_hdr.msg_control = control + i * Self.controlBytes
                msgs[i].msg_hdr.msg_controllen = Self.controlBytes
            } else {
                msgs[i].msg_hdr.msg_controllen = 0
            }
            msgs[i].msg_hdr.msg_flags = 0
        }
        return syscallRetrying { shoal_recvmmsg(fd.rawValue, msgs, UInt32(count), CInt(MSG_DONTWAIT)) }
            .map(Int.init)
    }

    @inline(__always)
    package func length(_ i: Int) -> Int { Int(msgs[i].msg_len) }

    /// A received datagram was cut to the slot size (MSG_TRUNC).
    @inline(__always)
    package func truncated(_ i: Int) -> Bool { msgs[i].msg_hdr.msg_flags & CInt(MSG_TRUNC) != 0 }

    /// The source address of received slot `i`.
    @inline(__always)
    package func sourceAddress(_ i: Int) -> IPAddress {
        let raw = UnsafeRawPointer(addrs + i)
        if raw.load(as: sockaddr.self).sa_family == sa_family_t(AF_INET) {
            return .v4(UInt32(bigEndian: raw.load(as: sockaddr_in.self).sin_addr.s_addr))
        }
        return SocketAddress(raw)?.ip ?? .v6(0, 0)
    }

    /// Sends slots 0..<count, each to the destination set with `setDestination`. A datagram the
    /// kernel refuses (EMSGSIZE, ECONNREFUSED, ...) is skipped and the rest still sent; returns
    /// how many failed and the last error.
    @inline(__always)
    package func send(_ count: Int) -> (failed: Int, error: Errno?) {
        var done = 0
        var failed = 0
        var last: Errno? = nil
        while done < count {
            switch syscallRetrying({ shoal_sendmmsg(fd.rawValue, msgs + done, UInt32(count - done), 0) }) {
            case .success(let n): done += Int(n)
            case .failure(let e):
                done += 1
                failed += 1
                last = e
            }
        }
        return (failed, last)
    }

}

/// A destination address prepared once for `BatchUDP.setDestination`: a `sockaddr_in` or a
/// `sockaddr_in6` in `sockaddr_in6`-sized room, and its length.
package struct UDPDestination {
    fileprivate var storage = sockaddr_in6()
    fileprivate var length: socklen_t

    package init(_ address: SocketAddress) {
        var ss = sockaddr_storage()
        length = address.write(to: &ss)
        withUnsafeBytes(of: &ss) { src in
            withUnsafeMutableBytes(of: &storage) {
                $0.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[0..<$0.count]))
            }
        }
    }
}
