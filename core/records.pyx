# cython: language_level=3
"""Records that cross process boundaries: MarketEvent, Order, ExecReport.

The C layout is in records.pxd; the numpy dtypes here mirror it byte for byte (checked by
tests/core/test_records.py against the compiler's offsets). The classes are the Python
face: one object per record, the struct held inline, a property per field.
"""
import enum

cimport cython

import numpy as np

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

__all__ = [
    "RecordType", "EventKind", "EventFlag", "OrderAction", "Side", "OrderType", "OrderStatus",
    "Liquidity", "RejectCode", "ReportFlag", "new_order", "MarketEvent", "Order", "ExecReport", "MARKET_EVENT_DTYPE",
    "ORDER_DTYPE", "EXEC_REPORT_DTYPE", "DTYPES", "RECORD_CLASSES", "RECORD_SIZES", "record_size_for",
    "FUNDING_RATE_PRECISION", "c_layout", "dtype_for",
]


class RecordType(enum.IntEnum):
    MARKET_EVENT = RECORD_MARKET_EVENT
    ORDER = RECORD_ORDER
    EXEC_REPORT = RECORD_EXEC_REPORT
    BOOK_TOP = RECORD_BOOK_TOP      # book board slot: its size follows the board's depth
    TELEMETRY = RECORD_TELEMETRY    # a group of named counters, gauges or a histogram


class EventKind(enum.IntEnum):
    TRADE = EVENT_TRADE
    BBO = EVENT_BBO
    BOOK_LEVEL = EVENT_BOOK_LEVEL
    BOOK_RESET = EVENT_BOOK_RESET   # the book was rebuilt (gap, resync); strategies drop what they knew
    KLINE = EVENT_KLINE
    MARK = EVENT_MARK               # mark price, index price and funding of a perpetual


class EventFlag(enum.IntFlag):
    NONE = 0
    BUYER_AGGRESSOR = FLAG_BUYER_AGGRESSOR  # trade: the taker bought
    ASK_SIDE = FLAG_ASK_SIDE                # book level: ask side (else bid)
    SNAPSHOT = FLAG_SNAPSHOT                # part of a REST snapshot, not a diff
    LAST_IN_BATCH = FLAG_LAST_IN_BATCH      # last event of one venue message
    AGGREGATED = FLAG_AGGREGATED            # trade: an aggTrade covering first..last trade id
    CLOSED = FLAG_CLOSED                    # kline: the bar is final
    FROM_BOOK = FLAG_FROM_BOOK              # bbo: the top of the kept order book, not the venue ticker


class OrderAction(enum.IntEnum):
    NEW = ACTION_NEW
    CANCEL = ACTION_CANCEL              # target_order_id: the client order id to cancel
    AMEND = ACTION_AMEND                # target_order_id: the order; price/qty: the new values
    CANCEL_ALL = ACTION_CANCEL_ALL      # every open order of the strategy (instrument 0: all)
    SYNC = ACTION_SYNC                  # the gateway answers with the strategy's positions and open orders


class Side(enum.IntEnum):
    BUY = SIDE_BUY
    SELL = SIDE_SELL


class OrderType(enum.IntEnum):
    LIMIT = TYPE_LIMIT
    MARKET = TYPE_MARKET
    IOC = TYPE_IOC
    FOK = TYPE_FOK
    POST_ONLY = TYPE_POST_ONLY


class OrderStatus(enum.IntEnum):
    NEW = STATUS_NEW
    ACCEPTED = STATUS_ACCEPTED
    PARTIALLY_FILLED = STATUS_PARTIALLY_FILLED
    FILLED = STATUS_FILLED
    CANCELED = STATUS_CANCELED
    REJECTED = STATUS_REJECTED
    EXPIRED = STATUS_EXPIRED
    POSITION = STATUS_POSITION          # SYNC's answer: a position snapshot (records.pxd says which field holds what)
    SYNCED = STATUS_SYNCED              # SYNC's answer ends


class ReportFlag(enum.IntFlag):
    RESTATED = REPORT_RESTATED          # an open order's state sent again for SYNC, not a new event


class Liquidity(enum.IntEnum):
    NONE = LIQUIDITY_NONE
    MAKER = LIQUIDITY_MAKER
    TAKER = LIQUIDITY_TAKER


class RejectCode(enum.IntEnum):
    """ExecReport.reject_code: stable numbers, the thousands say which check refused."""
    NONE = REJECT_NONE
    ORDER_TOO_OLD = REJECT_ORDER_TOO_OLD            # older than max_order_age_ms when the gateway saw it
    POSITION_LIMIT = REJECT_POSITION_LIMIT          # per instrument or per strategy, open orders included
    INSUFFICIENT_FUNDS = REJECT_INSUFFICIENT_FUNDS  # against the shadow balance, open orders reserved
    RATE_LIMIT = REJECT_RATE_LIMIT                  # global or per-strategy token bucket empty
    MAX_OPEN_ORDERS = REJECT_MAX_OPEN_ORDERS
    BAD_PRICE = REJECT_BAD_PRICE                    # not on the tick, or outside [min_price, max_price]
    BAD_QTY = REJECT_BAD_QTY                        # not on the step, below min qty / min notional, above max
    FAT_FINGER = REJECT_FAT_FINGER                  # too far from the last trade / mid
    MAX_NOTIONAL = REJECT_MAX_NOTIONAL              # one order worth too much
    DUPLICATE_ORDER_ID = REJECT_DUPLICATE_ORDER_ID  # this strategy already used the client order id
    UNKNOWN_INSTRUMENT = REJECT_UNKNOWN_INSTRUMENT
    UNKNOWN_ORDER = REJECT_UNKNOWN_ORDER            # cancel / amend of an order that is not open
    BAD_FIELD = REJECT_BAD_FIELD                    # an action, side or type that does not exist
    REDUCE_ONLY = REJECT_REDUCE_ONLY                # reduce-only that would not reduce the position
    KILL_SWITCH = REJECT_KILL_SWITCH                # kill switch on, or the daily loss limit reached
    VENUE = REJECT_VENUE                            # the venue refused it
    VENUE_UNAVAILABLE = REJECT_VENUE_UNAVAILABLE    # the venue could not be reached


FUNDING_RATE_PRECISION = 10


def _dtype(fields, itemsize):
    names, formats, offsets = zip(*fields)
    return np.dtype({"names": list(names), "formats": list(formats),
                     "offsets": list(offsets), "itemsize": itemsize})


MARKET_EVENT_DTYPE = _dtype([
    ("ts_exchange", "<i8", 0), ("ts_recv", "<i8", 8), ("ts_pub", "<i8", 16),
    ("seq", "<u8", 24), ("instrument_id", "<u4", 32), ("venue_id", "<u2", 36),
    ("kind", "u1", 38), ("flags", "u1", 39), ("price", "<i8", 40), ("qty", "<i8", 48),
    # body by kind; the names overlap like the C union they mirror
    ("first_trade_id", "<u8", 56), ("last_trade_id", "<u8", 64),
    ("ask_price", "<i8", 56), ("ask_qty", "<i8", 64),
    ("first_update_id", "<u8", 56), ("prev_update_id", "<u8", 64),
    ("open", "<i8", 56), ("high", "<i8", 64), ("low", "<i8", 72), ("quote_volume", "<i8", 80),
    ("trade_count", "<u8", 88), ("open_time_ns", "<i8", 96), ("close_time_ns", "<i8", 104),
    ("index_price", "<i8", 56), ("funding_rate", "<i8", 64), ("next_funding_ns", "<i8", 72),
    ("settle_price", "<i8", 80),
], 120)

ORDER_DTYPE = _dtype([
    ("ts_created", "<i8", 0), ("client_order_id", "<u8", 8), ("target_order_id", "<u8", 16),
    ("price", "<i8", 24), ("qty", "<i8", 32), ("strategy_id", "<u4", 40),
    ("instrument_id", "<u4", 44), ("action", "u1", 48), ("side", "u1", 49),
    ("order_type", "u1", 50), ("reduce_only", "u1", 51),
], 56)

EXEC_REPORT_DTYPE = _dtype([
    ("ts_exchange", "<i8", 0), ("ts_recv", "<i8", 8), ("ts_pub", "<i8", 16),
    ("client_order_id", "<u8", 24), ("venue_order_id", "<u8", 32), ("strategy_id", "<u4", 40),
    ("instrument_id", "<u4", 44), ("price", "<i8", 48), ("qty", "<i8", 56),
    ("last_price", "<i8", 64), ("last_qty", "<i8", 72), ("cum_qty", "<i8", 80),
    ("leaves_qty", "<i8", 88), ("fee", "<i8", 96), ("reject_code", "<u2", 104),
    ("status", "u1", 106), ("side", "u1", 107), ("liquidity", "u1", 108), ("order_type", "u1", 109),
    ("flags", "u1", 110), ("trade_id", "<u8", 112),
], 120)

DTYPES = {
    RecordType.MARKET_EVENT: MARKET_EVENT_DTYPE,
    RecordType.ORDER: ORDER_DTYPE,
    RecordType.EXEC_REPORT: EXEC_REPORT_DTYPE,
}


def dtype_for(record_type):
    """The numpy dtype of a record type id; KeyError names the unknown id."""
    try:
        return DTYPES[RecordType(record_type)]
    except ValueError:
        raise KeyError(f"unknown record type {record_type}") from None


cdef size_t _off(const void *base, const void *field) noexcept:
    return <size_t>(<const char *>field - <const char *>base)


def c_layout():
    """Field offsets and sizes as the C compiler laid them out (for the layout test)."""
    cdef ttq_market_event e
    cdef ttq_order o
    cdef ttq_exec_report r
    return {
        RecordType.MARKET_EVENT: (sizeof(ttq_market_event), {
            "ts_exchange": _off(&e, &e.ts_exchange), "ts_recv": _off(&e, &e.ts_recv),
            "ts_pub": _off(&e, &e.ts_pub), "seq": _off(&e, &e.seq),
            "instrument_id": _off(&e, &e.instrument_id), "venue_id": _off(&e, &e.venue_id),
            "kind": _off(&e, &e.kind), "flags": _off(&e, &e.flags),
            "price": _off(&e, &e.price), "qty": _off(&e, &e.qty),
            "first_trade_id": _off(&e, &e.body.trade.first_trade_id),
            "last_trade_id": _off(&e, &e.body.trade.last_trade_id),
            "ask_price": _off(&e, &e.body.bbo.ask_price), "ask_qty": _off(&e, &e.body.bbo.ask_qty),
            "first_update_id": _off(&e, &e.body.book.first_update_id),
            "prev_update_id": _off(&e, &e.body.book.prev_update_id),
            "open": _off(&e, &e.body.kline.open), "high": _off(&e, &e.body.kline.high),
            "low": _off(&e, &e.body.kline.low), "quote_volume": _off(&e, &e.body.kline.quote_volume),
            "trade_count": _off(&e, &e.body.kline.trade_count),
            "open_time_ns": _off(&e, &e.body.kline.open_time_ns),
            "close_time_ns": _off(&e, &e.body.kline.close_time_ns),
            "index_price": _off(&e, &e.body.mark.index_price),
            "funding_rate": _off(&e, &e.body.mark.funding_rate),
            "next_funding_ns": _off(&e, &e.body.mark.next_funding_ns),
            "settle_price": _off(&e, &e.body.mark.settle_price),
        }),
        RecordType.ORDER: (sizeof(ttq_order), {
            "ts_created": _off(&o, &o.ts_created), "client_order_id": _off(&o, &o.client_order_id),
            "target_order_id": _off(&o, &o.target_order_id), "price": _off(&o, &o.price),
            "qty": _off(&o, &o.qty), "strategy_id": _off(&o, &o.strategy_id),
            "instrument_id": _off(&o, &o.instrument_id), "action": _off(&o, &o.action),
            "side": _off(&o, &o.side), "order_type": _off(&o, &o.order_type),
            "reduce_only": _off(&o, &o.reduce_only),
        }),
        RecordType.EXEC_REPORT: (sizeof(ttq_exec_report), {
            "ts_exchange": _off(&r, &r.ts_exchange), "ts_recv": _off(&r, &r.ts_recv),
            "ts_pub": _off(&r, &r.ts_pub), "client_order_id": _off(&r, &r.client_order_id),
            "venue_order_id": _off(&r, &r.venue_order_id), "strategy_id": _off(&r, &r.strategy_id),
            "instrument_id": _off(&r, &r.instrument_id), "price": _off(&r, &r.price),
            "qty": _off(&r, &r.qty), "last_price": _off(&r, &r.last_price),
            "last_qty": _off(&r, &r.last_qty), "cum_qty": _off(&r, &r.cum_qty),
            "leaves_qty": _off(&r, &r.leaves_qty), "fee": _off(&r, &r.fee),
            "reject_code": _off(&r, &r.reject_code), "status": _off(&r, &r.status),
            "side": _off(&r, &r.side), "liquidity": _off(&r, &r.liquidity),
            "trade_id": _off(&r, &r.trade_id),
            "order_type": _off(&r, &r.order_type), "flags": _off(&r, &r.flags),
        }),
    }


cdef inline bytes _to_bytes(const void *data, Py_ssize_t size):
    return PyBytes_FromStringAndSize(<const char *>data, size)


cdef inline void _from_bytes(void *data, Py_ssize_t size, bytes raw, str name) except *:
    if PyBytes_GET_SIZE(raw) != size:
        raise ValueError(f"{name} needs {size} bytes, got {PyBytes_GET_SIZE(raw)}")
    memcpy(data, PyBytes_AS_STRING(raw), size)


def _set_fields(record, fields):
    for name, value in fields.items():
        if not hasattr(type(record), name):
            raise TypeError(f"{type(record).__name__} has no field {name!r}")
        setattr(record, name, value)


def _fields_repr(record, names):
    return f"{type(record).__name__}(" + ", ".join(f"{n}={getattr(record, n)!r}" for n in names) + ")"


_EVENT_HEAD = ("ts_exchange", "ts_recv", "ts_pub", "seq", "instrument_id", "venue_id", "kind",
               "flags", "price", "qty")
_EVENT_BODY = {
    EventKind.TRADE: ("first_trade_id", "last_trade_id"),
    EventKind.BBO: ("ask_price", "ask_qty"),
    EventKind.BOOK_LEVEL: ("first_update_id", "prev_update_id"),
    EventKind.BOOK_RESET: ("first_update_id", "prev_update_id"),
    EventKind.KLINE: ("open", "high", "low", "quote_volume", "trade_count", "open_time_ns",
                      "close_time_ns"),
    EventKind.MARK: ("index_price", "funding_rate", "next_funding_ns", "settle_price"),
}


@cython.freelist(64)
cdef class MarketEvent:
    """One market event (trade, BBO, book level, book reset, kline, mark); see records.pxd."""

    def __init__(self, **fields):
        _set_fields(self, fields)

    def tobytes(self):
        return _to_bytes(&self.ev, sizeof(ttq_market_event))

    @staticmethod
    def frombytes(bytes raw):
        cdef MarketEvent rec = MarketEvent.__new__(MarketEvent)
        _from_bytes(&rec.ev, sizeof(ttq_market_event), raw, "MarketEvent")
        return rec

    def copy(self):
        cdef MarketEvent rec = MarketEvent.__new__(MarketEvent)
        rec.ev = self.ev
        return rec

    def __reduce__(self):
        return (MarketEvent.frombytes, (self.tobytes(),))

    def __eq__(self, other):
        if type(other) is not MarketEvent:
            return NotImplemented
        return self.tobytes() == other.tobytes()

    def __repr__(self):
        return _fields_repr(self, _EVENT_HEAD + _EVENT_BODY.get(self.ev.kind, ()))

    property ts_exchange:
        def __get__(self): return self.ev.ts_exchange
        def __set__(self, int64_t v): self.ev.ts_exchange = v
    property ts_recv:
        def __get__(self): return self.ev.ts_recv
        def __set__(self, int64_t v): self.ev.ts_recv = v
    property ts_pub:
        def __get__(self): return self.ev.ts_pub
        def __set__(self, int64_t v): self.ev.ts_pub = v
    property seq:
        def __get__(self): return self.ev.seq
        def __set__(self, uint64_t v): self.ev.seq = v
    property instrument_id:
        def __get__(self): return self.ev.instrument_id
        def __set__(self, uint32_t v): self.ev.instrument_id = v
    property venue_id:
        def __get__(self): return self.ev.venue_id
        def __set__(self, uint16_t v): self.ev.venue_id = v
    property kind:
        def __get__(self): return self.ev.kind
        def __set__(self, uint8_t v): self.ev.kind = v
    property flags:
        def __get__(self): return self.ev.flags
        def __set__(self, uint8_t v): self.ev.flags = v
    property price:
        def __get__(self): return self.ev.price
        def __set__(self, int64_t v): self.ev.price = v
    property qty:
        def __get__(self): return self.ev.qty
        def __set__(self, int64_t v): self.ev.qty = v
    property first_trade_id:
        def __get__(self): return self.ev.body.trade.first_trade_id
        def __set__(self, uint64_t v): self.ev.body.trade.first_trade_id = v
    property last_trade_id:
        def __get__(self): return self.ev.body.trade.last_trade_id
        def __set__(self, uint64_t v): self.ev.body.trade.last_trade_id = v
    property ask_price:
        def __get__(self): return self.ev.body.bbo.ask_price
        def __set__(self, int64_t v): self.ev.body.bbo.ask_price = v
    property ask_qty:
        def __get__(self): return self.ev.body.bbo.ask_qty
        def __set__(self, int64_t v): self.ev.body.bbo.ask_qty = v
    property first_update_id:
        def __get__(self): return self.ev.body.book.first_update_id
        def __set__(self, uint64_t v): self.ev.body.book.first_update_id = v
    property prev_update_id:
        def __get__(self): return self.ev.body.book.prev_update_id
        def __set__(self, uint64_t v): self.ev.body.book.prev_update_id = v
    property open:
        def __get__(self): return self.ev.body.kline.open
        def __set__(self, int64_t v): self.ev.body.kline.open = v
    property high:
        def __get__(self): return self.ev.body.kline.high
        def __set__(self, int64_t v): self.ev.body.kline.high = v
    property low:
        def __get__(self): return self.ev.body.kline.low
        def __set__(self, int64_t v): self.ev.body.kline.low = v
    property quote_volume:
        def __get__(self): return self.ev.body.kline.quote_volume
        def __set__(self, int64_t v): self.ev.body.kline.quote_volume = v
    property trade_count:
        def __get__(self): return self.ev.body.kline.trade_count
        def __set__(self, uint64_t v): self.ev.body.kline.trade_count = v
    property open_time_ns:
        def __get__(self): return self.ev.body.kline.open_time_ns
        def __set__(self, int64_t v): self.ev.body.kline.open_time_ns = v
    property close_time_ns:
        def __get__(self): return self.ev.body.kline.close_time_ns
        def __set__(self, int64_t v): self.ev.body.kline.close_time_ns = v
    property index_price:
        def __get__(self): return self.ev.body.mark.index_price
        def __set__(self, int64_t v): self.ev.body.mark.index_price = v
    property funding_rate:
        def __get__(self): return self.ev.body.mark.funding_rate
        def __set__(self, int64_t v): self.ev.body.mark.funding_rate = v
    property next_funding_ns:
        def __get__(self): return self.ev.body.mark.next_funding_ns
        def __set__(self, int64_t v): self.ev.body.mark.next_funding_ns = v
    property settle_price:
        def __get__(self): return self.ev.body.mark.settle_price
        def __set__(self, int64_t v): self.ev.body.mark.settle_price = v


_ORDER_FIELDS = ("ts_created", "client_order_id", "target_order_id", "price", "qty",
                 "strategy_id", "instrument_id", "action", "side", "order_type", "reduce_only")


def new_order(int64_t ts_created, uint64_t client_order_id, uint32_t strategy_id, uint32_t instrument_id,
              uint8_t action, uint8_t side, uint8_t order_type, int64_t price, int64_t qty,
              uint8_t reduce_only=0, uint64_t target_order_id=0):
    """An Order from positional values in one call (the strategy SDK's hot path; Order(**fields)
    sets them one by one)."""
    cdef Order rec = Order.__new__(Order)
    rec.order.ts_created = ts_created
    rec.order.client_order_id = client_order_id
    rec.order.target_order_id = target_order_id
    rec.order.price = price
    rec.order.qty = qty
    rec.order.strategy_id = strategy_id
    rec.order.instrument_id = instrument_id
    rec.order.action = action
    rec.order.side = side
    rec.order.order_type = order_type
    rec.order.reduce_only = reduce_only
    return rec


@cython.freelist(64)
cdef class Order:
    """One order instruction from a strategy to the gateway; see records.pxd."""

    def __init__(self, **fields):
        _set_fields(self, fields)

    def tobytes(self):
        return _to_bytes(&self.order, sizeof(ttq_order))

    @staticmethod
    def frombytes(bytes raw):
        cdef Order rec = Order.__new__(Order)
        _from_bytes(&rec.order, sizeof(ttq_order), raw, "Order")
        return rec

    def copy(self):
        cdef Order rec = Order.__new__(Order)
        rec.order = self.order
        return rec

    def __reduce__(self):
        return (Order.frombytes, (self.tobytes(),))

    def __eq__(self, other):
        if type(other) is not Order:
            return NotImplemented
        return self.tobytes() == other.tobytes()

    def __repr__(self):
        return _fields_repr(self, _ORDER_FIELDS)

    property ts_created:
        def __get__(self): return self.order.ts_created
        def __set__(self, int64_t v): self.order.ts_created = v
    property client_order_id:
        def __get__(self): return self.order.client_order_id
        def __set__(self, uint64_t v): self.order.client_order_id = v
    property target_order_id:
        def __get__(self): return self.order.target_order_id
        def __set__(self, uint64_t v): self.order.target_order_id = v
    property price:
        def __get__(self): return self.order.price
        def __set__(self, int64_t v): self.order.price = v
    property qty:
        def __get__(self): return self.order.qty
        def __set__(self, int64_t v): self.order.qty = v
    property strategy_id:
        def __get__(self): return self.order.strategy_id
        def __set__(self, uint32_t v): self.order.strategy_id = v
    property instrument_id:
        def __get__(self): return self.order.instrument_id
        def __set__(self, uint32_t v): self.order.instrument_id = v
    property action:
        def __get__(self): return self.order.action
        def __set__(self, uint8_t v): self.order.action = v
    property side:
        def __get__(self): return self.order.side
        def __set__(self, uint8_t v): self.order.side = v
    property order_type:
        def __get__(self): return self.order.order_type
        def __set__(self, uint8_t v): self.order.order_type = v
    property reduce_only:
        def __get__(self): return self.order.reduce_only
        def __set__(self, uint8_t v): self.order.reduce_only = v


_REPORT_FIELDS = ("ts_exchange", "ts_recv", "ts_pub", "client_order_id", "venue_order_id",
                  "strategy_id", "instrument_id", "price", "qty", "last_price", "last_qty",
                  "cum_qty", "leaves_qty", "fee", "reject_code", "status", "side", "liquidity",
                  "order_type", "flags", "trade_id")


@cython.freelist(64)
cdef class ExecReport:
    """One execution report from the gateway (ack, fill, cancel, reject); see records.pxd."""

    def __init__(self, **fields):
        _set_fields(self, fields)

    def tobytes(self):
        return _to_bytes(&self.report, sizeof(ttq_exec_report))

    @staticmethod
    def frombytes(bytes raw):
        cdef ExecReport rec = ExecReport.__new__(ExecReport)
        _from_bytes(&rec.report, sizeof(ttq_exec_report), raw, "ExecReport")
        return rec

    def copy(self):
        cdef ExecReport rec = ExecReport.__new__(ExecReport)
        rec.report = self.report
        return rec

    def __reduce__(self):
        return (ExecReport.frombytes, (self.tobytes(),))

    def __eq__(self, other):
        if type(other) is not ExecReport:
            return NotImplemented
        return self.tobytes() == other.tobytes()

    def __repr__(self):
        return _fields_repr(self, _REPORT_FIELDS)

    property ts_exchange:
        def __get__(self): return self.report.ts_exchange
        def __set__(self, int64_t v): self.report.ts_exchange = v
    property ts_recv:
        def __get__(self): return self.report.ts_recv
        def __set__(self, int64_t v): self.report.ts_recv = v
    property ts_pub:
        def __get__(self): return self.report.ts_pub
        def __set__(self, int64_t v): self.report.ts_pub = v
    property client_order_id:
        def __get__(self): return self.report.client_order_id
        def __set__(self, uint64_t v): self.report.client_order_id = v
    property venue_order_id:
        def __get__(self): return self.report.venue_order_id
        def __set__(self, uint64_t v): self.report.venue_order_id = v
    property strategy_id:
        def __get__(self): return self.report.strategy_id
        def __set__(self, uint32_t v): self.report.strategy_id = v
    property instrument_id:
        def __get__(self): return self.report.instrument_id
        def __set__(self, uint32_t v): self.report.instrument_id = v
    property price:
        def __get__(self): return self.report.price
        def __set__(self, int64_t v): self.report.price = v
    property qty:
        def __get__(self): return self.report.qty
        def __set__(self, int64_t v): self.report.qty = v
    property last_price:
        def __get__(self): return self.report.last_price
        def __set__(self, int64_t v): self.report.last_price = v
    property last_qty:
        def __get__(self): return self.report.last_qty
        def __set__(self, int64_t v): self.report.last_qty = v
    property cum_qty:
        def __get__(self): return self.report.cum_qty
        def __set__(self, int64_t v): self.report.cum_qty = v
    property leaves_qty:
        def __get__(self): return self.report.leaves_qty
        def __set__(self, int64_t v): self.report.leaves_qty = v
    property fee:
        def __get__(self): return self.report.fee
        def __set__(self, int64_t v): self.report.fee = v
    property reject_code:
        def __get__(self): return self.report.reject_code
        def __set__(self, uint16_t v): self.report.reject_code = v
    property status:
        def __get__(self): return self.report.status
        def __set__(self, uint8_t v): self.report.status = v
    property side:
        def __get__(self): return self.report.side
        def __set__(self, uint8_t v): self.report.side = v
    property liquidity:
        def __get__(self): return self.report.liquidity
        def __set__(self, uint8_t v): self.report.liquidity = v
    property order_type:
        def __get__(self): return self.report.order_type
        def __set__(self, uint8_t v): self.report.order_type = v
    property flags:
        def __get__(self): return self.report.flags
        def __set__(self, uint8_t v): self.report.flags = v
    property trade_id:
        def __get__(self): return self.report.trade_id
        def __set__(self, uint64_t v): self.report.trade_id = v


RECORD_CLASSES = {
    RecordType.MARKET_EVENT: MarketEvent,
    RecordType.ORDER: Order,
    RecordType.EXEC_REPORT: ExecReport,
}

RECORD_SIZES = {
    RecordType.MARKET_EVENT: sizeof(ttq_market_event),
    RecordType.ORDER: sizeof(ttq_order),
    RecordType.EXEC_REPORT: sizeof(ttq_exec_report),
}


def record_size_for(record_type, record_size=None):
    """The record size of a type: a known type's own (record_size must agree), else record_size."""
    known = RECORD_SIZES.get(record_type)
    if known is not None:
        if record_size is not None and record_size != known:
            raise ValueError(f"record type {record_type} is {known} bytes, not {record_size}")
        return known
    if record_size is None:
        raise ValueError(f"record type {record_type} is not a known record; give record_size")
    return record_size


cdef object new_record(uint32_t record_type, void **data):
    """A fresh record object of the type and a pointer to its struct, for ring readers."""
    cdef MarketEvent ev
    cdef Order order
    cdef ExecReport report
    if record_type == RECORD_MARKET_EVENT:
        ev = MarketEvent.__new__(MarketEvent)
        data[0] = &ev.ev
        return ev
    if record_type == RECORD_ORDER:
        order = Order.__new__(Order)
        data[0] = &order.order
        return order
    if record_type == RECORD_EXEC_REPORT:
        report = ExecReport.__new__(ExecReport)
        data[0] = &report.report
        return report
    data[0] = NULL
    return None


cdef const void *record_data(object record, uint32_t record_type) except NULL:
    """The struct behind a record object, checked against the ring's record type."""
    if record_type == RECORD_MARKET_EVENT and type(record) is MarketEvent:
        return &(<MarketEvent>record).ev
    if record_type == RECORD_ORDER and type(record) is Order:
        return &(<Order>record).order
    if record_type == RECORD_EXEC_REPORT and type(record) is ExecReport:
        return &(<ExecReport>record).report
    raise TypeError(f"a ring of record type {record_type} cannot carry {type(record).__name__}")
