"""BaseStrategy: the one API a strategy is written against, live, in replay and in backtests.

A strategy overrides the handlers it needs and calls the actions; it never sees rings, the
gateway or the clock directly, only its context (`self.ctx`), which the runtime (live,
strategies/runtime.py) or the backtest engine provides. Prices and quantities reach it as
floats (with the raw fixed-point values beside them) and leave rounded to the instrument's
tick and step: an order is never sent with a price the venue would refuse for its precision.

    class EmaCross(BaseStrategy):
        def on_start(self):
            self.inst = self.instrument("BTCUSDT", "spot")
            self.fast, self.slow = EMA(span=10), EMA(span=40)
        def on_trade(self, t):
            if self.fast.update(t.price) > self.slow.update(t.price) and not self.position(self.inst):
                self.buy(self.inst, 0.01)
"""
from __future__ import annotations

import dataclasses
import logging

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.portfolio import Portfolio
from ttquant.core.records import Order, OrderAction, OrderStatus, ReportFlag, Side, new_order
from ttquant.strategies import order_entry
from ttquant.strategies.events import Bar, Quote, Trade
from ttquant.strategies.order_entry import OpenOrder, OrderActions, OrderEntry, OrderRefused

__all__ = ["BaseStrategy", "Trade", "Quote", "Bar", "OrderUpdate", "Fill", "OpenOrder", "OrderRefused",
           "MARKETS"]

MARKETS = {"spot": MarketType.SPOT, "usdm": MarketType.LINEAR_PERPETUAL,
           "linear_perpetual": MarketType.LINEAR_PERPETUAL}
TERMINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


@dataclasses.dataclass(frozen=True)
class OrderUpdate:
    """An exec report for one of this strategy's orders."""
    client_order_id: int
    instrument: Instrument | None
    status: OrderStatus
    reject_code: int
    side: int
    cum_qty_raw: int
    leaves_qty_raw: int
    report: object          # the ExecReport record


@dataclasses.dataclass(frozen=True)
class Fill:
    client_order_id: int
    instrument: Instrument
    side: int
    price: float
    qty: float
    price_raw: int
    qty_raw: int
    fee_raw: int            # quote asset, 8 decimals
    liquidity: int
    ts_exchange: int


class BaseStrategy(OrderActions):
    """Override the handlers; call the actions. self.params holds the config's [params]."""

    name = "strategy"
    # its parameters and their defaults; when a class sets it, a config's [params] may hold only
    # these, each of its default's kind (strategies/config.py), and self.params has them all
    PARAMS: dict | None = None

    def __init__(self, ctx, params: dict | None = None):
        self.ctx = ctx
        self.params = {**(self.PARAMS or {}), **dict(params or {})}
        self.portfolio = Portfolio(fee_precision=8)
        self.orders: dict[int, OpenOrder] = {}      # open orders by client order id
        self._entry = getattr(ctx, "order_entry", None) or OrderEntry(ctx)     # live: straight into the ring
        self._fills_seen: set = set()               # (client id, trade id): a re-published fill counts once
        self.log = logging.getLogger(f"ttquant.strategy.{self.name}")

    # -- handlers: override what you need ---------------------------------------------------------
    def on_start(self): pass
    def on_trade(self, trade: Trade): pass
    def on_quote(self, quote: Quote): pass
    def on_book(self, instrument: Instrument): pass          # the book board changed: self.book(instrument)
    def on_book_reset(self, instrument: Instrument): pass    # the book was rebuilt: drop what you knew of it
    def on_bar(self, bar: Bar): pass
    def on_order_update(self, update: OrderUpdate): pass
    def on_fill(self, fill: Fill): pass
    def on_timer(self, name: str): pass
    def on_stop(self): pass

    # -- context ----------------------------------------------------------------------------------
    @property
    def strategy_id(self) -> int:
        return self.ctx.strategy_id

    def now_ns(self) -> int:
        return self.ctx.now_ns()

    def instrument(self, symbol: str, market: str = "spot", venue: str | None = None) -> Instrument:
        return self.ctx.instrument(symbol, MARKETS[market], venue)

    def book(self, instrument: Instrument):
        """The top of the instrument's book from the book board (bids, asks: raw (n, 2), best first)."""
        return self.ctx.book(instrument)

    def set_timer(self, name: str, interval_s: float):
        """on_timer(name) every interval_s seconds (of the context's clock)."""
        self.ctx.set_timer(name, interval_s)

    def position(self, instrument: Instrument) -> float:
        """The position in base units (negative: short), from this strategy's own fills."""
        return self.portfolio.position_qty(instrument)

    # -- actions ----------------------------------------------------------------------------------
    # buy / sell / place_order(instrument, side, qty, price=None, order_type=None, reduce_only=False):
    # in C (order_entry.OrderActions): rounded to the grid, checked, straight into the order ring

    def cancel(self, client_order_id: int) -> bool:
        """Ask the venue to cancel one of this strategy's open orders; False when it is not open."""
        o = self.orders.get(client_order_id)
        if o is None or o.cancel_sent:
            return False
        order = Order(ts_created=self.ctx.now_ns(), client_order_id=self.ctx.next_client_order_id(),
                      strategy_id=self.ctx.strategy_id, instrument_id=o.instrument.instrument_id,
                      action=OrderAction.CANCEL, target_order_id=client_order_id)
        self.ctx.send(o.instrument, order)
        o.cancel_sent = True
        return True

    def amend(self, client_order_id: int, price=None, qty=None) -> bool:
        """Ask the venue to change an open order's price and/or quantity (a smaller size keeps its
        place in the queue; a new price does not); False when it is not open."""
        o = self.orders.get(client_order_id)
        if o is None or o.cancel_sent:
            return False
        inst = o.instrument
        price_raw = o.price_raw if price is None else self.price_to_raw(inst, price, o.side)
        qty_raw = o.qty_raw if qty is None else self.qty_to_raw(inst, qty)
        order = new_order(self.ctx.now_ns(), self.ctx.next_client_order_id(), self.ctx.strategy_id,
                          inst.instrument_id, 3, o.side, o.order_type, price_raw, qty_raw, 0, client_order_id)
        self.ctx.send(inst, order)
        return True

    def cancel_all(self, instrument: Instrument | None = None):
        """Every open order of this strategy (on one instrument, or everywhere)."""
        venues = {}
        for o in self.orders.values():
            if instrument is None or o.instrument.instrument_id == instrument.instrument_id and \
                    o.instrument.venue == instrument.venue:
                venues.setdefault(o.instrument.venue, o.instrument)
        for inst in venues.values():
            order = Order(ts_created=self.ctx.now_ns(), client_order_id=self.ctx.next_client_order_id(),
                          strategy_id=self.ctx.strategy_id,
                          instrument_id=instrument.instrument_id if instrument is not None else 0,
                          action=OrderAction.CANCEL_ALL)
            self.ctx.send(inst, order)
        for o in self.orders.values():
            if instrument is None or o.instrument.instrument_id == instrument.instrument_id:
                o.cancel_sent = True

    def open_orders(self, instrument: Instrument | None = None) -> list[OpenOrder]:
        return [o for o in self.orders.values()
                if instrument is None or o.instrument.instrument_id == instrument.instrument_id]

    # -- rounding ---------------------------------------------------------------------------------
    @staticmethod
    def price_to_raw(instrument: Instrument, price, side=Side.BUY) -> int:
        """A price in ticks: down for a buy, up for a sell; a float within a billionth of a tick
        of one is that tick (60390.0 is 60390, not 60389.99 from binary noise)."""
        return order_entry.price_to_raw(instrument, price, side == 1)

    @staticmethod
    def qty_to_raw(instrument: Instrument, qty) -> int:
        """A quantity in steps, always down."""
        return order_entry.qty_to_raw(instrument, qty)

    # -- called by the runtime --------------------------------------------------------------------
    def _exec_report(self, report, instrument: Instrument | None):
        """One exec report of this strategy: open orders, portfolio, then the handlers."""
        if report.status >= OrderStatus.POSITION or report.flags & ReportFlag.RESTATED:
            return                      # SYNC's answer: the runtime took it at start; not an event
        cid = report.client_order_id
        status = OrderStatus(report.status)
        if report.last_qty and report.trade_id:
            key = (cid, report.trade_id)
            if key in self._fills_seen:
                return                  # the gateway restarted and published it again
            self._fills_seen.add(key)
        o = self.orders.get(cid)
        if o is not None:
            o.status, o.cum_qty_raw = status, report.cum_qty
            if report.qty:
                o.price_raw, o.qty_raw = report.price, report.qty     # an amend the venue took
            if status in TERMINAL:
                del self.orders[cid]
        if report.last_qty and instrument is not None:
            self.portfolio.on_fill(instrument, report.side, report.last_price, report.last_qty, report.fee)
        self.on_order_update(OrderUpdate(cid, instrument, status, report.reject_code, report.side,
                                         report.cum_qty, report.leaves_qty, report))
        if report.last_qty and instrument is not None:
            self.on_fill(Fill(cid, instrument, report.side, report.last_price / 10 ** instrument.price_precision,
                              report.last_qty / 10 ** instrument.size_precision, report.last_price,
                              report.last_qty, report.fee, report.liquidity, report.ts_exchange))
