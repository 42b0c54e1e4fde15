// Real sockets on loopback for the mesh tests: blocking clients, small backends on threads,
// free ports, and an in-process mesh built from table text.

import Foundation
import Synchronization
import Testing

@testable import ShoalMesh
@testable import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

enum Kit {
    /// The next port to try. Test ports come from 20000-29999, below the kernel's ephemeral
    /// range: other tests' bind(0) and outgoing connections never land there, and each port is
    /// handed out once per process. (The mesh's listeners use SO_REUSEPORT, as HAProxy's do, so
    /// two listeners on one port would share its connections silently rather than fail.)
    private static let nextPort = Mutex<Int>(20_000 + Int(getpid() % 1_000) * 10)

    /// A port free now on 127.0.0.1 (checked by binding it), never handed out before.
    static func freePort(udp: Bool = false) -> UInt16 {
        while true {
            let p = nextPort.withLock { n -> UInt16 in
                let p = n
                n = n + 1 >= 30_000 ? 20_000 : n + 1
                return UInt16(p)
            }
            if isFree(p, udp: udp) { return p }
        }
    }

    private static func isFree(_ port: UInt16, udp: Bool) -> Bool {
        let fd = socket(AF_INET, udp ? CInt(SOCK_DGRAM.rawValue) : CInt(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var one: CInt = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        } == 0
    }

    /// Starts a mesh from YAML text (control socket in a temp dir).
    static func mesh(_ yaml: String) throws -> Mesh {
        try Mesh(try MeshConfig.parse(yaml))
    }

    static func spec(_ yaml: String) throws -> MeshSpec { try MeshConfig.parse(yaml) }

    /// A blocking TCP connection to 127.0.0.1:port with 5 s timeouts; nil if refused.
    static func connect(_ port: UInt16, timeout: Int = 5) -> CInt? {
        let fd = socket(AF_INET, CInt(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var ss = sockaddr_storage()
        let len = SocketAddress(ip: .v4(0x7F00_0001), port: port).write(to: &ss)
        let r = withUnsafePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, len) }
        }
        if r != 0 {
            close(fd)
            return nil
        }
        return fd
    }

    static func send(_ fd: CInt, _ s: String) { sendBytes(fd, Array(s.utf8)) }

    static func sendBytes(_ fd: CInt, _ bytes: [UInt8]) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            off += n
        }
    }

    /// Reads until EOF, error or timeout; the bytes and whether it ended with a clean EOF.
    static func readAll(_ fd: CInt, limit: Int = 1 << 26) -> (bytes: [UInt8], eof: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while out.count < limit {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return (out, true) }
            if n < 0 { return (out, false) }
            out += buf[0..<n]
        }
        return (out, false)
    }

    /// Reads until `count` bytes arrived (or EOF/timeout).
    static func read(_ fd: CInt, count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65_536)
        while out.count < count {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, min($0.count, count - out.count), 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }

    static func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

    /// Polls `condition` every 10 ms for up to `seconds`.
    static func eventually(_ seconds: Double = 5, _ condition: () -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }

    static func counter(_ mesh: Mesh, _ port: UInt16, _ c: MeshCounter, udp: Bool = false) -> UInt64 {
        let key = PortKey(port: port, proto: udp ? .udp : .tcp)
        return mesh.table.ports.first { $0.spec.key == key }?.runtime.value(c) ?? 0
    }
}

/// A TCP backend on 127.0.0.1 that greets each connection with "<name>\n", then runs
/// `behaviour` (default: echo until EOF, then close). One thread per connection.
final class Backend: @unchecked Sendable {
    let port: UInt16
    let name: String
    private let fd: CInt
    private let stopped = Atomic<Bool>(false)
    let accepted = Atomic<Int>(0)
    /// What each connection's first bytes were, when `capture` is set.
    let firstBytes = Mutex<[[UInt8]]>([])

    enum Behaviour: Sendable {
        case echo
        /// Read until EOF, then send what was read reversed, then close (half-close test).
        case replyAfterEOF
        /// Capture the first `n` bytes (PROXY header), then greet and echo.
        case capture(Int)
    }

    init(name: String, port: UInt16 = Kit.freePort(), behaviour: Behaviour = .echo, greet: Bool = true) throws {
        self.port = port
        self.name = name
        let listener = try Socket.listenTCP(SocketAddress(ip: .v4(0x7F00_0001), port: port), backlog: 1024)
        let raw = listener.release()
        // Blocking accepts on a thread.
        let flags = fcntl(raw, F_GETFL)
        _ = fcntl(raw, F_SETFL, flags & ~O_NONBLOCK)
        fd = raw
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                let c = accept(raw, nil, nil)
                if c < 0 {
                    if stopped.load(ordering: .relaxed) { return }
                    continue
                }
                accepted.add(1, ordering: .relaxed)
                let conn = Thread { [self] in serve(c, behaviour, greet) }
                conn.start()
            }
        }
        thread.start()
    }

    private func serve(_ c: CInt, _ behaviour: Behaviour, _ greet: Bool) {
        defer { close(c) }
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        if case .capture(let n) = behaviour {
            let head = Kit.read(c, count: n)
            firstBytes.withLock { $0.append(head) }
        }
        if greet { Kit.send(c, name + "\n") }
        switch behaviour {
        case .echo, .capture:
            var buf = [UInt8](repeating: 0, count: 65_536)
            while true {
                let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
                if n <= 0 { return }
                Kit.sendBytes(c, Array(buf[0..<n]))
            }
        case .replyAfterEOF:
            let (got, _) = Kit.readAll(c)
            Kit.sendBytes(c, got.reversed())
        }
    }

    func stop() {
        stopped.store(true, ordering: .relaxed)
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// Two greeting echo backends, "A" and "B".
    static func pair() throws -> (Backend, Backend) { (try Backend(name: "A"), try Backend(name: "B")) }

    static func stop(_ backends: Backend...) { backends.forEach { $0.stop() } }
}
