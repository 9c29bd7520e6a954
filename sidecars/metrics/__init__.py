"""`ttquant metrics`: Prometheus text over every ring and telemetry segment on the host."""
