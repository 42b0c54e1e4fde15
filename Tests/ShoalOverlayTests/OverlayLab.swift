// A two-host lab for overlay tests: namespace hosts from `NetnsLab`, a task namespace per host
// (`<lab>-t<i>`, removed with the lab by netns-lab.sh), a config per node, `shoal overlay run`
// started in a host, tasks attached. `close()` stops the daemons with SIGTERM (so they remove
// their bridges), kills the processes it started, and deletes the namespaces.

import Foundation
import ShoalTestSupport

#if canImport(Glibc)
    import Glibc
#endif

final class OverlayLab {
    let lab: NetnsLab
    let dir: URL
    private var daemons: [Process] = []
    private var others: [Process] = []
    private var iperfPort = 5300
    /// Nodes talk over the hosts' IPv6 underlay addresses instead of IPv4.
    let underlay6: Bool
    static let key1 = "000102030405060708090a0b0c0d0e0f"

    /// The `shoal` binary next to the test bundle (built by `swift build --build-tests`).
    static var shoal: String {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [here, here.deletingLastPathComponent(), NetnsLab.repoRoot.appendingPathComponent(".build/debug")] {
            let p = dir.appendingPathComponent("shoal").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return NetnsLab.repoRoot.appendingPathComponent(".build/debug/shoal").path
    }

    init(tag: String, underlay6: Bool = false) throws {
        self.underlay6 = underlay6
        lab = try NetnsLab(tag: tag, hosts: 2)
        dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(lab.name)
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for i in 1...2 { try NetnsLab.shell(["ip", "netns", "add", task(i)]) }
    }

    func task(_ i: Int) -> String { "\(lab.name)-t\(i)" }
    func overlayIP(_ i: Int) -> String { "198.19.0.\(i)" }
    func overlayIP6(_ i: Int) -> String { "2001:2:0:19::\(i)" }
    func underlay(_ i: Int) -> String { underlay6 ? lab.address6(i) : lab.address(i) }
    func mac(_ i: Int) -> String { "02:00:c6:13:00:0\(i)" }
    func config(_ i: Int) -> String { dir.appendingPathComponent("n\(i).json").path }
    func control(_ i: Int) -> String { dir.appendingPathComponent("n\(i).sock").path }

    /// Writes node i's config: one network, VNI 100, 198.19.0.0/24 and 2001:2:0:19::/64, both
    /// tasks in the FDB.
    func writeConfig(_ i: Int, encrypted: Bool = false, queues: Int = 1) throws {
        let fdb = (1...2).map {
            "{\"mac\":\"\(mac($0))\",\"ip\":\"\(overlayIP($0))\",\"ip6\":\"\(overlayIP6($0))\","
                + "\"node\":\"n\($0)\",\"underlay\":\"\(underlay($0))\"}"
        }.joined(separator: ",")
        var text = """
            {"node":"n\(i)","underlay":{"address":"\(underlay(i))","mtu":1500},"control":"\(control(i))","queues":\(queues),
             "networks":[{"name":"blue","vni":100,"subnet":"198.19.0.0/24","subnet6":"2001:2:0:19::/64",
              "encrypted":\(encrypted),"fdb":[\(fdb)]}]
            """
        if encrypted {
            text +=
                ",\"keyRing\":{\"cipher\":\"aes-128-gcm\",\"epochs\":[{\"id\":1,\"key\":\"\(Self.key1)\",\"state\":\"tx\"}]}"
        }
        text += "}\n"
        try text.write(toFile: config(i), atomically: true, encoding: .utf8)
    }

    /// Starts `shoal overlay run` in host i and waits for its control socket.
    func startNode(_ i: Int, encrypted: Bool = false, queues: Int = 1) throws {
        try writeConfig(i, encrypted: encrypted, queues: queues)
        let log = dir.appendingPathComponent("n\(i).log")
        daemons.append(try lab.spawn(i, [Self.shoal, "overlay", "run", "--config", config(i)], output: log))
        for _ in 0..<100 {
            if FileManager.default.fileExists(atPath: control(i)) { return }
            usleep(50_000)
        }
        throw OverlayLabError(
            description: "node \(i) did not start: " + ((try? String(contentsOf: log, encoding: .utf8)) ?? ""))
    }

    /// Starts both nodes and attaches a task to each: the usual two-task set-up.
    func startPair(encrypted: Bool = false, queues: Int = 1) throws {
        for i in 1...2 { try startNode(i, encrypted: encrypted, queues: queues) }
        for i in 1...2 { try attach(i) }
    }

    /// The MTU of task i's overlay interface.
    func taskMTU(_ i: Int) throws -> String {
        try inTask(i, ["cat", "/sys/class/net/eth0/mtu"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Attaches task i to node i's network.
    func attach(_ i: Int) throws {
        try lab.run(
            i, [Self.shoal, "overlay", "attach", "--config", config(i), "--netns", task(i), "--ip", overlayIP(i)])
    }

    /// Runs a command in task namespace i.
    @discardableResult
    func inTask(_ i: Int, _ argv: [String]) throws -> String {
        try NetnsLab.shell(["ip", "netns", "exec", task(i)] + argv)
    }

    /// Starts a background command in task namespace i (killed by close()).
    func spawnInTask(_ i: Int, _ argv: [String]) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", task(i)] + argv
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        others.append(p)
        return p
    }

    /// `shoal overlay <args> --control <node i's socket>`.
    @discardableResult
    func shoal(_ i: Int, _ args: [String]) throws -> String {
        try NetnsLab.shell([Self.shoal, "overlay"] + args + ["--control", control(i)])
    }

    func inspect(_ i: Int) throws -> [String: Any] {
        let text = try shoal(i, ["inspect", "--json"])
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] ?? [:]
    }

    /// iperf3 from task `client` to task `server` (TCP, or UDP at `udpBitrate`); the JSON end summary.
    func iperf(
        client: Int, server: Int, seconds: Int = 1, bytes: String? = nil, udpBitrate: String? = nil,
        reverse: Bool = false, ipv6: Bool = false, streams: Int = 1
    ) throws -> [String: Any] {
        let serverIP = ipv6 ? overlayIP6(server) : overlayIP(server)
        // A fresh port per run: a one-shot server of the previous run may still be exiting.
        iperfPort += 1
        let port = String(iperfPort)
        let srv = try spawnInTask(server, ["iperf3", "-s", "-1", "-B", serverIP, "-p", port])
        defer { if srv.isRunning { kill(srv.processIdentifier, SIGKILL) } }
        var args = ["iperf3", "-c", serverIP, "-p", port, "-J", "--connect-timeout", "3000", "-P", String(streams)]
        args += bytes.map { ["-n", $0] } ?? ["-t", String(seconds)]
        if let udpBitrate { args += ["-u", "-b", udpBitrate] }
        if reverse { args.append("-R") }
        var out = ""
        var end: [String: Any] = [:]
        for _ in 0..<50 {  // until the server listens (iperf3 -J reports "connection refused" in JSON)
            out = (try? inTask(client, args)) ?? ""
            let json = (try? JSONSerialization.jsonObject(with: Data(out.utf8))) as? [String: Any] ?? [:]
            if json["error"] == nil, let e = json["end"] as? [String: Any], !e.isEmpty {
                end = e
                break
            }
            usleep(100_000)
        }
        guard !end.isEmpty else {
            throw OverlayLabError(description: "iperf3 \(args.joined(separator: " ")) gave no result: \(out)")
        }
        return end
    }

    /// Stops the daemons with SIGTERM and returns their logs; then removes everything.
    @discardableResult
    func stopNodes() -> [String] {
        for p in daemons where p.isRunning { kill(p.processIdentifier, SIGTERM) }
        for p in daemons { p.waitUntilExit() }
        daemons = []
        return (1...2).map {
            (try? String(contentsOfFile: dir.appendingPathComponent("n\($0).log").path, encoding: .utf8)) ?? ""
        }
    }

    func close() {
        stopNodes()
        for p in others where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        others = []
        lab.close()
        try? FileManager.default.removeItem(at: dir)
    }

    deinit { close() }
}

extension Dictionary where Key == String, Value == Any {
    func number(_ path: String...) -> Double {
        var cur: Any? = self
        for p in path { cur = (cur as? [String: Any])?[p] }
        return (cur as? NSNumber)?.doubleValue ?? -1
    }
}

struct OverlayLabError: Error, CustomStringConvertible {
    var description: String
}
