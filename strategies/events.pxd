# What a strategy's handlers receive: one market event, its raw record inline, with floats
# computed on access at the instrument's precision. Made from C per event by the live
# dispatch (tick_dispatch.pyx) without a Python-level constructor call.
from ttquant.core.records cimport ttq_market_event


cdef class InstrumentScale:
    # an instrument and its raw -> float divisors (10**precision), kept once per instrument by the dispatch
    cdef readonly object instrument
    cdef double ps, qs


cdef class MarketView:
    cdef ttq_market_event ev
    cdef readonly object instrument
    cdef double ps, qs


cdef class Trade(MarketView):
    pass


cdef class Quote(MarketView):
    pass


cdef class Bar(MarketView):
    pass


cdef Trade new_trade(const ttq_market_event *e, InstrumentScale s)
cdef Quote new_quote(const ttq_market_event *e, InstrumentScale s)
cdef Bar new_bar(const ttq_market_event *e, InstrumentScale s)
