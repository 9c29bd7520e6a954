"""Binance spot / USDT-M stream frames to MarketEvents; see normaliser.pxd.

Every frame is counted; a frame that cannot be used is dropped whole and counted by reason,
never half-published. Prices and quantities go from the venue's strings to int64 fixed
point at the instrument's precision without a float (fixed_point.pxd).
"""
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

import numpy as np
import orjson

from ttquant.core.includes.atomics cimport ttq_now_ns
from ttquant.core.records cimport (
    ttq_market_event, EVENT_TRADE, EVENT_BBO, EVENT_BOOK_LEVEL, EVENT_BOOK_RESET, EVENT_KLINE,
    EVENT_MARK, FLAG_BUYER_AGGRESSOR, FLAG_ASK_SIDE, FLAG_SNAPSHOT, FLAG_LAST_IN_BATCH,
    FLAG_AGGREGATED, FLAG_CLOSED, FLAG_FROM_BOOK,
)
from ttquant.core.rings.broadcast cimport BroadcastWriter, broadcast_push
from ttquant.core.book.book_board cimport BookBoardWriter, board_publish, BOARD_SYNCED
from ttquant.core.book.order_book cimport OrderBook, book_side
from ttquant.core.md.fixed_point cimport parse_fixed, FIXED_OK, FIXED_NEGATIVE
from ttquant.core.md.binance.book_sync cimport (
    BookSync, RULE_SPOT, RULE_FUTURES, DIFF_APPLIED, DIFF_BUFFERED, DIFF_STALE, DIFF_GAP, DIFF_BAD,
    SNAPSHOT_SYNCED,
)

from ttquant.core.records import FUNDING_RATE_PRECISION
from ttquant.core.instruments import MarketType

__all__ = ["BinanceNormaliser", "COUNTER_NAMES", "SPOT", "USDM"]

SPOT, USDM = "spot", "usdm"
COUNTER_NAMES = (
    "frames", "trades", "agg_trades", "book_tickers", "depth_updates", "klines", "mark_prices",
    "control", "events_published",
    "drop_oversized", "drop_malformed_json", "drop_unknown_shape", "drop_unknown_stream",
    "drop_unknown_symbol", "drop_missing_field", "drop_bad_type", "drop_bad_number",
    "drop_negative", "drop_bad_level", "ignored_non_market_trade",
    "book_buffered", "book_stale", "book_gaps", "book_snapshots", "book_snapshot_rejected",
)
assert len(COUNTER_NAMES) == C_COUNTER_COUNT
DEFAULT_MAX_FRAME_BYTES = 1 << 20
MS = 1_000_000


class _Drop(Exception):
    """A frame that cannot be used: .counter says why."""
    def __init__(self, int counter):
        self.counter = counter


cdef inline object field(dict d, str key):
    cdef PyObject *p = PyDict_GetItem(d, key)
    if p == NULL:
        raise _Drop(C_DROP_MISSING_FIELD)
    return <object>p


cdef int64_t fixed(dict d, str key, int precision, bint allow_negative=False) except? -1:
    value = field(d, key)
    if type(value) is not str:
        raise _Drop(C_DROP_BAD_TYPE)
    cdef Py_ssize_t n
    cdef const char *s = PyUnicode_AsUTF8AndSize(value, &n)
    cdef int64_t out
    cdef int status = parse_fixed(s, n, precision, allow_negative, &out)
    if status != FIXED_OK:
        raise _Drop(C_DROP_NEGATIVE if status == FIXED_NEGATIVE else C_DROP_BAD_NUMBER)
    return out


cdef int64_t price(dict d, str key, int precision) except? -1:
    cdef int64_t p = fixed(d, key, precision)
    if p == 0:
        raise _Drop(C_DROP_BAD_NUMBER)      # a zero price is never a market price
    return p


cdef uint64_t integer(dict d, str key) except? 0xFFFFFFFFFFFFFFFF:
    value = field(d, key)
    if type(value) is not int:
        raise _Drop(C_DROP_BAD_TYPE)
    if value < 0:
        raise _Drop(C_DROP_NEGATIVE)
    return value


cdef int64_t ms_to_ns(dict d, str key) except? -1:
    return <int64_t>integer(d, key) * MS


cdef class SymbolState:
    def __init__(self, instrument, int rule, bint with_book):
        self.symbol = instrument.symbol
        self.instrument_id = instrument.instrument_id
        self.price_precision = instrument.price_precision
        self.qty_precision = instrument.size_precision
        self.book = BookSync(self.instrument_id, rule, self.price_precision, self.qty_precision) if with_book else None


cdef class BinanceNormaliser:
    """Frames of one market (spot or usdm) into the tick ring and the book board."""

    def __init__(self, str market, instruments, BroadcastWriter ticks, BookBoardWriter board=None,
                 uint16_t venue_id=1, counters=None, Py_ssize_t max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
                 snapshot_needed=None):
        if market not in (SPOT, USDM):
            raise ValueError(f"market {market!r} is neither {SPOT!r} nor {USDM!r}")
        self.market = market
        self.rule = RULE_SPOT if market == SPOT else RULE_FUTURES
        wanted = MarketType.SPOT if market == SPOT else MarketType.LINEAR_PERPETUAL
        self.symbols = {i.symbol: SymbolState(i, self.rule, True)
                        for i in instruments if i.market_type == wanted}
        self.ticks = ticks
        self.board = board
        self.venue_id = venue_id
        if counters is None:
            counters = np.zeros(C_COUNTER_COUNT, np.uint64)
        if counters.dtype != np.uint64 or counters.shape[0] < C_COUNTER_COUNT or not counters.flags.c_contiguous:
            raise ValueError(f"counters must be a contiguous uint64 array of at least {C_COUNTER_COUNT}")
        self.counters = counters
        cdef uint64_t[::1] view = counters
        self.count = &view[0]
        self.max_frame_bytes = max_frame_bytes
        self.snapshot_needed = snapshot_needed

    def counter_dict(self):
        return {name: int(self.counters[i]) for i, name in enumerate(COUNTER_NAMES)}

    cdef int publish(self) except -1:
        self.ev.ts_pub = ttq_now_ns()
        broadcast_push(&self.ticks.ring, &self.ticks._position, &self.ev)
        self.count[C_EVENTS_PUBLISHED] += 1
        return 0

    cpdef int on_frame(self, bytes payload, int64_t ts_recv) except -1:
        """One WebSocket text frame as received; returns how many events it published."""
        cdef uint64_t published = self.count[C_EVENTS_PUBLISHED]
        self.count[C_FRAMES] += 1
        if len(payload) > self.max_frame_bytes:
            self.count[C_DROP_OVERSIZED] += 1
            return 0
        try:
            frame = orjson.loads(payload)
        except orjson.JSONDecodeError:
            self.count[C_DROP_MALFORMED_JSON] += 1
            return 0
        try:
            self._on_message(frame, ts_recv)
        except _Drop as drop:
            self.count[<int>drop.counter] += 1
        return <int>(self.count[C_EVENTS_PUBLISHED] - published)

    def _on_message(self, frame, int64_t ts_recv):
        if type(frame) is not dict:
            raise _Drop(C_DROP_UNKNOWN_SHAPE)
        cdef dict f = <dict>frame
        cdef PyObject *p = PyDict_GetItem(f, "data")
        if p == NULL or type(<object>p) is not dict:
            if PyDict_GetItem(f, "id") != NULL and (PyDict_GetItem(f, "result") != NULL
                                                    or PyDict_GetItem(f, "error") != NULL):
                self.count[C_CONTROL] += 1      # a reply to SUBSCRIBE / LIST_SUBSCRIPTIONS ...
                return
            raise _Drop(C_DROP_UNKNOWN_SHAPE)
        cdef dict data = <dict>p
        symbol = field(data, "s")
        if type(symbol) is not str:
            raise _Drop(C_DROP_BAD_TYPE)
        cdef PyObject *st_p = PyDict_GetItem(self.symbols, symbol)
        if st_p == NULL:
            raise _Drop(C_DROP_UNKNOWN_SYMBOL)
        cdef SymbolState st = <SymbolState>st_p
        cdef PyObject *e = PyDict_GetItem(data, "e")
        memset(&self.ev, 0, sizeof(self.ev))
        self.ev.ts_recv = ts_recv
        self.ev.instrument_id = st.instrument_id
        self.ev.venue_id = self.venue_id
        if e == NULL:
            if PyDict_GetItem(data, "b") != NULL and PyDict_GetItem(data, "A") != NULL:
                self._book_ticker(st, data)     # spot bookTicker: no "e"
                return
            raise _Drop(C_DROP_UNKNOWN_STREAM)
        event = <object>e
        if event == "trade":
            self._trade(st, data, False)
        elif event == "aggTrade":
            self._trade(st, data, True)
        elif event == "depthUpdate":
            self.count[C_DEPTH_UPDATES] += 1
            self.on_depth(st, data)
        elif event == "bookTicker":
            self._book_ticker(st, data)
        elif event == "kline":
            self._kline(st, data)
        elif event == "markPriceUpdate":
            self._mark(st, data)
        else:
            raise _Drop(C_DROP_UNKNOWN_STREAM)

    def _trade(self, SymbolState st, dict data, bint aggregated):
        cdef uint64_t trade_id
        if aggregated:
            self.count[C_AGG_TRADES] += 1
            trade_id = integer(data, "a")
            self.ev.body.trade.first_trade_id = integer(data, "f")
            self.ev.body.trade.last_trade_id = integer(data, "l")
            self.ev.flags = FLAG_AGGREGATED
        else:
            self.count[C_TRADES] += 1
            trade_id = integer(data, "t")
            self.ev.body.trade.first_trade_id = self.ev.body.trade.last_trade_id = trade_id
            x = PyDict_GetItem(data, "X")
            if x != NULL and <object>x != "MARKET":
                raise _Drop(C_IGNORED_NON_MARKET_TRADE)
        self.ev.kind = EVENT_TRADE
        self.ev.seq = trade_id
        self.ev.price = price(data, "p", st.price_precision)
        self.ev.qty = fixed(data, "q", st.qty_precision)
        buyer_is_maker = field(data, "m")
        if type(buyer_is_maker) is not bool:
            raise _Drop(C_DROP_BAD_TYPE)
        if not buyer_is_maker:
            self.ev.flags |= FLAG_BUYER_AGGRESSOR
        self.ev.ts_exchange = ms_to_ns(data, "T")
        self.ev.flags |= FLAG_LAST_IN_BATCH
        self.publish()

    def _book_ticker(self, SymbolState st, dict data):
        self.count[C_BOOK_TICKERS] += 1
        self.ev.kind = EVENT_BBO
        self.ev.seq = integer(data, "u")
        self.ev.price = price(data, "b", st.price_precision)
        self.ev.qty = fixed(data, "B", st.qty_precision)
        self.ev.body.bbo.ask_price = price(data, "a", st.price_precision)
        self.ev.body.bbo.ask_qty = fixed(data, "A", st.qty_precision)
        if PyDict_GetItem(data, "T") != NULL:
            self.ev.ts_exchange = ms_to_ns(data, "T")       # futures: transaction time
        elif PyDict_GetItem(data, "E") != NULL:
            self.ev.ts_exchange = ms_to_ns(data, "E")
        self.ev.flags = FLAG_LAST_IN_BATCH
        self.publish()

    def _kline(self, SymbolState st, dict data):
        self.count[C_KLINES] += 1
        k = field(data, "k")
        if type(k) is not dict:
            raise _Drop(C_DROP_BAD_TYPE)
        self.ev.kind = EVENT_KLINE
        self.ev.seq = integer(k, "t")
        self.ev.price = price(k, "c", st.price_precision)
        self.ev.qty = fixed(k, "v", st.qty_precision)
        self.ev.body.kline.open = price(k, "o", st.price_precision)
        self.ev.body.kline.high = price(k, "h", st.price_precision)
        self.ev.body.kline.low = price(k, "l", st.price_precision)
        self.ev.body.kline.quote_volume = fixed(k, "q", st.price_precision)
        self.ev.body.kline.trade_count = integer(k, "n")
        self.ev.body.kline.open_time_ns = ms_to_ns(k, "t")
        self.ev.body.kline.close_time_ns = ms_to_ns(k, "T")
        self.ev.ts_exchange = ms_to_ns(data, "E")
        closed = field(k, "x")
        if type(closed) is not bool:
            raise _Drop(C_DROP_BAD_TYPE)
        self.ev.flags = FLAG_LAST_IN_BATCH | (FLAG_CLOSED if closed else 0)
        self.publish()

    def _mark(self, SymbolState st, dict data):
        self.count[C_MARK_PRICES] += 1
        self.ev.kind = EVENT_MARK
        self.ev.ts_exchange = ms_to_ns(data, "E")
        self.ev.seq = <uint64_t>integer(data, "E")
        self.ev.price = price(data, "p", st.price_precision)
        self.ev.body.mark.index_price = fixed(data, "i", st.price_precision)
        self.ev.body.mark.settle_price = fixed(data, "P", st.price_precision)
        self.ev.body.mark.funding_rate = fixed(data, "r", FUNDING_RATE_PRECISION, True) \
            if type(field(data, "r")) is str and field(data, "r") != "" else 0
        self.ev.body.mark.next_funding_ns = ms_to_ns(data, "T")
        self.ev.flags = FLAG_LAST_IN_BATCH
        self.publish()

    cdef int on_depth(self, SymbolState st, dict data) except -1:
        cdef BookSync sync = st.book
        cdef uint64_t first_id = integer(data, "U")
        cdef uint64_t last_id = integer(data, "u")
        cdef uint64_t prev_id = integer(data, "pu") if self.rule == RULE_FUTURES else 0
        bids, asks = field(data, "b"), field(data, "a")
        if type(bids) is not list or type(asks) is not list:
            raise _Drop(C_DROP_BAD_TYPE)
        cdef int result = sync.on_diff_c(first_id, last_id, prev_id, bids, asks)
        if result == DIFF_APPLIED:
            self.ev.ts_exchange = ms_to_ns(data, "E")
            self.publish_changes(st, first_id, last_id, prev_id, 0)
        elif result == DIFF_BUFFERED:
            self.count[C_BOOK_BUFFERED] += 1
        elif result == DIFF_STALE:
            self.count[C_BOOK_STALE] += 1
        elif result == DIFF_GAP:
            self.count[C_BOOK_GAPS] += 1
            self._book_lost(st, last_id)
        else:
            self.count[C_DROP_BAD_LEVEL] += 1
        return 0

    def _book_lost(self, SymbolState st, uint64_t update_id):
        """Tell strategies (BOOK_RESET, board not synced) and ask for a new snapshot."""
        memset(&self.ev, 0, sizeof(self.ev))
        self.ev.kind = EVENT_BOOK_RESET
        self.ev.instrument_id = st.instrument_id
        self.ev.venue_id = self.venue_id
        self.ev.seq = update_id
        self.ev.flags = FLAG_LAST_IN_BATCH
        self.publish()
        st.best_bid = st.best_ask = st.best_bid_qty = st.best_ask_qty = 0
        if self.board is not None:
            self.board.reset(st.instrument_id, update_id)
        if self.snapshot_needed is not None:
            self.snapshot_needed(st.symbol)

    def start_book(self, str symbol):
        """Begin (or restart) a book: buffer diffs until on_snapshot; the caller fetches it."""
        st = self.symbols[symbol]
        (<SymbolState>st).book.synced = False

    def on_snapshot(self, str symbol, bytes body, int64_t ts_recv=0):
        """A REST depth snapshot for symbol; returns True when the book is in sync."""
        st = <SymbolState>self.symbols[symbol]
        try:
            doc = orjson.loads(body)
            last_update_id = doc["lastUpdateId"]
            bids, asks = doc["bids"], doc["asks"]
            if type(last_update_id) is not int or type(bids) is not list or type(asks) is not list:
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.count[C_BOOK_SNAPSHOT_REJECTED] += 1
            return False
        cdef BookSync sync = st.book
        result = sync.on_snapshot(last_update_id, bids, asks)
        if result != SNAPSHOT_SYNCED:
            self.count[C_BOOK_SNAPSHOT_REJECTED] += 1
            return False
        self.count[C_BOOK_SNAPSHOTS] += 1
        # strategies rebuild from here: a reset, then every level of the synced book
        memset(&self.ev, 0, sizeof(self.ev))
        self.ev.kind = EVENT_BOOK_RESET
        self.ev.instrument_id = st.instrument_id
        self.ev.venue_id = self.venue_id
        self.ev.ts_recv = ts_recv
        self.ev.seq = sync.update_id
        self.publish()
        self._publish_whole_book(st, ts_recv)
        return True

    def _publish_whole_book(self, SymbolState st, int64_t ts_recv):
        cdef OrderBook book = st.book.book
        cdef book_side *side
        cdef Py_ssize_t k
        cdef int is_ask
        cdef uint64_t n_left = book.bids.count + book.asks.count
        self.ev.kind = EVENT_BOOK_LEVEL
        self.ev.seq = st.book.update_id
        for is_ask in range(2):
            side = &book.asks if is_ask else &book.bids
            for k in range(side.count - 1, -1, -1):     # best first
                n_left -= 1
                self.ev.price = side.price[k]
                self.ev.qty = side.qty[k]
                self.ev.flags = FLAG_SNAPSHOT | (FLAG_ASK_SIDE if is_ask else 0) | (FLAG_LAST_IN_BATCH if n_left == 0 else 0)
                self.publish()
        if self.board is not None:
            board_publish(&self.board.ring, self.board.slot_index(st.instrument_id), book,
                          st.book.update_id, 0, BOARD_SYNCED)
        self.publish_bbo_if_moved(st)

    cdef int publish_changes(self, SymbolState st, uint64_t first_id, uint64_t last_id,
                             uint64_t prev_id, int extra_flags) except -1:
        cdef BookSync sync = st.book
        cdef Py_ssize_t i, n = sync.n_changes
        self.ev.kind = EVENT_BOOK_LEVEL
        self.ev.seq = last_id
        self.ev.body.book.first_update_id = first_id
        self.ev.body.book.prev_update_id = prev_id
        for i in range(n):
            self.ev.price = sync.levels[i].price
            self.ev.qty = sync.levels[i].qty
            self.ev.flags = extra_flags | (FLAG_ASK_SIDE if sync.levels[i].is_ask else 0) | (FLAG_LAST_IN_BATCH if i == n - 1 else 0)
            self.publish()
        if n and self.board is not None:
            board_publish(&self.board.ring, self.board.slot_index(st.instrument_id), sync.book,
                          last_id, self.ev.ts_exchange, BOARD_SYNCED)
        if n:
            self.publish_bbo_if_moved(st)
        return 0

    cdef int publish_bbo_if_moved(self, SymbolState st) except -1:
        cdef OrderBook book = st.book.book
        cdef int64_t bb = 0, bq = 0, ba = 0, aq = 0
        if book.bids.count:
            bb = book.bids.price[book.bids.count - 1]
            bq = book.bids.qty[book.bids.count - 1]
        if book.asks.count:
            ba = book.asks.price[book.asks.count - 1]
            aq = book.asks.qty[book.asks.count - 1]
        if bb == st.best_bid and bq == st.best_bid_qty and ba == st.best_ask and aq == st.best_ask_qty:
            return 0
        st.best_bid, st.best_bid_qty, st.best_ask, st.best_ask_qty = bb, bq, ba, aq
        self.ev.kind = EVENT_BBO
        self.ev.seq = st.book.update_id
        self.ev.price = bb
        self.ev.qty = bq
        self.ev.body.bbo.ask_price = ba
        self.ev.body.bbo.ask_qty = aq
        self.ev.flags = FLAG_FROM_BOOK | FLAG_LAST_IN_BATCH
        self.publish()
        return 0

    def book(self, str symbol):
        """The kept OrderBook of a symbol (for tools and tests; the board is for other processes)."""
        return (<SymbolState>self.symbols[symbol]).book.book

    def book_sync(self, str symbol):
        return (<SymbolState>self.symbols[symbol]).book
