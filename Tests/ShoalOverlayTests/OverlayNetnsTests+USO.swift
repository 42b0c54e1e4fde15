// UDP segmentation offload from the TAP, on real hosts in network namespaces: a task sends with
// UDP_SEGMENT, the TAP (TUN_F_USO4/USO6) hands the VTEP one superframe per send, the VTEP cuts it
// into datagrams of their own and the other task receives them byte for byte.

import Foundation
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

extension OverlayNetnsTests {
    /// A 3 MB file sent by task 1 with UDP GSO (1,350-byte datagrams, 41 per send), to task 2
    /// over IPv4 and over IPv6, plaintext and encrypted: the receiver (socat, one write per
    /// datagram) gets exactly the file, node 1 counts USO superframes read from its TAP, and no
    /// drop counter of either node moves.
    @Test(arguments: [false, true]) func udpSegmentationOffloadCarriesLargeSendsByteExact(encrypted: Bool) throws {
        let o = try OverlayLab(tag: encrypted ? "ovuso-esp" : "ovuso")
        defer { o.close() }
        try o.startPair(encrypted: encrypted)
        // Neighbors first, so that no datagram waits for ARP or NDP.
        #expect(try o.inTask(1, ["ping", "-c", "1", "-W", "2", o.overlayIP(2)]).contains("1 received"))
        #expect(try o.inTask(1, ["ping", "-6", "-c", "1", "-W", "2", o.overlayIP6(2)]).contains("1 received"))
        let before = try o.inspect(1)
        #expect((before["tapOffloads"] as? [String] ?? []).contains("uso4"), "\(before["tapOffloads"] ?? "none")")

        var rng = SystemRandomNumberGenerator()
        let payload = Data((0..<3_000_123).map { _ in UInt8.random(in: 0...255, using: &rng) })
        let file = o.dir.appendingPathComponent("uso.bin")
        try payload.write(to: file)
        // Datagrams that fit the encrypted network's MTU (1405) over IPv6 too; 41 per send.
        let segment = 1_350
        let perSend = 56_000 / segment * segment
        var sends = 0
        for (port, ipv6) in [(5401, false), (5402, true)] {
            let out = o.dir.appendingPathComponent("uso-\(port).out")
            let listen =
                ipv6 ? "UDP6-RECV:\(port),bind=[\(o.overlayIP6(2))]" : "UDP4-RECV:\(port),bind=\(o.overlayIP(2))"
            // SO_RCVBUF as large as net.core.rmem_max allows: room for bursts, so that no
            // datagram is lost to a slow reader (the sender paces itself too).
            let receiver = try o.spawnInTask(2, ["socat", "-u", listen + ",rcvbuf=16777216", "CREATE:\(out.path)"])
            defer { if receiver.isRunning { kill(receiver.processIdentifier, SIGTERM) } }
            try waitForUDPListener(o, task: 2, port: port)
            let to = ipv6 ? "[\(o.overlayIP6(2))]:\(port)" : "\(o.overlayIP(2)):\(port)"
            let report = try o.inTask(
                1,
                [
                    OverlayLab.shoal, "bench", "udp-send", "--to", to, "--file", file.path, "--segment", "\(segment)",
                    "--gso", "56000", "--pace-microseconds", "500",
                ])
            sends +=
                (try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any])?["sends"] as? Int ?? 0
            var received = Data()
            for _ in 0..<100 {
                received = (try? Data(contentsOf: out)) ?? Data()
                if received.count >= payload.count { break }
                usleep(100_000)
            }
            #expect(received.count == payload.count, "IPv\(ipv6 ? 6 : 4): received \(received.count) bytes")
            #expect(received == payload, "IPv\(ipv6 ? 6 : 4): the received bytes differ")
        }
        #expect(sends == 2 * ((payload.count + perSend - 1) / perSend))

        let i1 = try o.inspect(1)
        let uso = i1.number("counters", "tapUSOFramesIn") - before.number("counters", "tapUSOFramesIn")
        #expect(uso == Double(sends), "USO superframes read from the TAP: \(uso) for \(sends) sends")
        for (i, c) in [(1, i1), (2, try o.inspect(2))] {
            for k in [
                "dropNoRoute", "dropMTU", "dropMalformed", "dropUnknownVNI", "dropWrongEncapsulation", "dropNoTxSA",
                "dropESP", "dropSendFailed", "dropTapWriteFailed",
            ] {
                #expect(c.number("counters", k) == 0, "node \(i) \(k)")
            }
        }
        let peers = i1["peers"] as? [[String: Any]] ?? []
        let datagrams = peers.first?.number("traffic", "txPackets") ?? 0
        #expect(datagrams >= Double(2 * ((payload.count + segment - 1) / segment)), "datagrams sent to node 2")
    }

    /// Waits until task `task` has a UDP socket bound to `port`.
    private func waitForUDPListener(_ o: OverlayLab, task: Int, port: Int) throws {
        for _ in 0..<50 {
            if let s = try? o.inTask(task, ["ss", "-Hlun"]), s.contains(":\(port) ") { return }
            usleep(100_000)
        }
        throw OverlayLabError(description: "no UDP listener on port \(port) in task \(task)")
    }
}
