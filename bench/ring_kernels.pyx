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


# --- throughput: a producer process -> a consumer process --------------------------------------
#
# A consumer that looks again at once when it finds nothing sits on the slot the producer is
# filling: each look pulls that line (and the ones after it) over to the consumer's core, and the
# producer waits a line round trip between the two vCPUs to get each one back. Spinning, the stream
# runs at about one record per round trip (15-25 M/s when the host keeps the vCPUs close, ~5 M/s
# when it puts them far apart) instead of at the producer's own pace (120 M/s alone), and a slower
# consumer (Python) beats a faster one. Each catch-up costs the producer about a microsecond, so
# a consumer that finds nothing keeps off the ring for idle_ns (measured, broadcast one by one:
# 1 us 25 M/s, 20 us 110 M/s) and then reads what came in one sweep; a producer that finds no
# room does the same. A latency-bound reader (the hop kernels above) spins: that is the trade.

from libc.stdlib cimport calloc, free
from ttquant.core.includes.atomics cimport ttq_load_acquire_u64, ttq_store_release_u64
from ttquant.core.records cimport ttq_order
from ttquant.core.rings.broadcast cimport broadcast_publish, broadcast_publish_many
from ttquant.core.rings.spsc cimport spsc_pop_many, spsc_publish_many
from ttquant.core.rings.wake cimport wake_readers


cdef inline void keep_off(int64_t idle_ns) noexcept nogil:
    """Found nothing (or no room): stay off the other side's lines for about idle_ns."""
    cdef int64_t until
    ttq_cpu_relax()
    if idle_ns > 0:
        until = ttq_monotonic_ns() + idle_ns
        while ttq_monotonic_ns() < until:
            ttq_cpu_relax()


def idle(int64_t idle_ns):
    """keep_off for Python consumers: call it when poll() found nothing."""
    with nogil:
        keep_off(idle_ns)


def pump_broadcast_paced(BroadcastWriter w, uint64_t n, int64_t[::1] consumer, uint64_t window,
                         uint64_t batch, int64_t idle_ns=0):
    """Publish n MarketEvents (seq = 0..n-1) one by one (batch 1: broadcast_publish) or in runs
    of `batch` (broadcast_publish_many, one wake check per run), never more than window ahead of
    the position the consumer reports in consumer[0]: lossless flow control for a throughput
    figure. The report is re-read only when the cached limit is reached, like an SPSC writer's."""
    cdef ttq_market_event *buf = <ttq_market_event *>calloc(batch, sizeof(ttq_market_event))
    cdef uint64_t i = 0, j, k, limit = window
    cdef uint64_t *seen = <uint64_t *>&consumer[0]
    if buf == NULL:
        raise MemoryError()
    if batch < 1 or batch > window:
        free(buf)
        raise ValueError("batch must be in [1, window]")
    with nogil:
        while i < n:
            k = batch if n - i > batch else n - i
            while w._position + k > limit:
                limit = ttq_load_acquire_u64(seen) + window
                if w._position + k > limit:
                    keep_off(idle_ns)
            if k == 1:
                buf[0].seq = i
                broadcast_publish(&w.ring, w._position, buf)
            else:
                for j in range(k):
                    buf[j].seq = i + j
                broadcast_publish_many(&w.ring, w._position, <const char *>buf, k)
            w._position += k
            i += k
            wake_readers(w.ring.header, w.ring.writer_fences)
    free(buf)


def drain_broadcast_paced(BroadcastReader r, uint64_t end, int64_t[::1] consumer, int64_t[::1] marks,
                          uint64_t chunk, int64_t idle_ns=0):
    """Read one by one until the cursor reaches end, reporting progress in consumer[0] every
    256 records; marks[k] = clock when record k * chunk was read (chunk: a power of two).
    Returns (seen, lost, records out of order)."""
    cdef ttq_market_event out
    cdef uint64_t seen = 0, errors = 0, mask = chunk - 1
    cdef uint64_t *report = <uint64_t *>&consumer[0]
    if chunk == 0 or chunk & mask or <uint64_t>marks.shape[0] <= end // chunk:
        raise ValueError("chunk must be a power of two and marks hold end // chunk + 1 entries")
    with nogil:
        marks[0] = ttq_monotonic_ns()
        while r.cursor.position < end:
            if broadcast_read(&r.cursor, &out):
                if out.seq != r.cursor.position - 1:
                    errors += 1
                seen += 1
                if (seen & 255) == 0:   # a rare store: the producer reads this line only when blocked
                    ttq_store_release_u64(report, r.cursor.position)
                if (seen & mask) == 0:
                    marks[seen // chunk] = ttq_monotonic_ns()
            else:
                keep_off(idle_ns)
    return seen, r.cursor.lost, errors


def line_ping(int64_t[::1] word, int64_t[::1] rtt):
    """Bounce word[0] off line_echo in the other process len(rtt) times; rtt[i] in ns. What one
    cache line's round trip between the two vCPUs costs right now: the host moves them, and a
    stream of records pays in proportion."""
    cdef Py_ssize_t i
    cdef int64_t t0
    cdef uint64_t *w = <uint64_t *>&word[0]
    with nogil:
        for i in range(rtt.shape[0]):
            t0 = ttq_monotonic_ns()
            ttq_store_release_u64(w, 2 * i + 1)
            while ttq_load_acquire_u64(w) != <uint64_t>(2 * i + 2):
                ttq_cpu_relax()
            rtt[i] = ttq_monotonic_ns() - t0


def line_echo(int64_t[::1] word, uint64_t n):
    """The other end of line_ping."""
    cdef uint64_t i
    cdef uint64_t *w = <uint64_t *>&word[0]
    with nogil:
        for i in range(n):
            while ttq_load_acquire_u64(w) != 2 * i + 1:
                ttq_cpu_relax()
            ttq_store_release_u64(w, 2 * i + 2)


def pump_spsc(SpscWriter w, uint64_t n, uint64_t batch, int64_t idle_ns=0):
    """Push n orders (client_order_id = 0..n-1) one by one (batch 1: spsc_push) or in runs of
    `batch` (one position store and one wake check per run), keeping off while the ring is
    full. Returns how many pushes found it full."""
    cdef ttq_order *buf = <ttq_order *>calloc(batch, sizeof(ttq_order))
    cdef uint64_t sent = 0, refused = 0, k, put, i
    if buf == NULL:
        raise MemoryError()
    with nogil:
        while sent < n:
            k = batch if n - sent > batch else n - sent
            for i in range(k):
                buf[i].client_order_id = sent + i
            put = 0
            while put < k:
                if k == 1:
                    i = spsc_push(&w.cursor, buf)
                else:
                    i = spsc_publish_many(&w.cursor, <const char *>(buf + put), k - put)
                    if i:
                        wake_readers(w.cursor.ring.header, w.cursor.ring.writer_fences)
                if i == 0:
                    refused += 1
                    keep_off(idle_ns)
                put += i
            sent += k
    free(buf)
    return refused


def drain_spsc(SpscReader r, uint64_t n, uint64_t batch, int64_t[::1] marks, uint64_t chunk,
               int64_t idle_ns=0):
    """Pop n orders one by one (batch 1: spsc_pop) or up to `batch` at a time (spsc_pop_many);
    marks[k] = clock when record k * chunk was read. Returns the records out of order."""
    cdef ttq_order *buf = <ttq_order *>calloc(batch, sizeof(ttq_order))
    cdef uint64_t seen = 0, got, i, errors = 0, mask = chunk - 1
    if buf == NULL:
        raise MemoryError()
    if chunk == 0 or chunk & mask or <uint64_t>marks.shape[0] <= n // chunk:
        free(buf)
        raise ValueError("chunk must be a power of two and marks hold n // chunk + 1 entries")
    with nogil:
        marks[0] = ttq_monotonic_ns()
        while seen < n:
            if batch == 1:
                got = spsc_pop(&r.cursor, buf)
            else:
                got = spsc_pop_many(&r.cursor, <char *>buf, batch)
            if got == 0:
                keep_off(idle_ns)
                continue
            for i in range(got):
                if buf[i].client_order_id != seen + i:
                    errors += 1
            if ((seen + got) & ~mask) != (seen & ~mask):
                marks[(seen + got) // chunk] = ttq_monotonic_ns()
            seen += got
    free(buf)
    return errors


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
