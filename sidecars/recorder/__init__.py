"""The recorder sidecar: rings into journal files (DESIGN.md §7)."""
