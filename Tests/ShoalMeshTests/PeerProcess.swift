// Real peers for the mesh tests: nginx and HAProxy started from configs written to a temporary
// directory, stopped by PID (never a system service, never `killall`).

import Foundation

#if canImport(Glibc)
    import Glibc
#endif

final class PeerProcess: @unchecked Sendable {
    let process = Process()
    let directory: URL

    static func installed(_ path: String) -> Bool { FileManager.default.isExecutableFile(atPath: path) }

    /// Writes `files` (name → text) into a fresh directory, then runs `arguments` with
    /// `{dir}` replaced by it. Waits until `port` on 127.0.0.1 accepts.
    init(_ executable: String, _ arguments: [String], files: [String: String], waitFor port: UInt16) throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "shoal-peer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, text) in files {
            try (text.replacingOccurrences(of: "{dir}", with: directory.path) + "\n")
                .write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments.map { $0.replacingOccurrences(of: "{dir}", with: directory.path) }
        let logPath = directory.appendingPathComponent("output.log").path
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guard
            Kit.eventually(
                10,
                {
                    if let fd = Kit.connect(port, timeout: 1) {
                        close(fd)
                        return true
                    }
                    return false
                })
        else {
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            stop()
            throw PeerError(what: "\(executable) did not listen on \(port): \(output)")
        }
    }

    struct PeerError: Error, CustomStringConvertible {
        var what: String
        var description: String { what }
    }

    /// SIGTERM, then SIGKILL after 2 s: a child spawned from a test thread inherits that
    /// thread's blocked signals, and nginx without a master process never unblocks SIGTERM.
    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            if !Kit.eventually(2, { !process.isRunning }) { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: directory)
    }

    /// nginx answering every request with the client address it read from the PROXY header.
    static func nginxProxyProtocolEcho(port: UInt16) throws -> PeerProcess {
        let conf = """
            daemon off;
            master_process off;
            worker_processes 1;
            pid {dir}/nginx.pid;
            error_log {dir}/error.log warn;
            events { worker_connections 256; }
            http {
                access_log off;
                client_body_temp_path {dir};
                proxy_temp_path {dir};
                fastcgi_temp_path {dir};
                uwsgi_temp_path {dir};
                scgi_temp_path {dir};
                server {
                    listen 127.0.0.1:\(port) proxy_protocol;
                    location / { return 200 "client=$proxy_protocol_addr:$proxy_protocol_port\\n"; }
                }
            }
            """
        return try PeerProcess(
            "/usr/sbin/nginx", ["-p", "{dir}", "-c", "{dir}/nginx.conf"], files: ["nginx.conf": conf], waitFor: port)
    }

    /// HAProxy in tcp mode on `port`, sending PROXY v2 to `to`.
    static func haproxySendProxyV2(port: UInt16, to: UInt16) throws -> PeerProcess {
        let conf = """
            global
                maxconn 256
            defaults
                mode tcp
                timeout connect 5s
                timeout client 30s
                timeout server 30s
            frontend fe
                bind 127.0.0.1:\(port)
                default_backend be
            backend be
                server mesh 127.0.0.1:\(to) send-proxy-v2
            """
        return try PeerProcess(
            "/usr/sbin/haproxy", ["-db", "-f", "{dir}/haproxy.cfg"], files: ["haproxy.cfg": conf], waitFor: port)
    }
}

/// One HTTP/1.0 GET on a fresh connection; the response body.
func httpGet(_ port: UInt16) -> (body: String, localPort: UInt16)? {
    guard let fd = Kit.connect(port) else { return nil }
    defer { close(fd) }
    var ss = sockaddr_in()
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &ss) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    Kit.send(fd, "GET / HTTP/1.0\r\nHost: test\r\n\r\n")
    let response = Kit.text(Kit.readAll(fd).bytes)
    guard let split = response.range(of: "\r\n\r\n") else { return nil }
    return (String(response[split.upperBound...]), UInt16(bigEndian: ss.sin_port))
}
