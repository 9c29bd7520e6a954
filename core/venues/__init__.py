"""Venue adapters behind one interface (base.py: VenueAdapter, and VenueReport, what an adapter
says of an order), chosen by name from registry.py; one folder per venue's order entry
(`sim/`: the gateway's side of the simulated venue; Binance next)."""
