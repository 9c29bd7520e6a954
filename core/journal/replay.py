"""`ttquant replay DIR`: recorded journal files back into the rings, for the whole system under
test with no venue: live strategies and the gateway (sim adapter) run against it unchanged.

    ttquant replay /var/lib/ttquant/journal --speed 1|10|max [--from T] [--to T] [--rings NAME]
                   [--kinds ticks,exec] [--wait-for-strategy NAME ...]

Each recorded ring (<DIR>/<rings>.ticks/, <DIR>/<rings>.exec/) goes back into the ring of the
same kind of the stack --rings (default: the recorded one), records merged across kinds in the
order they were published (ts_pub). At --speed 1 the original gaps between them are kept, at N
they are N times shorter, at max there are none. The instrument table is the one recorded in
the journal files' headers, saved where md saves it. Each record gets a new ts_pub (when the
replay published it: latency from the ring onwards is measured as live); ts_exchange and
ts_recv stay as recorded. A progress line every few seconds (and STATUS=); SIGTERM stops it
cleanly (exit 0); the end is logged. The book board is rebuilt from the recorded book events
(levels published at the end of each venue message), so strategies that read books work too.
With --wait-for-strategy the first record waits until each named strategy has its order ring in
the stack (it reads the tick ring from then on): a replay at max speed into a stack that is
still starting loses nothing to it.
"""
from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

import msgspec
import numpy as np

from ttquant.core.daemon.config import Table
from ttquant.core.daemon.runner import Daemon, ProcessTable, ServiceError
from ttquant.core.instruments import InstrumentTable
from ttquant.core.journal.journal_file import journal_directories, journal_files
from ttquant.core.records import RecordType, dtype_for
from ttquant.core.rings import BroadcastWriter, RingBusyError, names
from ttquant.core.rings.names import check_rings_name, instance_lock_file, instruments_file, ring_name, shm_path

__all__ = ["ReplayConfig", "Replay", "parse_time", "recorded_rings"]

log = logging.getLogger("ttquant.replay")
KINDS = {"ticks": RecordType.MARKET_EVENT, "exec": RecordType.EXEC_REPORT}
BATCH = 4096                    # records per push at max speed
SAY_EVERY_S = 5.0
SPIN_BELOW_S = 200e-6           # a wait shorter than this is spun, not slept (1x keeps its gaps)


class ReplayConfig(Table):
    directory: str
    speed: float = 1.0              # 0: as fast as the rings take them (max)
    rings: str = ""                 # the stack to replay into (default: the recorded one)
    kinds: list[str] = msgspec.field(default_factory=lambda: list(KINDS))
    from_ns: int = 0
    to_ns: int = 0
    capacity: int = 1 << 18
    wait_for_strategies: list[str] = msgspec.field(default_factory=list)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def __post_init__(self):
        if self.speed < 0:
            raise ValueError(f"speed: 1, 10 (any positive factor) or max, got {self.speed}")
        for kind in self.kinds:
            if kind not in KINDS:
                raise ValueError(f"kinds: {kind!r} is not one of {', '.join(KINDS)}")
        if self.rings:
            check_rings_name(self.rings)
        if self.to_ns and self.from_ns and self.to_ns <= self.from_ns:
            raise ValueError("to: must be after from")


def parse_time(text: str) -> int:
    """ns since the epoch from an ISO 8601 time (UTC unless it says) or a number of ns."""
    if text.isdigit():
        return int(text)
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time (2024-08-08T01:02:03, with a zone or UTC, or ns since "
                         f"the epoch)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp()) * 1_000_000_000 + t.microsecond * 1000


def recorded_rings(directory: str) -> dict[str, dict[str, str]]:
    """{rings: {kind: journal directory}} of what DIR holds (a ring's directory, or one above)."""
    found: dict[str, dict[str, str]] = {}
    for d in journal_directories(directory):
        rings, _, kind = os.path.basename(d.rstrip("/")).rpartition(".")
        if kind in KINDS and rings:
            found.setdefault(rings, {})[kind] = d
    return found


class _Source:
    """One recorded ring's records of the latest ring run, in position order, file by file."""

    def __init__(self, kind, directory, from_ns, to_ns):
        self.kind, self.dtype = kind, dtype_for(KINDS[kind])
        files = [f for f in journal_files(directory) if f.count]
        if files:      # the ring made last: a ring made again starts its positions over
            files = [f for f in files if f.ring_created_ns == files[-1].ring_created_ns]
        self.files, self.from_ns, self.to_ns = files, from_ns, to_ns
        self.table = next((f.instruments for f in files if f.instruments is not None), None)
        self.total = sum(f.count for f in files)
        self._file, self._at, self._records = -1, 0, None

    def _next_file(self) -> bool:
        self._file += 1
        if self._file >= len(self.files):
            self._records = None
            return False
        self._records, self._at = self.files[self._file].records, 0
        ts = self._records["ts_pub"]
        if self.from_ns:        # positions are in publish order: ts_pub does not go back
            self._at = int(np.searchsorted(ts, self.from_ns, side="left"))
        return True

    def head_ts(self):
        """ts_pub of the next record, or None at the end."""
        while self._records is None or self._at >= len(self._records):
            if not self._next_file():
                return None
        ts = int(self._records["ts_pub"][self._at])
        if self.to_ns and ts >= self.to_ns:
            return None
        return ts

    def take_until(self, until_ts, limit):
        """The records from here whose ts_pub <= until_ts, at most `limit` (a read-only view)."""
        recs = self._records
        ts = recs["ts_pub"]
        end = min(len(recs), self._at + limit)
        stop = int(np.searchsorted(ts[self._at:end], until_ts, side="right")) + self._at
        if self.to_ns:
            stop = min(stop, self._at + int(np.searchsorted(ts[self._at:stop], self.to_ns, side="left")))
        out = recs[self._at:stop]
        self._at = stop
        return out


class Replay(Daemon):
    role = "replay"
    schema = ReplayConfig

    def __init__(self, cfg: ReplayConfig, runner):
        super().__init__(cfg, runner)
        if not os.path.isdir(cfg.directory):
            raise ServiceError(f"{cfg.directory}: no such directory", 2)
        recorded = recorded_rings(cfg.directory)
        if not recorded:
            raise ServiceError(f"{cfg.directory}: no journal files here or below (the recorder writes "
                               f"<dir>/<rings>.ticks/ and <dir>/<rings>.exec/)", 2)
        if len(recorded) > 1:
            raise ServiceError(f"{cfg.directory}: journals of several stacks ({', '.join(sorted(recorded))}): "
                               f"give one of their directories", 2)
        self.recorded_name, dirs = next(iter(recorded.items()))
        self.out = cfg.rings or self.recorded_name
        self.sources = [_Source(k, dirs[k], cfg.from_ns, cfg.to_ns) for k in cfg.kinds if k in dirs]
        if not self.sources:
            raise ServiceError(f"{cfg.directory}: none of {', '.join(cfg.kinds)} recorded", 2)
        self.writers = {}
        self.board = None
        self.published = 0

    def locks(self):
        return [(instance_lock_file(self.out, "replay"), f"replay into rings {self.out!r}")]

    def start(self):
        table = next((s.table for s in self.sources if s.table is not None), None)
        if table is not None:       # as it was recorded, where md saves it
            InstrumentTable.from_json(table.to_json(), "journal").save(instruments_file(self.out))
        else:
            log.warning("the journal files hold no instrument table: readers need one at %s",
                        instruments_file(self.out))
        for s in self.sources:
            name = ring_name(self.out, s.kind)
            try:
                # a ring that exists is taken as it is (md made it); a new one gets our capacity
                capacity = None if os.path.exists(shm_path(name)) else self.cfg.capacity
                self.writers[s.kind] = BroadcastWriter(name, KINDS[s.kind], capacity)
            except RingBusyError:
                raise ServiceError(f"{name} has a live writer (md or a gateway of rings {self.out!r}): replay "
                                   f"into other rings (--rings) or only what nobody writes (--kinds)", 4) from None
        if "ticks" in self.writers:     # the book board as md keeps it, from the recorded book events
            from ttquant.core.book.book_board import BoardFromTicks, BookBoardWriter
            self.board = BoardFromTicks(BookBoardWriter(names.book_board(self.out)))
        total = sum(s.total for s in self.sources)
        log.info("replaying %d records of %s (%s) into rings %r at %s", total, self.recorded_name,
                 ", ".join(f"{s.kind} {s.total}" for s in self.sources), self.out,
                 "max speed" if not self.cfg.speed else f"{self.cfg.speed:g}x")

    def status(self):
        return f"{self.published} records replayed into {self.out}"

    def serve(self) -> int:
        cfg, runner = self.cfg, self.runner
        buffers = {s.kind: np.zeros(BATCH, s.dtype) for s in self.sources}
        runner.notify.ready(self.status())
        for name in cfg.wait_for_strategies:
            ring = names.order_ring(self.out, name)
            runner.wait_for(f"strategy {name} on rings {self.out!r} (its order ring {ring})",
                            lambda ring=ring: os.path.exists(shm_path(ring)) or None,
                            hint=f"start it: ttquant strategy run {name}", timeout_s=0)
        if runner.stopping:
            return 0
        t0_wall = time.monotonic_ns()
        t0_mkt = None
        say_at = time.monotonic() + SAY_EVERY_S
        started = time.monotonic()
        while not runner.stopping:
            heads = [(ts, s) for s in self.sources if (ts := s.head_ts()) is not None]
            if not heads:
                break
            ts, source = min(heads, key=lambda h: h[0])
            if t0_mkt is None:
                t0_mkt = ts
            # this source's records up to the next source's turn (the merge order), all that are due
            other = min((h[0] for h in heads if h[1] is not source), default=1 << 62)
            if cfg.speed:                   # wait until this record's time has come
                self._wait_until(t0_wall + int((ts - t0_mkt) / cfg.speed))
                horizon = t0_mkt + int((time.monotonic_ns() - t0_wall) * cfg.speed)
                until = max(ts, min(other, horizon))
            else:
                until = other
            batch = source.take_until(until, BATCH)
            n = len(batch)
            buf = buffers[source.kind][:n]
            buf.view(np.uint8)[:] = batch.view(np.uint8).reshape(-1)   # unions: copy as bytes
            buf["ts_pub"] = time.time_ns()
            self.writers[source.kind].push_many(buf)
            if source.kind == "ticks" and self.board is not None:
                self.board.feed(buf)
            self.published += n
            now = time.monotonic()
            if now >= say_at:
                say_at = now + SAY_EVERY_S
                self._progress(now - started, ts)
                runner.notify.watchdog()
                runner.notify.status(self.status())
                for w in self.writers.values():
                    w.heartbeat()
        elapsed = time.monotonic() - started
        if runner.stopping:
            log.info("replay stopped: %d records in %.1f s", self.published, elapsed)
        else:
            log.info("replay ended: %d records in %.1f s (%.0f records/s)", self.published, elapsed,
                     self.published / elapsed if elapsed else 0)
        return 0

    def _wait_until(self, due_ns):
        while not self.runner.stopping:
            left = due_ns - time.monotonic_ns()
            if left <= 0:
                return
            if left > SPIN_BELOW_S * 1e9:
                time.sleep(min(left / 1e9 - SPIN_BELOW_S / 2, 0.25))

    def _progress(self, elapsed, ts):
        total = sum(s.total for s in self.sources)
        when = datetime.fromtimestamp(ts / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        log.info("replay: %d of %d records (%.0f %%), market time %sZ, %.0f records/s", self.published, total,
                 100 * self.published / total if total else 100, when, self.published / elapsed if elapsed else 0)

    def close(self):
        for w in self.writers.values():
            w.close()
        if self.board is not None:
            self.board.writer.close()
