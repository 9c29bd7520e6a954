# The gateway's first step per order, in C: taken from a strategy's ring, its client id
# claimed, and (a new order) validated, risk-checked and reserved before Python sees it.
from libc.stdint cimport int64_t, uint32_t, uint64_t
from ttquant.core.records cimport ttq_order
from ttquant.core.gateway.risk cimport RiskEngine
from ttquant.core.latency_trace cimport LatencyTrace

cdef enum:
    MAX_ORDER_RINGS = 256
    MAX_ID_STRATEGIES = 256


cdef struct strategy_last_id:
    uint32_t strategy_id
    uint64_t client_order_id        # the highest this strategy has used


cdef class ClientIds:
    cdef strategy_last_id slots[MAX_ID_STRATEGIES]
    cdef Py_ssize_t n
    cdef readonly uint64_t duplicates

    cdef int take(self, uint32_t strategy_id, uint64_t client_order_id) noexcept
    cdef strategy_last_id *slot(self, uint32_t strategy_id) noexcept


cdef class OrderIntake:
    cdef readonly RiskEngine risk
    cdef readonly ClientIds ids
    cdef list readers                       # SpscReader per ring, by index
    cdef uint32_t bound[MAX_ORDER_RINGS]    # the strategy id each ring is bound to (0: not yet)
    cdef Py_ssize_t n_rings, rr
    cdef object ticks                       # BroadcastReader of the venue's tick ring, or None
    cdef object _spare                      # an Order ready for the next pop
    cdef void *_spare_data
    cdef LatencyTrace _trace                # strategy, client id, created, taken, checked (or None)
    cdef readonly uint64_t orders, wrong_strategy
    cdef public int64_t clock_ns            # a backtest's time for the checks (rate, order age); 0: the wall clock
    cdef ttq_order last_new                 # the last new order checked (rehearsed while idle)

    cdef int take_order(self, Py_ssize_t ring, ttq_order *o) noexcept
    cdef void read_ticks(self) noexcept
