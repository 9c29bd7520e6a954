"""Venue adapters behind one interface: the simulated venue now, Binance next."""
