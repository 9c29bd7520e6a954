"""Binance's user data stream events (spot and USDT-M) -> VenueReports, balances and positions, exactly, at
the instrument's precision.

Spot events come on the WebSocket API connection (wsapi.WsApiClient, `{"subscriptionId", "event"}`), in the
shapes of https://developers.binance.com/docs/binance-spot-api-docs/user-data-stream:

    executionReport          one per change of one order: NEW, TRADE (a fill: l, L, n/N, t, m), CANCELED,
                             EXPIRED, REJECTED (r), REPLACED (an amend), TRADE_PREVENTION (STP)
    outboundAccountPosition  free and locked of every asset the change touched
    balanceUpdate            a deposit, withdrawal or transfer (its outboundAccountPosition follows: only counted)

A fill carries the venue's trade id `t`: the same id the order's FULL answer and myTrades give, so the
OMS counts a fill once whichever path brings it first. `X`, the order's status after the event, maps
as responses.order_status does; a state without a trade (NEW, REPLACED, CANCELED with fills before it)
reports `z` as the cumulative quantity, never a fill. Client order ids are ours (`t<strategy>-<cid>`);
a cancel's own id is in `c` and the canceled order's in `C`, so `C` wins when given. Orders of other
programs on the account are counted and left alone.

USDT-M futures events come over a listen key's stream (listen_key.ListenKeyStream), as
https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams gives them:

    ORDER_TRADE_UPDATE       `o` carries the executionReport's fields under the same letters (s, c, S, o, f, q,
                             p, x, X, i, l, z, L, n, N, T, t, m); x AMENDMENT is a modify (PUT /fapi/v1/order),
                             reported with the order's new price and quantity; x CALCULATED (a liquidation) with
                             a quantity is a fill like TRADE
    ACCOUNT_UPDATE           `a.B` wallet balances (wb), `a.P` positions (pa, one-way mode: ps BOTH)
    listenKeyExpired         handled by the stream itself (it re-creates the key), never here

Fees, as responses.py: quote asset as is, base asset valued at the fill's price `L`, rounded up to
ACCOUNT_PRECISION; a third asset (BNB) is reported as 0, counted and logged (reconciliation of balances
corrects the shadow balance).
"""
from __future__ import annotations

import collections
import logging
from collections.abc import Mapping

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import Liquidity, OrderStatus, RejectCode
from ttquant.core.venues.base import VenueReport
from ttquant.core.venues.binance.responses import (
    ForeignOrder,
    ResponseError,
    _amount,
    _field,
    _int,
    _raw,
    fee_to_account,
    order_status,
    parse_client_order_id,
)

__all__ = ["REJECT_REASONS", "UserDataReader", "account_position", "account_update", "event_ids",
           "execution_report"]

log = logging.getLogger("ttquant.venues.binance")

S = OrderStatus
_MS_TO_NS = 1_000_000
# executionReport `r` (user-data-stream.md, "Order Reject Reason") -> what the strategy hears
REJECT_REASONS = {
    "INSUFFICIENT_BALANCES": RejectCode.INSUFFICIENT_FUNDS,
    "STOP_PRICE_WOULD_TRIGGER_IMMEDIATELY": RejectCode.BAD_PRICE,
    "WOULD_MATCH_IMMEDIATELY": RejectCode.BAD_PRICE,       # a LIMIT_MAKER that would take
    "OCO_BAD_PRICES": RejectCode.BAD_PRICE,
}


def event_ids(event: Mapping) -> tuple[int, int] | None:
    """(strategy id, client order id) of the order an executionReport is about, None when not ours."""
    return parse_client_order_id(event.get("C") or event.get("c"))


def execution_report(event: Mapping, inst: Instrument, ids: tuple[int, int] | None = None,
                     counts: collections.Counter | None = None) -> VenueReport:
    """One executionReport as the OMS applies it (module docstring); ForeignOrder when not ours."""
    if ids is None:
        ids = event_ids(event)
        if ids is None:
            raise ForeignOrder(f"client order id {event.get('C') or event.get('c')!r} is not one of ours")
    status = order_status({"status": _field(event, "X")})
    kind = _field(event, "x")
    venue_order_id = _int(event, "i")
    price, qty = _raw(event, "p", inst.price_precision), _raw(event, "q", inst.size_precision)
    cum_qty = _raw(event, "z", inst.size_precision)
    ts = _int(event, "T") * _MS_TO_NS
    if kind == "TRADE" or (kind == "CALCULATED" and _raw(event, "l", inst.size_precision) > 0):
        last_price = _raw(event, "L", inst.price_precision)
        fee = fee_to_account(_field(event, "n"), event.get("N"), inst, event.get("L"))
        if fee is None:
            if counts is not None:
                counts["fee_other_asset"] += 1
            log.warning("trade %s of order %s: a fee of %s %s is not in %s or %s and is reported as 0 "
                        "(reconciliation corrects the balance)", event.get("t"), venue_order_id, event.get("n"),
                        event.get("N"), inst.quote, inst.base)
            fee = 0
        if status not in (S.PARTIALLY_FILLED, S.FILLED):
            status = S.FILLED if qty and cum_qty >= qty else S.PARTIALLY_FILLED
        return VenueReport(*ids, status, venue_order_id=venue_order_id, last_price=last_price,
                           last_qty=_raw(event, "l", inst.size_precision), cum_qty=cum_qty, fee=fee,
                           liquidity=Liquidity.MAKER if event.get("m") is True else Liquidity.TAKER,
                           ts_exchange=ts, trade_id=_int(event, "t"), price=price, qty=qty)
    if status in (S.PARTIALLY_FILLED, S.FILLED):
        status = S.ACCEPTED         # no trade in this event: its fills came (or come) in TRADE events
    reject = REJECT_REASONS.get(event.get("r"), RejectCode.VENUE) if status == S.REJECTED else RejectCode.NONE
    return VenueReport(*ids, status, venue_order_id=venue_order_id, cum_qty=cum_qty, reject_code=int(reject),
                       ts_exchange=ts, price=price, qty=qty)


def account_position(event: Mapping) -> dict[str, int]:
    """Asset -> free + locked at ACCOUNT_PRECISION of an outboundAccountPosition (zeros kept: an asset
    that went to 0 is news)."""
    rows = _field(event, "B")
    if not isinstance(rows, list):
        raise ResponseError("outboundAccountPosition: B is not a list")
    return {_field(b, "a"): _amount(_field(b, "f"), "f") + _amount(_field(b, "l"), "l") for b in rows}


def account_update(event: Mapping, table: InstrumentTable, market_type: MarketType) -> tuple[dict, dict]:
    """(asset -> wallet balance, instrument id -> signed position in raw size units) of an ACCOUNT_UPDATE;
    positions of symbols md does not carry are left out."""
    update = _field(event, "a")
    balances = {_field(b, "a"): _amount(_field(b, "wb"), "wb") for b in update.get("B") or ()}
    positions = {}
    for p in update.get("P") or ():
        inst = table.by_symbol(_field(p, "s"), market_type)
        if inst is not None and p.get("ps", "BOTH") == "BOTH":
            positions[inst.instrument_id] = _raw(p, "pa", inst.size_precision)
    return balances, positions


class UserDataReader:
    """One account's events -> VenueReports of our orders, and the balances as the stream last said them."""

    def __init__(self, table: InstrumentTable, market_type: MarketType = MarketType.SPOT):
        self.table, self.market_type = table, market_type
        self.balances: dict[str, int] = {}
        self.balances_ms = 0                    # `u` of the last outboundAccountPosition (venue ms)
        self.positions: dict[int, int] = {}     # instrument id -> signed position, raw (futures ACCOUNT_UPDATE)
        self.counts = collections.Counter()     # reports, foreign_orders, unknown_symbols, bad_events, ...

    def on_event(self, event: Mapping) -> list[VenueReport]:
        kind = event.get("e") if isinstance(event, Mapping) else None
        try:
            if kind == "executionReport":
                return self._execution_report(event)
            if kind == "ORDER_TRADE_UPDATE":
                return self._execution_report(_field(event, "o"))
            if kind == "ACCOUNT_UPDATE":
                balances, positions = account_update(event, self.table, self.market_type)
                self.balances.update(balances)
                self.positions.update(positions)
                self.balances_ms = max(self.balances_ms, int(event.get("T") or event.get("E") or 0))
                self.counts["account_updates"] += 1
                return []
            if kind == "outboundAccountPosition":
                self.balances.update(account_position(event))
                self.balances_ms = max(self.balances_ms, int(event.get("u") or 0))
                self.counts["account_positions"] += 1
                return []
        except ResponseError as exc:
            self.counts["bad_events"] += 1
            log.warning("user data %s not read: %s", kind, exc)
            return []
        self.counts[f"ignored_{kind}"] += 1     # balanceUpdate, listStatus, externalLockUpdate, MARGIN_CALL, ...
        return []

    def _execution_report(self, event) -> list[VenueReport]:
        inst = self.table.by_symbol(event.get("s"), self.market_type)
        if inst is None:
            self.counts["unknown_symbols"] += 1
            return []
        try:
            rep = execution_report(event, inst, counts=self.counts)
        except ForeignOrder:
            self.counts["foreign_orders"] += 1
            return []
        self.counts["reports"] += 1
        return [rep]
