import Testing

@testable import ShoalWire

@Suite struct VXLANTests {
    /// RFC 7348 §5: flags 0x08 (I), 24-bit VNI in bytes 4-6, reserved bytes zero.
    @Test func rfc7348HeaderLayout() {
        var packet = [UInt8](repeating: 0xEE, count: VXLAN.headerBytes + VXLAN.minInnerFrameBytes)
        packet.withUnsafeMutableBytes { VXLAN.write(vni: 0xABCDEF, into: $0, at: 0) }
        #expect(Array(packet.prefix(8)) == [0x08, 0, 0, 0, 0xAB, 0xCD, 0xEF, 0])
        #expect(packet.withUnsafeBytes { VXLAN.parse($0) } == 0xABCDEF)
    }

    @Test func rejectsShortPacketsAndClearIFlag() {
        var packet = [UInt8](repeating: 0, count: VXLAN.headerBytes + VXLAN.minInnerFrameBytes)
        packet.withUnsafeMutableBytes { VXLAN.write(vni: 7, into: $0, at: 0) }
        #expect(Array(packet.dropLast()).withUnsafeBytes { VXLAN.parse($0) } == nil)
        packet[0] = 0
        #expect(packet.withUnsafeBytes { VXLAN.parse($0) } == nil)
    }
}
