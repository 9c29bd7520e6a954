"""`ttquant record VENUE`: the venue's broadcast rings into journal files.

Each ring goes to its own directory of journal files (core/journal/). A restarted recorder
carries on at the position after the last record on disk, so nothing is recorded twice and,
while the ring still holds them, nothing is missed; what the ring overwrote before the
recorder read it is a gap between two files, counted and logged. A ring that is unlinked and
made again (its writer's host rebooted, `ttquant rings rm`) is picked up anew. The recorder
sleeps when the rings are quiet: it is a sidecar, never on a hot core.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time

import numpy as np

from ttquant.core.daemon.instance_lock import LockHeld
from ttquant.core.daemon.runner import Daemon, ServiceRunner
from ttquant.core.instruments import instruments_path
from ttquant.core.journal import JournalWriter, journal_files
from ttquant.core.records import dtype_for
from ttquant.core.rings import BroadcastReader, RingNotFoundError
from ttquant.core.rings.names import SHM_DIR, instance_lock_file
from ttquant.sidecars.recorder.config import RecorderConfig
from ttquant.sidecars.recorder.ring_tap import read_run

__all__ = ["Recorder", "RingRecorder", "RecorderBusy"]

log = logging.getLogger("ttquant.recorder")
DRAIN_STEPS = 1000          # batches read before a stop (or a ring made again) lets go


class RecorderBusy(LockHeld):
    """Another recorder holds a journal directory."""

    def __init__(self, message):
        super().__init__(message, None)


class RingRecorder:
    """One ring into its journal directory."""

    def __init__(self, cfg: RecorderConfig, kind: str):
        self.cfg, self.kind = cfg, kind
        self.ring_name = cfg.ring_path(kind)
        self.directory = cfg.journal_path(kind)
        self.reader: BroadcastReader | None = None
        self.writer: JournalWriter | None = None
        self.buffer = None
        self.inode = None
        self.ring_created_ns = 0
        self._lock = None
        self.recorded = 0           # records written since start
        self.lost = 0               # records the ring overwrote before they were read
        self.gaps = 0               # times it found records overwritten (each a gap in the journal)
        self.before_start = 0       # records a ring new to the journal no longer held when the recorder came
        self._published_before = 0  # a new ring's records published before the recorder attached
        self.recorded_since_attach = 0
        self._reader_lost = 0       # ...as the current reader has counted them
        self.files = 0              # files opened since start

    def lock(self) -> None:
        """Hold the journal directory: two recorders of one ring would both record it."""
        os.makedirs(self.directory, exist_ok=True)
        self._lock = open(os.path.join(self.directory, ".lock"), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RecorderBusy(f"{self.directory}: another recorder is recording it") from None

    def attach(self) -> bool:
        """Open the ring after the journal's last record of it (a ring the journal has not seen:
        from position 0, so what it no longer holds is counted as lost); False if not yet."""
        try:
            inode = os.stat(SHM_DIR + self.ring_name).st_ino     # before the open: a ring made again
            reader = BroadcastReader(self.ring_name, start=0, wait="sleep")     # in between is
        except (RingNotFoundError, FileNotFoundError):                        # seen by check_ring
            return False
        created_ns = reader.segment.header_fields()["created_ns"]
        files = journal_files(self.directory)
        seen = [f for f in files if f.ring_created_ns == created_ns]
        if seen:
            resume = max(f.next_position for f in seen)
            reader.close()
            try:
                reader = BroadcastReader(self.ring_name, start=resume, wait="sleep")
            except (RingNotFoundError, ValueError):
                # gone, or a record past write_position (its writer died before storing the
                # position; the next writer keeps it): try again later
                log.warning("%s: cannot resume at position %d yet", self.ring_name, resume)
                return False
            if reader.segment.header_fields()["created_ns"] != created_ns:
                reader.close()      # made again between the two opens: the next look takes it
                return False
        elif files:
            log.info("%s: a ring the journal has not seen (positions start again)", self.ring_name)
        # a ring new to the journal: what it had published by now, the recorder could not have read
        self._published_before = 0 if seen else reader.segment.header_fields()["write_position"]
        self.recorded_since_attach = 0
        self.reader, self.inode, self._reader_lost = reader, inode, 0
        self.ring_created_ns = created_ns
        self.buffer = np.zeros(self.cfg.batch, dtype_for(reader.record_type))
        log.info("%s: recording into %s from position %d", self.ring_name, self.directory, reader.position)
        return True

    def _table_json(self) -> str:
        try:
            with open(instruments_path(self.cfg.rings_name)) as f:
                return f.read()
        except FileNotFoundError:
            return "{}"

    def _writer_for(self, first: int) -> JournalWriter:
        w = self.writer
        if w is not None and (w.next_position != first or w.size >= self.cfg.max_file_bytes
                              or time.time_ns() - w.created_ns >= self.cfg.max_file_s * 1e9):
            w.close()
            w = self.writer = None
        if w is None:
            w = self.writer = JournalWriter(self.directory, self.ring_name, self.reader.record_type,
                                            self.buffer.dtype.itemsize, first, self._table_json(),
                                            self.ring_created_ns)
            self.files += 1
        return w

    def step(self) -> int:
        """Read and write one batch; returns how many records."""
        if self.reader is None and not self.attach():
            return 0
        n, first = read_run(self.reader, self.buffer)
        missed = self.reader.lost - self._reader_lost
        # the run begins past where the reader started (position 0): the first `first` were gone
        before = min(missed, first, self._published_before) if not self.recorded_since_attach else 0
        if before:
            # published before the recorder started (md came first) and no longer in the ring
            self.before_start += before
            log.info("%s: %d records were published before the recorder started and the ring no longer "
                     "holds them; recording from position %d", self.ring_name, before, first)
        self._published_before = 0
        if missed > before:
            self.lost += missed - before
            self.gaps += 1
            log.warning("%s: %d records overwritten before they were read (%d in all); the journal "
                        "goes on at position %d", self.ring_name, missed - before, self.lost, first)
        self._reader_lost = self.reader.lost
        if n:
            self._writer_for(first).append(self.buffer[:n])
            self.recorded += n
            self.recorded_since_attach += n
        return n

    def check_ring(self) -> None:
        """A ring unlinked and made again: the old mapping would never see another record."""
        if self.reader is None:
            return
        try:
            inode = os.stat(SHM_DIR + self.ring_name).st_ino
        except FileNotFoundError:
            inode = None
        if inode != self.inode:
            for _ in range(DRAIN_STEPS):    # what the old mapping still holds
                if not self.step():
                    break
            log.warning("%s: the ring was made again; recording the new one", self.ring_name)
            self.close()

    def roll_if_old(self) -> None:
        """A quiet ring's file is closed at its age too, not only when the next record comes."""
        w = self.writer
        if w is not None and time.time_ns() - w.created_ns >= self.cfg.max_file_s * 1e9:
            w.close()
            self.writer = None

    def flush(self, fsync: bool) -> None:
        if self.writer is not None:
            self.writer.flush(fsync)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.reader is not None:
            self.reader.close()
            self.reader = None

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


class Recorder(Daemon):
    role = "record"
    schema = RecorderConfig

    def __init__(self, cfg: RecorderConfig, runner=None):
        super().__init__(cfg, runner or ServiceRunner("record", cfg.rings_name))
        self.rings = [RingRecorder(cfg, kind) for kind in cfg.record]
        self.notify = self.runner.notify
        self.telemetry = None

    def locks(self):
        return [(instance_lock_file(self.cfg.rings_name, "recorder"), f"recorder of rings {self.cfg.rings_name!r}")]

    def step(self) -> int:
        return sum(r.step() for r in self.rings)

    def status_text(self) -> str:
        return "; ".join(f"{r.kind}: {r.recorded} recorded, {r.lost} lost, {r.files} files"
                         + (f", {r.before_start} from before it started not held any more" if r.before_start else "")
                         + ("" if r.reader else " (waiting for the ring)") for r in self.rings)

    def status(self) -> str:
        return self.status_text()

    def start(self):
        from ttquant.core.telemetry.telemetry import TelemetryWriter
        for r in self.rings:
            r.lock()
            r.attach()
        # /ttq.<rings>.telemetry.recorder: per ring, what it wrote, lost and has still to read
        self.telemetry = TelemetryWriter(self.cfg.rings_name, "recorder", "recorder")
        self.counts = {r.kind: (self.telemetry.counters(["records_total", "gaps_total", "lost_records_total",
                                                          "files_total"], {"ring": r.kind}),
                                self.telemetry.gauges(["lag_records"], {"ring": r.kind}))
                       for r in self.rings}

    def publish_telemetry(self):
        for r in self.rings:
            counts, lag = self.counts[r.kind]
            counts[:] = (r.recorded, r.gaps, r.lost, r.files)
            try:
                lag[0] = r.reader.lag if r.reader is not None else 0
            except Exception:           # a reader closed under us (the ring made again): next time
                pass
        self.telemetry.heartbeat()

    def serve(self) -> int:
        idle = self.cfg.idle_sleep_ms / 1e3
        fsync_every = self.cfg.fsync_interval_ms * 1_000_000
        last_fsync = last_status = time.monotonic_ns()
        runner = self.runner
        self.notify.ready(self.status_text())
        while not runner.stopping:
            if self.step() == 0:
                time.sleep(idle)
            now = time.monotonic_ns()
            if now - last_fsync >= fsync_every:
                for r in self.rings:
                    r.flush(fsync=True)
                last_fsync = now
            if now - last_status >= 250_000_000:
                for r in self.rings:
                    r.check_ring()
                    r.roll_if_old()
                self.publish_telemetry()
                runner.check_faults()
                if self.notify.watchdog():
                    self.notify.status(self.status_text())
                last_status = now
        for _ in range(DRAIN_STEPS):    # what is in the rings now, then on disk
            if self.step() == 0:
                break
        log.info("stopped: %s", self.status_text())
        self.publish_telemetry()
        return 0

    def close(self):
        for r in self.rings:
            r.close()
            r.unlock()
        if self.telemetry is not None:
            self.telemetry.close()
