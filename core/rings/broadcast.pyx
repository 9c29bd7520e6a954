# cython: language_level=3
"""Broadcast ring, Python face: BroadcastWriter and BroadcastReader.

A lapped reader counts and reports its loss (``lost``, ``laps``); the writer never waits.
Cython callers use broadcast_push / broadcast_read from broadcast.pxd directly.
"""
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport uint32_t, uint64_t, int64_t

from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_load_relaxed_u64
from ttquant.core.includes.ring_layout cimport TTQ_KIND_BROADCAST
from ttquant.core.records cimport new_record, record_data
from ttquant.core.rings.segment cimport (
    RingSegment, get_record_buffer, open_ring, recover_write_position, timeout_to_ns,
)
from ttquant.core.rings.wake cimport parse_wait_policy, wait_read, wake_readers

from ttquant.core.records import record_size_for

__all__ = ["BroadcastWriter", "BroadcastReader", "DEFAULT_BROADCAST_CAPACITY"]

# 65536 ticks of 128 bytes: 8 MiB, several seconds of a busy venue for a stalled reader.
DEFAULT_BROADCAST_CAPACITY = 65536


cdef class BroadcastWriter:
    """The one writer of a broadcast ring. Creates the ring if needed, bumps its epoch.

    BroadcastWriter(name, record_type, capacity) creates /ttq.<venue>.<kind> or re-attaches
    to it after a restart (same record type, size and capacity, or RingLayoutError); capacity
    None takes the existing ring's, or DEFAULT_CAPACITY for a new one. A second live writer
    gets RingBusyError.
    """

    def __init__(self, str name, uint32_t record_type, capacity=None, *, record_size=None,
                 bint create=True, int mode=0o660, group=None):
        cdef RingSegment seg = open_ring(name, TTQ_KIND_BROADCAST, record_type, capacity,
                                         record_size_for(record_type, record_size), create, mode,
                                         group, DEFAULT_BROADCAST_CAPACITY)
        try:
            seg.acquire_writer()
        except BaseException:
            seg.close()
            raise
        self.segment = seg
        self.record_type = record_type
        self.ring = seg.view()
        self._position = recover_write_position(&self.ring)

    cpdef push(self, object record):
        """Publish one record object of the ring's type (MarketEvent, ExecReport, ...)."""
        self._check_open()
        broadcast_push(&self.ring, &self._position, record_data(record, self.record_type))

    def push_bytes(self, const unsigned char[::1] raw not None):
        """Publish one record given as exactly record_size bytes."""
        self._check_open()
        if raw.shape[0] != self.ring.record_size:
            raise ValueError(f"record must be {self.ring.record_size} bytes, got {raw.shape[0]}")
        broadcast_push(&self.ring, &self._position, &raw[0])

    def push_many(self, records):
        """Publish every record of a contiguous array of the record dtype; returns the count."""
        self._check_open()
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.ring.record_size, False)
        cdef const char *src = <const char *>view.buf
        try:
            with nogil:
                broadcast_publish_many(&self.ring, self._position, src, n)
                self._position += n
                if n:
                    wake_readers(self.ring.header, self.ring.writer_fences)
        finally:
            PyBuffer_Release(&view)
        return n

    def heartbeat(self):
        """Tell readers this writer is alive (a busy writer stamps it every 1024 records; an
        idle one should call this from its housekeeping)."""
        self._check_open()
        self.segment.heartbeat()

    cdef inline int _check_open(self) except -1:
        if self.ring.header == NULL:
            raise ValueError(f"writer of {self.segment.name} is closed")
        return 0

    @property
    def position(self):
        """The next position this writer publishes (records published so far)."""
        return self._position

    @property
    def epoch(self):
        self._check_open()
        return self.segment.header_fields()["writer_epoch"]

    @property
    def name(self):
        return self.segment.name

    @property
    def capacity(self):
        return self.ring.capacity

    def close(self):
        """Give up the writer role; the ring and its records stay for readers and a successor."""
        self.ring.header = NULL
        self.segment.close()

    def unlink(self):
        return self.segment.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef int broadcast_read_one(void *cursor, void *out) noexcept nogil:
    return broadcast_read(<broadcast_cursor *>cursor, out)


cdef class BroadcastReader:
    """One reader of a broadcast ring, with its own cursor.

    start: "latest" (only what is published from now on), "oldest" (everything still in the
    ring) or a position to resume from (loss since then is counted on the first read).
    wait: "spin" | "hybrid" | "sleep" (default hybrid, or TTQ_WAIT_MODE), used by wait().
    """

    def __init__(self, str name, record_type=None, *, start="latest", wait=None,
                 spin_polls=None, max_sleep=None, record_size=None):
        cdef RingSegment seg
        parse_wait_policy(&self.policy, wait, spin_polls, max_sleep)
        seg = RingSegment.attach(name, TTQ_KIND_BROADCAST, record_type, record_size)
        self.segment = seg
        self.record_type = seg.header_fields()["record_type"]
        self.cursor.ring = seg.view()
        self.seen_epoch = ttq_load_relaxed_u64(&self.cursor.ring.header.writer_epoch)
        if start == "latest":
            self.cursor.position = ttq_load_acquire_u64(&self.cursor.ring.header.write_position)
        elif start == "oldest":
            self.cursor.position = broadcast_oldest(&self.cursor.ring)
        elif isinstance(start, int) and 0 <= start <= ttq_load_acquire_u64(&self.cursor.ring.header.write_position):
            self.cursor.position = start
        else:
            seg.close()
            raise ValueError(f"start {start!r} must be 'latest', 'oldest' or a position between 0 "
                             f"and the write position")

    cdef object _take_spare(self):
        cdef object rec = self._spare
        if self.cursor.ring.header == NULL:
            raise ValueError(f"reader of {self.segment.name} is closed")
        if rec is None:
            rec = new_record(self.record_type, &self._spare_data)
            if rec is None:
                rec = bytearray(self.cursor.ring.record_size)
                self._spare_data = <void *><char *>rec
            self._spare = rec
        return rec

    cpdef poll(self):
        """The next record, or None if nothing new is published. Never blocks."""
        cdef object rec = self._take_spare()
        if broadcast_read(&self.cursor, self._spare_data):
            self._spare = None
            return rec
        return None

    def poll_into(self, records):
        """Copy up to len(records) records into a contiguous record-dtype array; returns how many."""
        self._take_spare()
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.cursor.ring.record_size, True)
        cdef Py_ssize_t i = 0
        cdef char *dst = <char *>view.buf
        cdef size_t size = self.cursor.ring.record_size
        try:
            with nogil:
                while i < n and broadcast_read(&self.cursor, dst + i * size):
                    i += 1
        finally:
            PyBuffer_Release(&view)
        return i

    def wait(self, timeout=None):
        """The next record, waiting by the reader's policy; None after timeout seconds."""
        cdef object rec = self._take_spare()
        cdef int got
        cdef int64_t timeout_ns = timeout_to_ns(timeout)
        self._waiting += 1
        try:
            got = wait_read(&self.policy, self.cursor.ring.header, broadcast_read_one,
                            &self.cursor, self._spare_data, timeout_ns)
        finally:
            self._waiting -= 1
        if got:
            self._spare = None
            return rec
        return None

    def wait_into(self, records, timeout=None):
        """Wait for at least one record, then copy what is there; returns how many (0: timeout)."""
        self._take_spare()
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.cursor.ring.record_size, True)
        cdef Py_ssize_t i = 0
        cdef char *dst = <char *>view.buf
        cdef size_t size = self.cursor.ring.record_size
        self._waiting += 1
        try:
            if n and wait_read(&self.policy, self.cursor.ring.header, broadcast_read_one,
                               &self.cursor, dst, timeout_to_ns(timeout)):
                i = 1
                with nogil:
                    while i < n and broadcast_read(&self.cursor, dst + i * size):
                        i += 1
        finally:
            self._waiting -= 1
            PyBuffer_Release(&view)
        return i

    def writer_status(self):
        """Writer pid, liveness, epoch and heartbeat age, plus whether the epoch changed
        since this reader last asked (a restarted writer)."""
        self._take_spare()      # raises if closed
        status = self.segment.status()
        status["epoch_changed"] = status["writer_epoch"] != self.seen_epoch
        self.seen_epoch = status["writer_epoch"]
        return status

    @property
    def position(self):
        """The next position this reader reads."""
        return self.cursor.position

    @property
    def lost(self):
        """Records the writer overwrote before this reader read them, since it attached.

        Always position == records returned + lost. A jump can happen after the last record a
        call returned: then lost already counts the gap that the next record returned shows."""
        return self.cursor.lost

    @property
    def laps(self):
        """How many times this reader was lapped."""
        return self.cursor.laps

    @property
    def lag(self):
        """Records published but not yet read (may exceed capacity: then some are lost)."""
        self._take_spare()      # raises if closed
        cdef uint64_t written = ttq_load_acquire_u64(&self.cursor.ring.header.write_position)
        return written - self.cursor.position if written > self.cursor.position else 0

    @property
    def name(self):
        return self.segment.name

    @property
    def capacity(self):
        return self.cursor.ring.capacity

    def close(self):
        """Unmap; refused while another thread is inside wait() on this reader."""
        if self._waiting:
            raise RuntimeError(f"reader of {self.segment.name}: close() while another thread waits on it")
        self.cursor.ring.header = NULL
        self.segment.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
