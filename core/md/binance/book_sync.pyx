"""Python face and logic of book_sync.pxd."""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport realloc, free
from cpython.unicode cimport PyUnicode_AsUTF8AndSize
from cpython.list cimport PyList_GET_SIZE, PyList_GET_ITEM

import numpy as np

from ttquant.core.book.order_book cimport OrderBook, side_set
from ttquant.core.md.fixed_point cimport parse_fixed, FIXED_OK

__all__ = ["BookSync", "SPOT", "FUTURES", "DiffResult", "SnapshotResult"]

SPOT, FUTURES = RULE_SPOT, RULE_FUTURES


class DiffResult:
    APPLIED, BUFFERED, STALE, GAP, BAD = DIFF_APPLIED, DIFF_BUFFERED, DIFF_STALE, DIFF_GAP, DIFF_BAD
    SNAPSHOT_MISMATCH = DIFF_SNAPSHOT_MISMATCH


class SnapshotResult:
    SYNCED, TOO_OLD, GAP, BAD, LOADED = SNAPSHOT_SYNCED, SNAPSHOT_TOO_OLD, SNAPSHOT_GAP, SNAPSHOT_BAD, SNAPSHOT_LOADED


cdef int parse_pair(object level, int pp, int qp, int64_t *price, int64_t *qty) except -1:
    """One [price, qty] pair of strings; 1 if both parse (qty >= 0, price > 0), else 0."""
    cdef Py_ssize_t n
    cdef const char *s
    if type(level) is not list or PyList_GET_SIZE(level) < 2:
        return 0
    p = <object>PyList_GET_ITEM(level, 0)
    q = <object>PyList_GET_ITEM(level, 1)
    if type(p) is not str or type(q) is not str:
        return 0
    s = PyUnicode_AsUTF8AndSize(p, &n)
    if parse_fixed(s, n, pp, False, price) != FIXED_OK or price[0] <= 0:
        return 0
    s = PyUnicode_AsUTF8AndSize(q, &n)
    if parse_fixed(s, n, qp, False, qty) != FIXED_OK:
        return 0
    return 1


def _last_id(diff):
    return diff[1]


cdef class BookSync:
    """One instrument's book kept in sync with a Binance depth stream."""

    def __init__(self, uint32_t instrument_id, int rule, int price_precision, int qty_precision,
                 Py_ssize_t max_pending=10_000):
        if rule not in (RULE_SPOT, RULE_FUTURES):
            raise ValueError(f"unknown sync rule {rule}")
        self.book = OrderBook(instrument_id)
        self.rule = rule
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.pending = []
        self.max_pending = max_pending

    def __dealloc__(self):
        free(self.levels)

    cdef int ensure_levels(self, Py_ssize_t n) except -1:
        cdef level_update *grown
        if n > self.levels_capacity:
            grown = <level_update *>realloc(self.levels, n * sizeof(level_update))
            if grown == NULL:
                raise MemoryError()
            self.levels = grown
            self.levels_capacity = n
        return 0

    cdef int check_diff(self, uint64_t first_id, uint64_t last_id, uint64_t prev_id) noexcept:
        """What on_diff would do with these ids, changing nothing."""
        if not self.synced:
            return DIFF_BUFFERED
        if self.rule == RULE_SPOT:
            if last_id <= self.update_id:
                return DIFF_STALE
            if self.first_after_snapshot:
                return DIFF_APPLIED if first_id <= self.update_id + 1 else DIFF_GAP
            return DIFF_APPLIED if first_id == self.update_id + 1 else DIFF_GAP
        if last_id < self.update_id or (last_id == self.update_id and not self.first_after_snapshot):
            return DIFF_STALE       # u == lastUpdateId may only be the first event after a snapshot
        if self.first_after_snapshot:
            return DIFF_APPLIED if first_id <= self.update_id else DIFF_GAP
        return DIFF_APPLIED if prev_id == self.update_id else DIFF_GAP

    cdef int apply_diff(self, uint64_t last_id, Py_ssize_t n) except -1:
        """Apply the n levels already parsed into self.levels (check_diff said APPLIED)."""
        self.apply_parsed(n)
        self.update_id = last_id
        self.first_after_snapshot = False
        self.verified = True
        self.applied += 1
        self.book.last_update_id = last_id
        return 0

    cdef int parse_levels(self, list bids, list asks) except -1:
        """Parse both sides into self.levels; the count, or -2 with nothing kept if any is bad."""
        cdef Py_ssize_t nb = PyList_GET_SIZE(bids), na = PyList_GET_SIZE(asks), i
        cdef Py_ssize_t n = nb + na
        self.ensure_levels(n)
        for i in range(n):
            level = <object>PyList_GET_ITEM(bids, i) if i < nb else <object>PyList_GET_ITEM(asks, i - nb)
            if not parse_pair(level, self.price_precision, self.qty_precision,
                              &self.levels[i].price, &self.levels[i].qty):
                return -2
            self.levels[i].is_ask = i >= nb
        return n

    cdef int apply_parsed(self, Py_ssize_t n) except -1:
        """Apply n parsed levels; the ones that changed the book are moved to the front."""
        cdef Py_ssize_t i, changed = 0
        for i in range(n):
            if side_set(self.book.side(self.levels[i].is_ask), self.levels[i].price, self.levels[i].qty):
                self.levels[changed] = self.levels[i]
                changed += 1
        self.n_changes = changed
        return 0

    cdef int on_diff_c(self, uint64_t first_id, uint64_t last_id, uint64_t prev_id,
                       list bids, list asks) except -1:
        cdef Py_ssize_t n
        self.n_changes = 0
        if not self.synced:
            if len(self.pending) >= self.max_pending:
                del self.pending[0]         # the snapshot is late; the oldest diff is the least useful
                self.pending_dropped += 1
            self.pending.append((first_id, last_id, prev_id, bids, asks))
            return DIFF_BUFFERED
        cdef int verdict = self.check_diff(first_id, last_id, prev_id)
        if verdict == DIFF_STALE:
            self.stale += 1
            return DIFF_STALE
        if verdict == DIFF_GAP and self.first_after_snapshot:
            # the snapshot and the stream do not meet: not a gap in a live book, a bad snapshot
            self.synced = self.verified = self.first_after_snapshot = False
            self.snapshot_mismatches += 1
            self.book.clear()
            self.pending = [(first_id, last_id, prev_id, bids, asks)]
            return DIFF_SNAPSHOT_MISMATCH
        if verdict == DIFF_GAP:
            self._lose_sync((first_id, last_id, prev_id, bids, asks))
            return DIFF_GAP
        n = self.parse_levels(bids, asks)
        if n < 0:
            self.bad += 1
            return DIFF_BAD         # update_id stays: the next diff will not follow on -> gap
        self.apply_diff(last_id, n)
        return DIFF_APPLIED

    def restart(self):
        """Forget the book (a new connection): buffer diffs again until the next snapshot."""
        self.synced = self.verified = False
        self.first_after_snapshot = False
        self.pending = []
        self.book.clear()
        self.update_id = 0

    def _lose_sync(self, diff):
        self.synced = self.verified = False
        self.gaps += 1
        self.book.clear()
        self.pending = [diff]

    def on_diff(self, uint64_t first_id, uint64_t last_id, uint64_t prev_id, list bids, list asks):
        """A depth diff (U, u, pu; pu is ignored for spot); returns a DiffResult value."""
        return self.on_diff_c(first_id, last_id, prev_id, bids, asks)

    def on_snapshot(self, uint64_t last_update_id, list bids, list asks):
        """A REST snapshot: load it, replay the buffered diffs; returns a SnapshotResult value."""
        cdef Py_ssize_t n
        pending, self.pending = self.pending, []
        pending.sort(key=_last_id)      # two overlapping connections may buffer out of order
        if pending and self.rule == RULE_SPOT and pending[0][0] > last_update_id + 1:
            self.pending = pending
            return SNAPSHOT_TOO_OLD
        if pending and self.rule == RULE_FUTURES and pending[0][0] > last_update_id:
            self.pending = pending
            return SNAPSHOT_TOO_OLD
        n = self.parse_levels(bids, asks)
        if n < 0:
            self.bad += 1
            self.pending = pending
            return SNAPSHOT_BAD
        self.book.clear()
        self.apply_parsed(n)
        self.book.last_update_id = last_update_id
        self.update_id = last_update_id
        self.synced = True
        self.verified = False
        self.first_after_snapshot = True
        self.snapshots += 1
        for i, (first_id, last_id, prev_id, diff_bids, diff_asks) in enumerate(pending):
            if self.on_diff_c(first_id, last_id, prev_id, diff_bids, diff_asks) in (DIFF_GAP, DIFF_SNAPSHOT_MISMATCH):
                self.pending.extend(pending[i + 1:])    # still to replay after the next snapshot
                return SNAPSHOT_GAP
        self.n_changes = 0
        return SNAPSHOT_SYNCED if self.verified else SNAPSHOT_LOADED

    def changes(self):
        """The levels the last applied diff changed: an (n, 3) int64 array (price, qty, is_ask)."""
        out = np.empty((self.n_changes, 3), np.int64)
        for i in range(self.n_changes):
            out[i, 0] = self.levels[i].price
            out[i, 1] = self.levels[i].qty
            out[i, 2] = self.levels[i].is_ask
        return out

    @property
    def pending_count(self):
        return len(self.pending)
