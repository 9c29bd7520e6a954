# cython: language_level=3
"""Incremental indicators: EMA, SMA, RSI, ATR, rolling volatility, VWAP, z-score.

O(1) work per update; `value` is NaN until `ready`. Numerics of the rolling windows (shifted
double-double sums with an add-only recount every window) are described in indicators.pxd.
"""
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport NAN, ceil, fabs, fmax, log, sqrt

__all__ = ["EMA", "SMA", "RSI", "ATR", "RollingVolatility", "VWAP", "RollingVWAP", "ZScore"]


cdef double *_alloc(Py_ssize_t n, double *old) except NULL:
    PyMem_Free(old)
    cdef double *p = <double *>PyMem_Malloc(n * sizeof(double))
    if p == NULL:
        raise MemoryError()
    return p


cdef Py_ssize_t _positive(name, Py_ssize_t value) except -1:
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


cdef inline double _variance(window_stats *w, Py_ssize_t ddof) noexcept nogil:
    if w.count <= ddof:
        return NAN
    return moments_m2(&w.main) / (w.count - ddof)


cdef class EMA:
    """Exponential moving average, seeded with the first sample (pandas ewm(adjust=False)).

    EMA(span) uses alpha = 2 / (span + 1) and is ready after ceil(span) samples;
    EMA(alpha=a) is ready after `warmup` samples (default 1).
    """

    def __init__(self, span=None, *, alpha=None, warmup=None):
        if (span is None) == (alpha is None):
            raise ValueError("give exactly one of span and alpha")
        if span is not None:
            if not span >= 1:
                raise ValueError(f"span must be at least 1, got {span}")
            self.alpha = 2.0 / (span + 1.0)
            default_warmup = <Py_ssize_t>ceil(span)
        else:
            if not 0 < alpha <= 1:
                raise ValueError(f"alpha must be in (0, 1], got {alpha}")
            self.alpha = alpha
            default_warmup = 1
        self.warmup = _positive("warmup", default_warmup if warmup is None else warmup)
        self.reset()

    cpdef double update(self, double x):
        if self.count == 0:
            self._mean = x
        else:
            self._mean += self.alpha * (x - self._mean)
        self.count += 1
        return self._mean if self.count >= self.warmup else NAN

    cpdef void reset(self):
        self.count = 0
        self._mean = NAN

    @property
    def value(self):
        return self._mean if self.count >= self.warmup else NAN

    @property
    def ready(self):
        return self.count >= self.warmup


cdef class SMA:
    """Simple moving average of the last `window` samples; ready once the window is full."""

    def __init__(self, Py_ssize_t window):
        self.window = _positive("window", window)
        self._w.data = _alloc(window, self._w.data)
        self._w.size = window
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._w.data)

    cpdef double update(self, double x):
        window_push(&self._w, x)
        self.count += 1
        return window_mean(&self._w) if self._w.count == self.window else NAN

    cpdef void reset(self):
        self.count = 0
        window_clear(&self._w)

    @property
    def value(self):
        return window_mean(&self._w) if self._w.count == self.window else NAN

    @property
    def ready(self):
        return self._w.count == self.window


cdef class RSI:
    """Relative strength index with Wilder's smoothing, 0..100.

    The first averages of gains and losses are simple means over `period` price changes
    (so ready after period + 1 prices); then avg = (avg * (period - 1) + new) / period.
    No movement at all gives 50.
    """

    def __init__(self, Py_ssize_t period=14):
        self.period = _positive("period", period)
        self.reset()

    cpdef double update(self, double price):
        cdef double change, gain, loss, n = self.period
        self.count += 1
        if self.count > 1:
            change = price - self._prev
            gain = change if change > 0.0 else 0.0
            loss = -change if change < 0.0 else 0.0
            if self.count <= self.period + 1:           # seeding: sums, averaged at the end
                self._avg_gain += gain
                self._avg_loss += loss
                if self.count == self.period + 1:
                    self._avg_gain /= n
                    self._avg_loss /= n
            else:
                self._avg_gain = (self._avg_gain * (n - 1.0) + gain) / n
                self._avg_loss = (self._avg_loss * (n - 1.0) + loss) / n
            if self.count > self.period:
                if self._avg_gain + self._avg_loss > 0.0:
                    self._value = 100.0 * self._avg_gain / (self._avg_gain + self._avg_loss)
                else:
                    self._value = 50.0
        self._prev = price
        return self._value

    cpdef void reset(self):
        self.count = 0
        self._prev = NAN
        self._avg_gain = 0.0
        self._avg_loss = 0.0
        self._value = NAN

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self.count > self.period


cdef class ATR:
    """Average true range with Wilder's smoothing, from bars' high, low and close.

    True range is max(high - low, |high - prev close|, |low - prev close|); the first bar
    has no previous close and counts high - low. The first ATR is the mean of `period` true
    ranges (ready after `period` bars), then atr = (atr * (period - 1) + tr) / period.
    """

    def __init__(self, Py_ssize_t period=14):
        self.period = _positive("period", period)
        self.reset()

    cpdef double update(self, double high, double low, double close):
        cdef double tr = high - low, n = self.period
        if self.count > 0:
            tr = fmax(tr, fmax(fabs(high - self._prev_close), fabs(low - self._prev_close)))
        self.count += 1
        if self.count <= self.period:
            self._atr += tr
            if self.count == self.period:
                self._atr /= n
                self._value = self._atr
        else:
            self._atr = (self._atr * (n - 1.0) + tr) / n
            self._value = self._atr
        self._prev_close = close
        return self._value

    cpdef void reset(self):
        self.count = 0
        self._prev_close = NAN
        self._atr = 0.0
        self._value = NAN

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self.count >= self.period


cdef class RollingVolatility:
    """Standard deviation of the last `window` returns (log returns by default, else simple),
    not annualised; ready after window + 1 prices. ddof=1 is the sample stdev."""

    def __init__(self, Py_ssize_t window, *, bint log_returns=True, Py_ssize_t ddof=1):
        self.window = _positive("window", window)
        if not 0 <= ddof < window:
            raise ValueError(f"ddof must be in [0, window), got {ddof} with window {window}")
        self.ddof = ddof
        self.log_returns = log_returns
        self._w.data = _alloc(window, self._w.data)
        self._w.size = window
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._w.data)

    cpdef double update(self, double price):
        cdef double r
        self.count += 1
        if self.count > 1:
            if self._prev > 0.0 and price > 0.0:
                r = log(price / self._prev) if self.log_returns else price / self._prev - 1.0
            else:
                r = NAN                                 # no return from a non-positive price
            window_push(&self._w, r)
            if self._w.count == self.window:
                self._value = sqrt(_variance(&self._w, self.ddof))
        self._prev = price
        return self._value

    cpdef void reset(self):
        self.count = 0
        self._prev = NAN
        self._value = NAN
        window_clear(&self._w)

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self._w.count == self.window


cdef class VWAP:
    """Volume-weighted average price since the last reset (a session's VWAP): sum(p*q)/sum(q)
    in double-double sums. NaN while no quantity has been seen."""

    def __init__(self):
        self.reset()

    cpdef double update(self, double price, double qty):
        cdef double q
        dd_add_product(&self._pq, price, qty)
        dd_add(&self._q, qty)
        self.count += 1
        q = dd_value(&self._q)
        self._value = dd_value(&self._pq) / q if q != 0.0 else NAN
        return self._value

    cpdef void reset(self):
        self.count = 0
        self._pq.hi = self._pq.lo = self._q.hi = self._q.lo = 0.0
        self._value = NAN

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self._value == self._value       # not NaN: some quantity seen


cdef class RollingVWAP:
    """VWAP of the last `window` updates (fills or bars), in double-double sums; ready once
    the window is full. NaN while the window holds no quantity at all."""

    def __init__(self, Py_ssize_t window):
        self.window = _positive("window", window)
        self._w.data = _alloc(2 * window, self._w.data)
        self._w.size = window
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._w.data)

    cpdef double update(self, double price, double qty):
        cdef window_sums *w = &self._w
        cdef Py_ssize_t slot = 2 * w.head
        cdef double q
        if w.count == w.size:
            dd_add_product(&w.pq, -w.data[slot], w.data[slot + 1])
            dd_add(&w.q, -w.data[slot + 1])
            w.with_qty -= w.data[slot + 1] != 0.0
        else:
            w.count += 1
        w.data[slot] = price
        w.data[slot + 1] = qty
        dd_add_product(&w.pq, price, qty)
        dd_add(&w.q, qty)
        w.with_qty += qty != 0.0
        w.head += 1
        if w.head == w.size:
            w.head = 0
        dd_add_product(&w.fresh_pq, price, qty)
        dd_add(&w.fresh_q, qty)
        w.fresh_n += 1
        if w.fresh_n == w.size:                 # recount of exactly this window: residue gone
            w.pq, w.q = w.fresh_pq, w.fresh_q
            w.fresh_pq.hi = w.fresh_pq.lo = w.fresh_q.hi = w.fresh_q.lo = 0.0
            w.fresh_n = 0
        if w.with_qty == 0:                     # exactly nothing, whatever the sums' residue
            w.pq.hi = w.pq.lo = w.q.hi = w.q.lo = 0.0
        self.count += 1
        if w.count == w.size:
            q = dd_value(&w.q)
            self._value = dd_value(&w.pq) / q if w.with_qty and q != 0.0 else NAN
        return self._value

    cpdef void reset(self):
        cdef window_sums *w = &self._w
        w.head = w.count = w.fresh_n = w.with_qty = 0
        w.pq.hi = w.pq.lo = w.q.hi = w.q.lo = 0.0
        w.fresh_pq.hi = w.fresh_pq.lo = w.fresh_q.hi = w.fresh_q.lo = 0.0
        self.count = 0
        self._value = NAN

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self._w.count == self.window


cdef class ZScore:
    """(x - mean) / stdev over the last `window` samples, x included; ready once the window
    is full. A window with zero spread gives 0 (no signal), not a division by zero."""

    def __init__(self, Py_ssize_t window, *, Py_ssize_t ddof=1):
        self.window = _positive("window", window)
        if not 0 <= ddof < window:
            raise ValueError(f"ddof must be in [0, window), got {ddof} with window {window}")
        self.ddof = ddof
        self._w.data = _alloc(window, self._w.data)
        self._w.size = window
        self.reset()

    def __dealloc__(self):
        PyMem_Free(self._w.data)

    cpdef double update(self, double x):
        cdef double sd, deviation
        window_push(&self._w, x)
        self.count += 1
        if self._w.count == self.window:
            sd = sqrt(_variance(&self._w, self.ddof))
            deviation = moments_deviation(&self._w.main, x)
            self._value = deviation / sd if sd > 0.0 else 0.0
        return self._value

    cpdef void reset(self):
        self.count = 0
        self._value = NAN
        window_clear(&self._w)

    @property
    def value(self):
        return self._value

    @property
    def ready(self):
        return self._w.count == self.window

    @property
    def mean(self):
        """Mean of the window (NaN until ready)."""
        return window_mean(&self._w) if self._w.count == self.window else NAN

    @property
    def std(self):
        """Stdev of the window at this ddof (NaN until ready)."""
        return sqrt(_variance(&self._w, self.ddof)) if self._w.count == self.window else NAN
