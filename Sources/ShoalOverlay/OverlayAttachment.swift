// `shoal overlay attach`: a veth pair between a network's bridge (on this host) and a task's
// namespace, the task side named `ifname` with the task's MAC, IP and the network MTU.
//
// The veth is created from the host namespace with its peer placed straight into the task's
// namespace (one RTM_NEWLINK); the task side is then configured through a netlink socket opened
// inside the task namespace. The pair goes away with the task namespace.

import ShoalSystem

package enum OverlayAttachment {
    /// "shv" + the MAC's low 32 bits in hex: unique per task on a host, 11 characters.
    package static func hostInterfaceName(vni: UInt32, mac: MAC) -> String {
        let low = String(mac.value & 0xFFFF_FFFF, radix: 16)
        return "shv" + String(repeating: "0", count: 8 - low.count) + low
    }

    package static func attach(
        network: NetworkPlan, namespace: String, ifname: String, ip: UInt32, ip6: IPAddress? = nil, mac: MAC,
        hostInterface: String
    ) throws {
        let nl = try Netlink()
        guard nl.ifindex(network.bridgeName) != nil else {
            throw SystemError(
                "rtnl_link_get_kernel", Errno(19), "\(network.bridgeName): is `shoal overlay run` running on this host?"
            )
        }
        let ns = try NetworkNamespace.open(named: namespace)
        try nl.addVeth(hostInterface, peerName: ifname, peerNamespace: ns, mtu: network.mtu, peerMAC: mac.bytes)
        do {
            try nl.setLink(hostInterface, up: true, master: network.bridgeName)
            try NetworkNamespace.with(ns) {
                let inner = try Netlink()
                try inner.addAddress(ifname, cidr: "\(IPAddress.v4(ip))/\(network.subnet.length)")
                if let ip6, let subnet6 = network.subnet6 {
                    try inner.addAddress(ifname, cidr: "\(ip6)/\(subnet6.length)")
                }
                try inner.setLink(ifname, up: true)
                try inner.setLink("lo", up: true)
            }
        } catch {
            nl.deleteLink(hostInterface)
            throw error
        }
    }
}
