import Testing

@testable import ShoalOverlay

@Suite struct ShoalOverlayModuleTests {
    @Test func moduleLinks() {}
}
