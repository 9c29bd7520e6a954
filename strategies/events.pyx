# cython: language_level=3
"""Trade, Quote and Bar: a market event as a strategy sees it (see events.pxd).

    t.price, t.qty           floats at the instrument's precision
    t.price_raw, t.qty_raw   the record's fixed-point integers
    t.event                  a copy of the MarketEvent record
"""
cimport cython
from libc.string cimport memcpy

from ttquant.core.records cimport (
    MarketEvent, ttq_market_event, new_record, RECORD_MARKET_EVENT, FLAG_BUYER_AGGRESSOR, FLAG_FROM_BOOK, FLAG_CLOSED,
)

__all__ = ["InstrumentScale", "MarketView", "Trade", "Quote", "Bar"]

# raw / 10**precision: exact powers of ten, so the float is the decimal correctly rounded
cdef double[19] SCALE = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                         1e16, 1e17, 1e18]


@cython.no_gc          # holds an Instrument, which holds nothing of ours: no cycle to find
cdef class InstrumentScale:
    def __init__(self, instrument):
        self.instrument = instrument
        self.ps = SCALE[instrument.price_precision]
        self.qs = SCALE[instrument.size_precision]


@cython.no_gc          # one per market event: kept out of the collector's young generation
cdef class MarketView:
    """A market event and its instrument; floats on top of the raw record."""

    def __init__(self, MarketEvent event not None, instrument):
        self.ev = event.ev
        self.instrument = instrument
        self.ps = SCALE[instrument.price_precision]
        self.qs = SCALE[instrument.size_precision]

    def __repr__(self):
        return f"{type(self).__name__}({self.instrument.symbol} {self.price} x {self.qty})"

    @property
    def event(self):
        cdef void *data
        rec = new_record(RECORD_MARKET_EVENT, &data)
        memcpy(data, &self.ev, sizeof(ttq_market_event))
        return rec

    @property
    def instrument_id(self): return self.ev.instrument_id

    @property
    def price_raw(self): return self.ev.price

    @property
    def qty_raw(self): return self.ev.qty

    @property
    def price(self): return self.ev.price / self.ps

    @property
    def qty(self): return self.ev.qty / self.qs

    @property
    def ts_exchange(self): return self.ev.ts_exchange

    @property
    def ts_recv(self): return self.ev.ts_recv

    @property
    def ts_pub(self): return self.ev.ts_pub


@cython.no_gc
cdef class Trade(MarketView):
    @property
    def buyer_aggressor(self): return bool(self.ev.flags & FLAG_BUYER_AGGRESSOR)

    @property
    def trade_id(self): return self.ev.seq


@cython.no_gc
cdef class Quote(MarketView):
    """Best bid (price, qty) and ask (ask_price, ask_qty); from_book: the kept book's top."""

    @property
    def bid(self): return self.ev.price / self.ps

    @property
    def bid_qty(self): return self.ev.qty / self.qs

    @property
    def ask(self): return self.ev.body.bbo.ask_price / self.ps

    @property
    def ask_qty(self): return self.ev.body.bbo.ask_qty / self.qs

    @property
    def ask_raw(self): return self.ev.body.bbo.ask_price

    @property
    def mid(self): return (self.ev.price + self.ev.body.bbo.ask_price) * 0.5 / self.ps

    @property
    def from_book(self): return bool(self.ev.flags & FLAG_FROM_BOOK)


@cython.no_gc
cdef class Bar(MarketView):
    """A kline: open/high/low/close, volume; closed says the bar is final."""

    @property
    def open(self): return self.ev.body.kline.open / self.ps

    @property
    def high(self): return self.ev.body.kline.high / self.ps

    @property
    def low(self): return self.ev.body.kline.low / self.ps

    @property
    def close(self): return self.ev.price / self.ps

    @property
    def volume(self): return self.ev.qty / self.qs

    @property
    def closed(self): return bool(self.ev.flags & FLAG_CLOSED)

    @property
    def open_time_ns(self): return self.ev.body.kline.open_time_ns


cdef inline void fill(MarketView v, const ttq_market_event *e, InstrumentScale s) noexcept:
    memcpy(&v.ev, e, sizeof(ttq_market_event))
    v.instrument, v.ps, v.qs = s.instrument, s.ps, s.qs


cdef Trade new_trade(const ttq_market_event *e, InstrumentScale s):
    cdef Trade t = Trade.__new__(Trade)
    fill(t, e, s)
    return t


cdef Quote new_quote(const ttq_market_event *e, InstrumentScale s):
    cdef Quote q = Quote.__new__(Quote)
    fill(q, e, s)
    return q


cdef Bar new_bar(const ttq_market_event *e, InstrumentScale s):
    cdef Bar b = Bar.__new__(Bar)
    fill(b, e, s)
    return b
