import Testing

@testable import ShoalRaft

@Suite struct ShoalRaftModuleTests {
    @Test func moduleLinks() {}
}
