# Broadcast ring: one writer that never waits, any number of readers with their own cursors.
#
# Loss is not an error for a broadcast reader, but it is never silent: a reader that the
# writer lapped counts exactly how many records it missed, jumps to the oldest record the
# writer cannot be overwriting, and carries on. A reader never returns a torn record: each
# slot is a seqlock (stamp odd while writing, 2*position+2 when done; ring_layout.h).
from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy
from ttquant.core.includes.atomics cimport (
    ttq_load_acquire_u64, ttq_load_relaxed_u64, ttq_store_release_u64, ttq_store_relaxed_i64,
    ttq_fence_acquire, ttq_fence_release, ttq_coarse_now_ns,
)
from ttquant.core.includes.ring_layout cimport ttq_stamp_writing, ttq_stamp_done
from ttquant.core.rings.segment cimport ring_view, RingSegment
from ttquant.core.rings.wake cimport wait_policy, wake_readers, read_one_fn


cdef struct broadcast_cursor:
    ring_view ring
    uint64_t position           # next position this reader reads
    uint64_t lost               # records the writer overwrote before this reader got to them
    uint64_t laps               # how many times that happened


cdef inline void broadcast_publish(ring_view *r, uint64_t position, const void *record) noexcept nogil:
    """Write one record at position (the caller holds the writer role); no wake-up."""
    cdef char *slot = r.slots + (position & r.mask) * r.slot_size
    cdef uint64_t *stamp = <uint64_t *>slot
    ttq_store_release_u64(stamp, ttq_stamp_writing(position))
    ttq_fence_release()         # the odd stamp is visible before any payload byte
    memcpy(slot + 8, record, r.record_size)
    ttq_store_release_u64(stamp, ttq_stamp_done(position))
    ttq_store_release_u64(&r.header.write_position, position + 1)
    if (position & 1023) == 0:  # a busy writer's heartbeat costs one coarse clock read per 1024
        ttq_store_relaxed_i64(&r.header.heartbeat_ns, ttq_coarse_now_ns())


cdef inline void broadcast_publish_many(ring_view *r, uint64_t position, const char *records,
                                        uint64_t n) noexcept nogil:
    """Write n records from position on, as broadcast_publish does one by one (the caller
    holds the writer role); no wake-up. One tight loop with the heartbeat check once per run
    moves a run of records 2-3 times faster than n calls."""
    cdef char *slot
    cdef uint64_t *stamp
    cdef uint64_t i, pos
    for i in range(n):
        pos = position + i
        slot = r.slots + (pos & r.mask) * r.slot_size
        stamp = <uint64_t *>slot
        ttq_store_release_u64(stamp, ttq_stamp_writing(pos))
        ttq_fence_release()     # the odd stamp is visible before any payload byte
        memcpy(slot + 8, records + i * r.record_size, r.record_size)
        ttq_store_release_u64(stamp, ttq_stamp_done(pos))
        ttq_store_release_u64(&r.header.write_position, pos + 1)
    if n and ((position & 1023) == 0 or (position >> 10) != ((position + n - 1) >> 10)):
        ttq_store_relaxed_i64(&r.header.heartbeat_ns, ttq_coarse_now_ns())


cdef inline void broadcast_push(ring_view *r, uint64_t *position, const void *record) noexcept nogil:
    """Publish one record at *position, advance it, wake sleeping readers if there are any."""
    broadcast_publish(r, position[0], record)
    position[0] += 1
    wake_readers(r.header, r.writer_fences)


cdef inline int broadcast_read(broadcast_cursor *c, void *out) noexcept nogil:
    """Copy the record at the cursor into out: 1 if copied, 0 if none is published yet.

    When lapped, adds the skipped count to c.lost, jumps to the oldest slot the writer may not
    have overwritten yet and tries that (its stamp decides), a bounded number of times.
    """
    cdef ring_view *r = &c.ring
    cdef uint64_t pos, s1, s2, write_position, oldest
    cdef char *slot
    cdef uint64_t *stamp
    cdef int jumps = 0
    while True:
        pos = c.position
        slot = r.slots + (pos & r.mask) * r.slot_size
        stamp = <uint64_t *>slot
        s1 = ttq_load_acquire_u64(stamp)
        if s1 == ttq_stamp_done(pos):
            memcpy(out, slot + 8, r.record_size)
            ttq_fence_acquire()     # the copy completes before the stamp is read again
            s2 = ttq_load_relaxed_u64(stamp)
            if s2 == s1:
                c.position = pos + 1
                return 1
        elif s1 < ttq_stamp_done(pos):
            return 0                # not yet published, or being written right now
        # The slot holds a later position: the writer lapped us.
        if jumps == 4:
            return 0                # a writer lapping us that fast: let the caller breathe
        jumps += 1
        write_position = ttq_load_acquire_u64(&r.header.write_position)
        if write_position <= r.capacity:
            return 0                # a stale write position; the next look will see more
        oldest = write_position - r.capacity
        if oldest <= pos:
            return 0
        c.lost += oldest - pos
        c.laps += 1
        c.position = oldest


cdef inline uint64_t broadcast_oldest(ring_view *r) noexcept nogil:
    """The oldest position surely still in the ring (the one before may be under rewrite)."""
    cdef uint64_t write_position = ttq_load_acquire_u64(&r.header.write_position)
    return write_position - r.capacity + 1 if write_position >= r.capacity else 0


cdef class BroadcastWriter:
    cdef readonly RingSegment segment
    cdef readonly uint32_t record_type
    cdef ring_view ring
    cdef uint64_t _position

    cpdef push(self, object record)
    cdef int _check_open(self) except -1


# broadcast_read as a read_one_fn, for wait_read.
cdef int broadcast_read_one(void *cursor, void *out) noexcept nogil


cdef class BroadcastReader:
    cdef readonly RingSegment segment
    cdef readonly uint32_t record_type
    cdef broadcast_cursor cursor
    cdef wait_policy policy
    cdef uint64_t seen_epoch
    cdef object _spare          # a record object ready for the next successful poll
    cdef void *_spare_data
    cdef int _waiting           # wait() in progress (it sleeps without the GIL): no close()

    cpdef poll(self)
    cdef object _take_spare(self)
