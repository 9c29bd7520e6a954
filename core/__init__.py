"""TTQuant core: the hot path (rings, records; market data, gateway and venues to come)."""
