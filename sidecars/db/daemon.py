"""`ttquant db ship VENUE`: the recorder's journal files into PostgreSQL, following them as they
grow, under the service runner. It reads the journal files only (never the rings), so the
trading path never notices it; while the database is down it retries with backoff (saying so in
its log and STATUS=) and catches up after, loading from its watermarks (shipper.py): nothing
lost, nothing twice. Once a day of ticks is past `retention.tick_days` its partitions are
dropped; partitions are made ahead as the data needs them. The schema must be migrated first
(`ttquant db migrate`): a database without it is a configuration error, said in one line.

    ship.<venue>.toml: [journal] dir, [database] dsn, [loop] batch / poll_interval_s / retry_*,
                       [retention] tick_days, [process]
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


class ShipDatabase(Table):
    dsn: str = ""                             # libpq string or URL ("": $TTQ_DATABASE_URL)
    connect_timeout_s: float = 5.0

    def __post_init__(self):
        if self.connect_timeout_s <= 0:
            raise ValueError(f"connect_timeout_s: {self.connect_timeout_s} must be positive")


class ShipLoop(Table):
    batch: int = 20_000                       # records per transaction
    poll_interval_s: float = 1.0              # how often it looks for new records
    retry_min_s: float = 0.5                  # the database is down: first wait, doubling up to retry_max_s
    retry_max_s: float = 30.0

    def __post_init__(self):
        if not 1 <= self.batch <= 1_000_000:
            raise ValueError(f"batch: {self.batch} must be in 1..1000000")
        if self.poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s: {self.poll_interval_s} must be positive")
        if not 0 < self.retry_min_s <= self.retry_max_s:
            raise ValueError(f"retry_min_s: must be positive and at most retry_max_s ({self.retry_max_s})")


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
        self.dsn = self.database.dsn or os.environ.get("TTQ_DATABASE_URL", "")     # checked at start


class Shipper(Daemon):
    role = "ship"
    schema = ShipperConfig

    def __init__(self, cfg: ShipperConfig, runner):
        super().__init__(cfg, runner)
        self.conn = None
        self.shipped = 0
        self.retries = 0
        self.down_since = None
        self.last_error = ""
        self._next_retention = 0.0

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

    def status(self) -> str:
        if self.down_since is not None:
            return (f"database down for {time.monotonic() - self.down_since:.0f} s ({self.last_error}); "
                    f"{self.shipped} records shipped")
        return f"{self.shipped} records shipped from {self.cfg.journal_dir}"

    def serve(self) -> int:
        import psycopg

        from ttquant.sidecars.db.shipper import ship
        cfg, runner = self.cfg, self.runner
        runner.notify.ready(self.status())
        wait = cfg.loop.retry_min_s
        while not runner.stopping:
            try:
                if self.conn is None:
                    self.conn = self._connect()
                    log.info("database back after %.1f s: catching up", time.monotonic() - self.down_since)
                    self.down_since, wait = None, cfg.loop.retry_min_s
                loaded = ship(self.conn, cfg.journal_dir, batch=cfg.loop.batch, should_stop=lambda: runner.stopping,
                              rings=cfg.rings_name)
                n = sum(loaded.values())
                self.shipped += n
                self._retention()
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
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                runner.notify.status(self.status())
                runner.notify.watchdog()
                self._nap(wait)
                wait = min(wait * 2, cfg.loop.retry_max_s)
        log.info("shipper stopped: %d records shipped, %d retries", self.shipped, self.retries)
        return 0

    def _nap(self, seconds):
        """Sleep, but not past a SIGTERM (a wait of 30 s must not hold up a stop)."""
        until = time.monotonic() + seconds
        while not self.runner.stopping and time.monotonic() < until:
            self.runner.sleep(min(0.1, until - time.monotonic()))

    def _retention(self):
        now = time.monotonic()
        if not self.cfg.retention.tick_days or now < self._next_retention:
            return
        self._next_retention = now + 3600
        for table in ("trades", "quotes", "book_snapshots"):
            dropped = self.conn.execute("SELECT ttq_drop_partitions(%s, %s)",
                                        (table, self.cfg.retention.tick_days)).fetchone()[0]
            if dropped:
                log.info("retention: %d day(s) of %s dropped", dropped, table)

    def close(self):
        if self.conn is not None:
            self.conn.close()
