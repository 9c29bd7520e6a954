# A strategy's orders from its floats to a ttq_order on the instrument's grid, and out: to
# the context (backtests, tests) or, live, straight into the strategy's SPSC order ring.
from cpython.object cimport PyObject
from libc.stdint cimport int64_t, uint32_t, uint64_t
from ttquant.core.latency_trace cimport LatencyTrace
from ttquant.core.records cimport ttq_order

cdef enum:
    MAX_INSTRUMENT_SPECS = 32       # instruments a strategy trades that are kept in C; more still work


cdef struct instrument_spec:
    # what an order needs of its Instrument (frozen), read once
    PyObject *instrument            # kept alive by OrderEntry._kept
    PyObject *route                 # live: the SpscWriter of its venue (kept alive too); else NULL
    uint32_t instrument_id
    int price_precision, size_precision
    int64_t tick_size, step_size


cdef class OpenOrder:
    # one of the strategy's orders that is still open, as its exec reports have told it
    cdef readonly uint64_t client_order_id
    cdef readonly object instrument
    cdef readonly int side, order_type
    cdef public int64_t price_raw, qty_raw, cum_qty_raw
    cdef public object status
    cdef public bint cancel_sent


cdef class OrderEntry:
    cdef readonly object ctx
    cdef readonly uint32_t strategy_id
    cdef public int64_t trigger_ts          # ts_pub of the market event being handled (0: none)
    cdef instrument_spec specs[MAX_INSTRUMENT_SPECS]
    cdef Py_ssize_t n_specs
    cdef instrument_spec scratch            # for an instrument past the kept ones
    cdef list _kept
    cdef object _scratch_kept

    cdef instrument_spec *spec_of(self, object instrument) except NULL
    cdef object route_of(self, object instrument)
    cpdef uint64_t next_client_order_id(self) except? 0
    cpdef int64_t now_ns(self) except? -1
    cdef int submit(self, instrument_spec *spec, const ttq_order *o) except -1
    cpdef uint64_t place(self, dict orders, object instrument, object side, object qty, object price=*,
                         object order_type=*, object reduce_only=*) except? 0


cdef class RingOrderEntry(OrderEntry):
    cdef readonly str name
    cdef uint64_t last_id
    cdef dict writers                       # venue -> SpscWriter (the strategy's order ring there)
    cdef readonly uint64_t orders_refused
    cdef readonly uint64_t orders_sent      # every order record into the ring (new, cancel, amend, sync)
    cdef LatencyTrace _trace                # client id, trigger ts_pub (or None)
    cdef uint64_t *tick_to_order            # telemetry histogram: trigger ts_pub -> the new order in the ring
    cdef object _tick_to_order


cdef class OrderActions:
    # BaseStrategy's order actions in C: buy / sell / place_order cost no Python frame of ours
    cdef public dict orders                 # open orders by client order id
    cdef public OrderEntry _entry

    cpdef uint64_t place_order(self, object instrument, object side, object qty, object price=*,
                               object order_type=*, object reduce_only=*) except? 0
