# cython: language_level=3
"""SPSC ring, Python face: SpscWriter and SpscReader.

A full ring refuses at once: push() raises RingFullError, offer() returns False; nothing
is ever overwritten. Cython callers use spsc_push / spsc_pop from spsc.pxd directly.
"""
from cpython.buffer cimport PyBuffer_Release
from libc.stdint cimport uint32_t, uint64_t, int64_t

from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_load_relaxed_u64
from ttquant.core.includes.ring_layout cimport TTQ_KIND_SPSC
from ttquant.core.records cimport new_record, record_data
from ttquant.core.rings.segment cimport (
    RingSegment, get_record_buffer, open_ring, timeout_to_ns,
)
from ttquant.core.rings.wake cimport parse_wait_policy, wait_read, wake_readers

from ttquant.core.records import record_size_for
from ttquant.core.rings.segment import RingFullError

__all__ = ["SpscWriter", "SpscReader", "DEFAULT_SPSC_CAPACITY"]

# 4096 orders in flight between one strategy and the gateway before pushes are refused.
DEFAULT_SPSC_CAPACITY = 4096


cdef int spsc_read_one(void *cursor, void *out) noexcept nogil:
    return spsc_pop(<spsc_reader_cursor *>cursor, out)


cdef class SpscWriter:
    """The one writer of an SPSC ring; creates it if needed and bumps its writer epoch.

    After a restart it carries on at the ring's write position: records published before the
    crash stay for the reader, none is published twice.
    """

    def __init__(self, str name, uint32_t record_type, capacity=None, *, record_size=None,
                 bint create=True, int mode=0o660, group=None):
        cdef RingSegment seg = open_ring(name, TTQ_KIND_SPSC, record_type, capacity,
                                         record_size_for(record_type, record_size), create, mode,
                                         group, DEFAULT_SPSC_CAPACITY)
        try:
            seg.acquire_writer()
        except BaseException:
            seg.close()
            raise
        self.segment = seg
        self.record_type = record_type
        self.cursor.ring = seg.view()
        # The reader goes by write_position alone: slots a dead writer filled past it were never
        # published, and are written over (a broadcast ring's readers go by stamps instead).
        self.cursor.position = ttq_load_acquire_u64(&self.cursor.ring.header.write_position)
        self.cursor.write_limit = self.cursor.position     # look at the reader on the first push

    cpdef push(self, object record):
        """Publish one record object; raises RingFullError when the ring is full."""
        if not self.offer(record):
            raise RingFullError(f"ring {self.segment.name} is full ({self.cursor.ring.capacity} "
                                f"records unread); the order was not sent")

    cpdef bint offer(self, object record) except -1:
        """Publish one record object; False when the ring is full (nothing written)."""
        if self.cursor.ring.header == NULL:
            raise ValueError(f"writer of {self.segment.name} is closed")
        return spsc_push(&self.cursor, record_data(record, self.record_type))

    def offer_bytes(self, const unsigned char[::1] raw not None):
        """Publish one record given as exactly record_size bytes; False when full."""
        if self.cursor.ring.header == NULL:
            raise ValueError(f"writer of {self.segment.name} is closed")
        if raw.shape[0] != self.cursor.ring.record_size:
            raise ValueError(f"record must be {self.cursor.ring.record_size} bytes, got {raw.shape[0]}")
        return bool(spsc_push(&self.cursor, &raw[0]))

    def push_many(self, records):
        """Publish records from a contiguous record-dtype array until the ring is full;
        returns how many were published (the rest were not written)."""
        if self.cursor.ring.header == NULL:
            raise ValueError(f"writer of {self.segment.name} is closed")
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.cursor.ring.record_size, False)
        cdef Py_ssize_t i = 0
        cdef const char *src = <const char *>view.buf
        try:
            with nogil:
                i = spsc_publish_many(&self.cursor, src, n)
                if i:
                    wake_readers(self.cursor.ring.header, self.cursor.ring.writer_fences)
        finally:
            PyBuffer_Release(&view)
        return i

    def heartbeat(self):
        self._check_open()
        self.segment.heartbeat()

    cdef int _check_open(self) except -1:
        if self.cursor.ring.header == NULL:
            raise ValueError(f"writer of {self.segment.name} is closed")
        return 0

    @property
    def position(self):
        return self.cursor.position

    @property
    def rejected_full(self):
        """Pushes refused because the ring was full, over the ring's life."""
        self._check_open()
        return ttq_load_relaxed_u64(&self.cursor.ring.header.rejected_full)

    @property
    def free(self):
        """Slots free right now (the reader may free more at any moment)."""
        self._check_open()
        cdef uint64_t read = ttq_load_acquire_u64(&self.cursor.ring.header.read_position)
        return self.cursor.ring.capacity - (self.cursor.position - read)

    @property
    def name(self):
        return self.segment.name

    @property
    def capacity(self):
        return self.cursor.ring.capacity

    def close(self):
        self.cursor.ring.header = NULL
        self.segment.close()

    def unlink(self):
        return self.segment.unlink()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef class SpscReader:
    """The one reader of an SPSC ring; resumes at the ring's read position after a restart."""

    def __init__(self, str name, record_type=None, *, capacity=None, record_size=None,
                 bint create=False, int mode=0o660, group=None, wait=None, spin_polls=None,
                 max_sleep=None):
        cdef RingSegment seg
        parse_wait_policy(&self.policy, wait, spin_polls, max_sleep)
        if create:
            if record_type is None:
                raise ValueError(f"ring {name}: creating it needs a record type")
            record_size = record_size_for(record_type, record_size)
        seg = open_ring(name, TTQ_KIND_SPSC, record_type, capacity, record_size, create, mode,
                        group, DEFAULT_SPSC_CAPACITY)
        try:
            seg.acquire_reader()
        except BaseException:
            seg.close()
            raise
        self.segment = seg
        self.record_type = seg.header_fields()["record_type"]
        self.cursor.ring = seg.view()
        self.cursor.position = ttq_load_acquire_u64(&self.cursor.ring.header.read_position)
        self.cursor.read_limit = self.cursor.position   # look at the writer on the first read

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
        """The next record, or None if the ring is empty. Never blocks."""
        cdef object rec = self._take_spare()
        if spsc_pop(&self.cursor, self._spare_data):
            self._spare = None
            return rec
        return None

    def peek(self):
        """The next record without consuming it (None if empty): handle it, then consume()."""
        cdef object rec = self._take_spare()
        if spsc_peek(&self.cursor, self._spare_data):
            self._spare = None
            return rec
        return None

    def consume(self, uint64_t count=1):
        """Hand back the slots of the next count records (peeked and handled), in order."""
        self._take_spare()
        cdef uint64_t there = spsc_available(&self.cursor, count)
        if there < count:
            raise ValueError(f"cannot consume {count}: only {there} records are published")
        spsc_consume(&self.cursor, count)

    def poll_into(self, records):
        """Copy and consume up to len(records) records; returns how many."""
        self._take_spare()
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.cursor.ring.record_size, True)
        cdef uint64_t got
        try:
            with nogil:
                got = spsc_pop_many(&self.cursor, <char *>view.buf, n)
        finally:
            PyBuffer_Release(&view)
        return got

    def wait(self, timeout=None):
        """The next record, waiting by the reader's policy; None after timeout seconds."""
        cdef object rec = self._take_spare()
        cdef int got
        cdef int64_t timeout_ns = timeout_to_ns(timeout)
        self._waiting += 1
        try:
            got = wait_read(&self.policy, self.cursor.ring.header, spsc_read_one, &self.cursor,
                            self._spare_data, timeout_ns)
        finally:
            self._waiting -= 1
        if got:
            self._spare = None
            return rec
        return None

    def wait_into(self, records, timeout=None):
        """Wait for at least one record, then copy and consume what is there; returns how many."""
        self._take_spare()
        cdef Py_buffer view
        cdef Py_ssize_t n = get_record_buffer(records, &view, self.cursor.ring.record_size, True)
        cdef Py_ssize_t i = 0
        cdef char *dst = <char *>view.buf
        cdef size_t size = self.cursor.ring.record_size
        self._waiting += 1
        try:
            if n and wait_read(&self.policy, self.cursor.ring.header, spsc_read_one,
                               &self.cursor, dst, timeout_to_ns(timeout)):
                with nogil:
                    i = 1 + spsc_pop_many(&self.cursor, dst + size, n - 1)
        finally:
            self._waiting -= 1
            PyBuffer_Release(&view)
        return i

    def heartbeat(self):
        self._take_spare()      # raises if closed
        self.segment.reader_heartbeat()

    def writer_status(self):
        self._take_spare()
        return self.segment.status()

    @property
    def position(self):
        return self.cursor.position

    @property
    def available(self):
        """Records published and not yet consumed."""
        self._take_spare()
        cdef uint64_t written = ttq_load_acquire_u64(&self.cursor.ring.header.write_position)
        return written - self.cursor.position if written > self.cursor.position else 0

    @property
    def name(self):
        return self.segment.name

    @property
    def capacity(self):
        return self.cursor.ring.capacity

    def close(self):
        """Unmap and give up the reader role; refused while another thread is inside wait()."""
        if self._waiting:
            raise RuntimeError(f"reader of {self.segment.name}: close() while another thread waits on it")
        self.cursor.ring.header = NULL
        self.segment.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
