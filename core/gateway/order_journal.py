"""The gateway's order journal: an append-only file written before an order leaves.

    header   64 bytes: b"TTQORDJ1", layout version (u32), venue (32 bytes), created ns (i64)
    entry    kind (u16) | payload size (u16) | crc32 of kind+size+payload (u32) | payload
      ORDER    an Order record (56) + reserve price (i64): a new order about to be sent
      CANCEL   an Order record (56): a cancel / cancel-all about to be sent
      REJECT   an Order record (56) + reject code (u16) + pad: refused by the gateway
      REPORT   an ExecReport record (112): a venue report applied to an order
      MARK     i64 ns: the gateway started (replay ends at the last one; reconciliation follows)
      KILL     i64 ns + utf-8 JSON object (layout 2): the kill switch engaged or released, as the
               gateway saw it (engaged, who, pid, uid, reason, set_ns, changes, missed)
      RISK_RELOAD  i64 ns + utf-8 JSON object (layout 2): a risk file reload (file, accepted, error)

KILL and RISK_RELOAD are audit entries: replay skips them. Their payload is at most
AUDIT_MAX bytes; every other kind has its one size. Layout 2 is layout 1 plus those two kinds:
a layout 1 journal reads the same, and opening it marks it layout 2, so that an older build
refuses it by its header instead of cutting the new entries (and all after them) as torn.

A crash can tear only the last entry: its crc fails, and opening the journal cuts it off (and
says so). fsync policy: "every" entry (an order is on disk before it leaves), "interval" (at
most every fsync_interval_ms, from the gateway loop) or "never" (the page cache only).
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import time
import zlib

from ttquant.core.daemon.instance_lock import LockHeld
from ttquant.core.records import ExecReport, Order

__all__ = ["OrderJournal", "JournalError", "JournalBusy", "ORDER", "CANCEL", "REJECT", "REPORT", "MARK", "KILL",
           "RISK_RELOAD", "AUDIT_KINDS", "entry_size_ok", "audit_payload"]

log = logging.getLogger("ttquant.gateway.journal")
MAGIC = b"TTQORDJ1"
VERSION = 2
READS = (1, 2)                  # layouts this build reads (1: without the audit kinds)
HEADER = struct.Struct("<8sI32sq12x")
ENTRY = struct.Struct("<HHI")
ORDER, CANCEL, REJECT, REPORT, MARK, KILL, RISK_RELOAD = 1, 2, 3, 4, 5, 6, 7
AUDIT_KINDS = (KILL, RISK_RELOAD)
AUDIT_MAX = 4096                # an audit entry's payload at most (a long error text is cut to fit)
ORDER_SIZE = len(Order().tobytes())
REPORT_SIZE = len(ExecReport().tobytes())
SIZES = {ORDER: ORDER_SIZE + 8, CANCEL: ORDER_SIZE, REJECT: ORDER_SIZE + 8, REPORT: REPORT_SIZE, MARK: 8}
FSYNC_POLICIES = ("every", "interval", "never")


def entry_size_ok(kind: int, size: int) -> bool:
    """Whether an entry of `kind` can have this payload size (the shipper reads with this too)."""
    if kind in AUDIT_KINDS:
        return 8 < size <= AUDIT_MAX
    return SIZES.get(kind) == size


def audit_payload(ts_ns: int, detail: dict) -> bytes:
    """i64 ns + the detail as compact JSON; string values are cut until it fits AUDIT_MAX."""
    body = json.dumps(detail, separators=(",", ":"), ensure_ascii=False).encode()
    while 8 + len(body) > AUDIT_MAX:
        longest = max((k for k, v in detail.items() if isinstance(v, str)), key=lambda k: len(detail[k]))
        text = detail[longest]
        detail = {**detail, longest: text[:max(len(text) - (8 + len(body) - AUDIT_MAX) - 8, 0)] + "…"}
        body = json.dumps(detail, separators=(",", ":"), ensure_ascii=False).encode()
    return struct.pack("<q", ts_ns) + body


class JournalError(ValueError):
    """A journal file that is not one, or of another venue or layout."""


class JournalBusy(LockHeld):
    """Another process holds the journal (its flock, taken before anything is read)."""

    def __init__(self, message):
        super().__init__(message, None)


def _crc(kind, size, payload):
    return zlib.crc32(payload, zlib.crc32(struct.pack("<HH", kind, size)))


class OrderJournal:
    def __init__(self, path: str, venue: str, fsync: str = "every", fsync_interval_ms: int = 10):
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy {fsync!r} is not one of {FSYNC_POLICIES}")
        self.path, self.venue, self.fsync = path, venue, fsync
        self.fsync_interval_ns = fsync_interval_ms * 1_000_000
        self.torn_bytes = 0
        self._dirty = False
        self._last_sync = time.monotonic_ns()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            # held before a byte is read or cut: a second gateway on this file stops here
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"{path}: another gateway has this order journal open") from None
        self.f = open(fd, "r+b", buffering=0)
        exists = os.fstat(fd).st_size > 0
        if exists:
            self._check_header()
            self._cut_torn_tail()
        else:
            self.f.write(HEADER.pack(MAGIC, VERSION, venue.encode()[:32], time.time_ns()))
            self._sync(force=True)
        self.f.seek(0, os.SEEK_END)

    def _check_header(self):
        raw = self.f.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise JournalError(f"{self.path}: shorter than a journal header")
        magic, version, venue, _ = HEADER.unpack(raw)
        if magic != MAGIC:
            raise JournalError(f"{self.path}: not an order journal (magic {magic!r})")
        if version not in READS:
            raise JournalError(f"{self.path}: journal layout {version}, this build reads {READS}")
        owner = venue.rstrip(b"\0").decode()
        if owner != self.venue:
            raise JournalError(f"{self.path}: the journal of {owner!r}, not {self.venue!r}")
        if version != VERSION:
            # audit entries may follow: an older build must refuse the file, not cut them as torn
            self.f.seek(8)
            self.f.write(struct.pack("<I", VERSION))
            self._sync(force=True)

    def _cut_torn_tail(self):
        good = HEADER.size
        for _, _, end in self._scan():
            good = end
        size = os.path.getsize(self.path)
        if good < size:
            self.torn_bytes = size - good
            log.warning("%s: the last %d bytes are a torn entry (a crash while writing); cut off",
                        self.path, self.torn_bytes)
            self.f.truncate(good)
            self._sync(force=True)

    def _scan(self):
        """(kind, payload, end offset) of every whole entry, from the start."""
        self.f.seek(HEADER.size)
        data = self.f.read()
        at = 0
        while at + ENTRY.size <= len(data):
            kind, size, crc = ENTRY.unpack_from(data, at)
            payload = data[at + ENTRY.size:at + ENTRY.size + size]
            if not entry_size_ok(kind, size) or len(payload) != size or _crc(kind, size, payload) != crc:
                return
            at += ENTRY.size + size
            yield kind, payload, HEADER.size + at

    # -- writing ----------------------------------------------------------------------------------
    def _append(self, kind, payload):
        self.f.write(ENTRY.pack(kind, len(payload), _crc(kind, len(payload), payload)) + payload)
        self._dirty = True
        if self.fsync == "every":
            self._sync(force=True)

    def order(self, order: Order, reserve_price: int):
        self._append(ORDER, order.tobytes() + struct.pack("<q", reserve_price))

    def cancel(self, order: Order):
        self._append(CANCEL, order.tobytes())

    def reject(self, order: Order, code: int):
        self._append(REJECT, order.tobytes() + struct.pack("<H6x", code))

    def report(self, report: ExecReport):
        self._append(REPORT, report.tobytes())

    def mark(self, ts_ns: int | None = None):
        self._append(MARK, struct.pack("<q", ts_ns or time.time_ns()))

    def kill(self, detail: dict, ts_ns: int | None = None):
        """The kill switch changed (detail: engaged, who, pid, uid, reason, set_ns, changes, missed)."""
        self._append(KILL, audit_payload(ts_ns or time.time_ns(), detail))

    def risk_reload(self, detail: dict, ts_ns: int | None = None):
        """A risk file reload (detail: file, accepted, error)."""
        self._append(RISK_RELOAD, audit_payload(ts_ns or time.time_ns(), detail))

    def _sync(self, force=False):
        if self.fsync == "never" and not force:
            return
        os.fsync(self.f.fileno())
        self._dirty = False
        self._last_sync = time.monotonic_ns()

    def sync_if_due(self):
        """For the "interval" policy: called from the gateway loop."""
        if self._dirty and self.fsync == "interval" and time.monotonic_ns() - self._last_sync >= self.fsync_interval_ns:
            self._sync(force=True)

    def close(self):
        if self._dirty and self.fsync != "never":
            self._sync(force=True)
        self.f.close()

    # -- reading ----------------------------------------------------------------------------------
    def entries(self):
        """Every entry as (kind, object): Order + reserve price, Order, (Order, code), ExecReport, ns,
        and for the audit kinds (ns, detail dict)."""
        pos = self.f.tell()
        try:
            for kind, payload, _ in self._scan():
                if kind == ORDER:
                    yield kind, (Order.frombytes(payload[:ORDER_SIZE]), struct.unpack("<q", payload[ORDER_SIZE:])[0])
                elif kind == CANCEL:
                    yield kind, Order.frombytes(payload)
                elif kind == REJECT:
                    yield kind, (Order.frombytes(payload[:ORDER_SIZE]),
                                 struct.unpack_from("<H", payload, ORDER_SIZE)[0])
                elif kind == REPORT:
                    yield kind, ExecReport.frombytes(payload)
                elif kind in AUDIT_KINDS:
                    yield kind, (struct.unpack_from("<q", payload)[0], json.loads(payload[8:]))
                else:
                    yield kind, struct.unpack("<q", payload)[0]
        finally:
            self.f.seek(pos)
