# cython: language_level=3
"""Orders from a strategy's floats to raw units on the instrument's grid, checked and sent in
one call from C (see order_entry.pxd): BaseStrategy.place_order is this module's `place`.

Prices round down for a buy and up for a sell (never more aggressive than asked), quantities
down to the step; a float within a billionth of a unit of a multiple is that multiple
(60390.0 is 60390, not 60389.99 from binary noise). Anything that cannot be sent raises
OrderRefused before it leaves.
"""
cimport cython
from cpython.float cimport PyFloat_CheckExact, PyFloat_AS_DOUBLE
from cpython.long cimport PyLong_Check
from libc.math cimport floor, ceil, fabs, isfinite
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal


from ttquant.core.includes.atomics cimport ttq_now_ns
from ttquant.core.telemetry.telemetry cimport Histogram, ttq_hist_observe
from ttquant.core.latency_trace cimport LatencyTrace
from ttquant.core.records cimport (
    ttq_order, Order, new_record, RECORD_ORDER, ACTION_NEW, SIDE_BUY, SIDE_SELL, TYPE_LIMIT,
    TYPE_MARKET, TYPE_POST_ONLY,
)
from ttquant.core.rings.spsc cimport SpscWriter, spsc_push

from ttquant.core.records import OrderStatus, OrderType

__all__ = ["OrderRefused", "OpenOrder", "OrderEntry", "RingOrderEntry", "OrderActions", "to_units", "price_to_raw",
           "qty_to_raw"]

cdef double[19] POW10 = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                         1e15, 1e16, 1e17, 1e18]
cdef object STATUS_NEW = OrderStatus.NEW


class OrderRefused(RuntimeError):
    """An order that could not even be sent (its ring is full, or its values cannot be sent)."""


cdef int64_t units_in_double(double x, int precision, int64_t unit, bint down) noexcept:
    """x as a raw multiple of unit, or -1 when x is not a positive finite number or the count
    of units is too large for the double's noise to be told from a real remainder (the caller
    then takes the exact way). Within a billionth of a unit of a multiple, or (past a million
    units) within a few of the double's own ulps, x is that multiple."""
    if not (x > 0 and isfinite(x)) or precision < 0 or precision > 18 or unit <= 0:
        return -1
    cdef double units = x * POW10[precision] / <double>unit
    if units > 1.0e12:
        return -1
    cdef double near = floor(units + 0.5)
    if fabs(units - near) <= (1e-9 if units <= 1e6 else units * 1e-15):
        return <int64_t>near * unit
    return <int64_t>(floor(units) if down else ceil(units)) * unit


cpdef int64_t to_units(double x, int precision, int64_t unit, bint down) except? -1:
    """x (> 0, finite) as a raw multiple of unit at precision, rounded down or up; for large
    counts the exact way (Decimal of the float's shortest repr). -1 when x is not a positive
    number; OverflowError past int64."""
    cdef int64_t raw = units_in_double(x, precision, unit, down)
    if raw >= 0 or not (x > 0 and isfinite(x)) or unit <= 0 or precision < 0 or precision > 18:
        return raw
    d = (Decimal(repr(x)).scaleb(precision) / unit).to_integral_value(ROUND_FLOOR if down else ROUND_CEILING)
    return int(d) * unit


cdef inline double as_double(object value) noexcept:
    if PyFloat_CheckExact(value):
        return PyFloat_AS_DOUBLE(value)
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


cdef int64_t units_or_refuse(object instrument, str what, object value, int precision, int64_t unit,
                             bint down) except -1:
    """A price or quantity (what) in raw units, or OrderRefused saying why it cannot be sent."""
    cdef double x = as_double(value)
    if not (x > 0 and isfinite(x)):
        raise OrderRefused(f"{instrument.symbol}: {what} {value!r} is not a positive number")
    try:
        return to_units(x, precision, unit, down)
    except OverflowError:
        raise OrderRefused(f"{instrument.symbol}: {what} {value!r} is too large to send") from None


cpdef int64_t price_to_raw(object instrument, object price, bint buy=True) except? -1:
    """A price in ticks: down for a buy, up for a sell."""
    return units_or_refuse(instrument, "price", price, instrument.price_precision, instrument.tick_size, buy)


cpdef int64_t qty_to_raw(object instrument, object qty) except? -1:
    """A quantity in steps, always down."""
    return units_or_refuse(instrument, "quantity", qty, instrument.size_precision, instrument.step_size, True)


@cython.no_gc          # holds its Instrument and status enum only: no cycle to find
cdef class OpenOrder:
    """One of the strategy's orders that is still open, as its exec reports have told it."""

    def __init__(self, uint64_t client_order_id, instrument, int side, int order_type, int64_t price_raw,
                 int64_t qty_raw):
        self.client_order_id, self.instrument, self.side = client_order_id, instrument, side
        self.order_type, self.price_raw, self.qty_raw = order_type, price_raw, qty_raw
        self.cum_qty_raw, self.status, self.cancel_sent = 0, STATUS_NEW, False

    def __repr__(self):
        from ttquant.core.records import Side
        return (f"OpenOrder({self.client_order_id}, {self.instrument.symbol}, {Side(self.side).name}, "
                f"{self.qty} @ {self.price}, filled {self.cum_qty_raw}, {OrderStatus(self.status).name})")

    @property
    def price(self): return self.price_raw / POW10[<int>self.instrument.price_precision]

    @property
    def qty(self): return self.qty_raw / POW10[<int>self.instrument.size_precision]

    @property
    def leaves_raw(self): return self.qty_raw - self.cum_qty_raw


cdef class OrderEntry:
    """Orders out through a context's now_ns / next_client_order_id / send(instrument, Order):
    backtests and any context of a strategy's own. Live trading uses RingOrderEntry."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.strategy_id = ctx.strategy_id

    cdef instrument_spec *spec_of(self, object instrument) except NULL:
        """The instrument's spec, read once (instruments are frozen); by identity, no lookup."""
        cdef Py_ssize_t k
        cdef instrument_spec *spec
        cdef PyObject *key = <PyObject *>instrument
        for k in range(self.n_specs):
            if self.specs[k].instrument == key:
                return &self.specs[k]
        route = self.route_of(instrument)
        if self._kept is None:
            self._kept = []
        if self.n_specs < MAX_INSTRUMENT_SPECS:
            self._kept.append((instrument, route))      # the pointers below stay valid
            spec = &self.specs[self.n_specs]
            self.n_specs += 1
        else:
            self._scratch_kept = (instrument, route)       # read again on every order: still right
            spec = &self.scratch
        spec.instrument, spec.route = key, <PyObject *>route if route is not None else NULL
        spec.instrument_id = instrument.instrument_id
        spec.price_precision, spec.size_precision = instrument.price_precision, instrument.size_precision
        spec.tick_size, spec.step_size = instrument.tick_size, instrument.step_size
        return spec

    cdef object route_of(self, object instrument):
        return None

    cpdef uint64_t next_client_order_id(self) except? 0:
        return self.ctx.next_client_order_id()

    cpdef int64_t now_ns(self) except? -1:
        return self.ctx.now_ns()

    cdef int submit(self, instrument_spec *spec, const ttq_order *o) except -1:
        cdef void *data
        order = new_record(RECORD_ORDER, &data)
        memcpy(data, o, sizeof(ttq_order))
        self.ctx.send(<object>spec.instrument, order)
        return 0

    cpdef uint64_t place(self, dict orders, object instrument, object side, object qty, object price=None,
                         object order_type=None, object reduce_only=False) except? 0:
        """A new order: rounded, sent, entered in orders (client id -> OpenOrder); its client id.
        price None: a market order. OrderRefused when it cannot be sent at all."""
        if orders is None:
            raise TypeError("orders must be a dict")
        cdef ttq_order o
        cdef int s, t
        cdef instrument_spec *spec
        if not PyLong_Check(side) or (side != SIDE_BUY and side != SIDE_SELL):
            raise OrderRefused(f"side {side!r} is neither BUY (1) nor SELL (2)")
        s = side
        if order_type is None:
            t = TYPE_MARKET if price is None else TYPE_LIMIT
        elif not PyLong_Check(order_type) or not TYPE_LIMIT <= order_type <= TYPE_POST_ONLY:
            raise OrderRefused(f"order type {order_type!r} is not one of {[k.name for k in OrderType]}")
        else:
            t = order_type
        spec = self.spec_of(instrument)
        memset(&o, 0, sizeof(ttq_order))
        if t != TYPE_MARKET:
            o.price = units_or_refuse(instrument, "price", price, spec.price_precision, spec.tick_size,
                                      s == SIDE_BUY)
        o.qty = units_or_refuse(instrument, "quantity", qty, spec.size_precision, spec.step_size, True)
        if o.qty <= 0:
            raise OrderRefused(f"{instrument.symbol}: quantity {qty} rounds to zero at step "
                               f"{instrument.qty_from_raw(instrument.step_size)}")
        o.client_order_id = self.next_client_order_id()
        o.ts_created = self.now_ns()
        o.strategy_id = self.strategy_id
        o.instrument_id = spec.instrument_id
        o.action, o.side, o.order_type, o.reduce_only = ACTION_NEW, s, t, 1 if reduce_only else 0
        self.submit(spec, &o)
        cdef OpenOrder open_order = OpenOrder.__new__(OpenOrder)
        open_order.client_order_id, open_order.instrument, open_order.side = o.client_order_id, instrument, s
        open_order.order_type, open_order.price_raw, open_order.qty_raw = t, o.price, o.qty
        open_order.cum_qty_raw, open_order.status, open_order.cancel_sent = 0, STATUS_NEW, False
        orders[o.client_order_id] = open_order
        return o.client_order_id

    def send(self, instrument, Order order not None):
        """An order record built elsewhere (cancel, amend), out the same way."""
        self.submit(self.spec_of(instrument), &order.order)


cdef class RingOrderEntry(OrderEntry):
    """Live: orders straight into the strategy's own SPSC order ring per venue, the clock and
    the client ids in C (ids start at the wall clock in microseconds: above an earlier run's)."""

    def __init__(self, ctx, str name, uint32_t strategy_id):
        self.ctx, self.name, self.strategy_id = ctx, name, strategy_id
        self.last_id = <uint64_t>(ttq_now_ns() // 1000)
        self.writers = {}

    def add_venue(self, str venue, SpscWriter writer not None):
        self.writers[venue] = writer

    def count_into(self, Histogram tick_to_order):
        """Time from the triggering tick's ts_pub to each new order in the ring, into a telemetry
        histogram (core/telemetry)."""
        self._tick_to_order = tick_to_order
        self.tick_to_order = tick_to_order.hist if tick_to_order is not None else NULL

    def start_trace(self, Py_ssize_t capacity=1 << 18):
        """Record (client id, trigger ts_pub) per new order, for latency reports."""
        self._trace = LatencyTrace(2, capacity)

    @property
    def trace(self):
        return None if self._trace is None else self._trace.rows

    cpdef uint64_t next_client_order_id(self) except? 0:
        self.last_id += 1
        return self.last_id

    def note_client_order_id(self, uint64_t used):
        """An id the gateway has already seen from this strategy (SYNC): later ones go above it."""
        if used > self.last_id:
            self.last_id = used

    cpdef int64_t now_ns(self) except? -1:
        return ttq_now_ns()

    cdef object route_of(self, object instrument):
        venue = instrument.venue
        writer = self.writers.get(venue)
        if writer is None:
            raise OrderRefused(f"{instrument.symbol}: venue {venue} is not one this strategy trades")
        return writer

    cdef int submit(self, instrument_spec *spec, const ttq_order *o) except -1:
        cdef SpscWriter w = <SpscWriter>spec.route
        cdef int64_t *row
        if w.cursor.ring.header == NULL:
            raise OrderRefused(f"order ring of {self.name} is closed")
        if not spsc_push(&w.cursor, o):
            self.orders_refused += 1
            raise OrderRefused(f"order ring of {self.name} is full: the gateway is not reading it")
        self.orders_sent += 1
        if o.action == ACTION_NEW and self.tick_to_order != NULL and 0 < self.trigger_ts < o.ts_created:
            ttq_hist_observe(self.tick_to_order, <uint64_t>(o.ts_created - self.trigger_ts))
        if o.action == ACTION_NEW and self._trace is not None:
            row = self._trace.next_row()
            if row != NULL:
                row[0], row[1] = <int64_t>o.client_order_id, self.trigger_ts
        return 0


cdef class OrderActions:
    """BaseStrategy's buy, sell and place_order (BaseStrategy derives from this): one C call
    from the strategy's handler to the order ring. A strategy may still override place_order."""

    def buy(self, instrument, qty, price=None, order_type=None, reduce_only=False):
        """A buy order (price None: market); its client order id."""
        return self.place_order(instrument, SIDE_BUY, qty, price, order_type, reduce_only)

    def sell(self, instrument, qty, price=None, order_type=None, reduce_only=False):
        """A sell order (price None: market); its client order id."""
        return self.place_order(instrument, SIDE_SELL, qty, price, order_type, reduce_only)

    cpdef uint64_t place_order(self, object instrument, object side, object qty, object price=None,
                               object order_type=None, object reduce_only=False) except? 0:
        """Send a new order; returns its client order id. price None: a market order. The price
        is rounded to the tick (down for a buy, up for a sell: never more aggressive than asked),
        the quantity down to the step. OrderRefused when it cannot be sent at all."""
        if self._entry is None:
            raise TypeError(f"{type(self).__name__}: BaseStrategy.__init__(ctx, params) was not called")
        return self._entry.place(self.orders, instrument, side, qty, price, order_type, reduce_only)
