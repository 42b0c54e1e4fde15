// `shoal overlay`: run a node's VTEP from a config file, attach task namespaces to its networks,
// and talk to the running daemon over its control socket (inspect, keys, export-sa).

import ArgumentParser
import Foundation
import ShoalConfig
import ShoalOverlay
import ShoalSystem

struct OverlayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "overlay",
        abstract: "The VXLAN overlay data plane (VTEP).",
        subcommands: [
            OverlayRun.self, OverlayAttach.self, OverlayKeys.self, OverlayInspect.self, OverlayExportSA.self,
        ])
}

struct OverlayConfigOption: ParsableArguments {
    @Option(name: .long, help: "The node's overlay config (JSON or YAML).")
    var config: String

    func plan() throws -> OverlayPlan {
        do {
            return try OverlayConfig.load(path: config)
        } catch {
            throw ValidationError("\(config): \(error)")
        }
    }
}

struct OverlayRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run this node's VTEP until SIGINT/SIGTERM, then remove what it created.")

    @OptionGroup var options: OverlayConfigOption

    func run() throws {
        let plan = try options.plan()
        let signals = try TerminationSignals()
        let node = try OverlayNode.start(plan: plan)
        let mtus = plan.networks.map { "vni \($0.vni) mtu \($0.mtu)" }.joined(separator: ", ")
        say("shoal overlay: node \(plan.node) up on \(plan.underlayAddress) (\(mtus))")
        node.run(signals: signals)
        node.tearDown()
        say("shoal overlay: node \(plan.node) stopped, bridges and TAPs removed")
    }
}

struct OverlayAttach: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attach",
        abstract: "Create a veth into a task namespace with the given IP/MAC and plug it into a network's bridge.")

    @OptionGroup var options: OverlayConfigOption
    @Option(help: "The network's VNI (default: the config's first network).") var vni: Int?
    @Option(help: "The task's network namespace (as named by `ip netns`).") var netns: String
    @Option(help: "The task's overlay IPv4 address (must be in the network's subnet).") var ip: String
    @Option(help: "The task's overlay IPv6 address (default: the FDB entry's ip6 for --ip, if any).") var ip6: String?
    @Option(help: "The task's MAC (default: the FDB entry for --ip).") var mac: String?
    @Option(help: "The interface name inside the task namespace.") var ifname: String = "eth0"

    func run() throws {
        let plan = try options.plan()
        guard let net = vni.map({ v in plan.networks.first { $0.vni == UInt32(v) } }) ?? plan.networks.first else {
            throw ValidationError("--vni \(vni ?? 0): not a network of \(options.config)")
        }
        guard case .v4(let ip4)? = IPAddress(ip), net.subnet.contains(ip4) else {
            throw ValidationError("--ip \(ip): expected an IPv4 address inside \(net.subnet)")
        }
        let macValue: MAC
        if let mac {
            guard let m = MAC(mac) else { throw ValidationError("--mac \(mac): not a MAC address") }
            macValue = m
        } else if let e = net.fdb.first(where: { $0.ip == ip4 }) {
            macValue = e.mac
        } else {
            throw ValidationError("--mac is needed: \(ip) has no FDB entry in \(options.config)")
        }
        var ip6Value = net.fdb.first(where: { $0.ip == ip4 })?.ip6
        if let ip6 {
            guard let subnet6 = net.subnet6, let a = IPAddress(ip6), subnet6.contains(a) else {
                throw ValidationError("--ip6 \(ip6): expected an IPv6 address inside the network's subnet6")
            }
            ip6Value = a
        }
        let hostSide = OverlayAttachment.hostInterfaceName(vni: net.vni, mac: macValue)
        try OverlayAttachment.attach(
            network: net, namespace: netns, ifname: ifname, ip: ip4, ip6: ip6Value, mac: macValue,
            hostInterface: hostSide)
        let v6 = ip6Value.map { " \($0)/\(net.subnet6!.length)" } ?? ""
        print(
            "attached \(netns) \(ifname) \(ip)/\(net.subnet.length)\(v6) \(macValue) to \(net.bridgeName) via \(hostSide)"
        )
    }
}

/// Sends one request to the daemon named by --config (or --control) and returns its response.
struct OverlayControlOption: ParsableArguments {
    @Option(help: "The node's overlay config (to find its control socket).") var config: String?
    @Option(help: "The control socket path.") var control: String?

    func send(_ request: ControlRequest) throws -> ControlResponse {
        var path = control
        if path == nil, let config {
            let plan = try OverlayConfigOption(config: config).plan()
            path = plan.control ?? OverlayNode.defaultControlPath(node: plan.node)
        }
        guard let path else { throw ValidationError("give --config or --control") }
        let fd = try UnixStream.connect(path: path)
        let line = try JSONEncoder().encode(request)
        guard UnixStream.writeAll(fd, Array(line) + [10]) else { throw ValidationError("cannot write to \(path)") }
        let reply = UnixStream.readAll(fd)
        let response = try JSONDecoder().decode(ControlResponse.self, from: Data(reply))
        if !response.ok { throw ValidationError(response.error ?? "request failed") }
        return response
    }
}

extension OverlayConfigOption {
    init(config: String) {
        self.init()
        self.config = config
    }
}

struct OverlayInspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Networks, FDB, peers, SAs and counters of a running node.")
    @OptionGroup var control: OverlayControlOption
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let r = try control.send(ControlRequest(op: "inspect"))
        guard let i = r.inspection else { throw ValidationError("no inspection in the reply") }
        try printInspection(i, text: i.text, json: json)
    }
}

struct OverlayKeys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys", abstract: "Change the key ring of a running node (no restart).",
        subcommands: [Add.self, Promote.self, Retire.self])

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Install a new epoch, receive-only.")
        @OptionGroup var control: OverlayControlOption
        @Option(help: "Epoch id.") var id: UInt32
        @Option(help: "Epoch key, hex (16 or 32 bytes, per the ring's cipher).") var key: String
        func run() throws {
            var req = ControlRequest(op: "keys-add", id: id)
            req.key = key
            print(try control.send(req).text ?? "ok")
        }
    }

    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make an epoch the transmit epoch (the previous one becomes retiring).")
        @OptionGroup var control: OverlayControlOption
        @Option(help: "Epoch id.") var id: UInt32
        func run() throws { print(try control.send(ControlRequest(op: "keys-promote", id: id)).text ?? "ok") }
    }

    struct Retire: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove an epoch that no longer transmits.")
        @OptionGroup var control: OverlayControlOption
        @Option(help: "Epoch id.") var id: UInt32
        func run() throws { print(try control.send(ControlRequest(op: "keys-retire", id: id)).text ?? "ok") }
    }
}

struct OverlayExportSA: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-sa", abstract: "Print the live SAs as Wireshark esp_sa UAT lines.")
    @OptionGroup var control: OverlayControlOption
    func run() throws { print(try control.send(ControlRequest(op: "export-sa")).text ?? "", terminator: "") }
}

/// Prints a line unbuffered (the daemon's output goes to logs and pipes).
/// Prints an inspection as sorted, pretty JSON or as its text form.
func printInspection(_ value: some Encodable, text: String, json: Bool) throws {
    if json {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        print(String(decoding: try enc.encode(value), as: UTF8.self))
    } else {
        print(text, terminator: "")
    }
}

func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}
