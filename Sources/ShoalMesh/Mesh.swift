// Routing mesh: see ARCHITECTURE.md §Mesh.
package enum MeshModule {}
