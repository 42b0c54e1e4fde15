import Foundation
import Testing

@testable import ShoalSystem
@testable import ShoalTestSupport

@Suite struct SocketAddressTests {
    @Test func parsesAndPrintsV4AndV6() {
        #expect(SocketAddress("198.18.0.1:4789")?.description == "198.18.0.1:4789")
        #expect(SocketAddress("[::1]:80")?.description == "[::1]:80")
        #expect(SocketAddress("198.18.0.1") == nil)
        #expect(SocketAddress("198.18.0.300:1") == nil)
        #expect(SocketAddress("198.18.0.1:70000") == nil)
    }

    @Test func roundTripsThroughSockaddr() {
        for text in ["127.0.0.1:9", "[2001:db8::1]:4500"] {
            let a = SocketAddress(text)!
            var ss = sockaddr_storage()
            _ = a.write(to: &ss)
            #expect(SocketAddress(storage: &ss) == a)
        }
    }
}

@Suite(.enabled(if: NetnsLab.isSupported, "needs root and iproute2"))
struct NetnsLabTests {
    @Test func hostsReachEachOtherAndAreRemoved() throws {
        let name: String
        do {
            let lab = try NetnsLab(tag: "labtest", hosts: 3)
            name = lab.name
            let out = try lab.run(1, ["ping", "-c", "1", "-W", "2", lab.address(3)])
            #expect(out.contains("1 received"))
            lab.close()
        }
        let left = try NetnsLab.shell(["ip", "netns", "list"])
        #expect(!left.contains(name))
    }
}
