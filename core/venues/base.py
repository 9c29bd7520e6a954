"""What the gateway needs of a venue (DESIGN.md §5): one interface, one implementation per venue.

The gateway's loop calls `send` for every order instruction that passed its checks and was
journaled, and `poll` for what the venue said since; neither blocks. The rest is for start-up
reconciliation and tools, and may take a round trip to the venue.
"""
from __future__ import annotations

import abc
import dataclasses

from ttquant.core.records import Liquidity, OrderStatus

__all__ = ["VenueAdapter", "VenueOrder", "VenueFill", "VenueReport", "VenueError"]


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


@dataclasses.dataclass(frozen=True)
class VenueReport:
    """What a venue adapter says of one order: a status, and for a fill its quantity and price."""
    strategy_id: int
    client_order_id: int
    status: OrderStatus
    venue_order_id: int = 0
    last_price: int = 0
    last_qty: int = 0
    cum_qty: int = -1               # the venue's cumulative filled quantity; -1: not given
    fee: int = 0                    # account precision, quote asset
    liquidity: int = Liquidity.NONE
    reject_code: int = 0            # on a status other than REJECTED: an amend of this order the venue refused
    ts_exchange: int = 0
    trade_id: int = 0               # the venue's id of a fill (0: none), so a fill is counted once
    price: int = 0                  # the order's price and quantity as the venue now has them
    qty: int = 0                    # (0: not said); an ack with new ones confirms an amend

    @classmethod
    def from_exec_report(cls, r) -> VenueReport:
        """An ExecReport record (from a venue's ring, or the gateway's own journal)."""
        return cls(strategy_id=r.strategy_id, client_order_id=r.client_order_id, status=OrderStatus(r.status),
                   venue_order_id=r.venue_order_id, last_price=r.last_price, last_qty=r.last_qty,
                   cum_qty=r.cum_qty, fee=r.fee, liquidity=r.liquidity, reject_code=r.reject_code,
                   ts_exchange=r.ts_exchange, trade_id=r.trade_id, price=r.price, qty=r.qty)


class VenueAdapter(abc.ABC):
    name = "venue"
    # does its venue I/O on threads of its own: the gateway's loop must not spin holding the GIL
    threaded = False

    @classmethod
    def open(cls, cfg, runner) -> VenueAdapter:
        """The adapter for a gateway's config (its [adapter] table and venue), connected; waits
        for the venue with runner.wait_for, saying what it waits for."""
        return cls()

    @abc.abstractmethod
    def send(self, order) -> bool:
        """Hand an order instruction (a records.Order: new, cancel, amend, cancel-all) to the
        venue; False when it cannot be taken now (the gateway rejects it, 6002)."""

    @abc.abstractmethod
    def poll(self) -> list:
        """The venue's reports since the last call, as VenueReports; never blocks."""

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

    def settle(self) -> bool:
        """Before reconciliation: wait until the venue has taken every request already sent, so
        that an order it does not know was never sent; True when it has (nothing to wait for by
        default)."""
        return True

    @property
    def halted(self) -> str | None:
        """Why the venue stopped this account's order entry until an operator acts (Binance's 418), or None."""
        return None

    def order_rate(self) -> tuple[float, float] | None:
        """(orders per second, burst) the venue's own limits allow this account, for the gateway's token bucket
        (it takes the lower of this and the risk file's); None when the venue says nothing of it."""
        return None

    def reachable(self) -> bool:
        """True when the venue answers (the gateway waits for it before reconciling)."""
        return True

    def close(self):  # noqa: B027 - an optional hook: an adapter that holds nothing need not define it
        """Release what the adapter holds (connections, threads); nothing by default."""
