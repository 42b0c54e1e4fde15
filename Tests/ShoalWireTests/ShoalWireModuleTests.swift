import Testing

@testable import ShoalWire

@Suite struct ShoalWireModuleTests {
    @Test func moduleLinks() {}
}
