"""What the gateway needs of a venue (DESIGN.md §5): one interface, one implementation per venue.

The gateway's loop calls `send` for every order instruction that passed its checks and was
journaled, and `poll` for what the venue said since; neither blocks. The rest is for start-up
reconciliation and tools, and may take a round trip to the venue.
"""
from __future__ import annotations

import abc
import dataclasses

__all__ = ["VenueAdapter", "VenueOrder", "VenueFill", "VenueError"]


class VenueError(RuntimeError):
    """The venue could not be asked (down, refused, timed out)."""


@dataclasses.dataclass(frozen=True)
class VenueOrder:
    """An order as the venue has it."""
    strategy_id: int
    client_order_id: int
    venue_order_id: int
    instrument_id: int
    side: int
    price: int
    qty: int
    cum_qty: int
    status: int                     # OrderStatus


@dataclasses.dataclass(frozen=True)
class VenueFill:
    """One fill as the venue has it; trade_id is the venue's and unique."""
    trade_id: int
    strategy_id: int
    client_order_id: int
    instrument_id: int
    side: int
    price: int
    qty: int
    fee: int                        # quote asset, account precision
    liquidity: int
    ts_ns: int


class VenueAdapter(abc.ABC):
    name = "venue"

    @abc.abstractmethod
    def send(self, order) -> bool:
        """Hand an order instruction (a records.Order: new, cancel, amend, cancel-all) to the
        venue; False when it cannot be taken now (the gateway rejects it, 6002)."""

    @abc.abstractmethod
    def poll(self) -> list:
        """The venue's reports since the last call, as oms.VenueReport; never blocks."""

    @abc.abstractmethod
    def open_orders(self) -> list[VenueOrder]:
        """Every order open on the venue (for reconciliation)."""

    @abc.abstractmethod
    def fills_since(self, ts_ns: int) -> list[VenueFill]:
        """Every fill at or after ts_ns (for reconciliation)."""

    @abc.abstractmethod
    def order_status(self, strategy_id: int, client_order_id: int) -> VenueOrder | None:
        """One order as the venue has it, or None when the venue never saw it."""

    @abc.abstractmethod
    def balances(self) -> dict[str, int]:
        """Asset -> amount at account precision, as of the fills the last fills_since returned
        (reconciliation sets the gateway's shadow balances from both); {} when it keeps none."""

    def reachable(self) -> bool:
        """True when the venue answers (the gateway waits for it before reconciling)."""
        return True

    def close(self):  # noqa: B027 - an optional hook: an adapter that holds nothing need not define it
        """Release what the adapter holds (connections, threads); nothing by default."""
