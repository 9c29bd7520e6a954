"""`ttquant strategy run NAME --config FILE`: one strategy, live, in its own process.

It reads the tick ring of every venue it subscribes to and the venue's exec ring (keeping its
own reports), writes its own SPSC order ring per venue (/ttq.<rings>.orders.<name>: nobody else
can write it), and calls the strategy's handlers; a handler that raises is logged with its
traceback and, by config, stops the strategy cleanly or is skipped. SIGTERM: on_stop, cancel
all open orders when configured, exit 0. systemd notify: READY=1 once the rings are open,
WATCHDOG=1 from the loop.

    name = "mm"                       # the order ring's owner name
    strategy_id = 7
    class = "ttquant.strategies.examples.market_maker:AvellanedaStoikov"
    [venues.binance]
    rings = "binance"                 # /ttq.binance.ticks, .exec, .books
    [params]                          # given to the strategy as self.params
    gamma = 0.1
    [runtime]
    wait = "hybrid"                   # spin | hybrid
    spin_polls = 2000
    on_error = "stop"                 # stop | continue
    cancel_all_on_stop = true
    cpus = []
    max_seconds = 0                   # stop after this long (0: run until SIGTERM)
    gc = "idle"                       # idle: Python's GC only when the loop is idle | python
"""
from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import signal
import time
import traceback

from ttquant.core.idle_gc import IdleCollector
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.toml_config import read_toml
from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastReader, RingNotFoundError, SpscWriter
from ttquant.core.service import SystemdNotify, configure_logging
from ttquant.strategies.base import BaseStrategy, OrderRefused
from ttquant.strategies.order_entry import RingOrderEntry
from ttquant.strategies.tick_dispatch import TickDispatch

__all__ = ["StrategyConfig", "StrategyConfigError", "load_strategy_config", "LiveContext", "run_strategy"]

log = logging.getLogger("ttquant.strategy")
POLL_ROUNDS = 256               # rounds over the rings in C per pass of the Python loop (timers, watchdog)


class StrategyConfigError(ValueError):
    """A strategy file that cannot be used; says which file and which key."""


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    path: str
    name: str
    strategy_id: int
    class_path: str
    venues: dict                    # venue name -> rings name
    params: dict
    wait: str = "hybrid"
    spin_polls: int = 2_000
    on_error: str = "stop"
    cancel_all_on_stop: bool = True
    cpus: tuple = ()
    max_seconds: float = 0.0
    gc: str = "idle"


def load_strategy_config(path: str, name: str | None = None) -> StrategyConfig:
    doc = read_toml(path, StrategyConfigError)

    def fail(key, why):
        raise StrategyConfigError(f"{path}: {key}: {why}")

    for key in doc:
        if key not in ("name", "strategy_id", "class", "venues", "params", "runtime"):
            fail(key, "unknown key (known: class, name, params, runtime, strategy_id, venues)")
    cfg_name = doc.get("name", name)
    if not isinstance(cfg_name, str) or not cfg_name or not all(c.isalnum() or c in "_-" for c in cfg_name) \
            or cfg_name != cfg_name.lower():
        fail("name", f"lower-case letters, digits, '_' and '-', got {cfg_name!r}")
    if name is not None and name != cfg_name:
        fail("name", f"is {cfg_name!r}, but the command asked for {name!r}")
    sid = doc.get("strategy_id")
    if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 2**32:
        fail("strategy_id", f"an integer in 1..2^32-1, got {sid!r}")
    cls = doc.get("class")
    if not isinstance(cls, str) or ":" not in cls:
        fail("class", f"'package.module:ClassName', got {cls!r}")
    venues = doc.get("venues", {})
    if not isinstance(venues, dict) or not venues:
        fail("venues", "at least one [venues.NAME] table")
    rings = {}
    for v, table in venues.items():
        if not isinstance(table, dict):
            fail(f"venues.{v}", "expected a table")
        rings[v] = table.get("rings", v)
        if not isinstance(rings[v], str):
            fail(f"venues.{v}.rings", f"a rings name, got {rings[v]!r}")
    params = doc.get("params", {})
    if not isinstance(params, dict):
        fail("params", "expected a table")
    rt = doc.get("runtime", {})
    if not isinstance(rt, dict):
        fail("runtime", "expected a table")
    for key in rt:
        if key not in ("wait", "spin_polls", "on_error", "cancel_all_on_stop", "cpus", "max_seconds", "gc"):
            fail(f"runtime.{key}", "unknown key")
    wait = rt.get("wait", "hybrid")
    if wait not in ("spin", "hybrid"):
        fail("runtime.wait", f"spin or hybrid, got {wait!r}")
    on_error = rt.get("on_error", "stop")
    if on_error not in ("stop", "continue"):
        fail("runtime.on_error", f"stop or continue, got {on_error!r}")
    cancel = rt.get("cancel_all_on_stop", True)
    if not isinstance(cancel, bool):
        fail("runtime.cancel_all_on_stop", f"true or false, got {cancel!r}")
    cpus = rt.get("cpus", [])
    if not isinstance(cpus, list) or not all(isinstance(c, int) and c >= 0 for c in cpus):
        fail("runtime.cpus", f"a list of CPU numbers, got {cpus!r}")
    max_seconds = rt.get("max_seconds", 0)
    if not isinstance(max_seconds, (int, float)) or isinstance(max_seconds, bool) or max_seconds < 0:
        fail("runtime.max_seconds", f"a number >= 0, got {max_seconds!r}")
    gc_mode = rt.get("gc", "idle")
    if gc_mode not in ("idle", "python"):
        fail("runtime.gc", f"idle or python, got {gc_mode!r}")
    spin = rt.get("spin_polls", 2_000)
    if not isinstance(spin, int) or isinstance(spin, bool) or spin < 0:
        fail("runtime.spin_polls", f"an integer >= 0, got {spin!r}")
    return StrategyConfig(path, cfg_name, sid, cls, rings, params, wait, spin, on_error, cancel, tuple(cpus),
                          float(max_seconds), gc_mode)


def load_class(class_path: str):
    module, _, attr = class_path.partition(":")
    return getattr(importlib.import_module(module), attr)


class _Venue:
    def __init__(self, name, rings, table, ticks, exec_reader, orders, board):
        self.name, self.rings, self.table = name, rings, table
        self.ticks, self.exec, self.orders, self.board = ticks, exec_reader, orders, board
        self.instruments = {}           # instrument id -> Instrument, filled on first sight


class LiveContext:
    """What a strategy's actions reach in live trading: its order rings and the venues' rings."""

    def __init__(self, cfg: StrategyConfig):
        self.cfg = cfg
        self.strategy_id = cfg.strategy_id
        self.venues: dict[str, _Venue] = {}
        self._by_table = {}
        self.order_entry = RingOrderEntry(self, cfg.name, cfg.strategy_id)     # orders straight into the rings
        self.timers: dict[str, list] = {}           # name -> [interval ns, next ns]

    def open(self, wait_s=60.0):
        deadline = time.monotonic() + wait_s
        for name, rings in self.cfg.venues.items():
            while True:
                try:
                    table = InstrumentTable.load(instruments_path(rings))
                    ticks = BroadcastReader(f"/ttq.{rings}.ticks", start="latest", wait=self.cfg.wait)
                    exec_reader = BroadcastReader(f"/ttq.{rings}.exec", start="latest")
                    break
                except (RingNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"strategy {self.cfg.name}: venue {name} ({rings}) not up: {exc}")
                    time.sleep(0.1)
            orders = SpscWriter(f"/ttq.{rings}.orders.{self.cfg.name}", RecordType.ORDER)
            board = None
            try:
                from ttquant.core.book.book_board import BookBoard
                board = BookBoard(f"/ttq.{rings}.books")
            except (RingNotFoundError, OSError):
                pass
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


class StrategyRunner:
    """Polls the rings (in C: tick_dispatch.pyx) and runs the timers; shared shape with the
    backtest engine's."""

    def __init__(self, cfg: StrategyConfig, ctx: LiveContext, strategy, notify=None):
        self.cfg, self.ctx, self.strategy = cfg, ctx, strategy
        self.notify = notify or (lambda text: None)
        self.stopping = False
        self.errors = 0
        self.failed = False
        wants_book = type(strategy).on_book is not BaseStrategy.on_book
        self.dispatch = TickDispatch(strategy, ctx.strategy_id, ctx.order_entry, self._failed_handler, wants_book)
        for v in ctx.venues.values():
            self.dispatch.add_venue(v.ticks, v.exec, v.table)

    @property
    def events(self) -> int:
        return self.dispatch.events

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
        if self.cfg.on_error == "stop":
            self.stopping = self.failed = True      # on_stop and cancel-all still run; exit 3
        return self.stopping

    def step(self, rounds: int = 1) -> bool:
        busy = self.dispatch.poll(rounds) > 0
        if self.ctx.timers:
            now = time.time_ns()
            for name, t in self.ctx.timers.items():
                if now >= t[1]:
                    t[1] = now + t[0]
                    self._call(self.strategy.on_timer, name)
        return busy

    def run(self) -> int:
        cfg = self.cfg
        if cfg.cpus:
            os.sched_setaffinity(0, set(cfg.cpus))
        self._call(self.strategy.on_start)
        collector = IdleCollector(time.monotonic()) if cfg.gc == "idle" else None
        self.notify("READY=1")
        idle, sleep_s, beat = 0, 50e-6, 0
        last_beat = time.monotonic()
        end = time.monotonic() + cfg.max_seconds if cfg.max_seconds else None
        while not self.stopping:
            busy = self.step(POLL_ROUNDS)
            if collector is not None and (busy or not beat & 7):
                collector.poll(time.monotonic(), busy)
            if busy:
                idle, sleep_s = 0, 50e-6
            else:
                idle += POLL_ROUNDS
                if cfg.wait == "hybrid" and idle > cfg.spin_polls:
                    if len(self.ctx.venues) == 1:
                        # asleep on the tick ring's futex: md's next push wakes it at once
                        venue = next(iter(self.ctx.venues.values()))
                        ev = venue.ticks.wait(timeout=1e-3)
                        if ev is not None:
                            self.dispatch.dispatch(0, ev)
                            idle = 0
                    else:
                        time.sleep(sleep_s)
                        sleep_s = min(sleep_s * 2, 250e-6)    # a sleeping loop still answers within ~0.3 ms
            beat += 1
            if beat & 1023:
                continue
            now = time.monotonic()
            if now - last_beat > 1.0:
                last_beat = now
                self.notify("WATCHDOG=1")
                for v in self.ctx.venues.values():
                    v.orders.heartbeat()
                if end is not None and now > end:
                    self.stopping = True
        self.notify("STOPPING=1")
        if collector is not None:
            collector.close()
        self._call(self.strategy.on_stop)
        if cfg.cancel_all_on_stop and self.strategy.orders:
            self._call(self.strategy.cancel_all)
        log.info("%s stopped: %d events, %d handler errors, %d open orders left", cfg.name, self.events,
                 self.errors, len(self.strategy.orders))
        return 3 if self.failed else 0


def run_strategy(name: str, config_path: str) -> int:
    configure_logging()
    cfg = load_strategy_config(config_path, name)
    cls = load_class(cfg.class_path)
    ctx = LiveContext(cfg)
    ctx.open()
    strategy = cls(ctx, cfg.params)
    runner = StrategyRunner(cfg, ctx, strategy, SystemdNotify())
    trace_path = os.environ.get("TTQ_STRATEGY_TRACE")
    if trace_path:
        ctx.order_entry.start_trace()   # for latency reports: which tick each order answered
    signal.signal(signal.SIGTERM, lambda *_: setattr(runner, "stopping", True))
    signal.signal(signal.SIGINT, lambda *_: setattr(runner, "stopping", True))
    try:
        return runner.run()
    finally:
        if trace_path:
            import numpy as np
            np.save(trace_path, ctx.order_entry.trace)
        ctx.close()
