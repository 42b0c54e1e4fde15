// One node's overlay configuration, as read by `shoal overlay run --config FILE` (JSON or YAML):
//
//   node: n1
//   underlay: { address: 198.18.0.1, mtu: 1500, vxlanPort: 4789, espPort: 4500, busyPollMicroseconds: 50 }
//   control: /run/shoal/overlay-n1.sock          # optional
//   queues: 2                                    # optional, default 1: VTEP threads (TAP queues)
//   networks:
//     - { name: blue, vni: 100, subnet: 198.19.0.0/24, subnet6: "2001:2:0:19::/64", encrypted: false,
//         fdb: [ { mac: "02:00:c6:13:00:01", ip: 198.19.0.1, ip6: "2001:2:0:19::1", node: n1,
//                  underlay: 198.18.0.1 }, ... ] }
//
// The underlay may be IPv6 (`address: "2001:2::1"`); every node of a config then has an IPv6
// underlay address (one family per overlay), and the outer header costs 40 bytes instead of 20.
// `subnet6` and `ip6` are optional: they give tasks IPv6 addresses, answered by the VTEP's
// neighbor discovery proxy.
//   keyRing: { cipher: aes128, epochs: [ { id: 1, key: <hex>, state: tx } ] }   # when any network is encrypted
//
// `validate()` turns the decoded text into an `OverlayPlan` of checked values or throws a
// `ConfigError` naming the field (`networks[0].fdb[1].mac: not a MAC address`).

import ShoalConfig
import ShoalSystem
import ShoalWire

package struct OverlayConfig: Codable, Sendable {
    package var node: String
    package var underlay: Underlay
    package var control: String?
    /// VTEP threads, each with its own queue of every TAP (IFF_MULTI_QUEUE) and its own
    /// SO_REUSEPORT underlay sockets. Default 1.
    package var queues: Int?
    package var networks: [Network]
    package var keyRing: KeyRing?

    package struct Underlay: Codable, Sendable {
        package var address: String
        package var mtu: Int?
        package var vxlanPort: Int?
        package var espPort: Int?
        /// Keep polling without sleeping for this long after traffic (0: always sleep).
        package var busyPollMicroseconds: Int?
    }

    package struct Network: Codable, Sendable {
        package var name: String?
        package var vni: Int
        package var subnet: String
        /// An optional IPv6 prefix for the same tasks (dual stack).
        package var subnet6: String?
        package var mtu: Int?
        package var encrypted: Bool?
        package var fdb: [Endpoint]
    }

    package struct Endpoint: Codable, Sendable {
        package var mac: String
        package var ip: String
        /// The endpoint's IPv6 address, inside the network's `subnet6`.
        package var ip6: String?
        package var node: String
        package var underlay: String
    }

    package init(
        node: String, underlay: Underlay, control: String? = nil, networks: [Network], keyRing: KeyRing? = nil
    ) {
        self.node = node
        self.underlay = underlay
        self.control = control
        self.networks = networks
        self.keyRing = keyRing
    }

    package static func load(path: String) throws(ConfigError) -> OverlayPlan {
        try ConfigFile.load(OverlayConfig.self, path: path).validate()
    }
}

/// Spec and implementation constants of the encapsulation, in bytes.
package enum Encapsulation {
    /// Outer IPv4 header without options.
    package static let ipv4HeaderBytes = 20
    /// Outer IPv6 header without extension headers (RFC 8200 §3).
    package static let ipv6HeaderBytes = 40
    /// UDP header (RFC 768).
    package static let udpHeaderBytes = 8
    /// VXLAN header (RFC 7348 §5).
    package static let vxlanHeaderBytes = VXLAN.headerBytes
    /// Inner Ethernet header without 802.1Q tag.
    package static let ethernetHeaderBytes = 14
    /// Default UDP port for VXLAN (IANA, RFC 7348 §5).
    package static let vxlanPort = Int(VXLAN.udpPort)
    /// UDP port for ESP in UDP (RFC 3948).
    package static let espPort = Int(ESP.udpEncapsulationPort)
    /// Plaintext overhead over an IPv4 underlay: outer IPv4 + UDP + VXLAN + inner Ethernet = 50
    /// (70 over IPv6: the outer header is 40 bytes).
    package static func plaintextOverheadBytes(ipv6Underlay: Bool) -> Int {
        (ipv6Underlay ? ipv6HeaderBytes : ipv4HeaderBytes) + udpHeaderBytes + vxlanHeaderBytes + ethernetHeaderBytes
    }
}

/// A checked, ready-to-run configuration.
package struct OverlayPlan: Sendable {
    /// Busy-poll after traffic for this long by default: it keeps a request/response exchange
    /// from paying a thread wake-up per hop (bench/overlay/RESULTS.md), at the price of up to
    /// 50 µs of CPU after each burst.
    package static let defaultBusyPollMicroseconds = 50
    /// At most this many VTEP threads (the kernel allows 256 TAP queues; more threads than
    /// CPUs only adds contention).
    package static let maxQueues = ESPEngine.senderQueues

    package var node: String
    package var underlayAddress: IPAddress
    package var underlayMTU: Int
    package var vxlanPort: UInt16
    package var espPort: UInt16
    package var control: String?
    package var busyPollMicroseconds: Int
    /// VTEP threads (1: the calling thread only).
    package var queues: Int
    package var networks: [NetworkPlan]
    /// Remote nodes, sorted by id: index = peer index in the data path (and in the ESP engine).
    package var peers: [Peer]
    /// The key ring, when a network is encrypted.
    package var keyRing: KeyRing?

    package var encrypted: Bool { networks.contains { $0.encrypted } }

    package struct Peer: Sendable, Equatable {
        package var node: String
        package var underlay: IPAddress
    }
}

package struct NetworkPlan: Sendable {
    package var name: String
    package var vni: UInt32
    package var subnet: IPv4Prefix
    package var subnet6: IPv6Prefix?
    package var mtu: Int
    package var encrypted: Bool
    package var fdb: [EndpointPlan]

    /// Interface names the VTEP gives this network's bridge and TAP (≤ 15 characters).
    package var bridgeName: String { "shbr\(vni)" }
    package var tapName: String { "shtap\(vni)" }
}

package struct EndpointPlan: Sendable, Equatable {
    package var mac: MAC
    package var ip: UInt32
    /// The endpoint's IPv6 address (`.v6`), if the network has a `subnet6`.
    package var ip6: IPAddress?
    package var node: String
    package var underlay: IPAddress
}

/// An IPv4 prefix in host byte order.
package struct IPv4Prefix: Sendable, Equatable, CustomStringConvertible {
    package var address: UInt32
    package var length: Int

    package init?(_ text: String) {
        guard let p = parsePrefix(text, v4: true), case .v4(let a) = p.address else { return nil }
        address = a
        length = p.length
    }

    package var mask: UInt32 { length == 0 ? 0 : ~UInt32(0) << (32 - length) }
    package func contains(_ ip: UInt32) -> Bool { ip & mask == address & mask }
    package var description: String { "\(IPAddress.v4(address))/\(length)" }
}

/// An IPv6 prefix; the address is `.v6`.
package struct IPv6Prefix: Sendable, Equatable, CustomStringConvertible {
    package var address: IPAddress
    package var length: Int

    package init?(_ text: String) {
        guard let p = parsePrefix(text, v4: false) else { return nil }
        address = p.address
        length = p.length
    }

    package func contains(_ ip: IPAddress) -> Bool {
        guard case .v6(let hi, let lo) = ip, case .v6(let phi, let plo) = address else { return false }
        let mhi: UInt64 = length == 0 ? 0 : length >= 64 ? ~0 : ~UInt64(0) << (64 - length)
        let mlo: UInt64 = length <= 64 ? 0 : length == 128 ? ~0 : ~UInt64(0) << (128 - length)
        return hi & mhi == phi & mhi && lo & mlo == plo & mlo
    }

    package var description: String { "\(address)/\(length)" }
}

/// "address/length" of the given family, the length within the address's bits.
private func parsePrefix(_ text: String, v4: Bool) -> (address: IPAddress, length: Int)? {
    let parts = text.split(separator: "/")
    guard parts.count == 2, let len = Int(parts[1]), (0...(v4 ? 32 : 128)).contains(len),
        let a = IPAddress(parts[0]), a.isV4 == v4
    else { return nil }
    return (a, len)
}

/// A 48-bit Ethernet address, stored in the low bits of a UInt64 (first octet most significant).
package struct MAC: Hashable, Sendable, CustomStringConvertible {
    package var value: UInt64

    package init(_ value: UInt64) { self.value = value & 0xFFFF_FFFF_FFFF }

    package init?(_ text: String) {
        guard let bytes = parseMAC(text) else { return nil }
        self.init(bytes.reduce(UInt64(0)) { $0 << 8 | UInt64($1) })
    }

    package var bytes: [UInt8] { (0..<6).map { UInt8(truncatingIfNeeded: value >> (40 - 8 * $0)) } }
    package var isMulticast: Bool { value & 0x0100_0000_0000 != 0 }
    package var description: String {
        bytes.map { b in
            let h = String(b, radix: 16)
            return h.count == 1 ? "0" + h : h
        }.joined(separator: ":")
    }
}

extension OverlayConfig {
    /// The encapsulation overhead in bytes for a network over an IPv4 or IPv6 underlay.
    package static func overheadBytes(encrypted: Bool, ipv6Underlay: Bool = false) -> Int {
        Encapsulation.plaintextOverheadBytes(ipv6Underlay: ipv6Underlay) + (encrypted ? espOverheadBytes : 0)
    }

    /// ESP in UDP keeps the outer IPv4 + UDP (now to 4500) and adds what the ESP engine writes
    /// around the VXLAN packet: inner UDP, ESP header and IV in front (headroom); worst-case
    /// padding, trailer and ICV behind (tailroom): 24 + 21 = 45 bytes.
    package static var espOverheadBytes: Int { ESPEngine.headroom + ESPEngine.tailroom }

    /// Validates every field; the error names the first bad one.
    package func validate() throws(ConfigError) -> OverlayPlan {
        guard !node.isEmpty else { throw ConfigError(field: "node", "must not be empty") }
        guard let under = IPAddress(underlay.address) else {
            throw ConfigError(
                field: "underlay.address", "expected an IPv4 or IPv6 address, got \"\(underlay.address)\"")
        }
        let family = under.isV4 ? "IPv4" : "IPv6"
        let umtu = underlay.mtu ?? 1500
        guard (576...65535).contains(umtu) else { throw ConfigError(field: "underlay.mtu", "expected 576...65535") }
        let vport = underlay.vxlanPort ?? Encapsulation.vxlanPort
        guard (1...65535).contains(vport) else { throw ConfigError(field: "underlay.vxlanPort", "expected 1...65535") }
        let eport = underlay.espPort ?? Encapsulation.espPort
        guard (1...65535).contains(eport), eport != vport else {
            throw ConfigError(field: "underlay.espPort", "expected 1...65535, different from vxlanPort")
        }
        let spin = underlay.busyPollMicroseconds ?? OverlayPlan.defaultBusyPollMicroseconds
        guard (0...10_000).contains(spin) else {
            throw ConfigError(field: "underlay.busyPollMicroseconds", "expected 0...10000")
        }
        let queueCount = queues ?? 1
        guard (1...OverlayPlan.maxQueues).contains(queueCount) else {
            throw ConfigError(field: "queues", "expected 1...\(OverlayPlan.maxQueues) (VTEP threads)")
        }
        guard !networks.isEmpty else { throw ConfigError(field: "networks", "at least one network is needed") }
        var peers: [String: IPAddress] = [:]
        var plans: [NetworkPlan] = []
        var vnis = Set<Int>()
        for (n, net) in networks.enumerated() {
            let f = "networks[\(n)]"
            guard (1...0xFF_FFFF).contains(net.vni) else {
                throw ConfigError(field: "\(f).vni", "expected 1...16777215")
            }
            guard vnis.insert(net.vni).inserted else {
                throw ConfigError(field: "\(f).vni", "duplicate VNI \(net.vni)")
            }
            guard let subnet = IPv4Prefix(net.subnet) else {
                throw ConfigError(field: "\(f).subnet", "expected an IPv4 prefix like 198.19.0.0/24")
            }
            var subnet6: IPv6Prefix? = nil
            if let text = net.subnet6 {
                guard let p = IPv6Prefix(text) else {
                    throw ConfigError(field: "\(f).subnet6", "expected an IPv6 prefix like 2001:2:0:19::/64")
                }
                subnet6 = p
            }
            let encrypted = net.encrypted ?? false
            let overhead = Self.overheadBytes(encrypted: encrypted, ipv6Underlay: !under.isV4)
            let maxMTU = umtu - overhead
            let mtu = net.mtu ?? maxMTU
            guard (68...maxMTU).contains(mtu) else {
                throw ConfigError(
                    field: "\(f).mtu",
                    "expected 68...\(maxMTU) (underlay MTU \(umtu) minus \(overhead) bytes of encapsulation)"
                )
            }
            var macs = Set<UInt64>()
            var ips = Set<UInt32>()
            var ip6s = Set<IPAddress>()
            var fdb: [EndpointPlan] = []
            for (e, ep) in net.fdb.enumerated() {
                let g = "\(f).fdb[\(e)]"
                guard let mac = MAC(ep.mac), !mac.isMulticast, mac.value != 0 else {
                    throw ConfigError(field: "\(g).mac", "expected a unicast MAC address like 02:00:c6:13:00:01")
                }
                guard macs.insert(mac.value).inserted else { throw ConfigError(field: "\(g).mac", "duplicate MAC") }
                guard case .v4(let ip)? = IPAddress(ep.ip), subnet.contains(ip) else {
                    throw ConfigError(field: "\(g).ip", "expected an IPv4 address inside \(subnet)")
                }
                guard ips.insert(ip).inserted else { throw ConfigError(field: "\(g).ip", "duplicate IP") }
                var ip6: IPAddress? = nil
                if let text = ep.ip6 {
                    guard let subnet6 else {
                        throw ConfigError(field: "\(g).ip6", "the network has no subnet6")
                    }
                    guard let a = IPAddress(text), subnet6.contains(a) else {
                        throw ConfigError(field: "\(g).ip6", "expected an IPv6 address inside \(subnet6)")
                    }
                    guard ip6s.insert(a).inserted else { throw ConfigError(field: "\(g).ip6", "duplicate IP") }
                    ip6 = a
                }
                guard !ep.node.isEmpty else { throw ConfigError(field: "\(g).node", "must not be empty") }
                guard let u = IPAddress(ep.underlay), u.isV4 == under.isV4 else {
                    throw ConfigError(field: "\(g).underlay", "expected an \(family) address, like underlay.address")
                }
                if ep.node == node {
                    guard u == under else {
                        throw ConfigError(
                            field: "\(g).underlay", "node \(node) is this node, whose underlay is \(under)")
                    }
                } else if let known = peers[ep.node], known != u {
                    throw ConfigError(field: "\(g).underlay", "node \(ep.node) was given underlay \(known) before")
                } else if u == under || peers.contains(where: { $0.key != ep.node && $0.value == u }) {
                    throw ConfigError(field: "\(g).underlay", "\(u) is another node's underlay address")
                } else {
                    peers[ep.node] = u
                }
                fdb.append(EndpointPlan(mac: mac, ip: ip, ip6: ip6, node: ep.node, underlay: u))
            }
            plans.append(
                NetworkPlan(
                    name: net.name ?? "vni\(net.vni)", vni: UInt32(net.vni), subnet: subnet, subnet6: subnet6, mtu: mtu,
                    encrypted: encrypted, fdb: fdb))
        }
        if plans.contains(where: { $0.encrypted }) {
            guard let keyRing else { throw ConfigError(field: "keyRing", "missing: a network is encrypted") }
            do { try keyRing.validate() } catch {
                throw ConfigError(field: "keyRing.\(error.field)", error.reason)
            }
        }
        return OverlayPlan(
            node: node, underlayAddress: under, underlayMTU: umtu, vxlanPort: UInt16(vport),
            espPort: UInt16(eport), control: control, busyPollMicroseconds: spin, queues: queueCount,
            networks: plans,
            peers: peers.keys.sorted().map { OverlayPlan.Peer(node: $0, underlay: peers[$0]!) }, keyRing: keyRing)
    }
}
