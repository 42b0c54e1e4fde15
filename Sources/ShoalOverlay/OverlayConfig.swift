// One node's overlay configuration, as read by `shoal overlay run --config FILE` (JSON or YAML):
//
//   node: n1
//   underlay: { address: 198.18.0.1, mtu: 1500, vxlanPort: 4789, espPort: 4500, busyPollMicroseconds: 50 }
//   control: /run/shoal/overlay-n1.sock          # optional
//   networks:
//     - { name: blue, vni: 100, subnet: 198.19.0.0/24, encrypted: false,
//         fdb: [ { mac: "02:00:c6:13:00:01", ip: 198.19.0.1, node: n1, underlay: 198.18.0.1 }, ... ] }
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
        package var mtu: Int?
        package var encrypted: Bool?
        package var fdb: [Endpoint]
    }

    package struct Endpoint: Codable, Sendable {
        package var mac: String
        package var ip: String
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
    /// Plaintext overhead over an IPv4 underlay: outer IPv4 + UDP + VXLAN + inner Ethernet = 50.
    package static let plaintextOverheadBytes =
        ipv4HeaderBytes + udpHeaderBytes + vxlanHeaderBytes
        + ethernetHeaderBytes
}

/// A checked, ready-to-run configuration.
package struct OverlayPlan: Sendable {
    /// Busy-poll after traffic for this long by default: it keeps a request/response exchange
    /// from paying a thread wake-up per hop (bench/overlay/RESULTS.md), at the price of up to
    /// 50 µs of CPU after each burst.
    package static let defaultBusyPollMicroseconds = 50

    package var node: String
    package var underlayAddress: IPAddress
    package var underlayMTU: Int
    package var vxlanPort: UInt16
    package var espPort: UInt16
    package var control: String?
    package var busyPollMicroseconds: Int
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
    package var node: String
    package var underlay: IPAddress
}

/// An IPv4 prefix in host byte order.
package struct IPv4Prefix: Sendable, Equatable, CustomStringConvertible {
    package var address: UInt32
    package var length: Int

    package init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let len = Int(parts[1]), (0...32).contains(len),
            case .v4(let a)? = IPAddress(parts[0])
        else { return nil }
        address = a
        length = len
    }

    package var mask: UInt32 { length == 0 ? 0 : ~UInt32(0) << (32 - length) }
    package func contains(_ ip: UInt32) -> Bool { ip & mask == address & mask }
    package var description: String { "\(IPAddress.v4(address))/\(length)" }
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
    /// The encapsulation overhead in bytes for a network over an IPv4 underlay.
    package static func overheadBytes(encrypted: Bool) -> Int {
        Encapsulation.plaintextOverheadBytes + (encrypted ? espOverheadBytes : 0)
    }

    /// ESP in UDP keeps the outer IPv4 + UDP (now to 4500) and adds what the ESP engine writes
    /// around the VXLAN packet: inner UDP, ESP header and IV in front (headroom); worst-case
    /// padding, trailer and ICV behind (tailroom): 24 + 21 = 45 bytes.
    package static var espOverheadBytes: Int { ESPEngine.headroom + ESPEngine.tailroom }

    /// Validates every field; the error names the first bad one.
    package func validate() throws(ConfigError) -> OverlayPlan {
        guard !node.isEmpty else { throw ConfigError(field: "node", "must not be empty") }
        guard case .v4(let under)? = IPAddress(underlay.address) else {
            throw ConfigError(field: "underlay.address", "expected an IPv4 address, got \"\(underlay.address)\"")
        }
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
            let encrypted = net.encrypted ?? false
            let maxMTU = umtu - Self.overheadBytes(encrypted: encrypted)
            let mtu = net.mtu ?? maxMTU
            guard (68...maxMTU).contains(mtu) else {
                throw ConfigError(
                    field: "\(f).mtu",
                    "expected 68...\(maxMTU) (underlay MTU \(umtu) minus \(Self.overheadBytes(encrypted: encrypted)) bytes of encapsulation)"
                )
            }
            var macs = Set<UInt64>()
            var ips = Set<UInt32>()
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
                guard !ep.node.isEmpty else { throw ConfigError(field: "\(g).node", "must not be empty") }
                guard case .v4? = IPAddress(ep.underlay), let u = IPAddress(ep.underlay) else {
                    throw ConfigError(field: "\(g).underlay", "expected an IPv4 address")
                }
                if ep.node == node {
                    guard u == .v4(under) else {
                        throw ConfigError(
                            field: "\(g).underlay", "node \(node) is this node, whose underlay is \(under)")
                    }
                } else if let known = peers[ep.node], known != u {
                    throw ConfigError(field: "\(g).underlay", "node \(ep.node) was given underlay \(known) before")
                } else if u == .v4(under) || peers.contains(where: { $0.key != ep.node && $0.value == u }) {
                    throw ConfigError(field: "\(g).underlay", "\(u) is another node's underlay address")
                } else {
                    peers[ep.node] = u
                }
                fdb.append(EndpointPlan(mac: mac, ip: ip, node: ep.node, underlay: u))
            }
            plans.append(
                NetworkPlan(
                    name: net.name ?? "vni\(net.vni)", vni: UInt32(net.vni), subnet: subnet, mtu: mtu,
                    encrypted: encrypted, fdb: fdb))
        }
        if plans.contains(where: { $0.encrypted }) {
            guard let keyRing else { throw ConfigError(field: "keyRing", "missing: a network is encrypted") }
            do { try keyRing.validate() } catch {
                throw ConfigError(field: "keyRing.\(error.field)", error.reason)
            }
        }
        return OverlayPlan(
            node: node, underlayAddress: .v4(under), underlayMTU: umtu, vxlanPort: UInt16(vport),
            espPort: UInt16(eport), control: control, busyPollMicroseconds: spin, networks: plans,
            peers: peers.keys.sorted().map { OverlayPlan.Peer(node: $0, underlay: peers[$0]!) }, keyRing: keyRing)
    }
}
