"""Backtests on the live kernel: the same strategy class, the same C dispatch, the same gateway
checks, in one process, deterministic.

Events are the md daemon's own MarketEvents (a capture run through the real normaliser, or a
journal of the tick ring: what the ring carried live). The strategy is driven by the live
dispatch (strategies/tick_dispatch.pyx, `run`: the array instead of the ring, the same event
views, binding and error policy). Its orders take the gateway's own path in-process (the
intake's client-id claim and risk checks in C, the order state machine, core/gateway/
order_path.py) at the backtest's clock, then the simulated venue's matcher with the fill model
the live sim venue uses (fees, slippage, latency, queue position); the matcher's reports come
back through the OMS as exec reports. A backtest therefore sees every reject live trading
would (position limit 2001, rate limit 2003, ...), in the same order.

The clock is the events' receive time, so a run is repeatable and as fast as the strategy
allows: while the venue has nothing in flight or resting and no timer is due, the loop stays
in C; the venue's Python side sees the market only while it has work.
"""
from __future__ import annotations

import dataclasses
import logging
import traceback

import numpy as np

from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.gateway.order_intake import OrderIntake
from ttquant.core.gateway.order_path import NoJournal, OrderPath
from ttquant.core.gateway.risk import RiskEngine
from ttquant.core.gateway.risk_config import RiskLimits, parse_risk_limits
from ttquant.core.records import EventFlag, EventKind
from ttquant.core.sim.matching import FillModel, SimMatcher
from ttquant.core.venues.base import VenueReport
from ttquant.strategies.base import BaseStrategy, OrderRefused
from ttquant.strategies.tick_dispatch import TickDispatch

__all__ = ["BacktestContext", "BacktestGateway", "BacktestResult", "run_backtest"]

log = logging.getLogger("ttquant.backtest")
NEVER = (1 << 63) - 1
CHUNK = 1 << 20                 # events per call into C between two progress reports


class _Top:
    """What book() returns in a backtest: the shape of the book board's BookTop."""
    __slots__ = ("instrument_id", "bids", "asks", "synced")

    def __init__(self, instrument_id, bids, asks, synced):
        self.instrument_id, self.bids, self.asks, self.synced = instrument_id, bids, asks, synced


class _InProcessRing:
    """The intake's ring slot of the strategy under test (its orders come through take())."""
    name = "backtest"
    index = 0


class MatcherVenue:
    """The gateway's venue adapter in a backtest: the sim venue's matcher at the backtest's clock."""
    name = "sim"

    def __init__(self, matcher: SimMatcher, clock):
        self.matcher, self.clock = matcher, clock

    def send(self, order) -> bool:
        self.matcher.submit(order, self.clock())
        return True

    def poll(self) -> list:
        return [VenueReport.from_exec_report(r) for r in self.matcher.advance(self.clock())]

    def close(self):
        pass


class _ExecQueue:
    """The exec ring of a backtest: what the gateway published, until the dispatch delivers it."""

    def __init__(self):
        self.reports = []

    def push(self, er):
        self.reports.append(er)


class BacktestGateway(OrderPath):
    """The gateway's order path (risk, OMS, reports) over the matcher, at the dispatch's clock."""

    def __init__(self, table, limits: RiskLimits, matcher: SimMatcher, clock):
        risk = RiskEngine(limits, table)
        oms = OrderBookKeeper(risk)
        self.init_order_path(table, risk, oms, OrderIntake(risk, oms.ids), NoJournal(), MatcherVenue(matcher, clock),
                             _ExecQueue(), clock)
        self.ring = _InProcessRing()
        self.ring.index = self.intake.add_ring(None)

    def take(self, order):
        """An order from the strategy: the intake's checks (C), then the order path."""
        self.on_checked(self.ring, order, self.intake.take(self.ring.index, order))

    def poll_venue(self):
        for rep in self.adapter.poll():
            self.counts["reports"] += 1
            self._apply(rep)

    def take_reports(self) -> list:
        out, self.exec.reports = self.exec.reports, []
        return out


class BacktestContext:
    """What a strategy's actions reach in a backtest: the gateway's path in-process."""

    def __init__(self, table, model: FillModel | None = None, strategy_id: int = 1, depth: int = 20,
                 limits: RiskLimits | None = None):
        self.table = table
        self.matcher = SimMatcher(table, model if model is not None else FillModel())
        self.strategy_id = strategy_id
        self.dispatch: TickDispatch | None = None
        self.gateway = BacktestGateway(table, limits if limits is not None else parse_risk_limits({}, table),
                                       self.matcher, self.now_ns)
        self._last_id = 0
        self.timers: dict[str, list] = {}
        self.timer_at = NEVER           # the next timer due
        self.depth = depth
        self.orders_sent = 0

    def now_ns(self):
        return self.dispatch.clock_ns

    def next_client_order_id(self):
        self._last_id += 1
        return self._last_id

    def instrument(self, symbol, market_type, venue=None):
        inst = self.table.by_symbol(symbol, market_type)
        if inst is None:
            raise KeyError(f"{symbol} ({market_type.name}) is not in the instrument table")
        return inst

    def book(self, instrument):
        b = self.dispatch.book_of(instrument.instrument_id)
        if b is None:
            return None
        bids, asks = b.top(self.depth)
        return _Top(instrument.instrument_id, bids, asks, True)

    def send(self, instrument, order):
        self.orders_sent += 1
        self.gateway.take(order)
        self.dispatch.after_handler = True     # a reject, or a request due at once (zero latency)

    def _show_market(self, instrument_id):
        """The venue had no work, so it has not seen the market: the book and quote as they are."""
        now, m = self.dispatch.clock_ns, self.matcher
        for inst in ([self.table.get(instrument_id)] if instrument_id else list(self.table)):
            if inst is None:
                continue
            b = self.dispatch.book_of(inst.instrument_id)
            if b is not None and b.depth[0] and b.depth[1]:
                bids, asks = b.top(self.depth)
                m.on_book(inst.instrument_id, bids.tolist(), asks.tolist(), now)
                continue
            q = self.dispatch.last_quote(inst.instrument_id)
            if q is not None:
                m.on_quote(inst.instrument_id, q.price, q.qty, q.ask_price, q.ask_qty, now)

    def set_timer(self, name, interval_s):
        interval = int(interval_s * 1e9)
        if interval <= 0:
            raise ValueError(f"timer {name}: interval must be positive")
        self.timers[name] = [interval, self.dispatch.clock_ns + interval]
        self.timer_at = min(t[1] for t in self.timers.values())
        self.dispatch.wake_ns = min(self.dispatch.wake_ns, self.timer_at)


@dataclasses.dataclass
class BacktestResult:
    strategy: BaseStrategy
    events: int
    orders_sent: int
    fills: int
    errors: int
    matcher: SimMatcher
    marks: dict                 # instrument id -> last trade price (raw)
    gateway: BacktestGateway | None = None

    @property
    def rejects_by_code(self) -> dict[int, int]:
        """The gateway's rejects (risk, OMS) and the venue's, by reject code."""
        return dict(self.gateway.rejects_by_code) if self.gateway is not None else {}

    def equity(self):
        """Realised + unrealised PnL at the last trades (quote currency, exact)."""
        marks = {(self.strategy.ctx.table.venue, i): p for i, p in self.marks.items()}
        return self.strategy.portfolio.equity(marks)


def _last_trade_prices(events) -> dict:
    mask = events["kind"] == np.uint8(EventKind.TRADE)      # as uint8: no cast of the column
    ids, where = np.unique(events["instrument_id"][mask][::-1], return_index=True)
    last = events["price"][mask][::-1][where]
    return {int(i): int(p) for i, p in zip(ids, last)}


def run_backtest(strategy_cls, params, events, table, model: FillModel | None = None, strategy_id: int = 1,
                 raise_errors: bool = True, limits: RiskLimits | None = None, progress=None) -> BacktestResult:
    """Run strategy_cls(params) over events (a MARKET_EVENT_DTYPE array, in time order).

    limits: the gateway's risk limits (risk_config; default: none but the instruments' own);
    raise_errors: a handler's exception ends the run and is raised (else logged, counted and
    skipped, as live with on_error = "skip"); progress(done, total): called between chunks."""
    ctx = BacktestContext(table, model, strategy_id, limits=limits)
    strategy = strategy_cls(ctx, params)
    gw, m = ctx.gateway, ctx.matcher
    errors, failure = 0, []

    def on_error(exc) -> bool:
        nonlocal errors
        errors += 1
        if isinstance(exc, OrderRefused):
            log.debug("order refused: %s", exc)
            return False
        if raise_errors:
            failure.append(exc)
            return True
        log.error("a handler raised:\n%s", "".join(traceback.format_exception(exc)))
        return False

    wants_book = type(strategy).on_book is not BaseStrategy.on_book
    d = TickDispatch(strategy, strategy_id, strategy._entry, on_error, wants_book)
    ctx.dispatch = d
    venue = d.add_venue(None, None, table)
    d.feed_checks(gw.risk, gw.intake)
    if len(events):
        d.clock_ns = int(events[0]["ts_recv"] or events[0]["ts_exchange"])

    def call(handler, *args):
        try:
            handler(*args)
        except Exception as exc:
            if on_error(exc):
                d.stopped = True

    def deliver():
        gw.poll_venue()
        for er in gw.take_reports():
            d.report(venue, er)

    def settle():
        """What the venue needs of the loop next: every event while it has resting orders (queue
        position, trades through them); else a wake-up when its next request is due."""
        d.venue_busy = bool(m.resting)
        d.wake_ns = min(m.pending[0][0], ctx.timer_at) if m.pending else ctx.timer_at   # requests in time order

    raw = np.ascontiguousarray(events)
    TRADE, BBO, LEVEL = int(EventKind.TRADE), int(EventKind.BBO), int(EventKind.BOOK_LEVEL)
    BUYER, FROM_BOOK, LAST = int(EventFlag.BUYER_AGGRESSOR), int(EventFlag.FROM_BOOK), int(EventFlag.LAST_IN_BATCH)
    shown = [-1]

    def hook(i, ev):
        """The venue's turn before event i (ev), and again after its handler sent orders."""
        now = d.clock_ns
        if now >= ctx.timer_at:
            for name, t in ctx.timers.items():
                if now >= t[1]:
                    t[1] = now + t[0]
                    call(strategy.on_timer, name)
            ctx.timer_at = min((t[1] for t in ctx.timers.values()), default=NEVER)
        if d.venue_busy:
            if ev is not None and shown[0] != i:
                shown[0] = i
                show(ev, now)
        elif m.pending:
            due = {p[2].instrument_id for p in m.pending if p[0] <= now}
            for iid in sorted(due):     # it has not watched the market: show it as it is now
                ctx._show_market(iid)
        if m.reports or gw.exec.reports or (m.pending and m.pending[0][0] <= now):
            deliver()                   # fills the market just made, rejects, requests due
        settle()

    def show(ev, now):
        """One market event to the matcher (which keeps its own view of the top)."""
        k, iid = ev.kind, ev.instrument_id
        if k == TRADE:
            m.on_trade(iid, ev.price, ev.qty, bool(ev.flags & BUYER), now)
        elif k == BBO:
            book = d.book_of(iid)
            # the book's own top when there is a book (as the live sim venue reads the board)
            if ev.flags & FROM_BOOK or book is None or not book.depth[0]:
                m.on_quote(iid, ev.price, ev.qty, ev.ask_price, ev.ask_qty, now)
        elif k == LEVEL and ev.flags & LAST:
            bids, asks = d.book_of(iid).top(ctx.depth)
            m.on_book(iid, bids.tolist(), asks.tolist(), now)

    call(strategy.on_start)
    n, total = 0, len(raw)
    while n < total and not d.stopped:
        n = d.run(venue, raw, n, min(n + CHUNK, total), hook)
        if progress is not None:
            progress(n, total)
        if failure:
            raise failure[0]
    call(strategy.on_stop)
    d.clock_ns += 10**9          # what was sent last has its effect
    deliver()
    if failure:
        raise failure[0]
    return BacktestResult(strategy, n, ctx.orders_sent, m.counts["fills"], errors, m, _last_trade_prices(raw), gw)
