// Real hosts in network namespaces (STYLE.md §9, third level): `shoal overlay run` in two
// namespace hosts joined by veth, a task namespace attached on each, traffic between the tasks.

import Foundation
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized, .enabled(if: NetnsLab.isSupported, "needs root and iproute2"))
struct OverlayNetnsTests {
    /// Two Shoal nodes, plaintext VXLAN: ARP answered locally, TCP and UDP both ways, the MTU
    /// computed, ICMP fragmentation-needed for an oversize DF packet, and everything removed on
    /// SIGTERM.
    @Test func plaintextTasksExchangeTCPAndUDP() throws {
        let o = try OverlayLab(tag: "ovplain")
        defer { o.close() }
        try o.startPair()
        #expect(try o.taskMTU(1) == "1450")
        #expect(try o.inTask(1, ["ping", "-c", "2", "-W", "2", o.overlayIP(2)]).contains("2 received"))
        let tcp = try o.iperf(client: 1, server: 2)
        #expect(tcp.number("sum_received", "bytes") > 1_000_000)
        let tcpBack = try o.iperf(client: 1, server: 2, reverse: true)
        #expect(tcpBack.number("sum_received", "bytes") > 1_000_000)
        let udp = try o.iperf(client: 2, server: 1, udpBitrate: "20M")
        #expect(udp.number("sum", "packets") > 1000, "\(udp)")
        #expect(udp.number("sum", "lost_percent") < 5)
        let udpBack = try o.iperf(client: 2, server: 1, udpBitrate: "20M", reverse: true)
        #expect(udpBack.number("sum", "packets") > 1000)

        let i1 = try o.inspect(1)
        #expect(i1.number("counters", "arpReplies") >= 1)
        #expect(i1.number("counters", "udpDatagramsOut") > 1000)
        #expect(i1.number("counters", "dropNoRoute") == 0)

        // A path narrower than the sender thinks: the task and the TAP at 1500, the network at 1450.
        for (ns, dev) in [(o.lab.host(1), "shtap100"), (o.lab.host(1), "shvc6130001"), (o.task(1), "eth0")] {
            try NetnsLab.shell(["ip", "-n", ns, "link", "set", dev, "mtu", "1500"])
        }
        let big = (try? o.inTask(1, ["ping", "-M", "do", "-s", "1472", "-c", "2", "-W", "1", o.overlayIP(2)])) ?? ""
        _ = big
        let route = try o.inTask(1, ["ip", "route", "get", o.overlayIP(2)])
        #expect(route.contains("mtu 1450"), "route cache after ICMP: \(route)")
        let i2 = try o.inspect(1)
        #expect(i2.number("counters", "icmpFragmentationNeededSent") >= 1)
        #expect(i2.number("counters", "dropMTU") >= 1)

        let logs = o.stopNodes()
        #expect(logs[0].contains("stopped"), "\(logs[0])")
        let links = try o.lab.run(1, ["ip", "-o", "link"])
        #expect(!links.contains("shbr100") && !links.contains("shtap100"), "\(links)")
    }

    /// IPv6 tasks (2001:2:0:19::/64): neighbor solicitations answered by the VTEP from the FDB
    /// (RFC 4861; nothing flooded), ping and TCP both ways, and RFC 4443 "packet too big" for a
    /// packet larger than the network MTU, which the sender's route cache learns (RFC 8201).
    @Test func ipv6TasksGetNeighborAdvertisementsAndPacketTooBig() throws {
        let o = try OverlayLab(tag: "ovipv6")
        defer { o.close() }
        try o.startPair()
        #expect(try o.inTask(1, ["ping", "-6", "-c", "2", "-W", "2", o.overlayIP6(2)]).contains("2 received"))
        #expect(try o.inTask(2, ["ping", "-6", "-c", "2", "-W", "2", o.overlayIP6(1)]).contains("2 received"))
        #expect(try o.inTask(1, ["ip", "-6", "neigh", "show", o.overlayIP6(2)]).contains(o.mac(2)))
        let tcp = try o.iperf(client: 1, server: 2, ipv6: true)
        #expect(tcp.number("sum_received", "bytes") > 1_000_000)
        let tcpBack = try o.iperf(client: 1, server: 2, reverse: true, ipv6: true)
        #expect(tcpBack.number("sum_received", "bytes") > 1_000_000)
        for i in 1...2 {
            let c = try o.inspect(i)
            #expect(c.number("counters", "ndpAdvertisements") >= 1, "node \(i)")
            #expect(c.number("counters", "dropNoRoute") == 0)
        }

        // The task, its veth and the TAP at 1600, the network at 1450: a 1548-byte packet.
        for (ns, dev) in [(o.lab.host(1), "shtap100"), (o.lab.host(1), "shvc6130001"), (o.task(1), "eth0")] {
            try NetnsLab.shell(["ip", "-n", ns, "link", "set", dev, "mtu", "1600"])
        }
        let ping: String
        do {
            ping = try o.inTask(1, ["ping", "-6", "-M", "do", "-s", "1500", "-c", "2", "-W", "1", o.overlayIP6(2)])
        } catch {
            ping = "\(error)"  // no reply: ping exits 1, its output is in the error
        }
        #expect(ping.contains("Packet too big") || ping.contains("mtu=1450") || ping.contains("mtu: 1450"), "\(ping)")
        let route = try o.inTask(1, ["ip", "-6", "route", "get", o.overlayIP6(2)])
        #expect(route.contains("mtu 1450"), "route cache after ICMPv6: \(route)")
        let c = try o.inspect(1)
        #expect(c.number("counters", "icmpv6PacketTooBigSent") >= 1)
        #expect(c.number("counters", "dropMTU") >= 1)
    }

    /// Interoperability with the Linux kernel's VXLAN device (RFC 7348 on the wire): Shoal on
    /// host 1; on host 2 a kernel `vxlan` (dstport 4789, nolearning) on a bridge, with static FDB
    /// and neighbour entries. TCP and UDP both ways. Over an IPv4 and an IPv6 underlay (the
    /// kernel's VXLAN over IPv6 computes the same 70-byte overhead: MTU 1430).
    @Test(arguments: [false, true]) func interoperatesWithKernelVXLAN(underlay6: Bool) throws {
        let o = try OverlayLab(tag: underlay6 ? "ovkernel6" : "ovkernel", underlay6: underlay6)
        let mtu = underlay6 ? "1430" : "1450"
        defer { o.close() }
        try o.startNode(1)
        try o.attach(1)
        #expect(try o.taskMTU(1) == mtu)
        let h2 = o.lab.host(2)
        let t2 = o.task(2)
        for cmd in [
            ["ip", "-n", h2, "link", "add", "br100", "mtu", mtu, "type", "bridge"],
            [
                "ip", "-n", h2, "link", "add", "vx100", "mtu", mtu, "type", "vxlan", "id", "100", "local",
                o.underlay(2), "dstport", "4789", "nolearning",
            ],
            // veth never fills in checksums left to offload, so the kernel VXLAN would send inner
            // TCP with a partial checksum to host 1 (a real NIC completes it): compute it in software.
            ["ip", "netns", "exec", h2, "ethtool", "-K", "vx100", "tx", "off"],
            ["ip", "-n", h2, "link", "set", "vx100", "master", "br100", "up"],
            ["ip", "-n", h2, "link", "set", "br100", "up"],
            [
                "bridge", "-n", h2, "fdb", "append", o.mac(1), "dev", "vx100", "dst", o.underlay(1), "self",
                "permanent",
            ],
            ["ip", "-n", h2, "link", "add", "tv2", "mtu", mtu, "type", "veth", "peer", "name", "eth0", "netns", t2],
            ["ip", "-n", h2, "link", "set", "tv2", "master", "br100", "up"],
            ["ip", "-n", t2, "link", "set", "eth0", "address", o.mac(2), "mtu", mtu, "up"],
            ["ip", "-n", t2, "link", "set", "lo", "up"],
            ["ip", "-n", t2, "addr", "add", "\(o.overlayIP(2))/24", "dev", "eth0"],
            ["ip", "-n", t2, "neigh", "add", o.overlayIP(1), "lladdr", o.mac(1), "dev", "eth0", "nud", "permanent"],
        ] {
            try NetnsLab.shell(cmd)
        }
        #expect(try o.inTask(1, ["ping", "-c", "2", "-W", "2", o.overlayIP(2)]).contains("2 received"))
        #expect(try o.inTask(2, ["ping", "-c", "2", "-W", "2", o.overlayIP(1)]).contains("2 received"))
        #expect(try o.iperf(client: 1, server: 2).number("sum_received", "bytes") > 1_000_000)
        #expect(try o.iperf(client: 2, server: 1).number("sum_received", "bytes") > 1_000_000)
        let udp1 = try o.iperf(client: 1, server: 2, udpBitrate: "20M")
        #expect(udp1.number("sum", "packets") > 1000 && udp1.number("sum", "lost_percent") < 5, "\(udp1)")
        let udp2 = try o.iperf(client: 2, server: 1, udpBitrate: "20M")
        #expect(udp2.number("sum", "packets") > 1000 && udp2.number("sum", "lost_percent") < 5, "\(udp2)")
        let i1 = try o.inspect(1)
        #expect(i1.number("counters", "dropMalformed") == 0)
        #expect(i1.number("counters", "dropUnknownVNI") == 0)
    }
}
