"""`ttquant strategy run NAME`: one strategy, live, in its own process.

It reads the tick ring of every venue it trades and the venue's exec ring (keeping its own
reports), writes its own SPSC order ring per venue (/ttq.<rings>.orders.<name>: nobody else
can write it), and calls the strategy's handlers; a handler that raises is logged with its
traceback and, by config, stops the strategy cleanly or is skipped. SIGTERM: on_stop, cancel
all open orders when configured, exit 0. The service runner (core/daemon/) does logging,
signals, notify, the instance lock and the hybrid wait; the config is strategies/config.py
(`ttquant config example strategy`). While md or the gateway is not up it waits and says so.
"""
from __future__ import annotations

import logging
import os
import time
import traceback

from ttquant.core.daemon.config import load_config
from ttquant.core.daemon.hybrid_wait import HybridWait
from ttquant.core.daemon.runner import EXIT_STRATEGY_FAILED, Daemon, ServiceRunner
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastReader, RingNotFoundError, SpscWriter
from ttquant.core.rings.names import book_board, exec_ring, instance_lock_file, order_ring, tick_ring
from ttquant.strategies.base import BaseStrategy, OrderRefused
from ttquant.strategies.config import StrategyConfig, StrategyConfigError
from ttquant.strategies.order_entry import RingOrderEntry
from ttquant.strategies.tick_dispatch import TickDispatch

__all__ = ["StrategyConfig", "StrategyConfigError", "load_strategy_config", "LiveContext", "StrategyDaemon"]

log = logging.getLogger("ttquant.strategy")
POLL_ROUNDS = 256               # rounds over the rings in C per pass of the Python loop (timers, watchdog)


def load_strategy_config(path: str, name: str | None = None) -> StrategyConfig:
    return load_config(str(path), StrategyConfig, instance=name or "")


class _Venue:
    def __init__(self, name, rings, table, ticks, exec_reader, orders, board):
        self.name, self.rings, self.table = name, rings, table
        self.ticks, self.exec, self.orders, self.board = ticks, exec_reader, orders, board
        self.instruments = {}           # instrument id -> Instrument, filled on first sight


class LiveContext:
    """What a strategy's actions reach in live trading: its order rings and the venues' rings."""

    def __init__(self, cfg: StrategyConfig, runner: ServiceRunner | None = None):
        self.cfg = cfg
        self.runner = runner or ServiceRunner("strategy", cfg.name)
        self.strategy_id = cfg.strategy_id
        self.venues: dict[str, _Venue] = {}
        self._by_table = {}
        self.order_entry = RingOrderEntry(self, cfg.name, cfg.strategy_id)     # orders straight into the rings
        self.timers: dict[str, list] = {}           # name -> [interval ns, next ns]

    def open(self):
        """Every venue's rings; waits (saying so) for md's and the gateway's."""
        wait_for = self.runner.wait_for
        for name, rings in self.cfg.venue_rings.items():
            md = f"is ttquant-md@{name} running? its rings are {rings!r}"
            table = wait_for(f"{name}'s instrument table", lambda: _try(InstrumentTable.load, instruments_path(rings)),
                             hint=md)
            ticks = wait_for(f"{name}'s tick ring {tick_ring(rings)}", lambda: _try(
                BroadcastReader, tick_ring(rings), start="latest", wait=self.cfg.loop.wait), hint=md)
            exec_reader = wait_for(f"{name}'s exec ring {exec_ring(rings)}", lambda: _try(
                BroadcastReader, exec_ring(rings), start="latest"), hint=f"is ttquant-gateway@{name} running?")
            orders = SpscWriter(order_ring(rings, self.cfg.name), RecordType.ORDER)
            board = _try(_open_board, rings)
            self.venues[name] = _Venue(name, rings, table, ticks, exec_reader, orders, board)
            self._by_table[table.venue] = self.venues[name]
            self.order_entry.add_venue(table.venue, orders)

    def now_ns(self) -> int:
        return time.time_ns()

    def next_client_order_id(self) -> int:
        return self.order_entry.next_client_order_id()

    @property
    def orders_refused(self) -> int:
        return self.order_entry.orders_refused

    def _venue_of(self, instrument):
        v = self._by_table.get(instrument.venue)
        if v is None:
            raise OrderRefused(f"{instrument.symbol}: venue {instrument.venue} is not one this strategy trades")
        return v

    def instrument(self, symbol, market_type, venue=None):
        venues = [self.venues[venue]] if venue else list(self.venues.values())
        for v in venues:
            inst = v.table.by_symbol(symbol, market_type)
            if inst is not None:
                return inst
        raise KeyError(f"{symbol} ({market_type.name}) is not in the instrument table of {[v.name for v in venues]}")

    def book(self, instrument):
        v = self._venue_of(instrument)
        return v.board.read(instrument.instrument_id) if v.board is not None else None

    def send(self, instrument, order):
        self.order_entry.send(instrument, order)

    def set_timer(self, name, interval_s):
        interval = int(interval_s * 1e9)
        if interval <= 0:
            raise ValueError(f"timer {name}: interval must be positive")
        self.timers[name] = [interval, time.time_ns() + interval]

    def close(self):
        for v in self.venues.values():
            v.ticks.close()
            v.exec.close()
            v.orders.close()
            if v.board is not None:
                v.board.close()


def _try(make, *args, **kwargs):
    """make(...), or None while what it opens is not there yet."""
    try:
        return make(*args, **kwargs)
    except (RingNotFoundError, FileNotFoundError, ValueError):
        return None


def _open_board(rings):
    from ttquant.core.book.book_board import BookBoard
    return BookBoard(book_board(rings))


class StrategyDaemon(Daemon):
    """Polls the rings (in C: tick_dispatch.pyx) and runs the timers, under the service runner."""
    role = "strategy"
    schema = StrategyConfig

    def __init__(self, cfg: StrategyConfig, runner: ServiceRunner):
        super().__init__(cfg, runner)
        self.ctx: LiveContext | None = None
        self.strategy = None
        self.dispatch = None
        self.errors = 0
        self.failed = False
        self._last_beat = time.monotonic()
        self._end = None

    def locks(self):
        return [(instance_lock_file(rings, "strategy", self.cfg.name), f"strategy {self.cfg.name!r} on rings {rings!r}")
                for rings in self.cfg.venue_rings.values()]

    def start(self):
        cfg = self.cfg
        self.ctx = LiveContext(cfg, self.runner)
        self.ctx.open()
        self.strategy = cfg.strategy_class(self.ctx, cfg.params)
        wants_book = type(self.strategy).on_book is not BaseStrategy.on_book
        self.dispatch = TickDispatch(self.strategy, self.ctx.strategy_id, self.ctx.order_entry, self._failed_handler,
                                     wants_book)
        for v in self.ctx.venues.values():
            self.dispatch.add_venue(v.ticks, v.exec, v.table)
        if os.environ.get("TTQ_STRATEGY_TRACE"):
            self.ctx.order_entry.start_trace()   # for latency reports: which tick each order answered

    @property
    def events(self) -> int:
        return self.dispatch.events if self.dispatch is not None else 0

    def _call(self, handler, *args):
        try:
            handler(*args)
        except Exception as exc:
            self._failed_handler(exc)

    def _failed_handler(self, exc) -> bool:
        """A handler raised: logged, counted; True when the strategy is to stop."""
        self.errors += 1
        if isinstance(exc, OrderRefused):
            log.warning("%s: %s", self.cfg.name, exc)
            return False
        log.error("%s: a handler raised:\n%s", self.cfg.name, "".join(traceback.format_exception(exc)))
        if self.cfg.runtime.on_error == "stop":
            self.failed = True          # on_stop and cancel-all still run; exit 3
            self.runner.request_stop()
        return self.runner.stopping

    def step(self) -> bool:
        busy = self.dispatch.poll(POLL_ROUNDS) > 0
        if self.ctx.timers:
            now = time.time_ns()
            for name, t in self.ctx.timers.items():
                if now >= t[1]:
                    t[1] = now + t[0]
                    self._call(self.strategy.on_timer, name)
        return busy

    def _futex_wait(self):
        # one venue: asleep on its tick ring's futex, md's next push wakes it at once
        return self._wait_ticks if len(self.ctx.venues) == 1 else None

    def _wait_ticks(self, timeout_s) -> bool:
        ev = next(iter(self.ctx.venues.values())).ticks.wait(timeout=timeout_s)
        if ev is None:
            return False
        self.dispatch.dispatch(0, ev)
        return True

    def _every(self, now):
        if now - self._last_beat > 1.0:
            self._last_beat = now
            for v in self.ctx.venues.values():
                v.orders.heartbeat()
            if self._end is not None and now > self._end:
                self.runner.request_stop()

    def status(self) -> str:
        return (f"{self.events} events, {len(self.strategy.orders)} open orders, "
                f"{self.errors} handler errors") if self.strategy is not None else "starting"

    def serve(self) -> int:
        cfg = self.cfg
        self._call(self.strategy.on_start)
        if cfg.runtime.max_seconds:
            self._end = time.monotonic() + cfg.runtime.max_seconds
        self.runner.notify.ready(self.status())
        wait = HybridWait(cfg.loop.wait, cfg.loop.spin_polls, POLL_ROUNDS, futex_timeout_s=1e-3)
        self.runner.loop(self.step, wait, futex_wait=self._futex_wait, gc=cfg.loop.gc, every=self._every)
        self._call(self.strategy.on_stop)
        if cfg.runtime.cancel_all_on_stop and self.strategy.orders:
            self._call(self.strategy.cancel_all)
        log.info("%s stopped: %d events, %d handler errors, %d open orders left", cfg.name, self.events,
                 self.errors, len(self.strategy.orders))
        return EXIT_STRATEGY_FAILED if self.failed else 0

    def close(self):
        trace_path = os.environ.get("TTQ_STRATEGY_TRACE")
        if trace_path and self.ctx is not None:
            import numpy as np
            np.save(trace_path, self.ctx.order_entry.trace)
        if self.ctx is not None:
            self.ctx.close()
