"""Self-describing counters, gauges and latency histograms each process publishes in its own
shared-memory segment; `ttquant rings inspect` and `ttquant metrics` read them without importing
the writer."""
