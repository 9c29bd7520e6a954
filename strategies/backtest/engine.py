"""Backtests: the same strategy class, the same events, in one process, deterministic.

Events are the md daemon's own MarketEvents (a capture run through the real normaliser gives
exactly what the tick ring carried live); orders go to the simulated venue's matcher with the
fill model the live sim venue uses; its reports come back as exec reports. The clock is the
events' receive time, so a run is repeatable and as fast as the strategy allows.
"""
from __future__ import annotations

import dataclasses
import logging
import traceback

from ttquant.core.book.order_book import ASK, BID, OrderBook
from ttquant.core.records import EventFlag, EventKind, MarketEvent
from ttquant.core.venues.sim.matching import FillModel, SimMatcher
from ttquant.strategies.base import Bar, BaseStrategy, OrderRefused, Quote, Trade

__all__ = ["BacktestContext", "BacktestResult", "run_backtest"]

log = logging.getLogger("ttquant.backtest")


class _Top:
    """What book() returns in a backtest: the shape of the book board's BookTop."""
    __slots__ = ("instrument_id", "bids", "asks", "synced")

    def __init__(self, instrument_id, bids, asks, synced):
        self.instrument_id, self.bids, self.asks, self.synced = instrument_id, bids, asks, synced


class BacktestContext:
    def __init__(self, table, model: FillModel | None = None, strategy_id: int = 1, depth: int = 20):
        self.table = table
        self.matcher = SimMatcher(table, model if model is not None else FillModel())
        self.strategy_id = strategy_id
        self.clock = 0
        self._last_id = 0
        self.timers: dict[str, list] = {}
        self.books: dict[int, OrderBook] = {}
        self.depth = depth
        self.orders_sent = 0

    def now_ns(self):
        return self.clock

    def next_client_order_id(self):
        self._last_id += 1
        return self._last_id

    def instrument(self, symbol, market_type, venue=None):
        inst = self.table.by_symbol(symbol, market_type)
        if inst is None:
            raise KeyError(f"{symbol} ({market_type.name}) is not in the instrument table")
        return inst

    def book(self, instrument):
        b = self.books.get(instrument.instrument_id)
        if b is None:
            return None
        bids, asks = b.top(self.depth)
        return _Top(instrument.instrument_id, bids, asks, True)

    def send(self, instrument, order):
        self.orders_sent += 1
        self.matcher.submit(order, self.clock)

    def set_timer(self, name, interval_s):
        interval = int(interval_s * 1e9)
        if interval <= 0:
            raise ValueError(f"timer {name}: interval must be positive")
        self.timers[name] = [interval, self.clock + interval]


@dataclasses.dataclass
class BacktestResult:
    strategy: BaseStrategy
    events: int
    orders_sent: int
    fills: int
    errors: int
    matcher: SimMatcher
    marks: dict                 # instrument id -> last trade price (raw)

    def equity(self):
        """Realised + unrealised PnL at the last trades (quote currency, exact)."""
        marks = {(self.strategy.ctx.table.venue, i): p for i, p in self.marks.items()}
        return self.strategy.portfolio.equity(marks)


def run_backtest(strategy_cls, params, events, table, model: FillModel | None = None, strategy_id: int = 1,
                 raise_errors: bool = True) -> BacktestResult:
    """Run strategy_cls(params) over events (a MARKET_EVENT_DTYPE array, in time order)."""
    ctx = BacktestContext(table, model, strategy_id)
    strategy = strategy_cls(ctx, params)
    m = ctx.matcher
    errors = 0
    marks = {}
    wants_book = type(strategy).on_book is not BaseStrategy.on_book

    def call(handler, *args):
        nonlocal errors
        try:
            handler(*args)
        except OrderRefused as exc:
            errors += 1
            log.debug("order refused: %s", exc)
        except Exception:
            errors += 1
            if raise_errors:
                raise
            log.error("%s raised:\n%s", handler, traceback.format_exc())

    def deliver():
        for r in m.advance(ctx.clock):
            call(strategy._exec_report, r, table.get(r.instrument_id))

    if len(events):
        ctx.clock = int(events[0]["ts_recv"] or events[0]["ts_exchange"])
    call(strategy.on_start)
    n = 0
    for row in events:
        n += 1
        ev = MarketEvent.frombytes(row.tobytes())
        ctx.clock = max(ctx.clock, ev.ts_recv or ev.ts_exchange)
        for name, t in ctx.timers.items():
            if ctx.clock >= t[1]:
                t[1] = ctx.clock + t[0]
                call(strategy.on_timer, name)
        inst = table.get(ev.instrument_id)
        if inst is None:
            continue
        kind = ev.kind
        if kind == EventKind.TRADE:
            marks[ev.instrument_id] = ev.price
            m.on_trade(ev.instrument_id, ev.price, ev.qty, bool(ev.flags & EventFlag.BUYER_AGGRESSOR), ctx.clock)
            deliver()
            call(strategy.on_trade, Trade(ev, inst))
        elif kind == EventKind.BBO:
            if ev.flags & EventFlag.FROM_BOOK:
                m.on_quote(ev.instrument_id, ev.price, ev.qty, ev.ask_price, ev.ask_qty, ctx.clock)
                deliver()
            call(strategy.on_quote, Quote(ev, inst))
        elif kind == EventKind.BOOK_LEVEL:
            book = ctx.books.get(ev.instrument_id)
            if book is None:
                book = ctx.books[ev.instrument_id] = OrderBook(ev.instrument_id)
            book.set(ASK if ev.flags & EventFlag.ASK_SIDE else BID, ev.price, ev.qty)
            if ev.flags & EventFlag.LAST_IN_BATCH:
                bids, asks = book.top(ctx.depth)
                m.on_book(ev.instrument_id, bids.tolist(), asks.tolist(), ctx.clock)
                deliver()
                if wants_book:
                    call(strategy.on_book, inst)
        elif kind == EventKind.BOOK_RESET:
            if ev.instrument_id in ctx.books:
                ctx.books[ev.instrument_id].clear()
            call(strategy.on_book_reset, inst)
        elif kind == EventKind.KLINE:
            call(strategy.on_bar, Bar(ev, inst))
        deliver()
    call(strategy.on_stop)
    ctx.clock += 10**9          # what was sent last has its effect
    deliver()
    return BacktestResult(strategy, n, ctx.orders_sent, m.counts["fills"], errors, m, marks)
