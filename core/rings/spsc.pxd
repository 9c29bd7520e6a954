# SPSC ring: one writer, one reader (an order ring: one strategy -> the gateway).
#
# An SPSC writer never overwrites: a full ring refuses the push at once (0 here,
# RingFullError / False in Python) and nothing already published is lost if either side
# dies. Each side caches the other's position and re-reads it only when the ring looks full
# (writer) or empty (reader), so a reader that is behind reads a whole run of records for
# one look at the writer's line.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy
from ttquant.core.includes.atomics cimport (
    ttq_load_acquire_u64, ttq_store_release_u64, ttq_store_relaxed_u64, ttq_store_relaxed_i64,
    ttq_load_relaxed_u64, ttq_coarse_now_ns, ttq_count_u64, ttq_fence_release,
)
from ttquant.core.includes.ring_layout cimport ttq_stamp_done, ttq_stamp_writing
from ttquant.core.rings.segment cimport ring_view, RingSegment
from ttquant.core.rings.wake cimport wait_policy, wake_readers


cdef struct spsc_writer_cursor:
    ring_view ring
    uint64_t position           # next position to write
    uint64_t write_limit        # cached read_position + capacity, never below position: below it, room


cdef struct spsc_reader_cursor:
    ring_view ring
    uint64_t position           # next position to read
    uint64_t read_limit         # cached write_position, never below position: below it, records


cdef inline uint64_t spsc_room(spsc_writer_cursor *w, uint64_t wanted) noexcept nogil:
    """Free slots, up to wanted; looks at the reader's position only when the cache runs short."""
    cdef ring_view *r = &w.ring
    if w.write_limit <= w.position or w.write_limit - w.position < wanted:
        w.write_limit = ttq_load_acquire_u64(&r.header.read_position) + r.capacity
        if w.write_limit < w.position:      # a reader position from before a writer restart
            w.write_limit = w.position
    return wanted if w.write_limit - w.position >= wanted else w.write_limit - w.position


cdef inline void spsc_write_slot(ring_view *r, uint64_t pos, const void *record) noexcept nogil:
    cdef char *slot = r.slots + (pos & r.mask) * r.slot_size
    cdef uint64_t *stamp = <uint64_t *>slot
    # The stamp is for tools reading a live ring (readers go by positions): odd while writing.
    ttq_store_relaxed_u64(stamp, ttq_stamp_writing(pos))
    ttq_fence_release()
    memcpy(slot + 8, record, r.record_size)
    ttq_store_release_u64(stamp, ttq_stamp_done(pos))


cdef inline int spsc_publish(spsc_writer_cursor *w, const void *record) noexcept nogil:
    """Publish one record without waking anyone: 1, or 0 when the ring is full."""
    cdef ring_view *r = &w.ring
    if spsc_room(w, 1) == 0:
        ttq_count_u64(&r.header.rejected_full)
        return 0
    spsc_write_slot(r, w.position, record)
    w.position += 1
    ttq_store_release_u64(&r.header.write_position, w.position)
    # Orders are rare: a coarse clock read per order keeps the heartbeat honest.
    ttq_store_relaxed_i64(&r.header.heartbeat_ns, ttq_coarse_now_ns())
    return 1


cdef inline uint64_t spsc_publish_many(spsc_writer_cursor *w, const char *records, uint64_t n) noexcept nogil:
    """Publish as many of n records as fit, with one position store; returns how many."""
    cdef ring_view *r = &w.ring
    cdef uint64_t i, fit = spsc_room(w, n)
    if fit < n:
        ttq_count_u64(&r.header.rejected_full)
    for i in range(fit):
        spsc_write_slot(r, w.position + i, records + i * r.record_size)
    if fit:
        w.position += fit
        ttq_store_release_u64(&r.header.write_position, w.position)
        ttq_store_relaxed_i64(&r.header.heartbeat_ns, ttq_coarse_now_ns())
    return fit


cdef inline int spsc_push(spsc_writer_cursor *w, const void *record) noexcept nogil:
    """Publish one record and wake a sleeping reader: 1, or 0 when the ring is full."""
    if spsc_publish(w, record):
        wake_readers(w.ring.header, w.ring.writer_fences)
        return 1
    return 0


cdef inline uint64_t spsc_available(spsc_reader_cursor *c, uint64_t wanted) noexcept nogil:
    """Published records past the cursor, up to wanted; looks at the writer's line only when
    the cached limit runs short."""
    if c.read_limit <= c.position or c.read_limit - c.position < wanted:
        c.read_limit = ttq_load_acquire_u64(&c.ring.header.write_position)
        if c.read_limit < c.position:
            c.read_limit = c.position
    return wanted if c.read_limit - c.position >= wanted else c.read_limit - c.position


cdef inline int spsc_peek(spsc_reader_cursor *c, void *out) noexcept nogil:
    """Copy the next record into out without consuming it: 1, or 0 when empty."""
    cdef ring_view *r = &c.ring
    if spsc_available(c, 1) == 0:
        return 0
    # the writer never rewrites a slot before we consume it: no second look needed
    memcpy(out, r.slots + (c.position & r.mask) * r.slot_size + 8, r.record_size)
    return 1


cdef inline void spsc_consume(spsc_reader_cursor *c, uint64_t count) noexcept nogil:
    """Hand count records' slots back to the writer (published at once: a restarted reader
    never sees a consumed order again)."""
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
    cdef uint64_t i, take = spsc_available(c, n)
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
    cdef int _check_open(self) except -1


cdef class SpscReader:
    cdef readonly RingSegment segment
    cdef readonly uint32_t record_type
    cdef spsc_reader_cursor cursor
    cdef wait_policy policy
    cdef object _spare
    cdef void *_spare_data
    cdef int _waiting

    cpdef poll(self)
    cdef object _take_spare(self)
