# Incremental indicators for strategies (DESIGN.md §6): O(1) work per update, doubles.
#
# Every indicator: `cpdef double update(...)` returns the new value; `value` is the last
# one, NaN until `ready` (the warm-up is seen); `reset()` forgets everything. Floats are
# fine here: indicators decide, the Portfolio accounts.
#
# Rolling windows keep their samples in a ring of doubles allocated once, and sums over the
# window: add the new sample, take the oldest out, in double-double arithmetic (below).
# Sliding still leaves residue of every sample that passed through, so each window also
# keeps a fresh add-only accumulator of the samples since its last recount; after `size`
# samples it holds exactly the current window, replaces the slid one and starts again.
# Residue (and a NaN or inf fed in) is gone within two windows; work stays O(1) per update.
#
# Cython callers cimport these classes and call update() through the vtable, no Python.
from libc.float cimport DBL_EPSILON
from libc.math cimport fma


# Double-double: an unevaluated sum hi + lo carrying ~106 bits. Adding and removing the same
# sample then cancels to ~eps**2 of the sums, so a window whose spread is far below its past
# (or below its level) keeps full double precision; plain or Welford sliding would lose
# the ratio of the two. TwoSum needs no FMA; products use fma() for the exact error term.
cdef struct dd:
    double hi
    double lo


cdef inline void dd_add(dd *s, double x) noexcept nogil:
    cdef double t = s.hi + x
    cdef double bp = t - s.hi
    cdef double lo = s.lo + ((s.hi - (t - bp)) + (x - bp))     # TwoSum's error, then the old lo
    s.hi = t + lo
    s.lo = lo - (s.hi - t)


cdef inline void dd_add_product(dd *s, double a, double b) noexcept nogil:
    cdef double p = a * b
    dd_add(s, p)
    dd_add(s, fma(a, b, -p))                # the exact rounding error of a * b


cdef inline double dd_value(dd *s) noexcept nogil:
    return s.hi + s.lo


cdef inline dd two_diff(double a, double b) noexcept nogil:
    """a - b exactly, as hi + lo (TwoSum)."""
    cdef dd r
    r.hi = a - b
    cdef double bp = a - r.hi
    r.lo = (a - (r.hi + bp)) + (bp - b)
    return r


cdef inline dd dd_div(dd *s, double n) noexcept nogil:
    """s / n to double-double accuracy."""
    cdef dd q
    q.hi = s.hi / n
    q.lo = (fma(-q.hi, n, s.hi) + s.lo) / n
    return q


# Sums of the samples' deviations from a shift (the first sample the sums saw), which
# keeps them near the window's spread rather than its level. Each deviation is taken exactly
# (two_diff), so what is left is eps**2 of the squared distance to the shift: the variance is
# good to 1e-9 relative while the window's stdev exceeds ~1e-11 of the range of the last two
# windows (the shift is at most that old).
cdef struct moments:
    Py_ssize_t n
    double shift
    dd s1                       # sum of (x - shift)
    dd s2                       # sum of (x - shift)**2


cdef inline void moments_clear(moments *m) noexcept nogil:
    m.n = 0
    m.shift = 0.0
    m.s1.hi = m.s1.lo = m.s2.hi = m.s2.lo = 0.0


cdef inline void moments_step(moments *m, double x, double sign) noexcept nogil:
    """Add (sign 1) or remove (sign -1) x: d = x - shift exactly, s1 += d, s2 += d**2."""
    cdef dd d = two_diff(x, m.shift)
    dd_add(&m.s1, sign * d.hi)
    dd_add(&m.s1, sign * d.lo)
    dd_add_product(&m.s2, sign * d.hi, d.hi)
    dd_add_product(&m.s2, sign * 2.0 * d.hi, d.lo)     # d.lo**2 is below double-double


cdef inline void moments_add(moments *m, double x) noexcept nogil:
    if m.n == 0:
        m.shift = x
    moments_step(m, x, 1.0)
    m.n += 1


cdef inline void moments_remove(moments *m, double x) noexcept nogil:
    m.n -= 1
    if m.n == 0:
        moments_clear(m)
    else:
        moments_step(m, x, -1.0)    # the same shift: the very deviation that was added


cdef inline double moments_m2(moments *m) noexcept nogil:
    """Sum of squared deviations from the mean: s2 - s1**2 / n, the subtraction in double-double.

    Below the arithmetic's noise (64 eps**2 of s2) it is 0: a constant window has no spread.
    """
    cdef double a = m.s1.hi
    cdef dd sq
    sq.hi = a * a
    sq.lo = fma(a, a, -sq.hi) + 2.0 * a * m.s1.lo            # s1**2 (lo**2 dropped)
    cdef dd q = dd_div(&sq, <double>m.n)
    cdef dd d = m.s2
    dd_add(&d, -q.hi)
    dd_add(&d, -q.lo)
    cdef double m2 = dd_value(&d)
    if m2 <= 64.0 * DBL_EPSILON * DBL_EPSILON * dd_value(&m.s2):
        return 0.0
    return m2


cdef inline double moments_deviation(moments *m, double x) noexcept nogil:
    """x - mean, as (x - shift) - s1 / n in double-double: no cancellation against the level."""
    cdef dd d = two_diff(x, m.shift)
    cdef dd q = dd_div(&m.s1, <double>m.n)
    dd_add(&d, -q.hi)
    dd_add(&d, -q.lo)
    return dd_value(&d)


cdef inline double moments_mean(moments *m) noexcept nogil:
    cdef dd q = dd_div(&m.s1, <double>m.n)
    cdef dd mean
    mean.hi = m.shift
    mean.lo = 0.0
    dd_add(&mean, q.hi)
    dd_add(&mean, q.lo)
    return dd_value(&mean)


# A window of the last `size` samples with their moments.
cdef struct window_stats:
    double *data
    Py_ssize_t size
    Py_ssize_t head             # next slot to write; once full, also the oldest sample
    Py_ssize_t count            # samples in the window, at most size
    moments main                # the window, slid one sample at a time
    moments fresh               # samples since the last recount, added only


cdef inline void window_push(window_stats *s, double x) noexcept nogil:
    if s.count == s.size:
        moments_remove(&s.main, s.data[s.head])
    else:
        s.count += 1
    s.data[s.head] = x
    moments_add(&s.main, x)
    s.head += 1
    if s.head == s.size:
        s.head = 0
    moments_add(&s.fresh, x)
    if s.fresh.n == s.size:
        s.main = s.fresh            # an add-only recount of exactly this window
        moments_clear(&s.fresh)


cdef inline void window_clear(window_stats *s) noexcept nogil:
    s.head = 0
    s.count = 0
    moments_clear(&s.main)
    moments_clear(&s.fresh)


cdef inline double window_mean(window_stats *s) noexcept nogil:
    return moments_mean(&s.main)


# Price * qty and qty of the last `size` fills (rolling VWAP), recounted like window_stats.
cdef struct window_sums:
    double *data                # pairs: price, qty
    Py_ssize_t size
    Py_ssize_t head
    Py_ssize_t count
    Py_ssize_t with_qty         # fills in the window with qty != 0: none means exactly no qty
    dd pq
    dd q
    dd fresh_pq
    dd fresh_q
    Py_ssize_t fresh_n


cdef class EMA:
    cdef readonly double alpha
    cdef readonly Py_ssize_t warmup
    cdef readonly Py_ssize_t count
    cdef double _mean

    cpdef double update(self, double x)
    cpdef void reset(self)


cdef class SMA:
    cdef readonly Py_ssize_t window
    cdef readonly Py_ssize_t count
    cdef window_stats _w

    cpdef double update(self, double x)
    cpdef void reset(self)


cdef class RSI:
    cdef readonly Py_ssize_t period
    cdef readonly Py_ssize_t count
    cdef double _prev
    cdef double _avg_gain
    cdef double _avg_loss
    cdef double _value

    cpdef double update(self, double price)
    cpdef void reset(self)


cdef class ATR:
    cdef readonly Py_ssize_t period
    cdef readonly Py_ssize_t count
    cdef double _prev_close
    cdef double _atr
    cdef double _value

    cpdef double update(self, double high, double low, double close)
    cpdef void reset(self)


cdef class RollingVolatility:
    cdef readonly Py_ssize_t window
    cdef readonly Py_ssize_t ddof
    cdef readonly bint log_returns
    cdef readonly Py_ssize_t count
    cdef double _prev
    cdef double _value
    cdef window_stats _w

    cpdef double update(self, double price)
    cpdef void reset(self)


cdef class VWAP:
    cdef readonly Py_ssize_t count
    cdef dd _pq                     # double-double: a session is long
    cdef dd _q
    cdef double _value

    cpdef double update(self, double price, double qty)
    cpdef void reset(self)


cdef class RollingVWAP:
    cdef readonly Py_ssize_t window
    cdef readonly Py_ssize_t count
    cdef window_sums _w
    cdef double _value

    cpdef double update(self, double price, double qty)
    cpdef void reset(self)


cdef class ZScore:
    cdef readonly Py_ssize_t window
    cdef readonly Py_ssize_t ddof
    cdef readonly Py_ssize_t count
    cdef window_stats _w
    cdef double _value

    cpdef double update(self, double x)
    cpdef void reset(self)
