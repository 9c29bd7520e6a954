"""The order state machine: every order the gateway has taken, and what the venue says of it.

    NEW ──► ACCEPTED ──► PARTIALLY_FILLED ──► FILLED
     │  │        │  │           │  │
     │  │        │  └──► CANCELED / EXPIRED ◄┘
     │  └──► FILLED, PARTIALLY_FILLED, CANCELED, EXPIRED (a report that overtook the ack)
     └──► REJECTED

Transitions are checked against one table (LEGAL). Venue reports may arrive out of order (a
REST reply and a stream event race; a fill is reported after the cancel that followed it):
fills are applied whenever they raise the cumulative quantity, in any state but REJECTED, and
a report that would move an order backwards (an ack after a fill) is stale and ignored. An
illegal transition is logged and counted, never raised. Client order ids are unique per
strategy and issued in increasing order: one not above the last seen is a duplicate (4001)
and is never sent.
"""
from __future__ import annotations

import dataclasses
import logging

from ttquant.core.gateway.order_intake import ClientIds
from ttquant.core.records import ExecReport, OrderAction, OrderStatus, RejectCode
from ttquant.core.venues.base import VenueReport

__all__ = ["OrderBookKeeper", "OrderState", "VenueReport", "LEGAL", "TERMINAL", "transition_allowed"]

log = logging.getLogger("ttquant.gateway.oms")
S = OrderStatus
TERMINAL = frozenset({S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED})
# from -> the states a venue report may move an order to
LEGAL = {
    S.NEW: frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.REJECTED, S.EXPIRED}),
    S.ACCEPTED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.CANCELED, S.EXPIRED}),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
}
ORDER_STATES = tuple(LEGAL)     # OrderStatus's POSITION and SYNCED answer SYNC; no order is ever in them
# how far along an order is: a report for an earlier stage than the order's is stale
_STAGE = {S.NEW: 0, S.ACCEPTED: 1, S.PARTIALLY_FILLED: 2, S.FILLED: 3, S.CANCELED: 3, S.REJECTED: 3, S.EXPIRED: 3}


def transition_allowed(old: OrderStatus, new: OrderStatus) -> bool:
    return new in LEGAL[old]


@dataclasses.dataclass
class OrderState:
    strategy_id: int
    client_order_id: int
    instrument_id: int
    side: int
    order_type: int
    price: int
    qty: int
    reserve_price: int              # what the risk engine holds funds at
    ts_created: int
    reduce_only: int = 0
    status: OrderStatus = S.NEW
    venue_order_id: int = 0
    cum_qty: int = 0
    fees: int = 0
    cancel_requested: bool = False
    amend_requested: bool = False

    @property
    def key(self):
        return (self.strategy_id, self.client_order_id)

    @property
    def leaves_qty(self) -> int:
        return 0 if self.status in TERMINAL else self.qty - self.cum_qty

    @property
    def is_open(self) -> bool:
        return self.status not in TERMINAL


class OrderBookKeeper:
    """Orders by (strategy, client order id); venue reports in, exec reports out.

    risk: the RiskEngine whose positions, open orders and reservations follow the orders."""

    def __init__(self, risk=None):
        self.risk = risk
        self.orders: dict[tuple[int, int], OrderState] = {}
        self.ids = ClientIds()                      # the highest client order id per strategy (C)
        self.fill_ids: set = set()                  # (strategy, client id, trade id) applied
        self.counts = {"illegal_transitions": 0, "stale_reports": 0, "duplicate_fills": 0,
                       "unknown_reports": 0, "overfills": 0, "amends_refused": 0}

    # -- orders in ------------------------------------------------------------------------------
    def take_id(self, strategy_id: int, client_order_id: int) -> int:
        """Claim a client order id; RejectCode.DUPLICATE_ORDER_ID when it is not new."""
        return self.ids.claim(strategy_id, client_order_id)

    @property
    def duplicate_ids(self) -> int:
        return self.ids.duplicates

    def add(self, order, reserve_price: int) -> OrderState:
        """A new order the gateway is sending (its id taken, risk passed and reserved)."""
        return self.restore(OrderState(order.strategy_id, order.client_order_id, order.instrument_id, order.side,
                                       order.order_type, order.price, order.qty, reserve_price,
                                       order.ts_created, order.reduce_only))

    def restore(self, st: OrderState) -> OrderState:
        """An order as the journal knows it (on restart)."""
        self.orders[st.key] = st
        self.ids.note(st.strategy_id, st.client_order_id)
        return st

    def get(self, strategy_id: int, client_order_id: int) -> OrderState | None:
        return self.orders.get((strategy_id, client_order_id))

    def open_orders(self, strategy_id: int | None = None, instrument_id: int = 0):
        return [o for o in self.orders.values() if o.is_open
                and (strategy_id is None or o.strategy_id == strategy_id)
                and (not instrument_id or o.instrument_id == instrument_id)]

    def cancel_target(self, order) -> tuple[int, list[OrderState]]:
        """(reject code, the open orders a cancel / cancel-all acts on)."""
        if order.action == OrderAction.CANCEL_ALL:
            return 0, self.open_orders(order.strategy_id, order.instrument_id)
        st = self.get(order.strategy_id, order.target_order_id)
        if order.action == OrderAction.AMEND and st is not None and st.is_open and \
                (order.instrument_id != st.instrument_id or order.side != st.side or order.qty <= st.cum_qty):
            return RejectCode.BAD_FIELD, []     # an amend keeps instrument and side, and stays above what filled
        st = self.get(order.strategy_id, order.target_order_id)
        if st is None or not st.is_open:
            return RejectCode.UNKNOWN_ORDER, []
        return 0, [st]

    # -- venue reports in -------------------------------------------------------------------------
    def apply(self, rep: VenueReport) -> ExecReport | None:
        """Apply one venue report; the exec report to publish, or None when it changed nothing."""
        st = self.orders.get((rep.strategy_id, rep.client_order_id))
        if st is None:
            self.counts["unknown_reports"] += 1
            log.warning("report for an unknown order %s/%s: %s", rep.strategy_id, rep.client_order_id, rep)
            return None
        if rep.status not in _STAGE:                    # POSITION, SYNCED: not a venue's word on an order
            self.counts["illegal_transitions"] += 1
            log.warning("report %s/%s with status %s is not about an order: ignored", rep.strategy_id,
                        rep.client_order_id, rep.status)
            return None
        if rep.venue_order_id:
            st.venue_order_id = rep.venue_order_id
        old = st.status
        if rep.reject_code and rep.status != S.REJECTED and not rep.last_qty and st.amend_requested:
            # the venue refused an amend: the order stays as it was; the strategy hears why, once
            st.amend_requested = False
            self.counts["amends_refused"] += 1
            return self.report(st, rep, 0)
        if rep.status == S.ACCEPTED and rep.qty and old in (S.ACCEPTED, S.PARTIALLY_FILLED) \
                and (rep.price, rep.qty) != (st.price, st.qty) and not rep.last_qty:
            return self._amended(st, rep)
        filled = 0
        if rep.last_qty > 0:
            filled = self._fill(st, rep)
            if filled < 0:
                return None
        new = rep.status
        if filled:
            # a fill decides the status by the quantity; a terminal state it arrived after stays
            new = S.FILLED if st.cum_qty == st.qty else (old if old in (S.CANCELED, S.EXPIRED) else S.PARTIALLY_FILLED)
        elif new == old:
            self.counts["stale_reports"] += 1           # said before
            return None
        elif new not in LEGAL[old]:
            if (old not in TERMINAL and _STAGE[new] < _STAGE[old]) or \
                    (old in TERMINAL and new not in TERMINAL):
                self.counts["stale_reports"] += 1       # overtaken: an ack after a fill, after a cancel
            else:
                self.counts["illegal_transitions"] += 1
                log.warning("illegal transition %s -> %s for %s/%s (ignored)", old.name, new.name,
                            st.strategy_id, st.client_order_id)
            return None
        st.status = new
        if new in TERMINAL and old not in TERMINAL and self.risk is not None:
            if new != S.FILLED:             # a completing fill released its own part
                self.risk.release(st.strategy_id, st.instrument_id, st.side, st.qty - st.cum_qty,
                                  st.reserve_price)
        return self.report(st, rep, filled)

    def _amended(self, st: OrderState, rep: VenueReport) -> ExecReport:
        """The venue took an amend: the order rests at its new price and quantity, and the
        risk engine holds what its new leaves need instead of the old."""
        if self.risk is not None:
            self.risk.amend(st.strategy_id, st.instrument_id, st.side, st.qty - st.cum_qty, st.reserve_price,
                            rep.qty - st.cum_qty, rep.price or st.reserve_price)
        st.price, st.qty = rep.price or st.price, rep.qty
        if rep.price:
            st.reserve_price = rep.price
        st.amend_requested = False
        return self.report(st, rep, 0)

    def _fill(self, st: OrderState, rep: VenueReport) -> int:
        """Apply a fill; the quantity applied (0: none new), or -1 when it must be ignored."""
        if st.status == S.REJECTED:
            self.counts["illegal_transitions"] += 1
            log.warning("fill for rejected order %s/%s (ignored)", st.strategy_id, st.client_order_id)
            return -1
        if rep.trade_id:
            key = (st.strategy_id, st.client_order_id, rep.trade_id)
            if key in self.fill_ids:
                self.counts["duplicate_fills"] += 1
                return -1
            self.fill_ids.add(key)
        elif rep.cum_qty >= 0 and rep.cum_qty <= st.cum_qty:
            self.counts["duplicate_fills"] += 1     # a report of fills already applied
            return -1
        qty = rep.last_qty
        if st.cum_qty + qty > st.qty:
            self.counts["overfills"] += 1
            log.error("fill beyond the order's quantity for %s/%s: %d + %d > %d", st.strategy_id,
                      st.client_order_id, st.cum_qty, qty, st.qty)
            qty = st.qty - st.cum_qty
            if qty <= 0:
                return -1
        was_terminal = st.status in TERMINAL
        st.cum_qty += qty
        st.fees += rep.fee
        if self.risk is not None:
            done = st.cum_qty == st.qty
            # an order that had ended had its reservation released then: only position and funds move
            self.risk.on_fill(st.strategy_id, st.instrument_id, st.side, rep.last_price, qty,
                              st.reserve_price, rep.fee, done and not was_terminal, not was_terminal)
        return qty

    def report(self, st: OrderState, rep: VenueReport | None = None, filled: int = 0) -> ExecReport:
        return ExecReport(
            ts_exchange=rep.ts_exchange if rep else 0, client_order_id=st.client_order_id,
            venue_order_id=st.venue_order_id, strategy_id=st.strategy_id, instrument_id=st.instrument_id,
            price=st.price, qty=st.qty, last_price=rep.last_price if rep and filled else 0,
            last_qty=filled, cum_qty=st.cum_qty, leaves_qty=st.leaves_qty, fee=rep.fee if rep and filled else 0,
            reject_code=rep.reject_code if rep else 0, status=st.status, side=st.side,
            liquidity=rep.liquidity if rep and filled else 0, order_type=st.order_type,
            trade_id=rep.trade_id if rep and filled else 0)
