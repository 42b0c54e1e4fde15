// Encrypted overlay between two namespace hosts: ESP in UDP 4500 end to end, a key rotation
// during traffic with every drop counter shown, stock tshark decrypting a capture of the
// underlay with the exported SAs, and bad packets dropped and counted by cause.

import Foundation
import ShoalTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized, .enabled(if: NetnsLab.isSupported, "needs root and iproute2"))
struct OverlayEncryptedTests {
    static let key2 = "1f1e1d1c1b1a19181716151413121110"

    /// Rotation at run time (add rx-only on both, promote on both, retire on both) during a TCP
    /// stream: no ESP drop of any cause, no VTEP drop, and the old epoch's SAs are gone.
    @Test func keyRotationDuringTrafficLosesNothing() throws {
        let o = try OverlayLab(tag: "ovrotate")
        defer { o.close() }
        try o.startPair(encrypted: true)
        #expect(try o.taskMTU(1) == "1405")
        #expect(try o.inTask(1, ["ping", "-c", "2", "-W", "2", o.overlayIP(2)]).contains("2 received"))

        let server = try o.spawnInTask(2, ["iperf3", "-s", "-1", "-B", o.overlayIP(2)])
        defer { if server.isRunning { kill(server.processIdentifier, SIGKILL) } }
        usleep(300_000)
        let out = o.dir.appendingPathComponent("iperf.json")
        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["ip", "netns", "exec", o.task(1), "iperf3", "-c", o.overlayIP(2), "-t", "4", "-J"]
        FileManager.default.createFile(atPath: out.path, contents: nil)
        client.standardOutput = try FileHandle(forWritingTo: out)
        try client.run()
        usleep(1_000_000)
        for i in 1...2 {
            #expect(try o.shoal(i, ["keys", "add", "--id", "2", "--key", Self.key2]).contains("receive-only"))
        }
        usleep(500_000)
        for i in 1...2 { #expect(try o.shoal(i, ["keys", "promote", "--id", "2"]).contains("transmits")) }
        usleep(500_000)
        for i in 1...2 { #expect(try o.shoal(i, ["keys", "retire", "--id", "1"]).contains("retired")) }
        client.waitUntilExit()
        let result = try JSONSerialization.jsonObject(with: Data(contentsOf: out)) as? [String: Any] ?? [:]
        let end = result["end"] as? [String: Any] ?? [:]
        #expect(end.number("sum_received", "bytes") > 1_000_000)

        for i in 1...2 {
            let text = try o.shoal(i, ["inspect"])
            print("node n\(i) after rotation:\n\(text)")
            let j = try o.inspect(i)
            let esp = j["esp"] as? [String: Any] ?? [:]
            let drops = esp["drops"] as? [String: Any] ?? [:]
            for cause in ["unknownSPI", "replay", "authenticationFailed", "malformed", "noTxSA"] {
                #expect((drops[cause] as? NSNumber)?.intValue == 0, "node n\(i) \(cause)")
            }
            let sas = esp["sas"] as? [[String: Any]] ?? []
            #expect(!sas.isEmpty && sas.allSatisfy { ($0["epoch"] as? NSNumber)?.intValue == 2 })
            #expect(j.number("counters", "dropNoTxSA") == 0 && j.number("counters", "dropESP") == 0)
        }
    }

    /// An IPv6 underlay (2001:2::1 and 2001:2::2, nothing else configured for the peers): ESP
    /// in UDP 4500 over IPv6, the network MTU 1500 − 115 = 1385, IPv4 and IPv6 tasks exchanging
    /// ping and TCP both ways with no drop of any cause.
    @Test func ipv6UnderlayCarriesEncryptedTraffic() throws {
        let o = try OverlayLab(tag: "ovunder6", underlay6: true)
        defer { o.close() }
        try o.startPair(encrypted: true)
        #expect(try o.taskMTU(1) == "1385")
        #expect(try o.inTask(1, ["ping", "-c", "2", "-W", "2", o.overlayIP(2)]).contains("2 received"))
        #expect(try o.inTask(2, ["ping", "-6", "-c", "2", "-W", "2", o.overlayIP6(1)]).contains("2 received"))
        #expect(try o.iperf(client: 1, server: 2).number("sum_received", "bytes") > 1_000_000)
        #expect(try o.iperf(client: 2, server: 1).number("sum_received", "bytes") > 1_000_000)
        #expect(try o.iperf(client: 1, server: 2, ipv6: true).number("sum_received", "bytes") > 1_000_000)
        for i in 1...2 {
            let j = try o.inspect(i)
            #expect(j["underlay"] as? String == o.lab.address6(i))
            let peer = (j["peers"] as? [[String: Any]])?.first ?? [:]
            #expect(peer["underlay"] as? String == o.lab.address6(3 - i))
            #expect(peer.number("traffic", "rxPackets") > 1000 && peer.number("traffic", "txPackets") > 1000)
            let drops = (j["esp"] as? [String: Any])?["drops"] as? [String: Any] ?? [:]
            for cause in ["unknownSPI", "replay", "authenticationFailed", "malformed", "noTxSA"] {
                #expect((drops[cause] as? NSNumber)?.intValue == 0, "node n\(i) \(cause)")
            }
            for cause in ["dropESP", "dropMalformed", "dropSendFailed", "dropNoRoute"] {
                #expect(j.number("counters", cause) == 0, "node n\(i) \(cause)")
            }
        }
        // The underlay really is IPv6: the ESP socket is an AF_INET6 one on 2001:2::1.
        let sockets = try o.lab.run(1, ["ss", "-u", "-a", "-n", "-6"])
        #expect(sockets.contains("[2001:2::1]:4500"), "\(sockets)")
    }

    /// `queues: 2`: two VTEP threads per node, each with its TAP queue, its SO_REUSEPORT
    /// sockets and its ESP engine, sharing each SA's sequence counter and replay window. Four
    /// parallel TCP streams each way, a key rotation on the way: no replay, authentication or
    /// any other drop (sequence numbers stay unique per SA across threads; concurrent receivers
    /// keep one consistent window).
    @Test func multiQueueParallelStreamsHaveNoReplayOrAuthDrops() throws {
        let o = try OverlayLab(tag: "ovqueues")
        defer { o.close() }
        try o.startPair(encrypted: true, queues: 2)
        #expect(try o.inTask(1, ["ping", "-c", "2", "-W", "2", o.overlayIP(2)]).contains("2 received"))
        #expect(try o.iperf(client: 1, server: 2, seconds: 3, streams: 4).number("sum_received", "bytes") > 10_000_000)
        for i in 1...2 { try o.shoal(i, ["keys", "add", "--id", "2", "--key", Self.key2]) }
        for i in 1...2 { try o.shoal(i, ["keys", "promote", "--id", "2"]) }
        #expect(
            try o.iperf(client: 1, server: 2, seconds: 3, reverse: true, streams: 4).number("sum_received", "bytes")
                > 10_000_000)
        for i in 1...2 {
            print("node n\(i), 2 queues:\n" + (try o.shoal(i, ["inspect"])))
            let j = try o.inspect(i)
            #expect((j["queues"] as? [Any])?.count == 2)
            let esp = j["esp"] as? [String: Any] ?? [:]
            let drops = esp["drops"] as? [String: Any] ?? [:]
            for cause in ["unknownSPI", "replay", "authenticationFailed", "malformed", "noTxSA"] {
                #expect((drops[cause] as? NSNumber)?.intValue == 0, "node n\(i) \(cause)")
            }
            for cause in ["dropESP", "dropMalformed", "dropSendFailed", "dropNoRoute", "dropTapWriteFailed"] {
                #expect(j.number("counters", cause) == 0, "node n\(i) \(cause)")
            }
            let sas = esp["sas"] as? [[String: Any]] ?? []
            #expect(
                sas.contains { ($0["epoch"] as? NSNumber)?.intValue == 2 && $0["direction"] as? String == "outbound" })
        }
        let logs = o.stopNodes()
        #expect(logs.allSatisfy { $0.contains("stopped") }, "\(logs)")
    }

    /// RFC 4303 + RFC 4106 + RFC 3948 as Wireshark reads them: stock tshark, given the exported
    /// esp_sa table, decrypts the captured UDP 4500 traffic down to the inner TCP. Then bad
    /// datagrams of each kind are sent at the node and counted under their cause.
    @Test func tsharkDecryptsCaptureAndBadPacketsAreCounted() throws {
        let o = try OverlayLab(tag: "ovtshark")
        defer { o.close() }
        try o.startPair(encrypted: true)
        let pcap = o.dir.appendingPathComponent("underlay.pcap").path
        let dump = try o.lab.spawn(1, ["tcpdump", "-i", "eth0", "-U", "-w", pcap, "udp", "port", "4500"])
        usleep(700_000)
        #expect(try o.inTask(1, ["ping", "-c", "1", "-W", "2", o.overlayIP(2)]).contains("1 received"))
        let tcp = try o.iperf(client: 1, server: 2, bytes: "2M")
        #expect(tcp.number("sum_received", "bytes") > 100_000)
        usleep(300_000)
        // The test runner ignores SIGINT/SIGTERM, and tcpdump keeps inherited ignores; with -U
        // every packet is already written whole.
        kill(dump.processIdentifier, SIGKILL)
        dump.waitUntilExit()

        let sa = try o.shoal(1, ["export-sa"])
        let lines = sa.split(separator: "\n").map(String.init)
        #expect(lines.count == 2 && lines.allSatisfy { $0.contains("AES-GCM with 16 octet ICV [RFC4106]") })
        var args = ["tshark", "-r", pcap, "-o", "esp.enable_encryption_decode:TRUE"]
        for l in lines { args += ["-o", "uat:esp_sa:\(l)"] }
        let fields = try NetnsLab.shell(
            args + ["-Y", "tcp", "-T", "fields", "-e", "ip.src", "-e", "tcp.dstport", "-e", "vxlan.vni"])
        let rows = fields.split(separator: "\n")
        #expect(rows.count > 50, "tshark decoded \(rows.count) inner TCP packets")
        #expect(rows.contains { $0.contains("198.19.0.1") && $0.contains("530") && $0.contains("100") })

        // Bad datagrams from host 2's underlay address (sent with socat), and real packets of n2
        // replayed and forged.
        let fromN2 = Self.udpPayloads(pcap: pcap, source: [198, 18, 0, 2])
        #expect(fromN2.count > 10)
        guard fromN2.count > 2 else { return }
        var forged = fromN2[fromN2.count - 2]
        forged.replaceSubrange(4..<8, with: [0x7F, 0xFF, 0xFF, 0xF0])  // sequence the ICV does not cover
        let bad: [(port: Int, bytes: [UInt8])] = [
            (4500, [1, 2, 3]),  // malformed
            (4500, [0xDE, 0xAD, 0xBE, 0xEF] + [UInt8](repeating: 0, count: 60)),  // unknown SPI
            (4500, fromN2[fromN2.count - 1]),  // replay, inside the window
            (4500, forged),  // authentication failure
            (4789, [8, 0]),  // malformed VXLAN
            (4789, [8, 0, 0, 0, 0, 0x03, 0xE7, 0] + [UInt8](repeating: 0, count: 60)),  // unknown VNI 999
            (4789, [8, 0, 0, 0, 0, 0, 0x64, 0] + [UInt8](repeating: 0, count: 60)),  // plaintext on encrypted VNI 100
        ]
        for (i, d) in bad.enumerated() {
            let file = o.dir.appendingPathComponent("bad\(i).bin")
            try Data(d.bytes).write(to: file)
            try o.lab.run(2, ["socat", "-u", "FILE:\(file.path)", "UDP4-SENDTO:\(o.lab.address(1)):\(d.port)"])
        }
        usleep(300_000)
        let j = try o.inspect(1)
        let drops = (j["esp"] as? [String: Any])?["drops"] as? [String: Any] ?? [:]
        for cause in ["malformed", "unknownSPI", "replay", "authenticationFailed"] {
            #expect(((drops[cause] as? NSNumber)?.intValue ?? 0) >= 1, "esp drop \(cause): \(drops)")
        }
        #expect(j.number("counters", "dropMalformed") >= 1)
        #expect(j.number("counters", "dropUnknownVNI") >= 1)
        #expect(j.number("counters", "dropWrongEncapsulation") >= 1)
        #expect(j.number("counters", "dropESP") >= 4)
        // The node still forwards.
        #expect(try o.inTask(1, ["ping", "-c", "1", "-W", "2", o.overlayIP(2)]).contains("1 received"))
    }

    /// UDP payloads of the IPv4 packets from `source` in a pcap file (Ethernet link type).
    static func udpPayloads(pcap: String, source: [UInt8]) -> [[UInt8]] {
        guard let data = FileManager.default.contents(atPath: pcap) else { return [] }
        let b = [UInt8](data)
        var out: [[UInt8]] = []
        var off = 24
        while off + 16 <= b.count {
            let incl = Int(b[off + 8]) | Int(b[off + 9]) << 8 | Int(b[off + 10]) << 16 | Int(b[off + 11]) << 24
            let start = off + 16
            off = start + incl
            guard off <= b.count, incl > 42 + 16 else { break }
            let f = b[start..<off]
            guard f[start + 12] == 0x08, f[start + 13] == 0, Array(f[(start + 26)..<(start + 30)]) == source else {
                continue
            }
            out.append(Array(f[(start + 42)...]))
        }
        return out
    }
}
