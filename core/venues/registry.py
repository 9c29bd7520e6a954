"""Venue adapters by name: what a gateway's `[adapter] kind` may say, and the class behind it.

A venue's order entry lives in its own folder (`core/venues/<venue>/`); generic code names an
adapter only through this table, so adding a venue is a folder and a line here.
"""
from __future__ import annotations

import importlib

__all__ = ["ADAPTERS", "adapter_class"]

# name -> module:Class, imported only when chosen (a venue's dependencies stay its own)
ADAPTERS = {
    "sim": "ttquant.core.venues.sim.adapter:SimVenueAdapter",     # the simulated venue (core/sim)
    "dry": "ttquant.core.venues.dry:DryRunAdapter",               # takes every order, fills none
    "binance": "ttquant.core.venues.binance.adapter:BinanceAdapter",  # signed REST (core/venues/binance)
}


def adapter_class(kind: str):
    """The VenueAdapter subclass registered as `kind`; KeyError naming the known ones."""
    try:
        module, _, name = ADAPTERS[kind].partition(":")
    except KeyError:
        raise KeyError(f"no venue adapter {kind!r} (known: {', '.join(ADAPTERS)})") from None
    return getattr(importlib.import_module(module), name)
