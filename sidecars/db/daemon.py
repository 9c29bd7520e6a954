"""`ttquant db ship VENUE`: the recorder's journal files into PostgreSQL, following them as they
grow, under the service runner. It reads the journal files only (never the rings), so the
trading path never notices it; while the database is down it retries with backoff (saying so in
its log and STATUS=) and catches up after, loading from its watermarks (shipper.py): nothing
lost, nothing twice. Day partitions of the tick tables are made ahead (today and tomorrow,
and any day the data needs), closed days get their B-tree, and days past `retention.tick_days`
are dropped, at start and hourly. The tick journal's streams (trades, quotes, book) and the
exec journal's (exec, positions) go on `loop.connections` connections at once, each stream on
one. With `journal.orders` set, the gateway's order journal goes to orders and audit_log (gateway
starts, kill switch changes with who and why, risk reloads); with `journal.runs` set, the
strategies' run records in that directory (those trading this stack) go to strategy_runs. The
schema must be migrated first (`ttquant db migrate`): a database without it is a configuration
error, said in one line.

For telemetry, kept up to date (plain attributes, read by whoever publishes them):
    shipped          {stream: rows loaded since start}
    watermark_lag_s  {stream: seconds between the newest record in its files and the last loaded}
    last_error       the last database error ("" while none)

    ship.<venue>.toml: [journal] dir / orders / runs, [database] dsn, [loop] batch / connections /
                       poll_interval_s / retry_*, [book] depth / interval_ms, [retention]
                       tick_days, [process]
"""
from __future__ import annotations

import logging
import os
import time

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, check_rings_key
from ttquant.core.daemon.runner import EXIT_CONFIG, Daemon, ProcessTable, ServiceError
from ttquant.core.rings.names import instance_lock_file

__all__ = ["ShipperConfig", "Shipper"]

log = logging.getLogger("ttquant.db.ship")


class ShipJournal(Table):
    dir: str = "/var/lib/ttquant/journal"     # the recorder's journal directory (relative: from this file)
    orders: str = ""                          # the gateway's order journal ("": not shipped; relative: from this file)
    runs: str = ""                            # the strategies' runs_dir ("": not shipped; relative: from this file)


class ShipDatabase(Table):
    dsn: str = ""                             # libpq string or URL ("": $TTQ_DATABASE_URL)
    connect_timeout_s: float = 5.0

    def __post_init__(self):
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s: {self.connect_timeout_s} must be positive")


class ShipLoop(Table):
    batch: int = 100_000                      # records per transaction
    connections: int = 2                      # streams shipped at once, one connection each
    poll_interval_s: float = 1.0              # how often it looks for new records
    retry_min_s: float = 0.5                  # the database is down: first wait, doubling up to retry_max_s
    retry_max_s: float = 30.0

    def __post_init__(self):
        if not 1 <= self.batch <= 1_000_000:
            raise ValueError(f"batch: {self.batch} must be in 1..1000000")
        if not 1 <= self.connections <= 8:
            raise ValueError(f"connections: {self.connections} must be in 1..8")
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s: {self.poll_interval_s} must be positive")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError(f"retry_min_s: must be positive and at most retry_max_s ({self.retry_max_s})")


class ShipBook(Table):
    depth: int = 20                           # levels per side in book_snapshots (the book board's default)
    interval_ms: int = 1000                   # at most one snapshot per instrument this often (0: every message)

    def __post_init__(self):
        if not 1 <= self.depth <= 1000:
            raise ValueError(f"depth: {self.depth} must be in 1..1000")
        if self.interval_ms < 0:
            raise ValueError(f"interval_ms: {self.interval_ms} must not be negative")


class ShipRetention(Table):
    tick_days: int = 30                       # trades, quotes, book snapshots older than this are dropped (0: keep)

    def __post_init__(self):
        if self.tick_days < 0:
            raise ValueError(f"tick_days: {self.tick_days} must not be negative")


class ShipperConfig(Table):
    rings: str = ""                           # the recorded stack: <dir>/<rings>.ticks/, .exec/ (default: the venue)
    journal: ShipJournal = msgspec.field(default_factory=ShipJournal)
    database: ShipDatabase = msgspec.field(default_factory=ShipDatabase)
    loop: ShipLoop = msgspec.field(default_factory=ShipLoop)
    book: ShipBook = msgspec.field(default_factory=ShipBook)
    retention: ShipRetention = msgspec.field(default_factory=ShipRetention)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def finish(self, base_dir: str, instance: str = "", path: str = ""):
        self.path = path
        try:
            check_rings_key(self.rings, "rings")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.rings_name = self.rings or instance
        if not self.rings_name:
            raise ConfigError("rings: missing (or start it as `ttquant db ship VENUE`)")
        self.journal_dir = os.path.join(base_dir, self.journal.dir, "")
        self.orders_path = os.path.join(base_dir, self.journal.orders) if self.journal.orders else ""
        self.runs_dir = os.path.join(base_dir, self.journal.runs) if self.journal.runs else ""
        self.dsn = self.database.dsn or os.environ.get("TTQ_DATABASE_URL", "")     # checked at start


class Shipper(Daemon):
    role = "ship"
    schema = ShipperConfig

    def __init__(self, cfg: ShipperConfig, runner):
        super().__init__(cfg, runner)
        self.conn = None
        self.more_conns = []
        self.shipped: dict[str, int] = {}           # stream -> rows loaded since start
        self.watermark_lag_s: dict[str, float] = {}  # stream -> newest record in its files less the last loaded
        self.retries = 0
        self.down_since = None
        self.last_error = ""
        self._next_retention = 0.0
        self.telemetry = None
        self._streams: dict[str, tuple] = {}

    @property
    def total_shipped(self) -> int:
        return sum(self.shipped.values())

    def _progress(self, stream, rows, lag_ns):
        self.shipped[stream] = self.shipped.get(stream, 0) + rows
        self.watermark_lag_s[stream] = lag_ns / 1e9
        self._publish()
        # a long catch-up at idle priority is progress, not a hang: fed per committed batch
        self.runner.notify.watchdog()

    def _publish(self):
        """Into /ttq.<rings>.telemetry.ship: rows and lag by stream, errors, the database up or not."""
        tel = self.telemetry
        if tel is None:
            return
        for stream, rows in self.shipped.items():
            g = self._streams.get(stream)
            if g is None:
                labels = {"stream": stream}
                g = self._streams[stream] = (tel.counters(["rows_total"], labels),
                                             tel.gauges(["watermark_lag_seconds"], labels, scale=3))
            g[0][0] = rows
            g[1][0] = int(self.watermark_lag_s.get(stream, 0.0) * 1000)
        self._errors[0] = self.retries
        self._down[0] = 0 if self.down_since is None else 1
        tel.heartbeat()

    def locks(self):
        return [(instance_lock_file(self.cfg.rings_name, "shipper"), f"shipper of rings {self.cfg.rings_name!r}")]

    def _connect(self):
        import psycopg
        conn = psycopg.connect(self.cfg.dsn, autocommit=True,
                               connect_timeout=max(1, int(self.cfg.database.connect_timeout_s)))
        have = conn.execute("SELECT to_regclass('ship_watermarks') IS NOT NULL").fetchone()[0]
        if not have:
            conn.close()
            raise ServiceError(f"the database has no ttquant schema: run `ttquant db migrate` first "
                               f"(database.dsn in {self.cfg.path or 'the config'})", EXIT_CONFIG)
        return conn

    def start(self):
        import psycopg

        from ttquant.core.telemetry.telemetry import TelemetryWriter
        self.telemetry = TelemetryWriter(self.cfg.rings_name, "ship", "ship")
        self._errors = self.telemetry.counters(["errors_total"])
        self._down = self.telemetry.gauges(["database_down"])
        if not self.cfg.dsn:
            raise ServiceError(f"database.dsn: missing in {self.cfg.path or 'the config'} (or set $TTQ_DATABASE_URL)",
                               EXIT_CONFIG)
        last = []

        def attempt():
            try:
                return self._connect()
            except psycopg.OperationalError as exc:
                last[:] = [str(exc).strip().splitlines()[0]]
                return None
        self.conn = self.runner.wait_for("the database", attempt, hint=lambda: last[0] if last else "",
                                         poll_s=self.cfg.loop.retry_min_s)
        self._open_more()

    def _open_more(self):
        import psycopg
        self.more_conns = [psycopg.connect(self.cfg.dsn, autocommit=True,
                                           connect_timeout=max(1, int(self.cfg.database.connect_timeout_s)))
                           for _ in range(self.cfg.loop.connections - 1)]

    def _close_all(self):
        for c in [self.conn, *self.more_conns]:
            if c is not None:
                c.close()
        self.conn, self.more_conns = None, []

    def status(self) -> str:
        if self.down_since is not None:
            return (f"database down for {time.monotonic() - self.down_since:.0f} s ({self.last_error}); "
                    f"{self.total_shipped} records shipped")
        return f"{self.total_shipped} records shipped from {self.cfg.journal_dir}"

    def serve(self) -> int:
        import psycopg

        from ttquant.sidecars.db.shipper import ship, ship_orders, ship_runs
        cfg, runner = self.cfg, self.runner
        runner.notify.ready(self.status())
        wait = cfg.loop.retry_min_s
        while not runner.stopping:
            try:
                if self.conn is None:
                    self.conn = self._connect()
                    self._open_more()
                    log.info("database back after %.1f s: catching up", time.monotonic() - self.down_since)
                    self.down_since, wait = None, cfg.loop.retry_min_s
                self._retention()
                loaded = ship(self.conn, cfg.journal_dir, batch=cfg.loop.batch, should_stop=lambda: runner.stopping,
                              rings=cfg.rings_name, book_depth=cfg.book.depth, book_interval_ms=cfg.book.interval_ms,
                              progress=self._progress, more_conns=self.more_conns)
                n = sum(loaded.values())
                if cfg.orders_path:
                    n += ship_orders(self.conn, cfg.orders_path, f"{cfg.rings_name}.orders", progress=self._progress)
                if cfg.runs_dir:
                    n += ship_runs(self.conn, cfg.runs_dir, f"{cfg.rings_name}.runs", rings=cfg.rings_name,
                                   progress=self._progress)
                self.last_error = ""
                runner.notify.status(self.status())
                runner.notify.watchdog()
                if not n:
                    self._nap(cfg.loop.poll_interval_s)
            except psycopg.OperationalError as exc:
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if self.down_since is None:
                    self.down_since = time.monotonic()
                    log.warning("database unreachable (%s): retrying, nothing is lost (the journal files keep it)",
                                self.last_error)
                self.retries += 1
                self._publish()
                self._close_all()
                runner.notify.status(self.status())
                runner.notify.watchdog()
                self._nap(wait)
                wait = min(wait * 2, cfg.loop.retry_max_s)
        log.info("shipper stopped: %d records shipped, %d retries", self.total_shipped, self.retries)
        return 0

    def _nap(self, seconds):
        """Sleep, but not past a SIGTERM (a wait of 30 s must not hold up a stop)."""
        until = time.monotonic() + seconds
        self._publish()
        while not self.runner.stopping and time.monotonic() < until:
            self.runner.sleep(min(0.1, until - time.monotonic()))

    def _retention(self):
        """Partitions made ahead, closed days indexed, old days dropped: at start, then hourly."""
        from ttquant.sidecars.db.shipper import maintain_partitions
        now = time.monotonic()
        if now < self._next_retention:
            return
        done = maintain_partitions(self.conn, self.cfg.retention.tick_days)
        self._next_retention = now + 3600
        for table, (made, indexed, dropped) in done.items():
            if made or indexed or dropped:
                log.info("partitions of %s: %d made ahead, %d closed day(s) indexed, %d day(s) dropped by retention",
                         table, made, indexed, dropped)

    def close(self):
        self._close_all()
        if self.telemetry is not None:
            self.telemetry.close()
