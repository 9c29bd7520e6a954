# SPSC ring: one writer, one reader (an order ring: one strategy -> the gateway).
#
# An SPSC writer never overwrites: a full ring refuses the push at once (0 here,
# RingFullError / False in Python) and nothing already published is lost if either side
# dies. Each side caches the other's position and re-reads it only when the ring looks full
# (writer) or empty (reader), so in steady state neither touches the other's line.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy
from ttquant.core.includes.atomics cimport (
    ttq_load_acquire_u64, ttq_store_release_u64, ttq_store_relaxed_u64, ttq_store_relaxed_i64,
    ttq_load_relaxed_u64, ttq_coarse_now_ns,
)
from ttquant.core.includes.ring_layout cimport ttq_stamp_done
from ttquant.core.rings.segment cimport ring_view, RingSegment
from ttquant.core.rings.wake cimport wait_policy, wake_readers


cdef struct spsc_writer_cursor:
    ring_view ring
    uint64_t position           # next position to write
    uint64_t write_limit        # cached read_position + capacity: below it there is room


cdef struct spsc_reader_cursor:
    ring_view ring
    uint64_t position           # next position to read
    uint64_t read_limit         # cached write_position: below it there are records


cdef inline int spsc_push(spsc_writer_cursor *w, const void *record) noexcept nogil:
    """Publish one record: 1, or 0 when the ring is full (nothing written)."""
    cdef ring_view *r = &w.ring
    cdef uint64_t pos = w.position
    cdef char *slot
    if pos >= w.write_limit:
        w.write_limit = ttq_load_acquire_u64(&r.header.read_position) + r.capacity
        if pos >= w.write_limit:
            ttq_store_relaxed_u64(&r.header.rejected_full, r.header.rejected_full + 1)
            return 0
    slot = r.slots + (pos & r.mask) * r.slot_size
    memcpy(slot + 8, record, r.record_size)
    ttq_store_relaxed_u64(<uint64_t *>slot, ttq_stamp_done(pos))  # for tools; readers use positions
    ttq_store_release_u64(&r.header.write_position, pos + 1)
    w.position = pos + 1
    if (pos & 1023) == 0:
        ttq_store_relaxed_i64(&r.header.heartbeat_ns, ttq_coarse_now_ns())
    wake_readers(r.header)
    return 1


cdef inline int spsc_peek(spsc_reader_cursor *c, void *out) noexcept nogil:
    """Copy the next record into out without consuming it: 1, or 0 when empty."""
    cdef ring_view *r = &c.ring
    if c.position >= c.read_limit:
        c.read_limit = ttq_load_acquire_u64(&r.header.write_position)
        if c.position >= c.read_limit:
            return 0
    memcpy(out, r.slots + (c.position & r.mask) * r.slot_size + 8, r.record_size)
    return 1


cdef inline void spsc_consume(spsc_reader_cursor *c, uint64_t count) noexcept nogil:
    """Hand count peeked records' slots back to the writer."""
    c.position += count
    ttq_store_release_u64(&c.ring.header.read_position, c.position)


cdef inline int spsc_pop(spsc_reader_cursor *c, void *out) noexcept nogil:
    """Copy and consume the next record: 1, or 0 when empty."""
    if spsc_peek(c, out):
        spsc_consume(c, 1)
        return 1
    return 0


cdef inline uint64_t spsc_pop_many(spsc_reader_cursor *c, char *out, uint64_t n) noexcept nogil:
    """Copy and consume up to n records into out (n * record_size bytes); returns how many."""
    cdef ring_view *r = &c.ring
    cdef uint64_t i, take
    if c.read_limit - c.position < n:
        c.read_limit = ttq_load_acquire_u64(&r.header.write_position)
    take = c.read_limit - c.position
    if take > n:
        take = n
    for i in range(take):
        memcpy(out + i * r.record_size,
               r.slots + ((c.position + i) & r.mask) * r.slot_size + 8, r.record_size)
    if take:
        spsc_consume(c, take)   # one release store hands the whole batch back
    return take


# spsc_pop as a read_one_fn, for wait_read.
cdef int spsc_read_one(void *cursor, void *out) noexcept nogil


cdef class SpscWriter:
    cdef readonly RingSegment segment
    cdef readonly uint32_t record_type
    cdef spsc_writer_cursor cursor

    cpdef push(self, object record)
    cpdef bint offer(self, object record) except -1


cdef class SpscReader:
    cdef readonly RingSegment segment
    cdef readonly uint32_t record_type
    cdef spsc_reader_cursor cursor
    cdef wait_policy policy
    cdef object _spare
    cdef void *_spare_data

    cpdef poll(self)
    cdef object _take_spare(self)
