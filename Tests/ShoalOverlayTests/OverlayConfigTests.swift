import ShoalConfig
import ShoalSystem
import Testing

@testable import ShoalOverlay

private let goodYAML = """
    node: n1
    underlay: { address: 198.18.0.1, mtu: 1500 }
    networks:
      - name: blue
        vni: 100
        subnet: 198.19.0.0/24
        fdb:
          - { mac: "02:00:c6:13:00:01", ip: 198.19.0.1, node: n1, underlay: 198.18.0.1 }
          - { mac: "02:00:c6:13:00:02", ip: 198.19.0.2, node: n2, underlay: 198.18.0.2 }
      - name: red
        vni: 200
        subnet: 198.19.1.0/24
        encrypted: true
        fdb:
          - { mac: "02:00:c6:13:01:03", ip: 198.19.1.3, node: n3, underlay: 198.18.0.3 }
    keyRing:
      cipher: aes-256-gcm
      epochs: [ { id: 7, key: "\(String(repeating: "ab", count: 32))", state: tx } ]
    """

private func plan(_ text: String) throws(ConfigError) -> OverlayPlan {
    try ConfigFile.decode(OverlayConfig.self, from: text).validate()
}

/// Expects `text` to be refused with an error naming `field`.
private func expectRefused(_ text: String, field: String, sourceLocation: SourceLocation = #_sourceLocation) {
    do {
        _ = try plan(text)
        Issue.record("accepted a config with a bad \(field)", sourceLocation: sourceLocation)
    } catch {
        #expect(error.field == field, "\(error)", sourceLocation: sourceLocation)
    }
}

@Suite struct OverlayConfigTests {
    @Test func yamlAndJSONDecodeToTheSamePlan() throws {
        let p = try plan(goodYAML)
        #expect(p.node == "n1")
        #expect(p.peers.map(\.node) == ["n2", "n3"])
        #expect(p.networks.map(\.vni) == [100, 200])
        #expect(p.keyRing?.cipher == .aes256)
        let json = """
            {"node":"n2","underlay":{"address":"198.18.0.2","vxlanPort":8472},
             "networks":[{"vni":5,"subnet":"198.19.2.0/24","fdb":[]}]}
            """
        let q = try plan(json)
        #expect(q.vxlanPort == 8472)
        #expect(q.networks[0].name == "vni5")
    }

    /// Plaintext: underlay MTU − (outer IPv4 20 + UDP 8 + VXLAN 8 + Ethernet 14) = 1450, as the
    /// kernel's VXLAN device computes. Encrypted adds ESP's 24 + 21 bytes.
    @Test func mtuIsUnderlayMinusComputedOverhead() throws {
        let p = try plan(goodYAML)
        #expect(p.networks[0].mtu == 1450)
        #expect(p.networks[1].mtu == 1500 - 50 - ESPEngine.headroom - ESPEngine.tailroom)
        #expect(p.networks[1].mtu == 1405)
    }

    /// An IPv6 underlay: the outer header is 40 bytes instead of 20, so 1430 plaintext (what the
    /// kernel's VXLAN device uses over IPv6) and 1385 encrypted on a 1500-byte underlay.
    @Test func ipv6UnderlayMTUCountsTheLargerHeader() throws {
        var v6 = goodYAML
        for n in 1...3 { v6 = v6.replacingOccurrences(of: "198.18.0.\(n)", with: "\"2001:2::\(n)\"") }
        let p = try plan(v6)
        #expect(p.underlayAddress == IPAddress("2001:2::1"))
        #expect(p.peers.map(\.underlay) == [IPAddress("2001:2::2"), IPAddress("2001:2::3")])
        #expect(p.networks[0].mtu == 1500 - 40 - 8 - 8 - 14)
        #expect(p.networks[0].mtu == 1430)
        #expect(p.networks[1].mtu == 1385)
    }

    /// Dual-stack networks: `subnet6` and per-endpoint `ip6`, checked like the IPv4 fields.
    @Test func ipv6OverlayAddressesAreChecked() throws {
        let dual = goodYAML.replacingOccurrences(
            of: "subnet: 198.19.0.0/24", with: "subnet: 198.19.0.0/24\n    subnet6: \"2001:2:0:19::/64\""
        ).replacingOccurrences(of: "ip: 198.19.0.2,", with: "ip: 198.19.0.2, ip6: \"2001:2:0:19::2\",")
        let p = try plan(dual)
        #expect(p.networks[0].subnet6?.description == "2001:2:0:19::/64")
        #expect(p.networks[0].fdb[1].ip6 == IPAddress("2001:2:0:19::2"))
        #expect(p.networks[0].fdb[0].ip6 == nil)
        let refused: [(base: String, from: String, to: String, field: String)] = [
            (dual, "2001:2:0:19::2", "2001:2:0:20::2", "networks[0].fdb[1].ip6"),
            (dual, "2001:2:0:19::/64", "198.19.0.0/24", "networks[0].subnet6"),
            (goodYAML, "ip: 198.19.0.2,", "ip: 198.19.0.2, ip6: \"2001:2:0:19::2\",", "networks[0].fdb[1].ip6"),
            // One underlay family per overlay.
            (goodYAML, "underlay: 198.18.0.2", "underlay: \"2001:2::2\"", "networks[0].fdb[1].underlay"),
        ]
        for r in refused { expectRefused(r.base.replacingOccurrences(of: r.from, with: r.to), field: r.field) }
    }

    /// `queues`: VTEP threads, 1 by default, at most one per sender queue a receiver accepts.
    @Test func queuesAreBounded() throws {
        #expect(try plan(goodYAML).queues == 1)
        #expect(try plan("queues: 4\n" + goodYAML).queues == 4)
        for bad in ["0", "17", "two"] { expectRefused("queues: \(bad)\n" + goodYAML, field: "queues") }
    }

    @Test func malformedConfigsNameTheField() {
        expectRefused(goodYAML.replacingOccurrences(of: "vni: 100", with: "vni: 16777216"), field: "networks[0].vni")
        expectRefused(goodYAML.replacingOccurrences(of: "vni: 200", with: "vni: 100"), field: "networks[1].vni")
        expectRefused(
            goodYAML.replacingOccurrences(of: "02:00:c6:13:00:02", with: "02:00:c6:13:00"),
            field: "networks[0].fdb[1].mac")
        expectRefused(
            goodYAML.replacingOccurrences(of: "02:00:c6:13:00:02", with: "01:00:5e:00:00:01"),
            field: "networks[0].fdb[1].mac")
        expectRefused(
            goodYAML.replacingOccurrences(of: "ip: 198.19.0.2", with: "ip: 198.19.9.2"), field: "networks[0].fdb[1].ip")
        expectRefused(
            goodYAML.replacingOccurrences(of: "underlay: 198.18.0.3", with: "underlay: 198.18.0.2"),
            field: "networks[1].fdb[0].underlay")
        expectRefused(
            goodYAML.replacingOccurrences(of: "198.19.1.0/24", with: "198.19.1.0/33"), field: "networks[1].subnet")
        expectRefused(
            goodYAML.replacingOccurrences(of: "address: 198.18.0.1,", with: "address: nowhere,"),
            field: "underlay.address")
        expectRefused(goodYAML.replacingOccurrences(of: "mtu: 1500", with: "mtu: 100"), field: "underlay.mtu")
        expectRefused(
            goodYAML.replacingOccurrences(of: "subnet: 198.19.0.0/24", with: "subnet: 198.19.0.0/24\n    mtu: 1451"),
            field: "networks[0].mtu")
        let noRing = String(goodYAML[..<goodYAML.range(of: "keyRing:")!.lowerBound])
        expectRefused(noRing, field: "keyRing")
        expectRefused(
            goodYAML.replacingOccurrences(of: "aes-256-gcm", with: "aes-128-gcm"), field: "keyRing.epochs[0].key")
        expectRefused(goodYAML.replacingOccurrences(of: "node: n1\n", with: ""), field: "node")
        expectRefused(goodYAML.replacingOccurrences(of: "vni: 200", with: "vni: \"two\""), field: "networks[1].vni")
    }
}

@Suite struct KeyRotationTests {
    private let k1 = String(repeating: "01", count: 16)
    private let k2 = String(repeating: "02", count: 16)
    private let k3 = String(repeating: "03", count: 16)

    /// DESIGN.md §3: rx-only → tx → retiring → removed, at most three live, one transmitting.
    @Test func addPromoteRetire() throws {
        var ring = KeyRing(epochs: [KeyEpoch(id: 1, key: k1, state: .tx)])
        ring = try KeyRotation.add(ring, id: 2, key: k2)
        #expect(ring.epochs.map(\.state) == [.tx, .rxOnly])
        ring = try KeyRotation.promote(ring, id: 2)
        #expect(ring.epochs.map(\.state) == [.retiring, .tx])
        #expect(ring.txEpoch?.id == 2)
        ring = try KeyRotation.add(ring, id: 3, key: k3)
        #expect(throws: ConfigError.self) { try KeyRotation.add(ring, id: 4, key: k1) }  // a fourth epoch
        #expect(throws: ConfigError.self) { try KeyRotation.retire(ring, id: 2) }  // the tx epoch
        #expect(throws: ConfigError.self) { try KeyRotation.add(ring, id: 3, key: k3) }  // duplicate
        #expect(throws: ConfigError.self) { try KeyRotation.promote(ring, id: 9) }
        #expect(throws: ConfigError.self) { try KeyRotation.add(KeyRing(epochs: []), id: 1, key: "zz") }
        ring = try KeyRotation.retire(ring, id: 1)
        #expect(ring.epochs.map(\.id) == [2, 3])
    }
}
