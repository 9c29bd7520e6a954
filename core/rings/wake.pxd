# Sleeping readers and the writer that wakes them, for both ring kinds.
#
# A reader that spun long enough announces itself (sleepers += 1), looks once more, then
# sleeps on the futex word wake_seq. A writer, after publishing, fences (StoreLoad) and wakes
# only when sleepers != 0, so a ring nobody sleeps on never costs a syscall. Either the
# reader's second look sees the record or the writer sees the sleeper: no lost wake-up.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from ttquant.core.includes.atomics cimport (
    ttq_fence_seq_cst, ttq_load_relaxed_u32, ttq_load_acquire_u32, ttq_fetch_add_u32,
    ttq_fetch_sub_u32, ttq_futex_wait, ttq_futex_wake,
)
from ttquant.core.includes.ring_layout cimport ttq_ring_header

cdef enum WaitMode:
    WAIT_SPIN = 1               # never sleep: pinned production cores only
    WAIT_HYBRID = 2             # spin spin_polls times, then sleep on the futex
    WAIT_SLEEP = 3              # sleep as soon as the ring is empty

cdef struct wait_policy:
    int mode
    uint32_t spin_polls
    int64_t max_sleep_ns        # one futex sleep at most this long, then look again


cdef inline void wake_readers(ttq_ring_header *h) noexcept nogil:
    ttq_fence_seq_cst()
    if ttq_load_relaxed_u32(&h.sleepers) != 0:
        ttq_fetch_add_u32(&h.wake_seq, 1)
        ttq_futex_wake(&h.wake_seq)
        h.wakeups += 1


cdef inline uint32_t sleep_announce(ttq_ring_header *h) noexcept nogil:
    cdef uint32_t seq = ttq_load_acquire_u32(&h.wake_seq)
    ttq_fetch_add_u32(&h.sleepers, 1)
    return seq


cdef inline void sleep_cancel(ttq_ring_header *h) noexcept nogil:
    ttq_fetch_sub_u32(&h.sleepers, 1)


cdef inline void sleep_until_woken(ttq_ring_header *h, uint32_t seq, int64_t timeout_ns) noexcept nogil:
    ttq_futex_wait(&h.wake_seq, seq, timeout_ns)
    ttq_fetch_sub_u32(&h.sleepers, 1)


# Reads one record for the waiting loop: 1 if copied to out, 0 if none yet.
ctypedef int (*read_one_fn)(void *cursor, void *out) noexcept nogil

# Read one record, waiting by policy; 1 if read, 0 on timeout (timeout_ns < 0: forever).
# Holds the GIL while spinning (briefly dropping it every few thousand polls) and
# releases it while asleep; raises KeyboardInterrupt etc. from signal handlers.
cdef int wait_read(const wait_policy *policy, ttq_ring_header *h, read_one_fn read_one,
                   void *cursor, void *out, int64_t timeout_ns) except -1

cdef int parse_wait_policy(wait_policy *policy, object mode, object spin_polls, object max_sleep) except -1
