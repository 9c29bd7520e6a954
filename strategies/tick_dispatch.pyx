# cython: language_level=3
"""The live strategy's hot loop: market events from the venues' tick rings to the handlers,
and its own exec reports from the exec rings, read in C.

Per market event: one struct copy out of the ring, one Trade / Quote / Bar made in C, one
call of the bound handler. A handler that raises goes to on_error(exc), whose true answer
stops the dispatch (the runner then stops the strategy cleanly); nothing else is caught.

Backtests and replays into a strategy run the same loop fed from an array of the same records
(`run`): the same views, binding and error policy, plus what the gateway and md keep live - the
risk engine's reference prices, the books - and a hook the backtest's venue uses while it has
work (orders in flight or resting, timers due); otherwise the loop stays in C.
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

from ttquant.core.book.order_book cimport OrderBook
from ttquant.core.gateway.order_intake cimport OrderIntake
from ttquant.core.gateway.risk cimport RiskEngine
from ttquant.core.records cimport (
    ttq_market_event, ttq_exec_report, MarketEvent, ExecReport, new_record, RECORD_EXEC_REPORT, EVENT_TRADE,
    EVENT_BBO, EVENT_BOOK_LEVEL, EVENT_BOOK_RESET, EVENT_KLINE, FLAG_LAST_IN_BATCH, FLAG_ASK_SIDE,
)
from ttquant.core.rings.broadcast cimport BroadcastReader, broadcast_read
from ttquant.strategies.events cimport InstrumentScale, new_trade, new_quote, new_bar
from ttquant.strategies.order_entry cimport OrderEntry

__all__ = ["TickDispatch"]

import numpy as np

cdef enum:
    MAX_PER_RING = 1024         # records read from one ring before the next ring gets its turn
    MAX_ARRAY_INSTRUMENTS = 1 << 16     # instrument ids an array feed keeps books and quotes for


cdef object own(strategy, str name):
    """The strategy's bound handler, or None when it is BaseStrategy's own (a no-op)."""
    from ttquant.strategies.base import BaseStrategy
    handler = getattr(strategy, name)
    if getattr(type(strategy), name, None) is getattr(BaseStrategy, name, None) and \
            name not in getattr(strategy, "__dict__", ()):
        return None
    return handler


cdef class _VenueFeed:
    cdef BroadcastReader ticks
    cdef BroadcastReader exec_reports
    cdef object table
    cdef list scales            # by instrument id (ids are small and dense): InstrumentScale or None


cdef class TickDispatch:
    cdef object on_trade, on_quote, on_bar, on_book, on_book_reset, exec_report, on_error
    cdef list feeds
    cdef OrderEntry entry
    cdef uint32_t strategy_id
    cdef bint wants_book
    cdef public bint stopped
    cdef readonly uint64_t events, reports
    # the array feed (run): its clock, and when the venue's hook wants to see the next event
    cdef public int64_t clock_ns            # the events' time (receive, else exchange), never backwards
    cdef public int64_t wake_ns             # the hook is called once clock_ns reaches this
    cdef public bint venue_busy             # the hook is called before every event (orders in flight or resting)
    cdef public bint after_handler          # set during a handler: the hook is called again after it
    cdef RiskEngine risk                    # reference prices, as the gateway reads them off the tick ring
    cdef OrderIntake intake                 # its checks run at clock_ns
    cdef list books                         # OrderBook by instrument id (None: none yet)
    cdef ttq_market_event *quotes           # the last best bid/offer by instrument id
    cdef Py_ssize_t n_quotes

    def __dealloc__(self):
        free(self.quotes)

    def __init__(self, strategy, uint32_t strategy_id, OrderEntry entry, on_error, bint wants_book):
        # a handler the strategy does not override is BaseStrategy's no-op: no view made, no call
        self.on_trade, self.on_quote, self.on_bar = own(strategy, "on_trade"), own(strategy, "on_quote"), \
            own(strategy, "on_bar")
        self.on_book, self.on_book_reset = strategy.on_book, own(strategy, "on_book_reset")
        self.exec_report, self.on_error = strategy._exec_report, on_error
        self.strategy_id, self.entry, self.wants_book = strategy_id, entry, wants_book
        self.feeds = []
        self.wake_ns = 0x7fffffffffffffff

    def add_venue(self, BroadcastReader ticks, BroadcastReader exec_reports, table):
        """A venue's tick ring and exec ring (None, None: an array feed's, see run); returns its
        index (for dispatch)."""
        cdef _VenueFeed f = _VenueFeed()
        f.ticks, f.exec_reports, f.table, f.scales = ticks, exec_reports, table, []
        self.feeds.append(f)
        return len(self.feeds) - 1

    cdef InstrumentScale scale(self, _VenueFeed f, uint32_t instrument_id):
        if instrument_id < <uint32_t>len(f.scales):
            s = f.scales[instrument_id]
            if s is not None:
                return <InstrumentScale>s
        inst = f.table.get(instrument_id)
        if inst is None:
            return None                 # not in the table (yet): the event is skipped
        if instrument_id >= 1 << 20:
            return InstrumentScale(inst)
        while len(f.scales) <= instrument_id:
            f.scales.append(None)
        s = f.scales[instrument_id] = InstrumentScale(inst)
        return <InstrumentScale>s

    cdef int handle(self, _VenueFeed f, const ttq_market_event *e) except -1:
        cdef InstrumentScale s = self.scale(f, e.instrument_id)
        cdef int kind = e.kind
        if s is None:
            return 0
        self.events += 1
        if self.entry is not None:
            self.entry.trigger_ts = e.ts_pub
        try:
            if kind == EVENT_TRADE:
                if self.on_trade is not None:
                    self.on_trade(new_trade(e, s))
            elif kind == EVENT_BBO:
                if self.on_quote is not None:
                    self.on_quote(new_quote(e, s))
            elif kind == EVENT_BOOK_LEVEL:          # once per venue message, when the strategy reads books
                if self.wants_book and e.flags & FLAG_LAST_IN_BATCH:
                    self.on_book(s.instrument)
            elif kind == EVENT_BOOK_RESET:
                if self.on_book_reset is not None:
                    self.on_book_reset(s.instrument)
            elif kind == EVENT_KLINE:
                if self.on_bar is not None:
                    self.on_bar(new_bar(e, s))
        except Exception as exc:
            if self.on_error(exc):
                self.stopped = True
        return 0

    cdef int own_report(self, _VenueFeed f, const ttq_exec_report *r) except -1:
        cdef void *data
        report = new_record(RECORD_EXEC_REPORT, &data)
        memcpy(data, r, sizeof(ttq_exec_report))
        self.reports += 1
        try:
            self.exec_report(report, f.table.get(r.instrument_id))
        except Exception as exc:
            if self.on_error(exc):
                self.stopped = True
        return 0

    def poll(self, Py_ssize_t rounds=1):
        """Up to `rounds` rounds over every venue's rings (at least one), stopping after the
        first round that found anything; returns how many records it handled."""
        cdef ttq_market_event ev
        cdef ttq_exec_report rep
        cdef _VenueFeed f
        cdef Py_ssize_t _, k, handled = 0
        for _ in range(rounds if rounds > 1 else 1):
            for f in self.feeds:
                if f.ticks is None or f.ticks.cursor.ring.header == NULL or \
                        f.exec_reports.cursor.ring.header == NULL:
                    continue            # an array feed's, or closed under us (the runner is shutting down)
                k = 0
                while k < MAX_PER_RING and broadcast_read(&f.ticks.cursor, &ev):
                    k += 1
                    self.handle(f, &ev)
                    if self.stopped:
                        if self.entry is not None:
                            self.entry.trigger_ts = 0
                        return handled + k
                handled += k
                if self.entry is not None:
                    self.entry.trigger_ts = 0
                k = 0
                while k < MAX_PER_RING and broadcast_read(&f.exec_reports.cursor, &rep):
                    k += 1
                    if rep.strategy_id == self.strategy_id:
                        handled += 1
                        self.own_report(f, &rep)
                        if self.stopped:
                            return handled
            if handled:
                return handled
        return 0

    def dispatch(self, Py_ssize_t venue, MarketEvent event not None):
        """One market event the caller read itself (a futex wait on the tick ring)."""
        if not 0 <= venue < len(self.feeds):
            raise IndexError(f"venue {venue}: {len(self.feeds)} added")
        self.handle(<_VenueFeed>self.feeds[venue], &event.ev)
        if self.entry is not None:
            self.entry.trigger_ts = 0

    # -- the array feed: backtests ------------------------------------------------------------------
    def feed_checks(self, RiskEngine risk=None, OrderIntake intake=None):
        """The gateway parts an array feed keeps current: the risk engine's reference prices
        from every event, and the intake's clock."""
        self.risk, self.intake = risk, intake

    cdef int keep_book(self, const ttq_market_event *e) except -1:
        cdef uint32_t i = e.instrument_id
        cdef OrderBook b
        if i >= MAX_ARRAY_INSTRUMENTS:
            return 0
        if self.books is None:
            self.books = []
        while len(self.books) <= i:
            self.books.append(None)
        b = <OrderBook>self.books[i]
        if b is None:
            b = OrderBook(i)
            self.books[i] = b
        if e.kind == EVENT_BOOK_LEVEL:
            b.set_level(e.flags & FLAG_ASK_SIDE, e.price, e.qty)
        else:
            b.clear()
        return 0

    cdef int keep_quote(self, const ttq_market_event *e) except -1:
        cdef uint32_t i = e.instrument_id
        cdef Py_ssize_t n
        cdef ttq_market_event *grown
        if i >= MAX_ARRAY_INSTRUMENTS:
            return 0
        if i >= self.n_quotes:
            n = (i + 64) & ~63
            grown = <ttq_market_event *>realloc_zeroed(self.quotes, self.n_quotes, n)
            if grown == NULL:
                raise MemoryError()
            self.quotes, self.n_quotes = grown, n
        memcpy(&self.quotes[i], e, sizeof(ttq_market_event))
        return 0

    def book_of(self, uint32_t instrument_id):
        """The array feed's book of the instrument (an OrderBook), or None before its first level."""
        if self.books is None or instrument_id >= <uint32_t>len(self.books):
            return None
        return self.books[instrument_id]

    def last_quote(self, uint32_t instrument_id):
        """The last best bid/offer event of the instrument the array feed passed, or None."""
        cdef void *data
        if instrument_id >= self.n_quotes or self.quotes[instrument_id].kind != EVENT_BBO:
            return None
        ev = new_record(1, &data)
        memcpy(data, &self.quotes[instrument_id], sizeof(ttq_market_event))
        return ev

    def run(self, Py_ssize_t venue, events, Py_ssize_t start=0, Py_ssize_t stop=-1, hook=None):
        """Dispatch events[start:stop] (MARKET_EVENT_DTYPE, in time order) from C as if read from
        the venue's tick ring. Per event: the clock, reference prices and books kept; then
        hook(i, event) when the venue is busy or the clock reached wake_ns (before the handler:
        the venue sees the market first); the handler; and hook(i, event or None) again after a
        handler that set after_handler (orders sent: zero latency fills them at this market).
        Returns the index after the last event handled (stop, or earlier when stopped)."""
        if not 0 <= venue < len(self.feeds):
            raise IndexError(f"venue {venue}: {len(self.feeds)} added")
        if events.dtype.itemsize != sizeof(ttq_market_event):
            raise TypeError("events must be a MARKET_EVENT_DTYPE array")
        cdef const unsigned char[::1] raw = np.ascontiguousarray(events).view(np.uint8).reshape(-1)
        cdef Py_ssize_t n = raw.shape[0] // sizeof(ttq_market_event)
        cdef Py_ssize_t i
        cdef const ttq_market_event *e
        cdef int64_t t
        cdef void *data
        cdef _VenueFeed f = <_VenueFeed>self.feeds[venue]
        if stop < 0 or stop > n:
            stop = n
        if n == 0:
            return stop
        e = <const ttq_market_event *>&raw[0]
        for i in range(start, stop):
            t = e[i].ts_recv if e[i].ts_recv else e[i].ts_exchange
            if t > self.clock_ns:
                self.clock_ns = t
            if self.intake is not None:
                self.intake.clock_ns = self.clock_ns
            if self.risk is not None:
                self.risk.on_market_event(&e[i])
            if e[i].kind == EVENT_BBO:
                self.keep_quote(&e[i])
            elif e[i].kind == EVENT_BOOK_LEVEL or e[i].kind == EVENT_BOOK_RESET:
                self.keep_book(&e[i])
            ev = None
            # a wake-up waits for the end of a venue message: the books are whole between them
            if hook is not None and (self.venue_busy or (self.clock_ns >= self.wake_ns and (
                    e[i].kind != EVENT_BOOK_LEVEL or e[i].flags & FLAG_LAST_IN_BATCH))):
                ev = new_record(1, &data)
                memcpy(data, &e[i], sizeof(ttq_market_event))
                hook(i, ev)
            self.handle(f, &e[i])
            if self.after_handler:
                self.after_handler = False
                if hook is not None:
                    hook(i, ev)
            if self.stopped:
                return i + 1
        if self.entry is not None:
            self.entry.trigger_ts = 0
        return stop

    def report(self, Py_ssize_t venue, ExecReport report not None):
        """One of this strategy's exec reports the caller has (a backtest's venue): to the
        strategy as the exec ring's would go, under the same error policy."""
        if not 0 <= venue < len(self.feeds):
            raise IndexError(f"venue {venue}: {len(self.feeds)} added")
        self.own_report(<_VenueFeed>self.feeds[venue], &report.report)


cdef void *realloc_zeroed(void *old, Py_ssize_t n_old, Py_ssize_t n_new) noexcept:
    """quotes grown to n_new entries, the new ones zero (kind 0: none seen)."""
    cdef ttq_market_event *out = <ttq_market_event *>calloc(n_new, sizeof(ttq_market_event))
    if out == NULL:
        return NULL                     # old stays, the caller raises
    if old != NULL:
        memcpy(out, old, n_old * sizeof(ttq_market_event))
    free(old)
    return out
