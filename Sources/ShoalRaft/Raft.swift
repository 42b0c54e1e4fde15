// Raft core: see ARCHITECTURE.md §Raft.
package enum RaftModule {}
