"""`ttquant md binance --config FILE`: one market-data process per venue.

Threads:
  main          setup, then waits for SIGTERM/SIGINT and shuts down in order (exit 0)
  md-ws         the uvloop event loop: one picows connection per market, frames straight into
                the normaliser (tick ring, books, board); pinned to threads.ws_cpus when given
  md-house      REST snapshots and exchangeInfo, stats, ring heartbeats, systemd notify and
                watchdog; pinned to threads.housekeeping_cpus when given
Snapshots are fetched on md-house and applied on md-ws (call_soon_threadsafe), so a book is
only ever touched by the thread that reads its stream.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import queue
import random
import threading
import time
import urllib.error
import urllib.request

import orjson

from ttquant.core.book.book_board import BookBoardWriter
from ttquant.core.daemon.process import ProcessSetupError, name_thread, pin_thread
from ttquant.core.daemon.runner import Daemon, ServiceError
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.md.binance.exchange_info import MARKET_TYPES, instruments_from_exchange_info, merge_instruments
from ttquant.core.md.binance.normaliser import COUNTER_NAMES, TELEMETRY_NAMES, BinanceNormaliser
from ttquant.core.md.config import MdConfig
from ttquant.core.md.frame_tee import FrameTee
from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.core.rings.names import book_board, instance_lock_file, telemetry_segment, tick_ring
from ttquant.core.telemetry.telemetry import TelemetryWriter, read_telemetry

__all__ = ["MdDaemon", "read_md_counters", "DAEMON_COUNTERS"]

log = logging.getLogger("ttquant.md")
REST_PATHS = {"spot": ("/api/v3/exchangeInfo", "/api/v3/depth"),
              "usdm": ("/fapi/v1/exchangeInfo", "/fapi/v1/depth")}
# the daemon's own counters, a telemetry group of each feed beside the normaliser's
DAEMON_COUNTERS = {name: i for i, name in enumerate((
    "connects", "connect_failures", "disconnects", "idle_timeouts", "snapshot_requests",
    "snapshot_http_errors", "rollovers", "rollover_failures", "exchange_info_refreshes",
    "exchange_info_errors", "instrument_updates", "instrument_changes_refused"))}


def http_get(url: str, timeout: float = 10.0) -> bytes:
    req = urllib.request.Request(url, headers={"User-Agent": "ttquant-md"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def _enter_thread(what, cpus, key):
    """First thing on a daemon thread: its OS name, then its CPUs when configured."""
    name_thread(what)
    pin_thread(what, cpus, key)


class _Connection:
    """One WebSocket connection of a market feed."""

    def __init__(self, loop):
        self.transport = None
        self.closed = loop.create_future()
        self.connected_at = time.monotonic()
        self.first_frame = 0.0          # monotonic time of its first frame (0: none yet)
        self.last_frame = time.monotonic()
        self.frames = 0
        self.secondary = False          # the successor of a rollover until it takes over

    def close(self, graceful=True):
        if self.transport is not None and not self.closed.done():
            if graceful:
                self.transport.send_close()
            self.transport.disconnect(graceful=graceful)


class _MarketFeed:
    """One market's stream, on the md-ws loop: a primary connection, reconnected with backoff,
    and before it grows too old a successor that overlaps it until it is proven up, so the tick
    stream has no gap (the normaliser drops what both deliver)."""

    def __init__(self, daemon: MdDaemon, market, normaliser: BinanceNormaliser, counters):
        self.d, self.market, self.norm, self.counters = daemon, market, normaliser, counters    # the daemon's
        self.url = f"{market.ws_url}/stream?streams={'/'.join(market.stream_names())}"
        self.primary: _Connection | None = None
        self.successor: _Connection | None = None
        self.last_frame = time.monotonic()
        self.frames_seen = 0
        self.tee = None                 # FrameTee when [record_frames] dir is set

    @property
    def transport(self):
        return self.primary.transport if self.primary is not None else None

    def count(self, name):
        self.counters[DAEMON_COUNTERS[name]] += 1

    async def _open(self, successor=False) -> _Connection:
        """Connect once; raises whatever the connect raised. A primary connection starts the
        books again (before its first frame); a successor carries on with them."""
        from picows import WSListener, WSMsgType, ws_connect
        feed = self
        conn = _Connection(asyncio.get_running_loop())
        conn.secondary = successor

        class Listener(WSListener):
            def on_ws_connected(self, transport):
                if not conn.secondary:
                    feed.norm.restart_books()   # BOOK_RESET, board unsynced, snapshots requested

            def on_ws_frame(self, transport, frame):
                if frame.msg_type == WSMsgType.TEXT:
                    ts_recv = time.time_ns()
                    conn.last_frame = feed.last_frame = time.monotonic()
                    if not conn.frames:
                        conn.first_frame = conn.last_frame
                    conn.frames += 1
                    feed.frames_seen += 1
                    payload = frame.get_payload_as_bytes()
                    feed.norm.on_frame(payload, ts_recv, conn.secondary)
                    if feed.tee is not None:
                        feed.tee.put(ts_recv, payload)
                elif frame.msg_type == WSMsgType.PING:
                    conn.last_frame = feed.last_frame = time.monotonic()
                    transport.send_pong(frame.get_payload_as_bytes())
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.disconnect()

            def on_ws_disconnected(self, transport):
                if not conn.closed.done():
                    conn.closed.set_result(True)
                if conn.secondary:
                    feed.norm.end_overlap(False)    # what it held, the primary delivers itself

        cfg = self.d.cfg
        transport, _ = await ws_connect(Listener, self.url, enable_auto_pong=False,
                                        max_frame_size=max(cfg.limits.max_frame_bytes * 4, 1 << 20),
                                        websocket_handshake_timeout=10)
        conn.transport = transport
        conn.connected_at = conn.last_frame = time.monotonic()
        self.count("connects")
        return conn

    def _backoff_delay(self, backoff):
        return min(backoff, self.d.cfg.connection.backoff_max_s) * random.uniform(0.5, 1.0)

    async def run(self):
        cfg = self.d.cfg
        backoff = cfg.connection.backoff_initial_s
        while not self.d.stopping:
            try:
                self.primary = await self._open()
            except Exception as exc:        # OSError, timeouts, and picows' own handshake errors
                self.count("connect_failures")
                delay = self._backoff_delay(backoff)
                log.warning("%s: connect failed (%s); next try in %.2f s", self.market.name, exc, delay)
                await self.d.pause(delay)
                backoff = min(backoff * 2, cfg.connection.backoff_max_s)
                continue
            log.info("%s: connected, %d streams", self.market.name, len(self.market.stream_names()))
            if await self._serve():
                backoff = cfg.connection.backoff_initial_s     # a connection that stayed up resets the backoff
            if not self.d.stopping:
                self.count("disconnects")
                delay = self._backoff_delay(backoff)
                log.warning("%s: disconnected; reconnecting in %.2f s", self.market.name, delay)
                await self.d.pause(delay)
                backoff = min(backoff * 2, cfg.connection.backoff_max_s)
        for conn in (self.primary, self.successor):
            if conn is not None:
                conn.close()

    async def _serve(self) -> bool:
        """Watch the primary (and roll it over) until it is gone; True if it stayed up a while."""
        cfg = self.d.cfg
        stayed_up = False
        rollover = None
        next_rollover_try = 0.0
        rollover_backoff = cfg.connection.backoff_initial_s
        while not self.d.stopping:
            conn = self.primary
            await asyncio.wait([conn.closed], timeout=0.5)
            if self.primary is not conn:
                continue                    # a rollover replaced it meanwhile
            now = time.monotonic()
            if conn.closed.done():
                if self.successor is not None and not self.successor.closed.done() and self.successor.frames:
                    self._promote()         # lost during a rollover: the successor is already streaming
                    continue
                break
            if now - conn.last_frame > cfg.connection.idle_timeout_s:
                self.count("idle_timeouts")
                log.warning("%s: nothing for %.0f s, reconnecting", self.market.name, now - conn.last_frame)
                conn.close(graceful=False)
                continue
            stayed_up = stayed_up or now - conn.connected_at > 1.0
            if (rollover is None and now - conn.connected_at > cfg.connection.max_connection_age_s
                    and now >= next_rollover_try):
                rollover = asyncio.ensure_future(self._roll_over(conn))
            elif rollover is not None and rollover.done():
                if not rollover.result():       # the old connection stays; try again, backing off
                    next_rollover_try = now + self._backoff_delay(rollover_backoff)
                    rollover_backoff = min(rollover_backoff * 2, cfg.connection.backoff_max_s)
                else:
                    rollover_backoff = cfg.connection.backoff_initial_s
                rollover = None
        if rollover is not None:
            rollover.cancel()
        if self.successor is not None:
            self.successor.close(graceful=False)
            self.successor = None
        return stayed_up

    async def _roll_over(self, old: _Connection) -> bool:
        """A successor connection, up before `old` closes; True once it has taken over."""
        cfg = self.d.cfg
        log.info("%s: connection %.0f s old, opening its successor", self.market.name,
                 time.monotonic() - old.connected_at)
        try:
            self.successor = await self._open(successor=True)
        except Exception as exc:
            self.count("rollover_failures")
            log.warning("%s: successor connection failed (%s); the old one stays", self.market.name, exc)
            return False
        new = self.successor
        try:
            while not self.d.stopping:
                await asyncio.sleep(0.05)
                if new.closed.done():
                    self.count("rollover_failures")
                    log.warning("%s: successor closed before it took over", self.market.name)
                    return False
                if old.closed.done() and new.frames:
                    break           # _serve promotes it
                if new.frames and time.monotonic() - new.first_frame >= cfg.connection.rollover_overlap_s:
                    break
                if time.monotonic() - new.connected_at > cfg.connection.idle_timeout_s:
                    self.count("rollover_failures")
                    new.close(graceful=False)
                    return False
            if self.primary is old:
                self._promote()
            old.close(graceful=True)
            try:
                await asyncio.wait_for(asyncio.shield(old.closed), timeout=5.0)
            except TimeoutError:
                old.close(graceful=False)
            return True
        finally:
            if self.successor is new and new.closed.done():
                self.successor = None

    def _promote(self):
        """The successor becomes the primary; books and ids carry on (no restart)."""
        old, self.primary, self.successor = self.primary, self.successor, None
        self.primary.secondary = False
        if old is not None:
            old.secondary = True        # until it has closed, what it still sends is a copy
        released = self.norm.end_overlap(True)
        self.count("rollovers")
        log.info("%s: rolled over to a new connection (%d held events released)", self.market.name, released)


class MdDaemon(Daemon):
    """`ttquant md VENUE`: the venue's market data into the tick ring, books and board."""
    role = "md"
    schema = MdConfig
    log_threads = True

    def __init__(self, cfg: MdConfig, runner):
        super().__init__(cfg, runner)
        self.stopping = False
        self.stop_event = threading.Event()
        self.notify = runner.notify
        self.snapshot_requests: queue.Queue = queue.Queue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.feeds: dict[str, _MarketFeed] = {}
        self.loop_alive = time.monotonic()
        self.ready_sent = False
        self.ticks = self.board = self.stats = None
        self.refresh_due = False                # exchangeInfo at once on the housekeeping thread
        self.exchange_info_bodies = {}          # market -> the exchangeInfo document fetched at start

    def locks(self):
        return [(instance_lock_file(self.cfg.ring_name, "md"), f"md of rings {self.cfg.ring_name!r}")]

    def on_stop_requested(self):
        self.stop_event.set()

    # -- setup (main thread) --------------------------------------------------------------------
    def _exchange_info(self, m):
        """The market's exchangeInfo, waiting (and saying so) while the venue cannot be reached."""
        url = m.rest_url + REST_PATHS[m.name][0]
        last_error = []

        def attempt():
            try:
                body = http_get(url)
                self.exchange_info_bodies[m.name] = body
                return orjson.loads(body)
            except (urllib.error.URLError, OSError, TimeoutError, orjson.JSONDecodeError) as exc:
                last_error[:] = [getattr(exc, "reason", exc)]
                return None
        return self.runner.wait_for(f"the venue's exchangeInfo at {url}", attempt,
                                    hint=lambda: f"last error: {last_error[0]}" if last_error else "")

    def _table_from_last_run(self, path):
        """A restart (systemd's, after a crash or a watchdog kill) takes the instrument table the
        last run checked against exchangeInfo within exchange_info_refresh_s, so ticks flow again
        without waiting for the REST round trips; exchangeInfo is fetched again at once on the
        housekeeping thread. None when there is none that fresh or it lacks a configured symbol."""
        try:
            age = time.time() - os.stat(path).st_mtime
            table = InstrumentTable.load(path)
        except (OSError, ValueError):
            return None
        if not 0 <= age < self.cfg.connection.exchange_info_refresh_s:
            return None
        chosen = {}
        for m in self.cfg.market_list:
            insts = [table.by_symbol(sym, MARKET_TYPES[m.name]) for sym in m.symbols]
            if None in insts:
                return None
            chosen[m.name] = insts
        log.info("instruments from the last run's table (checked %.0f s ago); exchangeInfo again in the background",
                 age)
        return table, chosen

    def start(self):
        cfg = self.cfg
        path = instruments_path(cfg.ring_name)
        cached = self._table_from_last_run(path)
        if cached is not None:
            self.table, self.table_path = cached[0], path
            self.refresh_due = True
            self._open_rings(cached[1])
            return
        table = InstrumentTable.load(path) if os.path.exists(path) else InstrumentTable(cfg.venue)
        chosen = {}
        for m in cfg.market_list:
            doc = self._exchange_info(m)
            insts, skipped = instruments_from_exchange_info(doc, m.name, cfg.venue, symbols=m.symbols)
            missing = set(m.symbols) - {i.symbol for i in insts}
            if missing:
                raise ServiceError(f"{cfg.path}: markets.{m.name}.symbols: not listed by the venue: " + ", ".join(
                    f"{s} ({skipped.get(s, 'absent')})" for s in sorted(missing)), 2)
            chosen[m.name] = merge_instruments(table, insts)
        table.save(path)
        self.table, self.table_path = table, path
        self._open_rings(chosen)

    def _open_rings(self, chosen):
        cfg = self.cfg
        group = cfg.shm_group
        self.ticks = BroadcastWriter(tick_ring(cfg.ring_name), RecordType.MARKET_EVENT, cfg.rings.tick_capacity,
                                     group=group)
        self.board = BookBoardWriter(book_board(cfg.ring_name), cfg.rings.board_depth, cfg.rings.board_instruments,
                                     group=group)
        self.stats = TelemetryWriter(cfg.ring_name, "md", "md", labels={"exchange": cfg.venue}, group=group)
        for m in cfg.market_list:
            feed_labels = {"feed": m.name}
            counters = self.stats.counters(TELEMETRY_NAMES, feed_labels)
            hist = self.stats.histogram("frame_to_ring_seconds", feed_labels).values
            daemon_counts = self.stats.counters([n + "_total" for n in DAEMON_COUNTERS], feed_labels)
            norm = BinanceNormaliser(m.name, chosen[m.name], self.ticks, self.board, cfg.venue_id,
                                     counters, cfg.limits.max_frame_bytes,
                                     snapshot_needed=lambda sym, mk=m.name: self.snapshot_requests.put((mk, sym, 0.0)),
                                     latency_hist=hist, with_books=m.has_depth())
            feed = self.feeds[m.name] = _MarketFeed(self, m, norm, daemon_counts)
            if cfg.frames_dir:
                rf = cfg.record_frames
                feed.tee = FrameTee(cfg.frames_dir, cfg.venue, m.name, rf.max_file_s, rf.max_queued)
                if m.name in self.exchange_info_bodies:
                    feed.tee.save_exchange_info(self.exchange_info_bodies[m.name])
        log.info("md %s: %s", cfg.venue, ", ".join(f"{m.name} {list(m.symbols)}" for m in cfg.market_list))

    async def pause(self, delay):
        """asyncio.sleep that a stop cuts short (a reconnect backoff can be 30 s)."""
        end = time.monotonic() + delay
        while not self.stopping:
            left = end - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.1))

    # -- md-ws ----------------------------------------------------------------------------------
    def _ws_thread(self):
        _enter_thread("md-ws", self.cfg.threads.ws_cpus, "threads.ws_cpus")
        import uvloop
        self.loop = uvloop.new_event_loop()
        asyncio.set_event_loop(self.loop)

        async def main():
            tasks = [asyncio.ensure_future(f.run()) for f in self.feeds.values()]
            while not self.stopping:
                self.loop_alive = time.monotonic()
                self.runner.check_faults()          # TTQ_TEST_FAULTS: hang here, the watchdog fires
                await asyncio.sleep(0.1)
            done, pending = await asyncio.wait(tasks, timeout=3)
            for task in pending:                # a connect still under way: cut, not left pending
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1)

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()

    def _apply_snapshot(self, market, symbol, body, ts_recv):
        if not self.feeds[market].norm.on_snapshot(symbol, body, ts_recv):
            log.warning("%s %s: snapshot did not sync the book; fetching another", market, symbol)
            self.snapshot_requests.put((market, symbol, time.monotonic() + self.cfg.connection.snapshot_retry_s))

    # -- md-house -------------------------------------------------------------------------------
    def _house_thread(self):
        _enter_thread("md-house", self.cfg.threads.housekeeping_cpus, "threads.housekeeping_cpus")
        delayed = []
        last_stats = last_refresh = last_drops_log = time.monotonic()
        last_frames = {k: 0 for k in self.feeds}
        drops_logged = {k: {} for k in self.feeds}
        while not self.stopping:
            if self.refresh_due or time.monotonic() - last_refresh >= self.cfg.connection.exchange_info_refresh_s:
                self.refresh_due = False
                last_refresh = time.monotonic()
                self.refresh_instruments()
            try:
                item = self.snapshot_requests.get(timeout=0.2)
                delayed.append(item)
            except queue.Empty:
                pass
            now = time.monotonic()
            due = [d for d in delayed if d[2] <= now]
            delayed = [d for d in delayed if d[2] > now]
            for market, symbol, _ in due:
                self._fetch_snapshot(market, symbol, delayed)
            self.ticks.heartbeat()
            self.board.heartbeat()
            self.stats.heartbeat()
            self._notify_health()
            if now - last_drops_log >= 1.0:        # bad input is logged once a second at most
                last_drops_log = now
                for name, feed in self.feeds.items():
                    drops = {k: v for k, v in feed.norm.counter_dict().items() if k.startswith("drop_")}
                    new = {k: v - drops_logged[name].get(k, 0) for k, v in drops.items()
                           if v > drops_logged[name].get(k, 0)}
                    if new:
                        log.warning("%s: dropped %d frames since the last report: %s", name, sum(new.values()),
                                    ", ".join(f"{k[5:]} {v}" for k, v in sorted(new.items())))
                    drops_logged[name] = drops
            if now - last_stats >= self.cfg.limits.stats_interval_s:
                rates = {k: (f.frames_seen - last_frames[k]) / (now - last_stats) for k, f in self.feeds.items()}
                last_frames = {k: f.frames_seen for k, f in self.feeds.items()}
                last_stats = now
                self.notify.status(self._status_text(rates))

    def refresh_instruments(self):
        """exchangeInfo again: new filters (tick, step, limits) go into the saved table for the
        gateway and tools; a precision change is refused (readers scale by it) until a restart."""
        changed = refused = failed = False
        for name, feed in self.feeds.items():
            m = feed.market
            try:
                body = http_get(m.rest_url + REST_PATHS[name][0])
                doc = orjson.loads(body)
                if feed.tee is not None:
                    feed.tee.save_exchange_info(body)
                insts, skipped = instruments_from_exchange_info(doc, name, self.cfg.venue, symbols=m.symbols)
            except Exception as exc:        # HTTP, JSON or a document without symbols: try next time
                feed.count("exchange_info_errors")
                failed = True
                log.warning("%s: exchangeInfo refresh failed: %s", name, exc)
                continue
            feed.count("exchange_info_refreshes")
            for symbol in sorted(set(m.symbols) - {i.symbol for i in insts}):
                log.warning("%s %s: no longer listed by the venue (%s)", name, symbol, skipped.get(symbol, "absent"))
            for inst in insts:
                known = self.table.by_symbol(inst.symbol, inst.market_type)
                inst = dataclasses.replace(inst, instrument_id=known.instrument_id)
                if inst == known:
                    continue
                if (inst.price_precision, inst.size_precision) != (known.price_precision, known.size_precision):
                    feed.count("instrument_changes_refused")
                    refused = True
                    log.error("%s %s: the venue changed its precision (price %d -> %d, size %d -> %d); "
                              "keeping the old one until md restarts", name, inst.symbol, known.price_precision,
                              inst.price_precision, known.size_precision, inst.size_precision)
                    continue
                self.table.update(inst)
                feed.count("instrument_updates")
                changed = True
                log.info("%s %s: instrument updated from exchangeInfo: %s", name, inst.symbol, ", ".join(
                    f"{f.name} {getattr(known, f.name)} -> {getattr(inst, f.name)}"
                    for f in dataclasses.fields(inst) if getattr(known, f.name) != getattr(inst, f.name)))
        if changed:
            self.table.save(self.table_path)
        # checked now: a restart may take the table as it is; a refused change makes the next
        # start fetch exchangeInfo first, so the restart takes the new precision
        if refused or not failed:
            stamp = 0 if refused else time.time()
            try:
                os.utime(self.table_path, (stamp, stamp))
            except OSError:
                pass

    def _fetch_snapshot(self, market, symbol, delayed):
        feed = self.feeds[market]
        m = feed.market
        feed.count("snapshot_requests")
        url = f"{m.rest_url}{REST_PATHS[market][1]}?symbol={symbol}&limit={m.snapshot_limit}"
        try:
            body = http_get(url)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            feed.count("snapshot_http_errors")
            log.warning("%s %s: snapshot request failed: %s", market, symbol, exc)
            delayed.append((market, symbol, time.monotonic() + self.cfg.connection.snapshot_retry_s))
            return
        ts_recv = time.time_ns()
        if feed.tee is not None:
            feed.tee.put(ts_recv, body)
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._apply_snapshot, market, symbol, body, ts_recv)

    def books_in_sync(self):
        synced = total = 0
        for f in self.feeds.values():
            s, t = f.norm.books_in_sync()
            synced, total = synced + s, total + t
        return synced, total

    def _notify_health(self):
        now = time.monotonic()
        synced, total = self.books_in_sync()
        if not self.ready_sent and synced == total and all(f.transport for f in self.feeds.values()):
            self.ready_sent = True
            self.notify.ready()
            log.info("ready: %d books in sync", total)
        frames_flowing = all(now - f.last_frame < self.cfg.connection.idle_timeout_s for f in self.feeds.values())
        if self.ready_sent and frames_flowing and now - self.loop_alive < 1.0:    # the md-ws loop turns every 0.1 s
            self.notify.watchdog(now)

    def _status_text(self, rates):
        parts = []
        for name, f in self.feeds.items():
            s, t = f.norm.books_in_sync()
            parts.append(f"{name}: {'connected' if f.transport else 'DISCONNECTED'}, "
                         f"{len(f.market.stream_names())} streams, {s}/{t} books in sync, {rates[name]:.0f} msg/s")
        return "; ".join(parts)

    def counters(self):
        """{market: {counter: value}} of the normaliser's and the daemon's counters."""
        out = {}
        for name, f in self.feeds.items():
            c = f.norm.counter_dict()
            c.update({k: int(f.counters[i]) for k, i in DAEMON_COUNTERS.items()})
            out[name] = c
        return out

    # -- life -----------------------------------------------------------------------------------
    def _guarded(self, target):
        def run():
            try:
                target()
            except BaseException as exc:        # the main thread stops the daemon and reports it
                self.thread_errors.append(exc)
                if not isinstance(exc, (ServiceError, ProcessSetupError)):
                    log.exception("%s died", threading.current_thread().name)
        return run

    def serve(self) -> int:
        self.thread_errors = []
        threads = [threading.Thread(target=self._guarded(self._ws_thread), name="md-ws", daemon=True),
                   threading.Thread(target=self._guarded(self._house_thread), name="md-house", daemon=True)]
        for t in threads:
            t.start()
        died = False
        while not self.stop_event.wait(0.5):
            if not all(t.is_alive() for t in threads):
                died = True
                break
        self.stopping = True
        for t in threads:
            t.join(timeout=10)
        self.stuck = [t.name for t in threads if t.is_alive()]
        log.info("md stopped: %s", orjson.dumps(self.counters()).decode())
        for exc in self.thread_errors:
            if isinstance(exc, (ServiceError, ProcessSetupError)):
                raise exc
        if self.stuck:          # a thread still inside the rings: close() leaves them mapped
            log.error("threads did not stop: %s", self.stuck)
            return 1
        return 1 if died else 0

    def close(self):
        if getattr(self, "stuck", None):
            return
        for feed in self.feeds.values():
            if feed.tee is not None:
                feed.tee.close()
        self.feeds.clear()      # the normalisers hold views of the stats segment: gone before it
        for seg in (self.ticks, self.board, self.stats):
            if seg is not None:
                seg.close()

    def status(self):
        return self._status_text({k: 0.0 for k in self.feeds})


def read_md_counters(ring_name: str) -> dict:
    """{market: {counter: value}} from md's telemetry segment, by the normaliser's and the daemon's
    counter names, with "latency_hist" {bucket: count} of frame-to-ring; for tools and tests."""
    ids = dict(zip(TELEMETRY_NAMES, COUNTER_NAMES))
    ids.update((n + "_total", n) for n in DAEMON_COUNTERS)
    out = {}
    for s in read_telemetry(telemetry_segment(ring_name, "md"))["series"]:
        c = out.setdefault(s["labels"]["feed"], {})
        if s["kind"] == "histogram":
            c["latency_hist"] = {int(k): int(v) for k, v in enumerate(s["buckets"]) if v}
        else:
            c[ids.get(s["id"], s["id"])] = s["value"]
    return out
