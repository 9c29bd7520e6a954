"""Market-data counters in shared memory, for `ttquant md stats` and the metrics sidecar.

A board-kind ring segment /ttq.<venue>.md_stats (ring_layout.h) with one slot per feed
(a venue market: "spot", "usdm"): the feed's name, then NUM_COUNTERS uint64 counters (the
normaliser's, by index, plus the daemon's) and a log2 histogram of frame-to-ring latency
(ts_recv -> ts_pub, bucket k holds [2^k, 2^(k+1)) ns). Each counter is written by one thread
and only grows while that md runs, so readers need no lock: a read is a moment's view, not an
atomic one. A new md run starts from an empty table, every count at zero; the segment's writer
epoch (bumped when it attaches) is how readers tell a restart from a counter going back.
"""
from libc.stdint cimport uint64_t
from libc.string cimport memset, memcpy

import numpy as np

from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_store_release_u64
from ttquant.core.rings.segment cimport RingSegment, ring_view

from ttquant.core.records import RecordType
from ttquant.core.rings.segment import KIND_BOARD, RingError

__all__ = ["FeedStatsWriter", "FeedStatsReader", "NUM_COUNTERS", "HIST_BUCKETS", "RECORD_MD_STATS"]

cdef enum:
    C_NUM_COUNTERS = 64
    C_HIST_BUCKETS = 64
    C_NAME_BYTES = 32

NUM_COUNTERS, HIST_BUCKETS, NAME_BYTES = C_NUM_COUNTERS, C_HIST_BUCKETS, C_NAME_BYTES
RECORD_MD_STATS = int(RecordType.MD_STATS)
RECORD_SIZE = NAME_BYTES + 8 * (NUM_COUNTERS + HIST_BUCKETS)


cdef object _u64_view(char *p, Py_ssize_t n, object owner):
    arr = np.asarray(<uint64_t[:n]><uint64_t *>p)
    arr.flags.writeable = owner is not None
    return arr


cdef class FeedStatsWriter:
    """The md daemon's side: one slot per feed, counters updated in place."""
    cdef readonly RingSegment segment
    cdef ring_view ring
    cdef dict feeds

    def __init__(self, str name, int feeds=8, int mode=0o660, group=None):
        self.segment = RingSegment.create_or_attach(name, KIND_BOARD, RECORD_MD_STATS, RECORD_SIZE,
                                                    feeds, mode, group)
        self.segment.acquire_writer()
        self.ring = self.segment.view()
        self.feeds = {}
        # a previous run's feeds and counts are not this run's: the table starts empty (feeds
        # are published again as feed() is called); readers see the new writer epoch
        cdef uint64_t used = ttq_load_acquire_u64(&self.ring.header.write_position)
        ttq_store_release_u64(&self.ring.header.write_position, 0)
        if used:
            memset(self.ring.slots, 0, used * self.ring.slot_size)
        self.segment.heartbeat()

    def feed(self, str feed):
        """(counters, latency histogram): uint64 arrays living in the segment, all zero when this
        writer first asks for the feed."""
        index = self.feeds.get(feed)
        cdef uint64_t i
        cdef char *slot
        if index is None:
            raw = feed.encode()
            if not raw or len(raw) >= NAME_BYTES:
                raise ValueError(f"feed name {feed!r} must be 1..{NAME_BYTES - 1} bytes")
            i = ttq_load_acquire_u64(&self.ring.header.write_position)
            if i >= self.ring.capacity:
                raise RingError(f"{self.segment.name}: no room for feed {feed!r}")
            slot = self.ring.slots + i * self.ring.slot_size + 8
            memset(slot, 0, RECORD_SIZE)
            memcpy(slot, <char *>raw, len(raw))
            ttq_store_release_u64(&self.ring.header.write_position, i + 1)
            self.feeds[feed] = index = i
        slot = self.ring.slots + <uint64_t>index * self.ring.slot_size + 8
        return (_u64_view(slot + C_NAME_BYTES, C_NUM_COUNTERS, self),
                _u64_view(slot + C_NAME_BYTES + 8 * C_NUM_COUNTERS, C_HIST_BUCKETS, self))

    def heartbeat(self):
        self.segment.heartbeat()

    def close(self):
        self.segment.close()


cdef class FeedStatsReader:
    """Anyone's side: read-only copies of each feed's counters."""
    cdef readonly RingSegment segment
    cdef ring_view ring

    def __init__(self, str name):
        self.segment = RingSegment.attach(name, ring_kind=KIND_BOARD, record_type=RECORD_MD_STATS,
                                          record_size=RECORD_SIZE, read_only=True)
        self.ring = self.segment.view()

    def read(self):
        """{feed: (counters copy, histogram copy)}."""
        if self.segment.closed:
            raise RingError("feed stats reader is closed")
        out = {}
        cdef uint64_t i
        cdef char *slot
        for i in range(ttq_load_acquire_u64(&self.ring.header.write_position)):
            slot = self.ring.slots + i * self.ring.slot_size + 8
            name = (<bytes>slot[:C_NAME_BYTES]).rstrip(b"\0").decode()
            out[name] = (_u64_view(slot + C_NAME_BYTES, C_NUM_COUNTERS, None).copy(),
                         _u64_view(slot + C_NAME_BYTES + 8 * C_NUM_COUNTERS, C_HIST_BUCKETS, None).copy())
        return out

    def status(self):
        return self.segment.status()

    def close(self):
        self.segment.close()
