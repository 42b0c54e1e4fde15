import Testing

@testable import ShoalStorage

@Suite struct ShoalStorageModuleTests {
    @Test func moduleLinks() {}
}
