// The PROXY codec against a real peer: HAProxy (/usr/sbin/haproxy, installed by
// scripts/install-deps.sh) on loopback. Each test runs its own haproxy (`-f cfg -db`, config in a
// temporary directory, frontends on free ports found by binding port 0) and kills it by PID at
// the end, failed or not.
//
// 1. HAProxy sends, we decode: `server … send-proxy-v2` and `send-proxy` in front of the test's
//    listener; clients on 127.0.0.1 and ::1 must come out as themselves, payload intact.
// 2. We encode, HAProxy decodes: `bind … accept-proxy` relaying with `send-proxy` (v1) to the
//    test's listener; the addresses our v1/v2 header claimed (198.18.7.9, 2001:db8::7: they
//    only ever appear inside header bytes) must come back in HAProxy's line.

import Foundation
import Glibc
import Testing

@testable import ShoalWire

private let haproxyPath = "/usr/sbin/haproxy"
private let haproxyInstalled = FileManager.default.isExecutableFile(atPath: haproxyPath)
private let skipReason: Comment = "haproxy is not installed at /usr/sbin/haproxy (scripts/install-deps.sh installs it)"

private let loopback4 = UInt32(0x7F00_0001)
private let loopback6 = IPv6Bits(hi: 0, lo: 1)

@Suite(.serialized) struct ProxyProtocolHAProxyTests {
    @Test(.enabled(if: haproxyInstalled, skipReason), .timeLimit(.minutes(1)))
    func decodesWhatHAProxySends() throws {
        let server = try LoopbackSocket.listen(v6: false)
        let ports = (v2: try LoopbackSocket.freePort(v6: false), v1: try LoopbackSocket.freePort(v6: false))
        let ports6 = (v2: try LoopbackSocket.freePort(v6: true), v1: try LoopbackSocket.freePort(v6: true))
        let haproxy = try HAProxy(
            config: """
                frontend v2
                    bind 127.0.0.1:\(ports.v2)
                    bind ::1:\(ports6.v2)
                    default_backend v2
                frontend v1
                    bind 127.0.0.1:\(ports.v1)
                    bind ::1:\(ports6.v1)
                    default_backend v1
                backend v2
                    server s 127.0.0.1:\(server.port) send-proxy-v2
                backend v1
                    server s 127.0.0.1:\(server.port) send-proxy
                """)
        defer { haproxy.stop() }

        for (version, port, v6) in [
            (2, ports.v2, false), (1, ports.v1, false), (2, ports6.v2, true), (1, ports6.v1, true),
        ] {
            let payload = Array("hello from a v\(version) client\n".utf8)
            let client = try LoopbackSocket.connect(v6: v6, port: port, haproxy: haproxy)
            try client.write(payload)
            let relayed = try server.accept()
            let (parsed, rest) = try relayed.readHeader(payloadBytes: payload.count)
            let expected: ProxyAddresses =
                v6
                ? .ipv6(source: loopback6, destination: loopback6, sourcePort: client.port, destinationPort: port)
                : .ipv4(source: loopback4, destination: loopback4, sourcePort: client.port, destinationPort: port)
            guard case .header(let length, let gotVersion, let addresses) = parsed else {
                Issue.record("v\(version) from HAProxy: \(parsed)")
                continue
            }
            #expect(gotVersion == version)
            #expect(addresses == expected, "v\(version): \(addresses) != \(expected)")
            #expect(Array(rest[length...]) == payload)
        }
    }

    @Test(.enabled(if: haproxyInstalled, skipReason), .timeLimit(.minutes(1)))
    func haproxyAcceptsWhatWeEncode() throws {
        let server = try LoopbackSocket.listen(v6: false)
        let port = try LoopbackSocket.freePort(v6: false)
        let haproxy = try HAProxy(
            config: """
                frontend accept
                    bind 127.0.0.1:\(port) accept-proxy
                    default_backend relay
                backend relay
                    server s 127.0.0.1:\(server.port) send-proxy
                """)
        defer { haproxy.stop() }

        let claims: [ProxyAddresses] = [
            .ipv4(source: 0xC612_0709, destination: loopback4, sourcePort: 4242, destinationPort: UInt16(port)),
            .ipv6(
                source: IPv6Bits(hi: 0x2001_0db8_0000_0000, lo: 7), destination: loopback6, sourcePort: 4242,
                destinationPort: UInt16(port)),
        ]
        for claim in claims {
            for version in [1, 2] {
                var header = [UInt8](repeating: 0, count: ProxyProtocol.maxV1Length + 1)
                let n = header.withUnsafeMutableBytes {
                    version == 1
                        ? ProxyProtocol.encodeV1(claim, into: $0)
                        : ProxyProtocol.encodeV2(claim, stream: true, into: $0)
                }
                let payload = Array("sent behind our v\(version) header\n".utf8)
                let client = try LoopbackSocket.connect(v6: false, port: port, haproxy: haproxy)
                try client.write(Array(header[..<n]) + payload)
                let relayed = try server.accept()
                let (parsed, rest) = try relayed.readHeader(payloadBytes: payload.count)
                // HAProxy re-emits, as v1, what it understood from our header.
                guard case .header(let length, 1, let addresses) = parsed else {
                    Issue.record("our v\(version) header for \(claim): HAProxy relayed \(parsed)")
                    continue
                }
                #expect(addresses == claim, "our v\(version) header: HAProxy understood \(addresses)")
                #expect(Array(rest[length...]) == payload)
            }
        }
    }
}

/// A haproxy process in the foreground (`-db`), stopped by its PID.
private final class HAProxy {
    let process = Process()
    let directory: URL
    let log: URL

    init(config body: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("shoal-haproxy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let config = directory.appendingPathComponent("haproxy.cfg")
        log = directory.appendingPathComponent("haproxy.log")
        let defaults = """
            global
                maxconn 64
            defaults
                mode tcp
                timeout connect 5s
                timeout client 10s
                timeout server 10s

            """
        try (defaults + body + "\n").write(to: config, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: haproxyPath)
        process.arguments = ["-f", config.path, "-db"]
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
    }

    var running: Bool { process.isRunning }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    /// SIGTERM to our haproxy's PID (never by name), then reap it and remove the directory.
    func stop() {
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

struct LoopbackError: Error, CustomStringConvertible {
    var description: String
}

/// A blocking TCP socket on 127.0.0.1 or ::1 with 5-second timeouts, closed on deinit.
private final class LoopbackSocket {
    let fd: CInt

    private init(fd: CInt) {
        self.fd = fd
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    /// The local port (getsockname); sin_port and sin6_port sit at the same offset.
    var port: UInt16 {
        var ss = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return withUnsafeBytes(of: &ss) { UInt16(bigEndian: $0.loadUnaligned(fromByteOffset: 2, as: UInt16.self)) }
    }

    deinit { close(fd) }

    private static func check(_ r: CInt, _ what: String) throws {
        if r < 0 { throw LoopbackError(description: "\(what): \(String(cString: strerror(errno)))") }
    }

    /// Runs `body` with the loopback address of the family and `port`.
    private static func withAddress<R>(v6: Bool, port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        if v6 {
            var a = sockaddr_in6()
            a.sin6_family = sa_family_t(AF_INET6)
            a.sin6_port = port.bigEndian
            a.sin6_addr.__in6_u.__u6_addr8.15 = 1
            return withUnsafePointer(to: &a) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = loopback4.bigEndian
        return withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    private static func make(v6: Bool) throws -> LoopbackSocket {
        let fd = socket(v6 ? AF_INET6 : AF_INET, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        try check(fd, "socket")
        return LoopbackSocket(fd: fd)
    }

    private static func bound(v6: Bool) throws -> LoopbackSocket {
        let s = try make(v6: v6)
        try check(withAddress(v6: v6, port: 0) { bind(s.fd, $0, $1) }, "bind")
        return s
    }

    static func listen(v6: Bool) throws -> LoopbackSocket {
        let s = try bound(v6: v6)
        try check(Glibc.listen(s.fd, 16), "listen")
        return s
    }

    /// A port that was free a moment ago, for haproxy to bind.
    static func freePort(v6: Bool) throws -> UInt16 { try bound(v6: v6).port }

    /// Connects to `port`, retrying while haproxy is still starting (connection refused).
    static func connect(v6: Bool, port: UInt16, haproxy: HAProxy) throws -> LoopbackSocket {
        for _ in 0..<100 {
            let s = try make(v6: v6)
            if withAddress(v6: v6, port: port, { Glibc.connect(s.fd, $0, $1) }) == 0 { return s }
            let e = errno
            guard e == ECONNREFUSED && haproxy.running else { break }
            usleep(50_000)
        }
        throw LoopbackError(description: "cannot connect to haproxy on port \(port); its output:\n\(haproxy.output)")
    }

    func accept() throws -> LoopbackSocket {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&p, 1, 5_000) == 1 else { throw LoopbackError(description: "no connection from haproxy in 5 s") }
        let c = Glibc.accept(fd, nil, nil)
        try Self.check(c, "accept")
        return LoopbackSocket(fd: c)
    }

    func write(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, CInt(MSG_NOSIGNAL)) }
            try Self.check(CInt(n < 0 ? -1 : 0), "send")
            sent += n
        }
    }

    /// Reads, parsing as bytes arrive (the way a server would), until a header and
    /// `payloadBytes` after it are in; returns the last answer and everything read.
    func readHeader(payloadBytes: Int) throws -> (ProxyParse, [UInt8]) {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let answer = received.withUnsafeBytes { ProxyProtocol.parse($0) }
            switch answer {
            case .invalid: return (answer, received)
            case .header(let length, _, _) where received.count >= length + payloadBytes: return (answer, received)
            default: break
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard n > 0 else {
                throw LoopbackError(description: "read \(received.count) bytes then \(n == 0 ? "EOF" : "an error")")
            }
            received += chunk[..<n]
        }
    }
}
