"""Orders in from the strategies' rings; see order_intake.pxd.

`next_order` spins over the rings in turn (one order per ring per round, so no strategy can
starve another) and keeps the risk engine's reference prices current from the tick ring
between rounds; an order it finds is claimed and checked here, so the gateway's Python only
journals and sends what already passed (or reports the code it was refused with).
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from ttquant.core.includes.atomics cimport ttq_now_ns
from ttquant.core.latency_trace cimport LatencyTrace
from ttquant.core.records cimport (
    ttq_order, ttq_market_event, Order, new_record, RECORD_ORDER, ACTION_NEW, REJECT_NONE,
    REJECT_BAD_FIELD, REJECT_DUPLICATE_ORDER_ID,
)
from ttquant.core.rings.spsc cimport SpscReader, spsc_pop
from ttquant.core.rings.broadcast cimport BroadcastReader, broadcast_read

__all__ = ["ClientIds", "OrderIntake"]

cdef enum:
    TICKS_PER_ROUND = 64            # reference prices read between two rounds over the order rings
    REHEARSE_EVERY = 16             # idle rounds between two dry runs of the last order's checks


cdef class ClientIds:
    """The highest client order id each strategy has used: a new order's id must be above it
    (idempotent: an order sent again, or replayed by a restarted strategy, is refused 4001)."""

    def __cinit__(self):
        memset(self.slots, 0, sizeof(self.slots))

    cdef strategy_last_id *slot(self, uint32_t strategy_id) noexcept:
        cdef Py_ssize_t k
        for k in range(self.n):
            if self.slots[k].strategy_id == strategy_id:
                return &self.slots[k]
        if self.n == MAX_ID_STRATEGIES:
            return NULL
        self.slots[self.n].strategy_id = strategy_id
        self.n += 1
        return &self.slots[self.n - 1]

    cdef int take(self, uint32_t strategy_id, uint64_t client_order_id) noexcept:
        cdef strategy_last_id *s = self.slot(strategy_id)
        if s == NULL:
            return REJECT_BAD_FIELD
        if client_order_id <= s.client_order_id:
            self.duplicates += 1
            return REJECT_DUPLICATE_ORDER_ID
        s.client_order_id = client_order_id
        return REJECT_NONE

    def claim(self, uint32_t strategy_id, uint64_t client_order_id):
        """Claim a client order id: 0, or RejectCode.DUPLICATE_ORDER_ID when it is not new."""
        return self.take(strategy_id, client_order_id)

    def note(self, uint32_t strategy_id, uint64_t client_order_id):
        """An id known to be used (from the journal): later ones must be above it."""
        cdef strategy_last_id *s = self.slot(strategy_id)
        if s != NULL and client_order_id > s.client_order_id:
            s.client_order_id = client_order_id

    def last(self, uint32_t strategy_id):
        cdef Py_ssize_t k
        for k in range(self.n):
            if self.slots[k].strategy_id == strategy_id:
                return self.slots[k].client_order_id
        return 0


cdef class OrderIntake:
    """The gateway's order rings and the checks every order passes before Python sees it."""

    def __init__(self, RiskEngine risk not None, ClientIds ids not None, ticks=None):
        self.risk, self.ids, self.ticks = risk, ids, ticks
        if ticks is not None and not isinstance(ticks, BroadcastReader):
            raise TypeError("ticks must be a BroadcastReader of the venue's tick ring")
        self.readers = []
        memset(self.bound, 0, sizeof(self.bound))
        memset(&self.last_new, 0, sizeof(ttq_order))

    def add_ring(self, SpscReader reader, uint32_t strategy_id=0):
        """Another strategy's order ring; returns its index. strategy_id 0: bound to the id its
        first order carries. reader None: a strategy in this process (a backtest), whose orders
        come in through take()."""
        if self.n_rings == MAX_ORDER_RINGS:
            raise ValueError(f"the gateway takes at most {MAX_ORDER_RINGS} order rings")
        self.readers.append(reader)
        self.bound[self.n_rings] = strategy_id
        self.n_rings += 1
        return self.n_rings - 1

    def strategy_of(self, Py_ssize_t ring):
        """The strategy id the ring is bound to (0: no order yet)."""
        if not 0 <= ring < self.n_rings:
            raise IndexError(ring)
        return self.bound[ring]

    def start_trace(self, Py_ssize_t capacity=1 << 18):
        """Record (strategy, client id, created, taken, checked) per new order, for latency
        reports (taken: read from its ring; checked: every risk check done)."""
        self._trace = LatencyTrace(5, capacity)

    @property
    def trace(self):
        return None if self._trace is None else self._trace.rows

    cdef void read_ticks(self) noexcept:
        cdef ttq_market_event ev
        cdef int _
        if self.ticks is None:
            return
        for _ in range(TICKS_PER_ROUND):
            if not broadcast_read(&(<BroadcastReader>self.ticks).cursor, &ev):
                return
            self.risk.on_market_event(&ev)

    cdef int take_order(self, Py_ssize_t ring, ttq_order *o) noexcept:
        cdef int64_t now = self.clock_ns if self.clock_ns else ttq_now_ns()
        cdef int code
        cdef int64_t *row
        self.orders += 1
        if self.bound[ring] == 0:
            self.bound[ring] = o.strategy_id     # the first order binds the ring to its strategy
        if o.strategy_id != self.bound[ring]:
            self.wrong_strategy += 1
            return REJECT_BAD_FIELD
        code = self.ids.take(o.strategy_id, o.client_order_id)
        if o.action != ACTION_NEW:
            return code                         # cancels and amends need the OMS: Python's
        if code == REJECT_NONE:
            code = self.risk.check(o, now, False)
            if code == REJECT_NONE:
                self.risk.reserve_new(o)
            memcpy(&self.last_new, o, sizeof(ttq_order))
        row = self._trace.next_row() if self._trace is not None else NULL
        if row != NULL:
            row[0], row[1], row[2], row[3] = o.strategy_id, <int64_t>o.client_order_id, o.ts_created, now
            row[4] = ttq_now_ns()
        return code

    def take(self, Py_ssize_t ring, Order order not None):
        """An order read from ring by the caller (a futex wait): its reject code (0: passed)."""
        if not 0 <= ring < self.n_rings:
            raise IndexError(ring)
        return self.take_order(ring, &order.order)

    def next_order(self, Py_ssize_t rounds=1):
        """Up to `rounds` rounds over the rings (at least one): the first order found as
        (ring index, Order, reject code), or None when every ring stayed empty."""
        cdef Py_ssize_t r, k, i, n = self.n_rings
        cdef Order order
        cdef SpscReader reader
        if self._spare is None:
            self._spare = new_record(RECORD_ORDER, &self._spare_data)
        for r in range(rounds if rounds > 1 else 1):
            for k in range(n):
                i = (self.rr + k) % n
                if self.readers[i] is None:
                    continue
                reader = <SpscReader>self.readers[i]
                if reader.cursor.ring.header != NULL and spsc_pop(&reader.cursor, self._spare_data):
                    self.rr = (i + 1) % n
                    order = <Order>self._spare
                    self._spare = None
                    return i, order, self.take_order(i, &order.order)
            self.read_ticks()
            if self.last_new.action == ACTION_NEW and r % REHEARSE_EVERY == REHEARSE_EVERY - 1:
                # an idle gateway's caches go cold (other processes, the hypervisor): checking
                # the last order again, changing nothing, keeps the next one's path warm
                self.risk.check(&self.last_new, ttq_now_ns(), True)
        return None
