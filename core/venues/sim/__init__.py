"""The gateway's side of the simulated venue (core/sim): its request and report rings, its
record over HTTP for reconciliation."""
