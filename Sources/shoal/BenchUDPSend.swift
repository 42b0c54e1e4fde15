// `shoal bench udp-send`: a UDP sender for the overlay's USO test and measurements. It sends a
// file (or a pattern) as datagrams of `--segment` bytes; with `--gso N` each send(2) carries up
// to N bytes and UDP_SEGMENT, so the kernel hands the whole run down as one GSO packet — what a
// TAP with USO then delivers to the VTEP as one superframe.

import ArgumentParser
import CShoal
import Foundation
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

struct BenchUDPSend: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udp-send",
        abstract: "Send a file or a byte pattern as UDP datagrams, optionally with UDP GSO (UDP_SEGMENT).")

    @Option(help: "Destination, a.b.c.d:port or [v6]:port.") var to: String
    @Option(help: "Send this file's bytes.") var file: String?
    @Option(help: "Without --file: send this many bytes of a pattern (64 KiB, repeated).") var bytes = 1 << 20
    @Option(help: "Payload bytes per datagram.") var segment = 1400
    @Option(help: "Bytes per send(2) with UDP_SEGMENT (0: one datagram per send, no GSO).") var gso = 0
    @Option(help: "Pause after each send(2), in microseconds.") var paceMicroseconds = 0

    func run() throws {
        guard let destination = SocketAddress(to) else { throw ValidationError("--to: expected a.b.c.d:port") }
        guard segment > 0, gso >= 0 else { throw ValidationError("--segment must be > 0, --gso >= 0") }
        let data: [UInt8]
        let total: Int
        if let file {
            guard let d = FileManager.default.contents(atPath: file) else {
                throw ValidationError("--file: cannot read \(file)")
            }
            data = [UInt8](d)
            total = data.count
        } else {
            data = (0..<65536).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 8)) }
            total = bytes
        }
        let fd = socket(destination.family, CInt(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw SystemError("socket", Errno(errno)) }
        defer { close(fd) }
        var ss = sockaddr_storage()
        let len = destination.write(to: &ss)
        let connected = withUnsafePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) }
        }
        guard connected == 0 else { throw SystemError("connect", Errno(errno), "\(destination)") }
        // Every send but the last carries a whole number of segments.
        let chunk = gso > 0 ? max(segment, gso / segment * segment) : segment
        if gso > 0 {
            var size = CInt(segment)
            guard setsockopt(fd, CInt(IPPROTO_UDP), shoal_udp_segment(), &size, socklen_t(MemoryLayout<CInt>.size)) == 0
            else { throw SystemError("setsockopt(UDP_SEGMENT)", Errno(errno)) }
        }
        let start = Date()
        var sends = 0
        var offset = 0
        try data.withUnsafeBytes { buffer in
            while offset < total {
                // A file is sent once; the pattern from its start each time (chunk <= 64 KiB).
                let at = file == nil ? 0 : offset
                let n = min(chunk, total - offset, buffer.count - at)
                let sent = send(fd, buffer.baseAddress! + at, n, 0)
                if sent < 0 {
                    let e = errno
                    if e == EINTR { continue }
                    if e == ENOBUFS || e == EAGAIN {
                        usleep(100)
                        continue
                    }
                    throw SystemError("send", Errno(e), "\(n) bytes at offset \(offset)")
                }
                offset += n
                sends += 1
                if paceMicroseconds > 0 { usleep(UInt32(paceMicroseconds)) }
            }
        }
        let seconds = Date().timeIntervalSince(start)
        print(
            "{\"bytes\":\(total),\"sends\":\(sends),\"seconds\":\(seconds),"
                + "\"gbps\":\(seconds > 0 ? Double(total) * 8 / seconds / 1e9 : 0)}")
    }
}
