import Testing

@testable import ShoalMesh

@Suite struct ShoalMeshModuleTests {
    @Test func moduleLinks() {}
}
