// `shoal mesh run` as a process: SIGHUP reloads the file, `apply`/`inspect` over the control
// socket, SIGTERM drains and exits, and running out of file descriptors refuses cleanly.

import Foundation
import Testing

@testable import ShoalMesh
@testable import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

final class MeshProcess {
    let process = Process()
    let dir: URL
    let configPath: String
    let control: String

    static var binary: String {
        let here = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for d in [here, here.deletingLastPathComponent()] {
            let p = d.appendingPathComponent("shoal").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/shoal").path
    }

    /// Starts `shoal mesh run` on `yaml` (its `control:` is replaced) with `ulimit -n nofile`.
    init(_ yaml: String, nofile: Int = 4096) throws {
        dir = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("shoal-meshproc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        control = dir.appendingPathComponent("mesh.sock").path
        configPath = dir.appendingPathComponent("table.yaml").path
        try Self.withControl(yaml, control).write(toFile: configPath, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c", "ulimit -n \(nofile) && exec \"$0\" mesh run --config \"$1\"", Self.binary, configPath,
        ]
        let log = dir.appendingPathComponent("mesh.log").path
        FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        guard Kit.eventually(10, { FileManager.default.fileExists(atPath: control) }) else {
            stop()
            throw PeerProcess.PeerError(what: "shoal mesh run did not start: \(log)")
        }
    }

    static func withControl(_ yaml: String, _ control: String) -> String {
        yaml.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("control:") ? "control: \(control)" : String($0) }.joined(separator: "\n")
    }

    func inspect() throws -> MeshInspection {
        let r = try Mesh.request(MeshRequest(op: "inspect"), control: control)
        return try #require(r.inspection)
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }
}

@Suite(.serialized) struct MeshProcessTests {
    @Test func sighupReloadsApplyAndInspectWorkAndSigtermDrainsAndExits() throws {
        let (a, b) = try Backend.pair()
        defer { Backend.stop(a, b) }
        let port = Kit.freePort()
        let mesh = try MeshProcess(meshYAML(port: port, endpoints: [a.port]))
        defer { mesh.stop() }
        let held = try #require(Kit.connect(port))
        defer { close(held) }
        #expect(Kit.read(held, count: 2) == Array("A\n".utf8))
        // SIGHUP: the file now says B.
        try MeshProcess.withControl(meshYAML(port: port, endpoints: [b.port], revision: 2), mesh.control)
            .write(toFile: mesh.configPath, atomically: true, encoding: .utf8)
        kill(mesh.process.processIdentifier, SIGHUP)
        #expect(Kit.eventually { (try? mesh.inspect().revision) == 2 })
        let fresh = try #require(Kit.connect(port))
        #expect(Kit.read(fresh, count: 2) == Array("B\n".utf8))
        close(fresh)
        // apply over the control socket; a malformed table is refused and named.
        let bad = try Mesh.request(
            MeshRequest(op: "apply", config: "revision: 3\nports: [{port: 0, endpoints: []}]"), control: mesh.control)
        #expect(!bad.ok && (bad.error ?? "").hasPrefix("ports[0].port"))
        let i = try mesh.inspect()
        #expect(i.revision == 2 && i.listeners.first?.tasks.first?.address == "127.0.0.1:\(b.port)")
        // SIGTERM: no new connections, the held one still works, exit once it ends.
        kill(mesh.process.processIdentifier, SIGTERM)
        #expect(
            Kit.eventually(3) {
                guard let fd = Kit.connect(port) else { return true }
                close(fd)
                return false
            })
        Kit.send(held, "bye\n")
        #expect(Kit.text(Kit.read(held, count: 4)) == "bye\n")
        #expect(mesh.process.isRunning)
        shutdown(held, Int32(SHUT_WR))
        #expect(Kit.eventually(5) { !mesh.process.isRunning })
    }

    @Test func runningOutOfDescriptorsRefusesCleanlyAndRecovers() throws {
        let a = try Backend(name: "A")
        defer { a.stop() }
        let port = Kit.freePort()
        let mesh = try MeshProcess(meshYAML(port: port, endpoints: [a.port]), nofile: 128)
        defer { mesh.stop() }
        var clients: [CInt] = []
        var served = 0
        var refused = 0
        for _ in 0..<120 {
            guard let fd = Kit.connect(port, timeout: 2) else { continue }
            clients.append(fd)
            if Kit.read(fd, count: 2) == Array("A\n".utf8) { served += 1 } else { refused += 1 }
        }
        #expect(served > 10 && refused > 0, "served \(served), refused \(refused)")
        let c = try mesh.inspect().listeners[0].counters
        #expect((c["refusedFdExhausted"] ?? 0) + (c["connectOther"] ?? 0) >= UInt64(refused))
        for fd in clients { close(fd) }
        // Descriptors come back: a new client is served again.
        #expect(
            Kit.eventually(5) {
                guard let fd = Kit.connect(port) else { return false }
                defer { close(fd) }
                return Kit.read(fd, count: 2) == Array("A\n".utf8)
            })
        #expect(mesh.process.isRunning)
    }
}
