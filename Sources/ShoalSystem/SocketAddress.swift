// IPv4/IPv6 socket addresses as values, parsed from and printed as text ("198.18.0.1:4789",
// "[::1]:80"), convertible to and from `sockaddr_storage` without allocation.

#if canImport(Glibc)
    import Glibc
#endif

/// An IP address (v4 or v6), stored inline.
package enum IPAddress: Hashable, Sendable, CustomStringConvertible {
    case v4(UInt32)  // host byte order
    case v6(UInt64, UInt64)  // high, low; host byte order

    /// Parses dotted-quad IPv4 or RFC 4291 IPv6 text; nil if malformed.
    package init?(_ text: some StringProtocol) {
        let s = String(text)
        var a4 = in_addr()
        if inet_pton(AF_INET, s, &a4) == 1 {
            self = .v4(UInt32(bigEndian: a4.s_addr))
            return
        }
        var a6 = in6_addr()
        if inet_pton(AF_INET6, s, &a6) == 1 {
            let (hi, lo) = withUnsafeBytes(of: &a6) { raw in
                (
                    UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self = .v6(hi, lo)
            return
        }
        return nil
    }

    package var isV4: Bool { if case .v4 = self { true } else { false } }

    /// 0.0.0.0 or ::, the wildcard a socket binds to listen on every address.
    package var isUnspecified: Bool {
        switch self {
        case .v4(let a): a == 0
        case .v6(let hi, let lo): hi == 0 && lo == 0
        }
    }

    package var description: String {
        var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        switch self {
        case .v4(let a):
            var sa = in_addr(s_addr: a.bigEndian)
            inet_ntop(AF_INET, &sa, &buf, socklen_t(buf.count))
        case .v6(let hi, let lo):
            var words = (hi.bigEndian, lo.bigEndian)
            withUnsafeBytes(of: &words) { raw in
                _ = inet_ntop(AF_INET6, raw.baseAddress, &buf, socklen_t(buf.count))
            }
        }
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// An IP address and a port.
package struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    package var ip: IPAddress
    package var port: UInt16

    package init(ip: IPAddress, port: UInt16) {
        self.ip = ip
        self.port = port
    }

    /// Parses "a.b.c.d:port" or "[v6]:port".
    package init?(_ text: some StringProtocol) {
        let s = String(text)
        let host: Substring
        let portText: Substring
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let rest = s[s.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = s.lastIndex(of: ":") else { return nil }
            host = s[..<colon]
            portText = s[s.index(after: colon)...]
        }
        guard let ip = IPAddress(host), let port = UInt16(portText) else { return nil }
        self.init(ip: ip, port: port)
    }

    package var family: CInt { ip.isV4 ? AF_INET : AF_INET6 }

    package var description: String {
        switch ip {
        case .v4: "\(ip):\(port)"
        case .v6: "[\(ip)]:\(port)"
        }
    }

    /// Writes this address into `storage`; returns the length to pass to the syscall.
    package func write(to storage: inout sockaddr_storage) -> socklen_t {
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.initializeMemory(as: UInt8.self, repeating: 0)
            switch ip {
            case .v4(let a):
                var sin = sockaddr_in()
                sin.sin_family = sa_family_t(AF_INET)
                sin.sin_port = port.bigEndian
                sin.sin_addr = in_addr(s_addr: a.bigEndian)
                raw.storeBytes(of: sin, as: sockaddr_in.self)
                return socklen_t(MemoryLayout<sockaddr_in>.size)
            case .v6(let hi, let lo):
                var sin6 = sockaddr_in6()
                sin6.sin6_family = sa_family_t(AF_INET6)
                sin6.sin6_port = port.bigEndian
                var words = (hi.bigEndian, lo.bigEndian)
                withUnsafeBytes(of: &words) { w in
                    withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyMemory(from: w) }
                }
                raw.storeBytes(of: sin6, as: sockaddr_in6.self)
                return socklen_t(MemoryLayout<sockaddr_in6>.size)
            }
        }
    }

    /// Reads an address from a kernel-filled `sockaddr`; nil for families other than v4/v6.
    package init?(_ sa: UnsafeRawPointer) {
        let family = sa.load(as: sockaddr.self).sa_family
        switch CInt(family) {
        case AF_INET:
            let sin = sa.loadUnaligned(as: sockaddr_in.self)
            self.init(ip: .v4(UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            var sin6 = sa.loadUnaligned(as: sockaddr_in6.self)
            let (hi, lo) = withUnsafeBytes(of: &sin6.sin6_addr) { raw in
                (
                    UInt64(bigEndian: raw.loadUnaligned(as: UInt64.self)),
                    UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
                )
            }
            self.init(ip: .v6(hi, lo), port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    package init?(storage: inout sockaddr_storage) {
        let parsed = withUnsafeBytes(of: &storage) { SocketAddress($0.baseAddress!) }
        guard let parsed else { return nil }
        self = parsed
    }
}
