# cython: language_level=3
"""The live strategy's hot loop: market events from the venues' tick rings to the handlers,
and its own exec reports from the exec rings, read in C.

Per market event: one struct copy out of the ring, one Trade / Quote / Bar made in C, one
call of the bound handler. A handler that raises goes to on_error(exc), whose true answer
stops the dispatch (the runner then stops the strategy cleanly); nothing else is caught.
"""
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from ttquant.core.records cimport (
    ttq_market_event, ttq_exec_report, MarketEvent, new_record, RECORD_EXEC_REPORT, EVENT_TRADE, EVENT_BBO,
    EVENT_BOOK_LEVEL, EVENT_BOOK_RESET, EVENT_KLINE, FLAG_LAST_IN_BATCH,
)
from ttquant.core.rings.broadcast cimport BroadcastReader, broadcast_read
from ttquant.strategies.events cimport InstrumentScale, new_trade, new_quote, new_bar
from ttquant.strategies.order_entry cimport OrderEntry

__all__ = ["TickDispatch"]

cdef enum:
    MAX_PER_RING = 1024         # records read from one ring before the next ring gets its turn


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

    def __init__(self, strategy, uint32_t strategy_id, OrderEntry entry, on_error, bint wants_book):
        self.on_trade, self.on_quote, self.on_bar = strategy.on_trade, strategy.on_quote, strategy.on_bar
        self.on_book, self.on_book_reset = strategy.on_book, strategy.on_book_reset
        self.exec_report, self.on_error = strategy._exec_report, on_error
        self.strategy_id, self.entry, self.wants_book = strategy_id, entry, wants_book
        self.feeds = []

    def add_venue(self, BroadcastReader ticks not None, BroadcastReader exec_reports not None, table):
        """A venue's tick ring and exec ring; returns its index (for dispatch)."""
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
                self.on_trade(new_trade(e, s))
            elif kind == EVENT_BBO:
                self.on_quote(new_quote(e, s))
            elif kind == EVENT_BOOK_LEVEL:          # once per venue message, when the strategy reads books
                if self.wants_book and e.flags & FLAG_LAST_IN_BATCH:
                    self.on_book(s.instrument)
            elif kind == EVENT_BOOK_RESET:
                self.on_book_reset(s.instrument)
            elif kind == EVENT_KLINE:
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
                if f.ticks.cursor.ring.header == NULL or f.exec_reports.cursor.ring.header == NULL:
                    continue            # closed under us: the runner is shutting down
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
