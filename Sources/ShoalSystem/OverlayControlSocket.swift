// The overlay daemon's control socket: a unix stream socket carrying one request line and one
// response per connection (JSON text; the overlay module defines the messages). Off the hot
// path: the daemon polls the listener with its data sockets and serves a request in full,
// bounded by a receive timeout, when one arrives.

#if canImport(Glibc)
    import Glibc
#endif

package enum UnixStream {
    private static func address(_ path: String) throws(SystemError) -> sockaddr_un {
        var sun = sockaddr_un()
        sun.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: sun.sun_path) else {
            throw SystemError("bind", Errno(ENAMETOOLONG), path)
        }
        withUnsafeMutableBytes(of: &sun.sun_path) { raw in
            for (i, b) in bytes.enumerated() { raw[i] = b }
        }
        return sun
    }

    /// A listening unix stream socket at `path` (a stale socket file is replaced), non-blocking.
    package static func listen(path: String) throws(SystemError) -> FileDescriptor {
        var sun = try address(path)
        unlink(path)
        let fd = try syscallOrThrow("socket(AF_UNIX)") {
            socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_NONBLOCK.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        let owned = FileDescriptor(owning: fd)
        _ = try syscallOrThrow("bind", path) {
            withUnsafePointer(to: &sun) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        _ = try syscallOrThrow("listen", path) { Glibc.listen(fd, 16) }
        return owned
    }

    /// Connects to `path` (blocking), with a `timeoutSeconds` receive timeout.
    package static func connect(path: String, timeoutSeconds: Int = 10) throws(SystemError) -> FileDescriptor {
        var sun = try address(path)
        let fd = try syscallOrThrow("socket(AF_UNIX)") {
            socket(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        }
        let owned = FileDescriptor(owning: fd)
        _ = try syscallOrThrow("connect", "\(path) (is `shoal overlay run` running?)") {
            withUnsafePointer(to: &sun) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
                }
            }
        }
        setTimeout(fd, seconds: timeoutSeconds)
        return owned
    }

    /// Accepts one pending connection (blocking I/O, with a receive timeout), or nil.
    package static func accept(listener: CInt, timeoutSeconds: Int = 2) -> FileDescriptor? {
        let fd = Glibc.accept(listener, nil, nil)
        guard fd >= 0 else { return nil }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)  // accepted sockets do not inherit O_NONBLOCK on Linux
        setTimeout(fd, seconds: timeoutSeconds)
        return FileDescriptor(owning: fd)
    }

    private static func setTimeout(_ fd: CInt, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    /// Reads until a newline or EOF (at most `limit` bytes); the line without its newline.
    package static func readLine(_ fd: borrowing FileDescriptor, limit: Int = 1 << 20) -> [UInt8]? {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out.isEmpty ? nil : out }
            if let nl = buf[0..<n].firstIndex(of: 10) {
                out += buf[0..<nl]
                return out
            }
            out += buf[0..<n]
        }
        return out
    }

    /// Reads everything until EOF.
    package static func readAll(_ fd: borrowing FileDescriptor) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out }
            out += buf[0..<n]
        }
    }

    /// Writes all of `bytes`; false on failure.
    @discardableResult
    package static func writeAll(_ fd: borrowing FileDescriptor, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd.rawValue, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}
