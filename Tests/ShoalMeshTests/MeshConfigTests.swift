import Testing

@testable import ShoalConfig
@testable import ShoalMesh
@testable import ShoalSystem

@Suite struct MeshConfigTests {
    func refusal(_ yaml: String) -> String {
        do {
            _ = try MeshConfig.parse(yaml)
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func fillsDefaults() throws {
        let s = try MeshConfig.parse(
            """
            revision: 3
            reactors: 2
            ports:
              - port: 80
                endpoints: [{address: "198.18.0.2:8080"}]
            """)
        #expect(s.revision == 3)
        #expect(s.reactors == 2)
        #expect(s.listen == IPAddress("0.0.0.0"))
        let p = s.ports[0]
        #expect(p.proto == .tcp && p.balancer == .roundRobin && p.proxyProtocol == .none)
        #expect(p.endpoints[0].weight == 1 && p.endpoints[0].healthy)
        #expect(p.keepaliveIdleS == 60 && p.idleTimeoutMs == 3_600_000 && p.retries == 2)
    }

    @Test func acceptsJSON() throws {
        let s = try MeshConfig.parse(
            #"{"revision": 1, "ports": [{"port": 53, "protocol": "udp", "balancer": "maglev", "endpoints": []}]}"#)
        #expect(s.ports[0].proto == .udp && s.ports[0].balancer == .maglev)
    }

    @Test func refusesMalformedTablesNamingTheField() {
        let base = "revision: 1\nports:\n  - port: 80\n"
        #expect(
            refusal(base + "    endpoints: [{address: \"198.18.0.2\"}]").hasPrefix("ports[0].endpoints[0].address:"))
        #expect(
            refusal(base + "    endpoints: [{address: \"198.18.0.2:1\", weight: -1}]").hasPrefix(
                "ports[0].endpoints[0].weight:"))
        #expect(
            refusal(base + "    ballancer: maglev\n    endpoints: []").hasPrefix("ports[0].ballancer: unknown field"))
        #expect(refusal(base + "    balancer: random\n    endpoints: []").hasPrefix("ports[0].balancer"))
        #expect(
            refusal(base + "    endpoints: []\n  - port: 80\n    endpoints: []").hasPrefix(
                "ports[1].port: 80/tcp is published twice"))
        #expect(refusal("revision: 1\nports:\n  - port: 70000\n    endpoints: []").hasPrefix("ports[0].port:"))
        #expect(refusal("revision: 1\nports:\n  - endpoints: []").hasPrefix("ports[0].port: missing"))
        #expect(refusal("ports: []").hasPrefix("revision: missing"))
        #expect(refusal("revision: 1\nlisten: nowhere\nports: []").hasPrefix("listen:"))
        #expect(
            refusal(base + "    endpoints: [{address: \"198.18.0.2:1\"}, {address: \"198.18.0.2:1\"}]")
                .hasPrefix("ports[0].endpoints[1].address: 198.18.0.2:1 is listed twice"))
        #expect(
            refusal(base + "    healthCheck: {intervalMs: 100, timeoutMs: 500}\n    endpoints: []").hasPrefix(
                "ports[0].healthCheck.timeoutMs"))
        #expect(
            refusal("revision: 1\nports:\n  - port: 53\n    protocol: udp\n    proxyProtocol: v2\n    endpoints: []")
                .hasPrefix("ports[0].proxyProtocol"))
        #expect(refusal("revision: [").hasPrefix("cannot parse"))
        // Found by fuzz-meshtable: Yams traps constructing a mapping with a non-string key.
        #expect(refusal("revision: 1\n? [a, b]\n: 3\nports: []").contains("mapping keys must be plain strings"))
    }
}
