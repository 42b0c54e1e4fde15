// The mesh daemon's control socket: one JSON request line, one JSON reply per connection
// (`shoal mesh apply` sends a whole table, `shoal mesh inspect` asks for the counters), and the
// daemon's main loop, which serves it alongside SIGHUP (reload the file) and SIGTERM (drain).

import Foundation
import ShoalConfig
import ShoalSystem

#if canImport(Glibc)
    import Glibc
#endif

package struct MeshRequest: Codable, Sendable {
    package var op: String
    /// The table text (JSON or YAML) for `apply`.
    package var config: String?

    package init(op: String, config: String? = nil) {
        self.op = op
        self.config = config
    }
}

package struct MeshReply: Codable, Sendable {
    package var ok: Bool
    package var error: String?
    package var revision: UInt64?
    package var inspection: MeshInspection?
}

extension Mesh {
    /// Answers one control request.
    package func handle(_ request: MeshRequest) -> MeshReply {
        switch request.op {
        case "inspect":
            let i = inspect()
            return MeshReply(ok: true, revision: i.revision, inspection: i)
        case "apply":
            guard let text = request.config else { return MeshReply(ok: false, error: "apply: no config") }
            do {
                let spec = try MeshConfig.parse(text)
                try apply(spec)
                meshLog("applied revision \(spec.revision): \(spec.ports.count) port(s)")
                return MeshReply(ok: true, revision: spec.revision)
            } catch {
                meshLog("refused a table, revision \(table.revision) keeps serving: \(error)")
                return MeshReply(ok: false, error: "\(error)", revision: table.revision)
            }
        default:
            return MeshReply(ok: false, error: "unknown op \(request.op)")
        }
    }

    /// The daemon's main loop: control requests, SIGHUP reloads `configPath`, SIGINT/SIGTERM
    /// drain and return.
    package func serve(control path: String, configPath: String?, signals: borrowing TerminationSignals) throws {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let listener = try UnixStream.listen(path: path)
        defer { unlink(path) }
        var overflows = Self.listenOverflows()
        var fds = [
            pollfd(fd: signals.fd.rawValue, events: Int16(POLLIN), revents: 0),
            pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            fds[0].revents = 0
            fds[1].revents = 0
            if poll(&fds, 2, 1_000) < 0 && errno != EINTR { break }
            // Backlog overflows happen in the kernel; report new ones once a second.
            let now = Self.listenOverflows()
            if let before = overflows, let now, now > before {
                meshLog(
                    "the kernel dropped \(now - before) connection(s) on full listen backlogs (TcpExt ListenOverflows; raise net.core.somaxconn or add reactors)"
                )
            }
            overflows = now ?? overflows
            if fds[0].revents != 0, let signal = signals.take() {
                if signal == SIGHUP {
                    guard let configPath else { continue }
                    let text = FileManager.default.contents(atPath: configPath).map {
                        String(decoding: $0, as: UTF8.self)
                    }
                    let reply = handle(MeshRequest(op: "apply", config: text))
                    if reply.ok { meshLog("SIGHUP: reloaded \(configPath)") }
                    continue
                }
                let drain = table.spec.drainTimeoutMs
                meshLog("signal \(signal): no new connections; draining for up to \(drain) ms")
                shutdown(drainMs: drain)
                return
            }
            if fds[1].revents != 0, let conn = UnixStream.accept(listener: listener.rawValue) {
                let reply: MeshReply
                if let line = UnixStream.readLine(conn),
                    let req = try? JSONDecoder().decode(MeshRequest.self, from: Data(line))
                {
                    reply = handle(req)
                } else {
                    reply = MeshReply(ok: false, error: "malformed request")
                }
                var out = (try? JSONEncoder().encode(reply)).map { [UInt8]($0) } ?? []
                out.append(10)
                UnixStream.writeAll(conn, out)
            }
        }
    }

    /// The network namespace's TcpExt ListenOverflows counter (/proc/net/netstat), if readable.
    package static func listenOverflows() -> UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/net/netstat", encoding: .utf8) else { return nil }
        let lines = text.split(separator: "\n")
        for (i, line) in lines.enumerated() where line.hasPrefix("TcpExt:") && i + 1 < lines.count {
            let names = line.split(separator: " ")
            let values = lines[i + 1].split(separator: " ")
            guard let k = names.firstIndex(of: "ListenOverflows"), k < values.count else { return nil }
            return UInt64(values[k])
        }
        return nil
    }

    /// Sends one request to a running daemon.
    package static func request(_ r: MeshRequest, control path: String) throws -> MeshReply {
        let fd = try UnixStream.connect(path: path, timeoutSeconds: 30)
        var line = [UInt8](try JSONEncoder().encode(r))
        line.append(10)
        guard UnixStream.writeAll(fd, line) else { throw ConfigError(field: "", "cannot write to \(path)") }
        let reply = UnixStream.readAll(fd)
        return try JSONDecoder().decode(MeshReply.self, from: Data(reply))
    }
}
