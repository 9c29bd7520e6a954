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
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from ttquant.core.instruments import Instrument, MarketType
from ttquant.core.records import EventFlag, Order, OrderAction, OrderStatus, OrderType, Side, new_order
from ttquant.strategies.order_entry import to_units as _to_units_c
from ttquant.strategies.portfolio import Portfolio

__all__ = ["BaseStrategy", "Trade", "Quote", "Bar", "OrderUpdate", "Fill", "OpenOrder", "OrderRefused",
           "MARKETS"]

MARKETS = {"spot": MarketType.SPOT, "usdm": MarketType.LINEAR_PERPETUAL, "linear_perpetual": MarketType.LINEAR_PERPETUAL}
TERMINAL = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED)


_INF = float("inf")


def _as_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _to_units(x: float, precision: int, unit: int, down: bool) -> int:
    """x (a positive float) as a raw multiple of unit at precision, rounded down or up: in C
    (order_entry.pyx), or the exact way past a double's exact integers."""
    raw = _to_units_c(x, precision, unit, down)
    if raw >= 0:
        return raw
    d = (Decimal(repr(x)).scaleb(precision) / unit).to_integral_value(ROUND_FLOOR if down else ROUND_CEILING)
    return int(d) * unit


class OrderRefused(RuntimeError):
    """An order that could not even be sent (its ring is full, or its values cannot be sent)."""


_SCALE = [10.0 ** -k for k in range(19)]        # raw -> float by precision


class _EventView:
    """A market event as the strategy sees it: floats on top of the raw record."""
    __slots__ = ("event", "instrument", "_ps", "_qs")

    def __init__(self, event, instrument: Instrument):
        self.event, self.instrument = event, instrument
        self._ps = _SCALE[instrument.price_precision]
        self._qs = _SCALE[instrument.size_precision]

    @property
    def price_raw(self): return self.event.price

    @property
    def qty_raw(self): return self.event.qty

    @property
    def price(self): return self.event.price * self._ps

    @property
    def qty(self): return self.event.qty * self._qs

    @property
    def ts_exchange(self): return self.event.ts_exchange

    @property
    def ts_recv(self): return self.event.ts_recv

    @property
    def ts_pub(self): return self.event.ts_pub


class Trade(_EventView):
    __slots__ = ()

    @property
    def buyer_aggressor(self): return bool(self.event.flags & EventFlag.BUYER_AGGRESSOR)

    @property
    def trade_id(self): return self.event.seq


class Quote(_EventView):
    """Best bid (price, qty) and ask (ask_price, ask_qty); from_book: the kept book's top."""
    __slots__ = ()

    @property
    def bid(self): return self.price

    @property
    def bid_qty(self): return self.qty

    @property
    def ask(self): return self.event.ask_price * self._ps

    @property
    def ask_qty(self): return self.event.ask_qty * self._qs

    @property
    def ask_raw(self): return self.event.ask_price

    @property
    def mid(self): return (self.event.price + self.event.ask_price) * 0.5 * self._ps

    @property
    def from_book(self): return bool(self.event.flags & EventFlag.FROM_BOOK)


class Bar(_EventView):
    """A kline: open/high/low/close, volume; closed says the bar is final."""
    __slots__ = ()

    @property
    def open(self): return self.event.open * self._ps

    @property
    def high(self): return self.event.high * self._ps

    @property
    def low(self): return self.event.low * self._ps

    @property
    def close(self): return self.price

    @property
    def volume(self): return self.qty

    @property
    def closed(self): return bool(self.event.flags & EventFlag.CLOSED)

    @property
    def open_time_ns(self): return self.event.open_time_ns


class OpenOrder:
    """One of the strategy's orders that is still open, as its exec reports have told it."""
    __slots__ = ("client_order_id", "instrument", "side", "order_type", "price_raw", "qty_raw", "cum_qty_raw",
                 "status", "cancel_sent")

    def __init__(self, client_order_id, instrument, side, order_type, price_raw, qty_raw):
        self.client_order_id, self.instrument, self.side = client_order_id, instrument, side
        self.order_type, self.price_raw, self.qty_raw = order_type, price_raw, qty_raw
        self.cum_qty_raw, self.status, self.cancel_sent = 0, OrderStatus.NEW, False

    def __repr__(self):
        return (f"OpenOrder({self.client_order_id}, {self.instrument.symbol}, {Side(self.side).name}, "
                f"{self.qty} @ {self.price}, filled {self.cum_qty_raw}, {OrderStatus(self.status).name})")

    @property
    def price(self): return self.price_raw * 10.0 ** -self.instrument.price_precision

    @property
    def qty(self): return self.qty_raw * 10.0 ** -self.instrument.size_precision

    @property
    def leaves_raw(self): return self.qty_raw - self.cum_qty_raw


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


class BaseStrategy:
    """Override the handlers; call the actions. self.params holds the config's [params]."""

    name = "strategy"

    def __init__(self, ctx, params: dict | None = None):
        self.ctx = ctx
        self.params = dict(params or {})
        self.portfolio = Portfolio(fee_precision=8)
        self.orders: dict[int, OpenOrder] = {}      # open orders by client order id
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
    def buy(self, instrument, qty, price=None, order_type=None, reduce_only=False):
        return self.place_order(instrument, Side.BUY, qty, price, order_type, reduce_only)

    def sell(self, instrument, qty, price=None, order_type=None, reduce_only=False):
        return self.place_order(instrument, Side.SELL, qty, price, order_type, reduce_only)

    def place_order(self, instrument: Instrument, side, qty, price=None, order_type=None, reduce_only=False) -> int:
        """Send a new order; returns its client order id. price None: a market order. The price
        is rounded to the tick (down for a buy, up for a sell: never more aggressive than asked),
        the quantity down to the step. OrderRefused when it cannot be sent at all."""
        if side != 1 and side != 2:
            raise OrderRefused(f"side {side!r} is neither BUY (1) nor SELL (2)")
        if order_type is None:
            order_type = 2 if price is None else 1          # MARKET, LIMIT
        elif not 1 <= order_type <= 5:
            raise OrderRefused(f"order type {order_type!r} is not one of {[t.name for t in OrderType]}")
        price_raw = 0 if order_type == 2 else self.price_to_raw(instrument, price, side)
        qty_raw = self.qty_to_raw(instrument, qty)
        if qty_raw <= 0:
            raise OrderRefused(f"{instrument.symbol}: quantity {qty} rounds to zero at step "
                               f"{instrument.qty_from_raw(instrument.step_size)}")
        cid = self.ctx.next_client_order_id()
        order = new_order(self.ctx.now_ns(), cid, self.ctx.strategy_id, instrument.instrument_id, 1, side,
                          order_type, price_raw, qty_raw, 1 if reduce_only else 0)
        self.ctx.send(instrument, order)
        self.orders[cid] = OpenOrder(cid, instrument, side, order_type, price_raw, qty_raw)
        return cid

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
        x = price if type(price) is float else _as_float(price)
        if not 0 < x < _INF:
            raise OrderRefused(f"{instrument.symbol}: price {price!r} is not a positive number")
        return _to_units(x, instrument.price_precision, instrument.tick_size, side == 1)

    @staticmethod
    def qty_to_raw(instrument: Instrument, qty) -> int:
        """A quantity in steps, always down."""
        x = qty if type(qty) is float else _as_float(qty)
        if not 0 < x < _INF:
            raise OrderRefused(f"{instrument.symbol}: quantity {qty!r} is not a positive number")
        return _to_units(x, instrument.size_precision, instrument.step_size, True)

    # -- called by the runtime --------------------------------------------------------------------
    def _exec_report(self, report, instrument: Instrument | None):
        """One exec report of this strategy: open orders, portfolio, then the handlers."""
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
            self.on_fill(Fill(cid, instrument, report.side, report.last_price * 10.0 ** -instrument.price_precision,
                              report.last_qty * 10.0 ** -instrument.size_precision, report.last_price,
                              report.last_qty, report.fee, report.liquidity, report.ts_exchange))
