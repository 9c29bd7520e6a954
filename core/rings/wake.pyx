# cython: language_level=3
"""Wait policies for ring readers: spin, hybrid (spin then futex sleep) or sleep."""
import os

from cpython.exc cimport PyErr_CheckSignals
from ttquant.core.includes.atomics cimport (
    ttq_cpu_relax, ttq_monotonic_ns, ttq_membarrier_available, ttq_membarrier_writers,
    ttq_fetch_or_u32, ttq_futex_wait,
)

# The kernel offers the expedited global membarrier (see wake.pxd).
cdef bint membarrier_available = ttq_membarrier_available()

__all__ = ["WAIT_MODES", "DEFAULT_SPIN_POLLS", "DEFAULT_MAX_SLEEP_S", "MEMBARRIER"]

WAIT_MODES = {"spin": WAIT_SPIN, "hybrid": WAIT_HYBRID, "sleep": WAIT_SLEEP}
# About 50-200 us of polling on this kind of machine before a reader gives its core away.
DEFAULT_SPIN_POLLS = 10_000
# A sleeper looks again this often even unwoken: to notice signals, timeouts and dead writers.
DEFAULT_MAX_SLEEP_S = 0.1
# Below this a "sleep" is a futex syscall busy-loop that also makes the writer wake every push.
MIN_SLEEP_S = 1e-5
MEMBARRIER = bool(membarrier_available)


cdef int parse_wait_policy(wait_policy *policy, object mode, object spin_polls, object max_sleep) except -1:
    """Fill a wait_policy from Python arguments; None means the TTQ_WAIT_* env or the default."""
    if mode is None:
        mode = os.environ.get("TTQ_WAIT_MODE", "hybrid")
    if mode not in WAIT_MODES:
        raise ValueError(f"wait mode {mode!r} must be one of {sorted(WAIT_MODES)}")
    if spin_polls is None:
        spin_polls = int(os.environ.get("TTQ_WAIT_SPIN_POLLS", DEFAULT_SPIN_POLLS))
    if spin_polls < 0 or spin_polls > 0xFFFFFFFF:
        raise ValueError(f"spin_polls {spin_polls} must be in [0, 2**32)")
    if max_sleep is None:
        max_sleep = DEFAULT_MAX_SLEEP_S
    if not (MIN_SLEEP_S <= max_sleep <= 3600):
        raise ValueError(f"max_sleep {max_sleep!r} must be seconds in [{MIN_SLEEP_S}, 3600]")
    policy.mode = WAIT_MODES[mode]
    policy.spin_polls = spin_polls
    policy.max_sleep_ns = <int64_t>(max_sleep * 1e9)
    return 0


cdef uint32_t sleep_announce(ttq_ring_header *h) noexcept nogil:
    """Set the may-sleep bit; returns the word to sleep on. Look for records once more after."""
    cdef uint32_t word = ttq_fetch_or_u32(&h.wake_word, 1) | 1
    ttq_fence_seq_cst()             # the bit is visible before the second look reads the ring
    if membarrier_available:
        ttq_membarrier_writers()    # and a writer that skipped its fence has drained its stores
    return word


cdef void sleep_until_woken(ttq_ring_header *h, uint32_t word, int64_t timeout_ns) noexcept nogil:
    """Sleep while wake_word == word (returns at once if a writer already changed it)."""
    ttq_futex_wait(&h.wake_word, word, timeout_ns)


cdef int wait_read(const wait_policy *policy, ttq_ring_header *h, read_one_fn read_one,
                   void *cursor, void *out, int64_t timeout_ns) except -1:
    cdef uint32_t spins = 0
    cdef uint32_t word
    cdef int64_t deadline, now, nap
    if read_one(cursor, out):
        return 1
    if timeout_ns == 0:
        return 0
    deadline = ttq_monotonic_ns() + timeout_ns if timeout_ns > 0 else -1
    while True:
        spins += 1
        if policy.mode == WAIT_SPIN or (policy.mode == WAIT_HYBRID and spins < policy.spin_polls):
            ttq_cpu_relax()
            if (spins & 4095) == 0:
                if deadline >= 0 and ttq_monotonic_ns() >= deadline:
                    return 0
                with nogil:     # other Python threads get a turn, signals get through
                    pass
                PyErr_CheckSignals()
        else:
            now = ttq_monotonic_ns()
            if deadline >= 0 and now >= deadline:
                return 0
            nap = policy.max_sleep_ns
            if deadline >= 0 and deadline - now < nap:
                nap = deadline - now
            word = sleep_announce(h)
            if read_one(cursor, out):
                return 1
            with nogil:
                sleep_until_woken(h, word, nap)
            PyErr_CheckSignals()
        if read_one(cursor, out):
            return 1
