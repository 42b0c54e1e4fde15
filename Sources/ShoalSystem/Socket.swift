// Socket setup: create, set options, bind, listen, connect. Setup failures throw a
// `SystemError` naming the call and the address; per-connection results are values.

import CShoal

#if canImport(Glibc)
    import Glibc
#endif

package enum SocketKind: Sendable {
    case tcp, udp

    var type: CInt { self == .tcp ? CInt(SOCK_STREAM.rawValue) : CInt(SOCK_DGRAM.rawValue) }
}

package enum Socket {
    /// A non-blocking, close-on-exec socket of `family` and `kind`.
    package static func make(family: CInt, kind: SocketKind) throws(SystemError) -> FileDescriptor {
        let fd = try syscallOrThrow("socket") {
            socket(family, kind.type | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        return FileDescriptor(owning: fd)
    }

    /// setsockopt(2) with an integer value.
    package static func setOption(
        _ fd: borrowing FileDescriptor, _ level: CInt, _ name: CInt, _ value: CInt, _ what: String
    ) throws(SystemError) {
        var v = value
        _ = try syscallOrThrow("setsockopt(\(what))") {
            setsockopt(fd.rawValue, level, name, &v, socklen_t(MemoryLayout<CInt>.size))
        }
    }

    package static func bind(_ fd: borrowing FileDescriptor, _ address: SocketAddress) throws(SystemError) {
        var ss = sockaddr_storage()
        let len = address.write(to: &ss)
        _ = try syscallOrThrow("bind", "\(address)") {
            withUnsafePointer(to: &ss) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd.rawValue, $0, len) }
            }
        }
    }

    /// A bound, listening TCP socket (SO_REUSEADDR, optionally SO_REUSEPORT).
    package static func listenTCP(
        _ address: SocketAddress, backlog: CInt = 4096, reusePort: Bool = false
    ) throws(SystemError) -> FileDescriptor {
        let fd = try make(family: address.family, kind: .tcp)
        try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
        if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
        try bind(fd, address)
        _ = try syscallOrThrow("listen", "\(address)") { Glibc.listen(fd.rawValue, backlog) }
        return fd
    }

    /// A bound UDP socket.
    package static func bindUDP(_ address: SocketAddress, reusePort: Bool = false) throws(SystemError)
        -> FileDescriptor
    {
        let fd = try make(family: address.family, kind: .udp)
        try setOption(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR")
        if reusePort { try setOption(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT") }
        try bind(fd, address)
        return fd
    }

    /// Starts a non-blocking connect: `.success(true)` connected at once, `.success(false)` in
    /// progress (wait for writability, then check `pendingError`), or the errno.
    package static func connect(_ fd: borrowing FileDescriptor, _ address: SocketAddress) -> Result<Bool, Errno> {
        var ss = sockaddr_storage()
        let len = address.write(to: &ss)
        let r = syscallRetrying {
            withUnsafePointer(to: &ss) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd.rawValue, $0, len) }
            }
        }
        switch r {
        case .success: return .success(true)
        case .failure(let e) where e == .inProgress: return .success(false)
        case .failure(let e): return .failure(e)
        }
    }

    /// SO_ERROR: the result of a non-blocking connect.
    package static func pendingError(_ fd: CInt) -> Errno? {
        var err: CInt = 0
        var len = socklen_t(MemoryLayout<CInt>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 else { return Errno(errno) }
        return err == 0 ? nil : Errno(err)
    }

    /// The locally bound address (getsockname).
    package static func localAddress(_ fd: CInt) -> SocketAddress? {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let r = withUnsafeMutablePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard r == 0 else { return nil }
        return SocketAddress(storage: &ss)
    }
}
