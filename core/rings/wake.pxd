# Sleeping readers and the writer that wakes them, for both ring kinds (an eventcount).
#
# The futex word wake_word holds a wake count in bits 1.. and, in bit 0, "a reader may be
# asleep". A reader that spun long enough sets bit 0, fences, looks once more, then sleeps
# while the word still equals what it saw. A writer, after publishing, fences (StoreLoad)
# and only when bit 0 is set bumps the count, clears the bit and wakes everyone. Either the
# reader's second look sees the record or the writer sees the bit: no lost wake-up; and a
# reader that dies asleep costs at most one wasted wake, not a syscall per push forever.
#
# The writer's StoreLoad fence would serialise every publish on its cache misses (a third of
# the throughput). Where the kernel has membarrier, a writer process registers and skips it;
# the reader about to sleep pays instead, with a barrier on every CPU running such a writer
# (the asymmetric fence of userspace RCU). Readers always do both, so any writer mix is safe.
from libc.stdint cimport uint32_t, uint64_t, int64_t
from ttquant.core.includes.atomics cimport (
    ttq_fence_seq_cst, ttq_compiler_barrier, ttq_load_relaxed_u32, ttq_load_acquire_u32,
    ttq_exchange_u32, ttq_futex_wake, ttq_count_u64,
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


cdef inline void wake_readers(ttq_ring_header *h, bint fence) noexcept nogil:
    cdef uint32_t word
    if fence:
        ttq_fence_seq_cst()
    else:
        ttq_compiler_barrier()  # the CPU may still reorder: sleepers' membarrier covers that
    word = ttq_load_relaxed_u32(&h.wake_word)
    if word & 1:
        ttq_exchange_u32(&h.wake_word, (word | 1) + 1)     # count + 1, bit 0 clear
        ttq_futex_wake(&h.wake_word)
        ttq_count_u64(&h.wakeups)


# Reads one record for the waiting loop: 1 if copied to out, 0 if none yet.
ctypedef int (*read_one_fn)(void *cursor, void *out) noexcept nogil

# Read one record, waiting by policy; 1 if read, 0 on timeout (timeout_ns < 0: forever).
# Holds the GIL while spinning (briefly dropping it every few thousand polls) and
# releases it while asleep; raises KeyboardInterrupt etc. from signal handlers.
cdef int wait_read(const wait_policy *policy, ttq_ring_header *h, read_one_fn read_one,
                   void *cursor, void *out, int64_t timeout_ns) except -1

cdef int parse_wait_policy(wait_policy *policy, object mode, object spin_polls, object max_sleep) except -1
