"""`ttquant strategy run NAME`: one strategy, live, in its own process.

It reads the tick ring of every venue it trades and the venue's exec ring (keeping its own
reports), writes its own SPSC order ring per venue (/ttq.<rings>.orders.<name>: nobody else
can write it), and calls the strategy's handlers; a handler that raises is logged with its
traceback and, by config, stops the strategy cleanly or is skipped. SIGTERM: on_stop, cancel
all open orders when configured, exit 0. The service runner (core/daemon/) does logging,
signals, notify, the instance lock and the hybrid wait; the config is strategies/config.py
(`ttquant config example strategy`). While md or the gateway is not up it waits and says so.

Each run leaves a run record (RunRecord) in [runtime] runs_dir, which the shipper loads into
strategy_runs: what ran (class, config, code version), where, when, how it ended.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback

from ttquant.core.daemon.config import load_config
from ttquant.core.daemon.hybrid_wait import HybridWait
from ttquant.core.daemon.runner import EXIT_ERROR, EXIT_OK, EXIT_STRATEGY_FAILED, Daemon, ServiceError, ServiceRunner
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.records import Order, OrderAction, OrderStatus, RecordType, RejectCode, ReportFlag
from ttquant.core.rings import BroadcastReader, RingNotFoundError, SpscWriter
from ttquant.core.rings.names import book_board, exec_ring, instance_lock_file, order_ring, tick_ring
from ttquant.strategies.base import BaseStrategy, OrderRefused
from ttquant.strategies.config import StrategyConfig, StrategyConfigError
from ttquant.strategies.order_entry import OpenOrder, RingOrderEntry
from ttquant.strategies.tick_dispatch import TickDispatch

__all__ = ["StrategyConfig", "StrategyConfigError", "load_strategy_config", "LiveContext", "StrategyDaemon",
           "RunRecord"]

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
            table = wait_for(f"{name}'s instrument table",
                             lambda rings=rings: _try(InstrumentTable.load, instruments_path(rings)), hint=md)
            ticks = wait_for(f"{name}'s tick ring {tick_ring(rings)}", lambda rings=rings: _try(
                BroadcastReader, tick_ring(rings), start="latest", wait=self.cfg.loop.wait), hint=md)
            exec_reader = wait_for(f"{name}'s exec ring {exec_ring(rings)}", lambda rings=rings: _try(
                BroadcastReader, exec_ring(rings), start="latest"), hint=f"is ttquant-gateway@{name} running?")
            orders = SpscWriter(order_ring(rings, self.cfg.name), RecordType.ORDER)
            board = _try(_open_board, rings)
            self.venues[name] = _Venue(name, rings, table, ticks, exec_reader, orders, board)
            self._by_table[table.venue] = self.venues[name]
            self.order_entry.add_venue(table.venue, orders)

    def sync(self, strategy) -> None:
        """Ask each venue's gateway what it holds for this strategy and take it before on_start:
        positions (exact, as the gateway's own books of this strategy's fills have them) and open
        orders. A strategy restarted by systemd resumes with them; the fills it missed while down
        are in the positions. What the exec ring said of this strategy before the answer is in
        the answer too, so it is skipped (records.pxd: SYNC)."""
        sid = self.strategy_id
        for name, v in self.venues.items():
            cid = self.next_client_order_id()
            v.orders.push(Order(ts_created=time.time_ns(), client_order_id=cid, strategy_id=sid,
                                action=OrderAction.SYNC))
            positions, orders, synced = [], [], []

            def attempt(name=name, v=v, cid=cid, positions=positions, orders=orders, synced=synced):
                r = v.exec.poll()
                while r is not None:
                    if r.strategy_id == sid:
                        if r.status == OrderStatus.POSITION and r.client_order_id == cid:
                            positions.append(r.copy())
                        elif r.flags & ReportFlag.RESTATED:
                            orders.append(r.copy())
                        elif r.status == OrderStatus.SYNCED and r.client_order_id == cid:
                            synced.append(r.copy())
                            return True
                        elif r.status == OrderStatus.REJECTED and r.client_order_id == cid:
                            raise ServiceError(f"the gateway of {name} refused this strategy's SYNC: "
                                               f"{RejectCode(r.reject_code).name} ({r.reject_code})")
                    r = v.exec.poll()
                return None
            self.runner.wait_for(f"the gateway of {name} to say what it holds for strategy {self.cfg.name}", attempt,
                                 hint=f"is ttquant-gateway@{name} running?",
                                 timeout_s=self.cfg.runtime.sync_timeout_s or None)
            for p in positions:
                inst = v.table.get(p.instrument_id)
                if inst is None:
                    raise ServiceError(f"the gateway of {name} holds a position in instrument {p.instrument_id}, "
                                       f"which is not in {name}'s instrument table")
                strategy.portfolio.restore(inst, p.qty, p.cum_qty, p.last_price, p.fee, p.leaves_qty)
            for o in orders:
                inst = v.table.get(o.instrument_id)
                open_order = OpenOrder(o.client_order_id, inst, o.side, o.order_type, o.price, o.qty)
                open_order.cum_qty_raw, open_order.status = o.cum_qty, OrderStatus(o.status)
                strategy.orders[o.client_order_id] = open_order
            self.order_entry.note_client_order_id(synced[0].venue_order_id)
            if positions or orders:
                held = []
                for p in positions:
                    inst = v.table.get(p.instrument_id)
                    held.append(f"{inst.symbol} {inst.market_type.name.lower()} {p.qty / 10 ** inst.size_precision:+g}")
                log.info("%s: resumed on %s with %s; %d open orders", self.cfg.name, name,
                         ", ".join(held) or "no position", len(orders))

    def now_ns(self) -> int:
        return time.time_ns()

    def label_of(self, position) -> str:
        """BTCUSDT.spot for a Position (with the venue when the strategy trades several)."""
        v = next((v for v in self.venues.values() if v.table.venue == position.venue), None)
        inst = v.table.get(position.instrument_id) if v is not None else None
        label = inst.label if inst is not None else f"{position.symbol}#{position.instrument_id}"
        return label if len(self.venues) == 1 else f"{position.venue}:{label}"

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


class StrategyTelemetry:
    """The strategy's telemetry segment (core/telemetry), /ttq.<rings>.telemetry.strategy-<name>
    on its first venue's rings: counts and positions copied from the runtime a few times a
    second, tick-to-order counted by the order entry in C as each new order goes out."""
    PUBLISH_EVERY_S = 0.25

    def __init__(self, ctx: LiveContext, daemon):
        from ttquant.core.telemetry.telemetry import TelemetryWriter
        cfg = ctx.cfg
        first = next(iter(ctx.venues.values()))
        self.ctx, self.daemon = ctx, daemon
        self.writer = TelemetryWriter(first.rings, f"strategy-{cfg.name}", "strategy", groups=128,
                                      labels={"strategy": cfg.name})
        self.counts = self.writer.counters(["events_total", "reports_total", "orders_total", "orders_refused_total",
                                            "handler_errors_total", "lost_ticks_total", "lapped_total"])
        self.state = self.writer.gauges(["open_orders", "tick_lag_records"])
        ctx.order_entry.count_into(self.writer.histogram("tick_to_order_seconds"))
        self.positions, self.pnl = {}, {}       # label -> gauge array (scale 8), quote -> gauge array
        self.next_publish = 0.0

    def publish(self, now: float) -> None:
        if now < self.next_publish:
            return
        self.next_publish = now + self.PUBLISH_EVERY_S
        d, entry = self.daemon, self.ctx.order_entry
        venues = list(self.ctx.venues.values())
        self.counts[:] = (d.events, d.dispatch.reports if d.dispatch is not None else 0, entry.orders_sent,
                          entry.orders_refused, d.errors, sum(v.ticks.lost for v in venues),
                          sum(v.ticks.laps for v in venues))
        self.state[:] = (len(d.strategy.orders) if d.strategy is not None else 0,
                         sum(v.ticks.lag for v in venues))
        if d.strategy is None:
            return
        pnl = {}
        for p in d.strategy.portfolio.positions():
            label = self.ctx.label_of(p)
            g = self.positions.get(label)
            if g is None and len(self.positions) < 100:
                g = self.positions[label] = self.writer.gauges([f"position{{instrument={label}}}"], scale=8)
            if g is not None:
                g[0] = p.qty_raw * 10 ** (8 - p.size_precision) if p.size_precision <= 8 else \
                    p.qty_raw // 10 ** (p.size_precision - 8)
            pnl[p.quote] = pnl.get(p.quote, 0) + p.realised_raw * 10 ** 8 // 10 ** p.pnl_precision
        for quote, v in pnl.items():
            g = self.pnl.get(quote)
            if g is None:
                g = self.pnl[quote] = self.writer.gauges([f"realised_pnl{{quote={quote}}}"], scale=8)
            g[0] = v
        self.writer.heartbeat()

    def close(self):
        self.ctx.order_entry.count_into(None)
        self.writer.close()


class RunRecord:
    """<runs_dir>/<name>.<started_ns>.json, one per run: the strategy (name, id, class), its
    config as loaded, the code (ttquant's version, `git describe --always --dirty` of the
    strategy file's directory when that is a git work tree, else null, and the file's sha256),
    the environment (host, python, pid, venues and their rings, user, the systemd unit and
    invocation when systemd started it) and started_ns. At the stop the file is rewritten with
    stopped_ns, exit_code and the final counts. Each write is a temporary file, fsynced, renamed
    over the record, and the directory fsynced: a reader sees the old record or the new one,
    never half of one; a SIGKILL leaves the start-only record (stopped_ns null).

    The record is not worth refusing to trade for: a runs_dir that cannot be written is said
    in the log (a warning) and the run goes on without one."""
    FORMAT = 1

    def __init__(self, cfg: StrategyConfig, started_ns: int | None = None):
        self.cfg = cfg
        self.started_ns = started_ns or time.time_ns()
        self.path = os.path.join(cfg.runs_dir, f"{cfg.name}.{self.started_ns}.json") if cfg.runs_dir else ""
        self.record: dict | None = None

    def start(self) -> bool:
        if not self.path:
            return False
        import msgspec
        cfg = self.cfg
        cls = getattr(cfg, "strategy_class", None)
        self.record = {
            "format": self.FORMAT, "strategy": cfg.name, "strategy_id": cfg.strategy_id, "class": cfg.class_path,
            "class_qualname": f"{cls.__module__}:{cls.__qualname__}" if cls is not None else None,
            "config_file": getattr(cfg, "path", "") or None,
            "config": msgspec.to_builtins(cfg),
            "code": _code_version(cls),
            "environment": _environment(cfg),
            "started_ns": self.started_ns, "stopped_ns": None, "exit_code": None, "counts": None,
        }
        if not self._write():
            self.record = None              # no record to finish at the stop either
            return False
        return True

    def stop(self, exit_code: int, counts: dict) -> bool:
        if self.record is None:
            return False
        self.record.update(stopped_ns=time.time_ns(), exit_code=exit_code, counts=counts)
        return self._write()

    def _write(self) -> bool:
        directory = os.path.dirname(self.path)
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(self.record, f, indent=1, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)                    # the rename itself on disk
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("%s: no run record written to %s (%s); [runtime] runs_dir in %s", self.cfg.name,
                        directory, exc.strerror or exc, getattr(self.cfg, "path", "") or "the config")
            return False
        return True


def _code_version(cls) -> dict:
    from importlib.metadata import PackageNotFoundError, version
    try:
        ttquant = version("ttquant")
    except PackageNotFoundError:
        ttquant = None
    source = sha = git = None
    try:
        import inspect
        source = inspect.getsourcefile(cls) if cls is not None else None
    except TypeError:
        source = None
    if source:
        try:
            with open(source, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            sha = None
        try:
            out = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(source)), "describe", "--always",
                                  "--dirty"], capture_output=True, text=True, timeout=10)
            git = (out.stdout.strip() or None) if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            git = None              # no git, or not a work tree
    return {"ttquant": ttquant, "git": git, "source": source, "source_sha256": sha}


def _environment(cfg) -> dict:
    unit = None
    try:
        with open("/proc/self/cgroup") as f:        # 0::/system.slice/ttquant-strategy@mm.service
            last = f.read().strip().rsplit("/", 1)[-1]
            unit = last if last.endswith(".service") else None
    except OSError:
        pass
    import getpass
    return {"host": socket.gethostname(), "python": sys.version.split()[0], "pid": os.getpid(),
            "user": getpass.getuser(), "venues": dict(cfg.venue_rings),
            "systemd_unit": unit if os.environ.get("INVOCATION_ID") else None,
            "invocation_id": os.environ.get("INVOCATION_ID") or None}


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
        self.telemetry = None
        self.run_record = None
        self._exit_code = EXIT_OK

    def locks(self):
        return [(instance_lock_file(rings, "strategy", self.cfg.name), f"strategy {self.cfg.name!r} on rings {rings!r}")
                for rings in self.cfg.venue_rings.values()]

    def start(self):
        cfg = self.cfg
        self.ctx = LiveContext(cfg, self.runner)
        self.ctx.open()
        self.strategy = cfg.strategy_class(self.ctx, cfg.params)
        self.ctx.sync(self.strategy)
        wants_book = type(self.strategy).on_book is not BaseStrategy.on_book
        self.dispatch = TickDispatch(self.strategy, self.ctx.strategy_id, self.ctx.order_entry, self._failed_handler,
                                     wants_book)
        for v in self.ctx.venues.values():
            self.dispatch.add_venue(v.ticks, v.exec, v.table)
        if os.environ.get("TTQ_STRATEGY_TRACE"):
            self.ctx.order_entry.start_trace()   # for latency reports: which tick each order answered
        self.telemetry = StrategyTelemetry(self.ctx, self)
        self.run_record = RunRecord(cfg)
        self.run_record.start()

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
        self.telemetry.publish(now)
        if now - self._last_beat > 1.0:
            self._last_beat = now
            for v in self.ctx.venues.values():
                v.orders.heartbeat()
            if self._end is not None and now > self._end:
                self.runner.request_stop()

    def status(self) -> str:
        if self.strategy is None:
            return "starting"
        held = [p for p in self.strategy.portfolio.positions() if p.qty_raw]
        positions = " ".join(f"{self.ctx.label_of(p)}={p.qty.normalize():f}" for p in held) or "none"
        return (f"{self.events} events, {len(self.strategy.orders)} open orders, {self.errors} handler errors; "
                f"positions {positions}")

    def serve(self) -> int:
        cfg = self.cfg
        self._exit_code = EXIT_ERROR            # what the runner returns should serve raise
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
        self._exit_code = EXIT_STRATEGY_FAILED if self.failed else 0
        return self._exit_code

    def close(self):
        if self.run_record is not None and self.ctx is not None:
            entry = self.ctx.order_entry
            self.run_record.stop(self._exit_code, {
                "events": self.events, "reports": self.dispatch.reports if self.dispatch is not None else 0,
                "orders": entry.orders_sent, "orders_refused": entry.orders_refused, "handler_errors": self.errors})
        trace_path = os.environ.get("TTQ_STRATEGY_TRACE")
        if trace_path and self.ctx is not None:
            import numpy as np
            np.save(trace_path, self.ctx.order_entry.trace)
        if self.telemetry is not None:
            self.telemetry.publish(float("inf"))        # the last counts stay readable after the stop
            self.telemetry.close()
        if self.ctx is not None:
            self.ctx.close()
