// PROXY protocol towards tasks and from load balancers, checked against our own decoder and
// against the real peers: nginx (`listen … proxy_protocol`) behind the mesh and HAProxy
// (`send-proxy-v2`) in front of it.

import Foundation
import Testing

@testable import ShoalMesh
@testable import ShoalSystem
@testable import ShoalWire

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.serialized) struct MeshProxyProtocolTests {
    func localPort(_ fd: CInt) -> UInt16 {
        Socket.localAddress(fd)?.port ?? 0
    }

    @Test func sendsV2HeaderWithTheClientAddress() throws {
        let backend = try Backend(name: "P", behaviour: .capture(28))
        defer { backend.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [backend.port], options: "proxyProtocol: v2"))
        defer { mesh.shutdown(drainMs: 0) }
        let fd = try #require(Kit.connect(port))
        defer { close(fd) }
        #expect(Kit.read(fd, count: 2) == Array("P\n".utf8))
        let header = try #require(backend.firstBytes.withLock { $0.first })
        let parsed = header.withUnsafeBytes { ProxyProtocol.parse($0) }
        #expect(
            parsed
                == .header(
                    length: 28, version: 2,
                    addresses: .ipv4(
                        source: 0x7F00_0001, destination: 0x7F00_0001, sourcePort: localPort(fd), destinationPort: port)
                ))
    }

    @Test func acceptsAHeaderFromALoadBalancerAndPassesTheClientOn() throws {
        let backend = try Backend(name: "Q", behaviour: .capture(28))
        defer { backend.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(
            meshYAML(port: port, endpoints: [backend.port], options: "acceptProxy: true\nproxyProtocol: v2"))
        defer { mesh.shutdown(drainMs: 0) }
        let fd = try #require(Kit.connect(port))
        defer { close(fd) }
        // Header and first payload in one segment: the payload must not be eaten with the header.
        Kit.send(fd, "PROXY TCP4 198.18.5.5 198.18.0.1 5555 443\r\nhello\n")
        #expect(Kit.text(Kit.read(fd, count: 8)) == "Q\nhello\n")
        let header = try #require(backend.firstBytes.withLock { $0.first })
        #expect(
            header.withUnsafeBytes { ProxyProtocol.parse($0) }
                == .header(
                    length: 28, version: 2,
                    addresses: .ipv4(
                        source: 0xC612_0505, destination: 0xC612_0001, sourcePort: 5555, destinationPort: 443)))
        // A malformed header closes that connection only, counted.
        let bad = try #require(Kit.connect(port))
        defer { close(bad) }
        Kit.send(bad, "GET / HTTP/1.1\r\n\r\n")
        let (b, eof) = Kit.readAll(bad)
        #expect(b.isEmpty && !eof)
        #expect(Kit.counter(mesh, port, .badProxyHeader) == 1)
        Kit.send(fd, "still\n")
        #expect(Kit.text(Kit.read(fd, count: 6)) == "still\n")
    }

    @Test(.enabled(if: PeerProcess.installed("/usr/sbin/nginx"), "needs nginx"))
    func nginxBehindTheMeshSeesTheClientAddress() throws {
        let nginxPort = Kit.freePort()
        let nginx = try PeerProcess.nginxProxyProtocolEcho(port: nginxPort)
        defer { nginx.stop() }
        for mode in ["v1", "v2"] {
            let port = Kit.freePort()
            let mesh = try Kit.mesh(meshYAML(port: port, endpoints: [nginxPort], options: "proxyProtocol: \(mode)"))
            defer { mesh.shutdown(drainMs: 0) }
            let (body, clientPort) = try #require(httpGet(port))
            #expect(body == "client=127.0.0.1:\(clientPort)\n", "\(mode)")
        }
    }

    @Test(
        .enabled(
            if: PeerProcess.installed("/usr/sbin/nginx") && PeerProcess.installed("/usr/sbin/haproxy"),
            "needs nginx and haproxy"))
    func haproxyInFrontAndNginxBehindCarryTheOriginalClient() throws {
        let nginxPort = Kit.freePort()
        let nginx = try PeerProcess.nginxProxyProtocolEcho(port: nginxPort)
        defer { nginx.stop() }
        let port = Kit.freePort()
        let mesh = try Kit.mesh(
            meshYAML(port: port, endpoints: [nginxPort], options: "acceptProxy: true\nproxyProtocol: v1"))
        defer { mesh.shutdown(drainMs: 0) }
        let haproxyPort = Kit.freePort()
        let haproxy = try PeerProcess.haproxySendProxyV2(port: haproxyPort, to: port)
        defer { haproxy.stop() }
        let (body, clientPort) = try #require(httpGet(haproxyPort))
        // The client's port is the one it used towards HAProxy, two hops before nginx.
        #expect(body == "client=127.0.0.1:\(clientPort)\n")
        #expect(Kit.counter(mesh, port, .badProxyHeader) == 0)
    }
}
