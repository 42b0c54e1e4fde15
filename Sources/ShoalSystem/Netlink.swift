// Links and addresses through rtnetlink, with libnl-3 / libnl-route-3: the bridge, TAP and veth
// set-up of the overlay. Every call is setup-path: a failure throws a `SystemError` whose call
// names the libnl function and whose detail names the interface, with libnl's own message.
//
// One `Netlink` is bound to the network namespace of the thread that created it (netlink sockets
// keep their namespace), which is how `attach` configures a task's side of a veth: it opens a
// second `Netlink` inside the task namespace (see `NetworkNamespace.with`).

import CNetlink

#if canImport(Glibc)
    import Glibc
#endif

package final class Netlink {
    private let sock: OpaquePointer

    /// nl_socket_alloc + nl_connect(NETLINK_ROUTE) in the calling thread's namespace.
    package init() throws(SystemError) {
        guard let s = nl_socket_alloc() else { throw SystemError("nl_socket_alloc", Errno(ENOMEM)) }
        let rc = nl_connect(s, NETLINK_ROUTE)
        if rc < 0 {
            nl_socket_free(s)
            throw Self.error("nl_connect(NETLINK_ROUTE)", rc, "")
        }
        sock = s
    }

    deinit { nl_socket_free(sock) }

    static func error(_ call: String, _ rc: CInt, _ what: String) -> SystemError {
        let msg = String(cString: nl_geterror(rc))
        return SystemError(call, Errno(EIO), what.isEmpty ? msg : "\(what): \(msg)")
    }

    /// The interface index of `name`, or nil if there is no such link.
    package func ifindex(_ name: String) -> Int32? {
        var link: OpaquePointer?
        guard rtnl_link_get_kernel(sock, 0, name, &link) >= 0, let link else { return nil }
        defer { rtnl_link_put(link) }
        return rtnl_link_get_ifindex(link)
    }

    /// Creates a Linux bridge `name` with `mtu`, down. Fails if it exists.
    package func addBridge(_ name: String, mtu: Int) throws(SystemError) {
        guard let link = rtnl_link_bridge_alloc() else { throw SystemError("rtnl_link_bridge_alloc", Errno(ENOMEM)) }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        rtnl_link_set_mtu(link, UInt32(mtu))
        let rc = rtnl_link_add(sock, link, NLM_F_CREATE | NLM_F_EXCL)
        if rc < 0 { throw Self.error("rtnl_link_add(bridge)", rc, name) }
    }

    /// Creates a veth pair: `name` here, `peerName` moved into namespace `peerNamespace` (an fd
    /// from `NetworkNamespace.open`), both with `mtu`; the peer gets `peerMAC` if given.
    package func addVeth(
        _ name: String, peerName: String, peerNamespace: borrowing FileDescriptor, mtu: Int, peerMAC: [UInt8]?
    ) throws(SystemError) {
        guard let link = rtnl_link_veth_alloc() else { throw SystemError("rtnl_link_veth_alloc", Errno(ENOMEM)) }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        rtnl_link_set_mtu(link, UInt32(mtu))
        guard let peer = rtnl_link_veth_get_peer(link) else {
            throw SystemError("rtnl_link_veth_get_peer", Errno(ENOMEM), name)
        }
        defer { rtnl_link_put(peer) }
        rtnl_link_set_name(peer, peerName)
        rtnl_link_set_mtu(peer, UInt32(mtu))
        rtnl_link_set_ns_fd(peer, peerNamespace.rawValue)
        if let peerMAC {
            let a = peerMAC.withUnsafeBytes { nl_addr_build(AF_LLC, $0.baseAddress, 6) }
            defer { nl_addr_put(a) }
            rtnl_link_set_addr(peer, a)
        }
        let rc = rtnl_link_add(sock, link, NLM_F_CREATE | NLM_F_EXCL)
        if rc < 0 { throw Self.error("rtnl_link_add(veth)", rc, "\(name) <-> \(peerName)") }
    }

    /// Changes link `name`: brings it up, sets its MTU, its MAC, plugs it into bridge `master`.
    package func setLink(
        _ name: String, up: Bool = false, mtu: Int? = nil, mac: [UInt8]? = nil, master: String? = nil
    ) throws(SystemError) {
        var orig: OpaquePointer?
        let g = rtnl_link_get_kernel(sock, 0, name, &orig)
        guard g >= 0, let orig else { throw Self.error("rtnl_link_get_kernel", g, name) }
        defer { rtnl_link_put(orig) }
        guard let change = rtnl_link_alloc() else { throw SystemError("rtnl_link_alloc", Errno(ENOMEM)) }
        defer { rtnl_link_put(change) }
        if up { rtnl_link_set_flags(change, UInt32(IFF_UP)) }
        if let mtu { rtnl_link_set_mtu(change, UInt32(mtu)) }
        if let mac {
            let a = mac.withUnsafeBytes { nl_addr_build(AF_LLC, $0.baseAddress, 6) }
            defer { nl_addr_put(a) }
            rtnl_link_set_addr(change, a)
        }
        if let master {
            guard let m = ifindex(master) else { throw SystemError("rtnl_link_get_kernel", Errno(ENODEV), master) }
            rtnl_link_set_master(change, m)
        }
        let rc = rtnl_link_change(sock, orig, change, 0)
        if rc < 0 { throw Self.error("rtnl_link_change", rc, name) }
    }

    /// Deletes link `name`; false if it did not exist.
    @discardableResult
    package func deleteLink(_ name: String) -> Bool {
        guard let link = rtnl_link_alloc() else { return false }
        defer { rtnl_link_put(link) }
        rtnl_link_set_name(link, name)
        return rtnl_link_delete(sock, link) >= 0
    }

    /// Adds address `cidr` ("198.19.0.2/24") to link `name`.
    package func addAddress(_ name: String, cidr: String) throws(SystemError) {
        guard let index = ifindex(name) else { throw SystemError("rtnl_link_get_kernel", Errno(ENODEV), name) }
        var local: OpaquePointer?
        let ipv6 = cidr.contains(":")
        let p = nl_addr_parse(cidr, ipv6 ? AF_INET6 : AF_INET, &local)
        guard p >= 0, let local else { throw Self.error("nl_addr_parse", p, cidr) }
        defer { nl_addr_put(local) }
        guard let addr = rtnl_addr_alloc() else { throw SystemError("rtnl_addr_alloc", Errno(ENOMEM)) }
        defer { rtnl_addr_put(addr) }
        rtnl_addr_set_ifindex(addr, index)
        // An IPv6 address is usable at once: duplicate address detection cannot learn more than
        // the configuration that assigned it (an overlay's addresses come from its FDB).
        if ipv6 { rtnl_addr_set_flags(addr, UInt32(IFA_F_NODAD)) }
        let s = rtnl_addr_set_local(addr, local)
        if s < 0 { throw Self.error("rtnl_addr_set_local", s, cidr) }
        let rc = rtnl_addr_add(sock, addr, 0)
        if rc < 0 { throw Self.error("rtnl_addr_add", rc, "\(cidr) on \(name)") }
    }
}

/// Parses "02:00:00:00:00:01"; nil if malformed.
package func parseMAC(_ text: String) -> [UInt8]? {
    let parts = text.split(separator: ":")
    guard parts.count == 6 else { return nil }
    var out: [UInt8] = []
    for p in parts {
        guard p.count == 2, let b = UInt8(p, radix: 16) else { return nil }
        out.append(b)
    }
    return out
}
