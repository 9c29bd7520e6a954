# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Cython loops over the rings with no Python per record, for the Cython-side benchmarks.

They call the same inline fast paths (broadcast.pxd, spsc.pxd) a Cython strategy or the md
daemon would, so what they measure is what those callers get.
"""
from libc.stdint cimport uint64_t, int64_t
from libc.string cimport memcpy, memset

from ttquant.core.includes.atomics cimport ttq_monotonic_ns, ttq_cpu_relax
from ttquant.core.records cimport ttq_market_event
from ttquant.core.rings.broadcast cimport (
    BroadcastReader, BroadcastWriter, broadcast_push, broadcast_read,
)
from ttquant.core.rings.spsc cimport SpscReader, SpscWriter, spsc_pop, spsc_push


def push_poll_broadcast(BroadcastWriter w, BroadcastReader r, uint64_t n):
    """n x (push one MarketEvent, read it back) in one thread; total ns."""
    cdef ttq_market_event ev, out
    cdef uint64_t i, got = 0
    memset(&ev, 0, sizeof(ev))
    cdef int64_t t0 = ttq_monotonic_ns()
    with nogil:
        for i in range(n):
            ev.seq = i
            broadcast_push(&w.ring, &w._position, &ev)
            got += broadcast_read(&r.cursor, &out)
    cdef int64_t t1 = ttq_monotonic_ns()
    if got != n:
        raise AssertionError(f"read {got} of {n}")
    return t1 - t0


def push_poll_spsc(SpscWriter w, SpscReader r, uint64_t n):
    """n x (push one 56-byte order, pop it) in one thread; total ns."""
    cdef char rec[56]
    cdef char out[56]
    cdef uint64_t i, got = 0
    memset(rec, 0, sizeof(rec))
    cdef int64_t t0 = ttq_monotonic_ns()
    with nogil:
        for i in range(n):
            (<uint64_t *>rec)[1] = i
            spsc_push(&w.cursor, rec)
            got += spsc_pop(&r.cursor, out)
    cdef int64_t t1 = ttq_monotonic_ns()
    if got != n:
        raise AssertionError(f"read {got} of {n}")
    return t1 - t0


def pump_broadcast(BroadcastWriter w, uint64_t n):
    """Publish n MarketEvents one by one as fast as possible; elapsed ns."""
    cdef ttq_market_event ev
    cdef uint64_t i
    memset(&ev, 0, sizeof(ev))
    cdef int64_t t0 = ttq_monotonic_ns()
    with nogil:
        for i in range(n):
            ev.seq = i
            broadcast_push(&w.ring, &w._position, &ev)
    return ttq_monotonic_ns() - t0


def drain_broadcast(BroadcastReader r, uint64_t end):
    """Spin-read one by one until the cursor reaches end; (seen, lost, first_ns, last_ns)."""
    cdef ttq_market_event out
    cdef uint64_t seen = 0
    cdef int64_t first = 0, last = 0
    with nogil:
        while r.cursor.position < end:
            if broadcast_read(&r.cursor, &out):
                if seen == 0:
                    first = ttq_monotonic_ns()
                seen += 1
            else:
                ttq_cpu_relax()
        last = ttq_monotonic_ns()
    return seen, r.cursor.lost, first, last


def pump_spsc(SpscWriter w, uint64_t n):
    """Push n orders one by one, retrying while full; (elapsed ns, refusals)."""
    cdef char rec[56]
    cdef uint64_t i = 0, refused = 0
    memset(rec, 0, sizeof(rec))
    cdef int64_t t0 = ttq_monotonic_ns()
    with nogil:
        while i < n:
            (<uint64_t *>rec)[1] = i
            if spsc_push(&w.cursor, rec):
                i += 1
            else:
                refused += 1
                ttq_cpu_relax()
    return ttq_monotonic_ns() - t0, refused


def drain_spsc(SpscReader r, uint64_t n, uint64_t warm=0):
    """Pop n orders one by one, spinning; (clock at record `warm`, last_ns, order errors)."""
    cdef char out[56]
    cdef uint64_t seen = 0, errors = 0
    cdef int64_t first = 0, last = 0
    with nogil:
        while seen < n:
            if spsc_pop(&r.cursor, out):
                if seen == warm:
                    first = ttq_monotonic_ns()
                if (<uint64_t *>out)[1] != seen:
                    errors += 1
                seen += 1
            else:
                ttq_cpu_relax()
        last = ttq_monotonic_ns()
    return first, last, errors


def ping_broadcast(BroadcastWriter w, BroadcastReader r, int64_t[::1] rtt):
    """Round trips through an echo: push, spin until the echo comes back; rtt[i] in ns."""
    cdef ttq_market_event ev, out
    cdef Py_ssize_t i
    cdef int64_t t0
    memset(&ev, 0, sizeof(ev))
    with nogil:
        for i in range(rtt.shape[0]):
            t0 = ttq_monotonic_ns()
            ev.seq = i
            broadcast_push(&w.ring, &w._position, &ev)
            while not broadcast_read(&r.cursor, &out):
                ttq_cpu_relax()
            rtt[i] = ttq_monotonic_ns() - t0


def echo_broadcast(BroadcastReader r, BroadcastWriter w, uint64_t n):
    """Send back each of n records as soon as it arrives (spinning)."""
    cdef ttq_market_event ev
    cdef uint64_t _
    with nogil:
        for _ in range(n):
            while not broadcast_read(&r.cursor, &ev):
                ttq_cpu_relax()
            broadcast_push(&w.ring, &w._position, &ev)


# --- batched and paced variants ---------------------------------------------------------------

from libc.stdlib cimport calloc, free
from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_store_release_u64
from ttquant.core.rings.broadcast cimport broadcast_publish
from ttquant.core.rings.spsc cimport spsc_pop_many, spsc_publish_many
from ttquant.core.rings.wake cimport wake_readers


def pump_spsc_batch(SpscWriter w, uint64_t n, uint64_t batch):
    """Push n orders in batches (one position store and one wake check per batch)."""
    cdef char *buf = <char *>calloc(batch, 56)
    cdef uint64_t sent = 0, k, put, i
    if buf == NULL:
        raise MemoryError()
    with nogil:
        while sent < n:
            k = batch if n - sent > batch else n - sent
            for i in range(k):
                (<uint64_t *>(buf + i * 56))[1] = sent + i
            put = 0
            while put < k:
                i = spsc_publish_many(&w.cursor, buf + put * 56, k - put)
                if i:
                    wake_readers(w.cursor.ring.header, w.cursor.ring.writer_fences)
                else:
                    ttq_cpu_relax()
                put += i
            sent += k
    free(buf)


def drain_spsc_batch(SpscReader r, uint64_t n, uint64_t batch, uint64_t warm=0):
    """Pop n orders in batches; (clock once `warm` were read, last_ns, order errors)."""
    cdef char *buf = <char *>calloc(batch, 56)
    cdef uint64_t seen = 0, got, i, errors = 0
    cdef int64_t first = 0, last
    if buf == NULL:
        raise MemoryError()
    with nogil:
        while seen < n:
            got = spsc_pop_many(&r.cursor, buf, batch)
            if got == 0:
                ttq_cpu_relax()
                continue
            if seen <= warm < seen + got:
                first = ttq_monotonic_ns()
            for i in range(got):
                if (<uint64_t *>(buf + i * 56))[1] != seen + i:
                    errors += 1
            seen += got
        last = ttq_monotonic_ns()
    free(buf)
    return first, last, errors


def pump_broadcast_paced(BroadcastWriter w, uint64_t n, int64_t[::1] consumer, uint64_t window,
                         uint64_t batch):
    """Publish n events (a wake check per batch), never more than window ahead of the position
    the consumer reports in consumer[0]: lossless flow control for a throughput figure. The
    report is re-read only when the cached limit is reached, like an SPSC writer's."""
    cdef ttq_market_event ev
    cdef uint64_t i = 0, k, limit = window
    cdef uint64_t *seen = <uint64_t *>&consumer[0]
    memset(&ev, 0, sizeof(ev))
    with nogil:
        while i < n:
            while w._position >= limit:
                limit = ttq_load_acquire_u64(seen) + window
                if w._position >= limit:
                    ttq_cpu_relax()
            k = 0
            while k < batch and i < n and w._position < limit:
                ev.seq = i
                broadcast_publish(&w.ring, w._position, &ev)
                w._position += 1
                i += 1
                k += 1
            wake_readers(w.ring.header, w.ring.writer_fences)


def drain_broadcast_paced(BroadcastReader r, uint64_t end, int64_t[::1] consumer, uint64_t warm=0):
    """Read one by one until end, reporting progress in consumer[0] every 256 records;
    (seen, lost, clock at record `warm`, last_ns)."""
    cdef ttq_market_event out
    cdef uint64_t seen = 0
    cdef int64_t first = 0, last = 0
    cdef uint64_t *report = <uint64_t *>&consumer[0]
    with nogil:
        while r.cursor.position < end:
            if broadcast_read(&r.cursor, &out):
                if seen == warm:
                    first = ttq_monotonic_ns()
                seen += 1
                if (seen & 255) == 0:   # a rare store: the producer reads this line only when blocked
                    ttq_store_release_u64(report, r.cursor.position)
            else:
                ttq_cpu_relax()
        last = ttq_monotonic_ns()
    return seen, r.cursor.lost, first, last


from ttquant.core.includes.atomics cimport ttq_now_ns

from posix.time cimport itimerspec, CLOCK_MONOTONIC
from posix.unistd cimport read, close

cdef extern from "<sys/timerfd.h>" nogil:
    int timerfd_create(int clockid, int flags)
    int timerfd_settime(int fd, int flags, const itimerspec *new_value, itimerspec *old_value)


def pace_ticks(BroadcastWriter w, const unsigned char[::1] records, Py_ssize_t n, int64_t interval_ns):
    """Publish n MarketEvents (records: n * 120 bytes) one every interval_ns, each stamped
    ts_pub at the store, asleep in between on a periodic timerfd: the timer is re-armed when it
    fires (before the store), so what follows the store is only the sleep itself and the core
    goes back at once to what shares it (the gateway), as a core md shares would."""
    cdef ttq_market_event ev
    cdef itimerspec period
    cdef uint64_t fired
    cdef Py_ssize_t k
    cdef int fd
    if records.shape[0] < n * <Py_ssize_t>sizeof(ttq_market_event):
        raise ValueError("records holds fewer than n events")
    fd = timerfd_create(CLOCK_MONOTONIC, 0)
    if fd < 0:
        raise OSError("timerfd_create failed")
    period.it_interval.tv_sec, period.it_interval.tv_nsec = interval_ns // 1000000000, interval_ns % 1000000000
    period.it_value = period.it_interval
    try:
        if timerfd_settime(fd, 0, &period, NULL) != 0:
            raise OSError("timerfd_settime failed")
        with nogil:
            for k in range(n):
                read(fd, &fired, 8)
                memcpy(&ev, &records[k * sizeof(ttq_market_event)], sizeof(ttq_market_event))
                ev.ts_pub = ttq_now_ns()
                broadcast_push(&w.ring, &w._position, &ev)
    finally:
        close(fd)


def stall_probe(int64_t duration_ns, int64_t threshold_ns):
    """Spin on the clock for duration_ns and count the gaps over threshold_ns: time this vCPU
    was not running us (hypervisor, interrupts). Returns (gaps, their total ns, the longest)."""
    cdef int64_t start, now, last, gap, total = 0, longest = 0
    cdef uint64_t gaps = 0
    with nogil:
        start = last = ttq_monotonic_ns()
        while last - start < duration_ns:
            now = ttq_monotonic_ns()
            gap = now - last
            if gap > threshold_ns:
                gaps += 1
                total += gap
                if gap > longest:
                    longest = gap
            last = now
    return gaps, total, longest
