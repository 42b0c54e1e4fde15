// The mesh's side of the PROXY protocol: ShoalWire's codec speaks in wire integers, the reactor
// in socket addresses. A v4 client reaching a v6 listener (v4-mapped) is sent as v4 when both
// ends map, else as LOCAL (the task then sees the mesh's address, as without the header).

import ShoalSystem
import ShoalWire

enum MeshProxy {
    enum Parsed {
        case needMore
        case invalid
        /// `source`/`destination` nil for LOCAL/UNKNOWN headers (keep the real endpoints).
        case header(length: Int, source: SocketAddress?, destination: SocketAddress?)
    }

    @inline(__always)
    static func parse(_ bytes: UnsafeRawBufferPointer) -> Parsed {
        switch ProxyProtocol.parse(bytes) {
        case .needMore: return .needMore
        case .invalid: return .invalid
        case .header(let length, _, let addresses):
            switch addresses {
            case .local:
                return .header(length: length, source: nil, destination: nil)
            case .ipv4(let s, let d, let sp, let dp):
                return .header(
                    length: length, source: SocketAddress(ip: .v4(s), port: sp),
                    destination: SocketAddress(ip: .v4(d), port: dp))
            case .ipv6(let s, let d, let sp, let dp):
                return .header(
                    length: length, source: SocketAddress(ip: .v6(s.hi, s.lo), port: sp),
                    destination: SocketAddress(ip: .v6(d.hi, d.lo), port: dp))
            }
        }
    }

    /// Writes the header for `mode` into `buffer`; returns its length.
    @inline(__always)
    static func encode(
        _ mode: ProxyProtocolMode, source: SocketAddress, destination: SocketAddress,
        into buffer: UnsafeMutableRawBufferPointer
    ) -> Int {
        let addresses = proxyAddresses(source, destination)
        switch mode {
        case .none: return 0
        case .v1: return ProxyProtocol.encodeV1(addresses, into: buffer)
        case .v2: return ProxyProtocol.encodeV2(addresses, stream: true, into: buffer)
        }
    }

    @inline(__always)
    static func proxyAddresses(_ s: SocketAddress, _ d: SocketAddress) -> ProxyAddresses {
        switch (unmapped(s.ip), unmapped(d.ip)) {
        case (.v4(let a), .v4(let b)):
            return .ipv4(source: a, destination: b, sourcePort: s.port, destinationPort: d.port)
        case (.v6(let ah, let al), .v6(let bh, let bl)):
            return .ipv6(
                source: IPv6Bits(hi: ah, lo: al), destination: IPv6Bits(hi: bh, lo: bl), sourcePort: s.port,
                destinationPort: d.port)
        default:
            return .local
        }
    }

    /// ::ffff:a.b.c.d as a.b.c.d.
    @inline(__always)
    static func unmapped(_ ip: IPAddress) -> IPAddress {
        if case .v6(let hi, let lo) = ip, hi == 0, lo >> 32 == 0xFFFF { return .v4(UInt32(truncatingIfNeeded: lo)) }
        return ip
    }
}
