// NetnsLab: network-namespace hosts joined by veth, for tests. It drives
// `scripts/netns-lab.sh` (the same fixture scripts and benchmarks use), so there is one
// implementation of the topology. Lab names are `shoal-<pid>-<tag>`: a lab left behind by a
// crashed run is swept by the next one, and nothing else is ever touched.
//
// Contract: `NetnsLab(...)` creates the hosts; `close()` (or deinit) kills the processes it
// started and deletes exactly its namespaces, also when the test failed.

import Foundation

/// Errors from the fixture; the message carries the command's stderr.
package struct LabError: Error, CustomStringConvertible {
    package var description: String
}

package final class NetnsLab: @unchecked Sendable {
    // @unchecked: `children` is guarded by `lock`; everything else is immutable after init.
    package let name: String
    package let hostCount: Int
    private let lock = NSLock()
    private var children: [Process] = []
    private var closed = false

    /// Repository root, found from this file's path (Sources/ShoalTestSupport/NetnsLab.swift).
    package static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static var script: String { repoRoot.appendingPathComponent("scripts/netns-lab.sh").path }

    /// True when this process may create namespaces (root with `ip` available).
    package static var isSupported: Bool {
        getuid() == 0
            && ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"].contains {
                FileManager.default.isExecutableFile(atPath: $0)
            }
    }

    /// Creates `hosts` namespace hosts `<name>-h1...` with underlay 198.18.0.i/24 and
    /// 2001:2::i/64 on eth0.
    package init(tag: String, hosts: Int = 2, mtu: Int = 1500) throws {
        let safeTag = String(tag.lowercased().filter { $0.isLetter || $0.isNumber }.prefix(12))
        self.name = "shoal-\(getpid())-\(safeTag)"
        self.hostCount = hosts
        _ = try? Self.shell([Self.script, "sweep"])
        _ = try? Self.shell([Self.script, "down", name])
        do {
            try Self.shell([Self.script, "up", name, String(hosts), String(mtu)])
        } catch {
            _ = try? Self.shell([Self.script, "down", name])
            throw error
        }
    }

    deinit { close() }

    /// The namespace name of host `i` (1-based).
    package func host(_ i: Int) -> String { "\(name)-h\(i)" }

    /// The underlay address of host `i`.
    package func address(_ i: Int) -> String { "198.18.0.\(i)" }

    /// The IPv6 underlay address of host `i` (RFC 5180's benchmarking range).
    package func address6(_ i: Int) -> String { "2001:2::\(i)" }

    /// Runs a command inside host `i` to completion; throws with its output if it fails.
    @discardableResult
    package func run(_ i: Int, _ argv: [String]) throws -> String {
        try Self.shell(["ip", "netns", "exec", host(i)] + argv)
    }

    /// Starts a long-running command inside host `i`; killed by `close()`.
    package func spawn(_ i: Int, _ argv: [String], output: URL? = nil) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", host(i)] + argv
        if let output {
            _ = FileManager.default.createFile(atPath: output.path, contents: nil)
            let h = try FileHandle(forWritingTo: output)
            p.standardOutput = h
            p.standardError = h
        } else {
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
        }
        try p.run()
        lock.withLock { children.append(p) }
        return p
    }

    /// Kills what it started and deletes its namespaces. Idempotent.
    package func close() {
        let toKill: [Process] = lock.withLock {
            if closed { return [] }
            closed = true
            defer { children = [] }
            return children
        }
        for p in toKill where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        _ = try? Self.shell([Self.script, "down", name])
    }

    /// Runs argv (through /usr/bin/env), returns stdout; throws with stderr on a non-zero exit.
    @discardableResult
    package static func shell(_ argv: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = argv
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let text = String(decoding: o, as: UTF8.self)
        guard p.terminationStatus == 0 else {
            throw LabError(
                description: "\(argv.joined(separator: " ")) exited \(p.terminationStatus): "
                    + String(decoding: e, as: UTF8.self) + text)
        }
        return text
    }
}
