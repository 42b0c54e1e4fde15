// Overlay data plane: see ARCHITECTURE.md §Overlay.
package enum OverlayModule {}
