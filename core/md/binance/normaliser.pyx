"""Binance spot / USDT-M stream frames to MarketEvents; see normaliser.pxd.

Every frame is counted; a frame that cannot be used is dropped whole and counted by reason,
never half-published. Prices and quantities go from the venue's strings to int64 fixed
point at the instrument's precision without a float (fixed_point.pxd).
"""
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset, memcmp
from libc.stdlib cimport calloc, free
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport PyObject
from cpython.unicode cimport PyUnicode_AsUTF8AndSize

from collections import deque

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
from ttquant.core.md.fixed_point cimport parse_fixed, parse_fixed_quoted, FIXED_OK, FIXED_NEGATIVE
from ttquant.core.telemetry.telemetry cimport ttq_hist_observe, TELEMETRY_VALUES
from ttquant.core.md.binance.frame_scan cimport (
    frame_scan, scan_value, scan_frame, SCAN_OK, V_NONE, V_STRING, V_INT, V_BOOL,
    V_LEVELS, F_e, F_E, F_s, F_t, F_a, F_f, F_l, F_p, F_q, F_T, F_m, F_u, F_U, F_pu, F_b, F_B,
    F_A, F_X,
)
from ttquant.core.md.binance.book_sync cimport (
    BookSync, level_update, RULE_SPOT, RULE_FUTURES, DIFF_APPLIED, DIFF_BUFFERED, DIFF_STALE, DIFF_GAP,
    DIFF_SNAPSHOT_MISMATCH, SNAPSHOT_SYNCED, SNAPSHOT_LOADED,
)

from ttquant.core.records import FUNDING_RATE_PRECISION
from ttquant.core.instruments import MarketType

__all__ = ["BinanceNormaliser", "COUNTER_NAMES", "TELEMETRY_NAMES", "SPOT", "USDM"]

SPOT, USDM = "spot", "usdm"
COUNTER_NAMES = (
    "frames", "trades", "agg_trades", "book_tickers", "depth_updates", "klines", "mark_prices",
    "control", "events_published",
    "drop_oversized", "drop_malformed_json", "drop_unknown_shape", "drop_unknown_stream",
    "drop_unknown_symbol", "drop_missing_field", "drop_bad_type", "drop_bad_number",
    "drop_negative", "drop_bad_level", "ignored_non_market_trade",
    "book_buffered", "book_stale", "book_gaps", "book_snapshots", "book_snapshot_rejected",
    "fast_path", "duplicates", "overlap_held",
)
assert len(COUNTER_NAMES) == C_COUNTER_COUNT
_TYPES = {"trades": "trade", "agg_trades": "agg_trade", "book_tickers": "book_ticker", "depth_updates": "depth",
          "klines": "kline", "mark_prices": "mark_price", "control": "control"}
_RENAMED = {"book_gaps": "gaps_total", "book_snapshots": "resyncs_total",
            "book_snapshot_rejected": "snapshots_rejected_total", "fast_path": "fast_path_frames_total",
            "ignored_non_market_trade": "ignored_total{reason=non_market_trade}"}
# the same counters as telemetry names (core/telemetry): ttq_md_messages_total{type=trade}, ...
TELEMETRY_NAMES = tuple(
    f"messages_total{{type={_TYPES[n]}}}" if n in _TYPES
    else f"dropped_total{{reason={n[5:]}}}" if n.startswith("drop_")
    else _RENAMED.get(n, n + "_total")
    for n in COUNTER_NAMES)
DEFAULT_MAX_FRAME_BYTES = 1 << 20
cdef enum:
    MS = 1_000_000
cdef int64_t MAX_MS = 9223372036854     # the last millisecond whose nanoseconds fit int64


class _Drop(Exception):
    """A frame that cannot be used: .counter says why."""
    def __init__(self, int counter):
        self.counter = counter


class _Hold(Exception):
    """A second connection's frame ahead of what the first has delivered: try it again later."""
    def __init__(self, SymbolState st, int stream, key):
        self.st, self.stream, self.key = st, stream, key


# the streams whose frames a second connection's may have to wait (SymbolState.held)
HOLD_TRADE, HOLD_AGG_TRADE, HOLD_TICKER, HOLD_DEPTH = range(4)


cdef inline object field(dict d, str key):
    cdef PyObject *p = PyDict_GetItem(d, key)
    if p == NULL:
        raise _Drop(C_DROP_MISSING_FIELD)
    return <object>p


cdef int64_t parse_str(str value, int precision, bint allow_negative) except? -1:
    cdef Py_ssize_t n
    cdef const char *s = PyUnicode_AsUTF8AndSize(value, &n)
    cdef int64_t out
    cdef int status = parse_fixed(s, n, precision, allow_negative, &out)
    if status != FIXED_OK:
        raise _Drop(C_DROP_NEGATIVE if status == FIXED_NEGATIVE else C_DROP_BAD_NUMBER)
    return out


cdef int64_t fixed(dict d, str key, int precision, bint allow_negative=False) except? -1:
    value = field(d, key)
    if type(value) is not str:
        raise _Drop(C_DROP_BAD_TYPE)
    return parse_str(value, precision, allow_negative)


cdef int64_t fixed_truncated(dict d, str key, int precision) except? -1:
    """A derived amount (a kline's quote volume: price x qty has more decimals than either):
    digits past the precision are cut off, not refused."""
    value = field(d, key)
    if type(value) is not str:
        raise _Drop(C_DROP_BAD_TYPE)
    whole, point, decimals = (<str>value).partition(".")
    if point and len(decimals) > precision:
        if not decimals.isdigit():
            raise _Drop(C_DROP_BAD_NUMBER)
        value = whole + "." + decimals[:precision] if precision else whole
    return parse_str(value, precision, False)


cdef int64_t price(dict d, str key, int precision) except? -1:
    cdef int64_t p = fixed(d, key, precision)
    if p == 0:
        raise _Drop(C_DROP_BAD_NUMBER)      # a zero price is never a market price
    return p


cdef int64_t trade_qty(dict d, str key, int precision) except? -1:
    cdef int64_t q = fixed(d, key, precision)
    if q == 0:
        raise _Drop(C_DROP_BAD_NUMBER)      # nothing changed hands: not a trade
    return q


cdef uint64_t integer(dict d, str key) except? 0xFFFFFFFFFFFFFFFF:
    value = field(d, key)
    if type(value) is not int:
        raise _Drop(C_DROP_BAD_TYPE)
    if value < 0:
        raise _Drop(C_DROP_NEGATIVE)
    return value


cdef int64_t ms_to_ns(dict d, str key) except? -1:
    cdef uint64_t ms = integer(d, key)
    if ms > <uint64_t>MAX_MS:
        raise _Drop(C_DROP_BAD_NUMBER)      # a time past the year 2262 is not a time
    return <int64_t>ms * MS


cdef inline uint64_t fnv1a(const char *s, Py_ssize_t n) noexcept:
    cdef uint64_t h = 0xcbf29ce484222325ULL
    cdef Py_ssize_t i
    for i in range(n):
        h = (h ^ <unsigned char>s[i]) * 0x100000001b3ULL
    return h | 1         # never 0: 0 marks an empty slot's hash


cdef inline bint is_str(const scan_value *v, const char *text, Py_ssize_t n) noexcept:
    return v.kind == V_STRING and v.len == n and memcmp(v.ptr, text, n) == 0


cdef inline bint get_int(const frame_scan *f, int i, int64_t *out) noexcept:
    if f.field[i].kind != V_INT:
        return False
    out[0] = f.field[i].integer
    return True


cdef inline bint get_qty(const frame_scan *f, int i, int precision, int64_t *out) noexcept:
    return (f.field[i].kind == V_STRING
            and parse_fixed(f.field[i].ptr, f.field[i].len, precision, False, out) == FIXED_OK)


cdef inline bint get_positive(const frame_scan *f, int i, int precision, int64_t *out) noexcept:
    """A price, or a trade's quantity: zero goes the orjson way, which drops it as a bad number."""
    return get_qty(f, i, precision, out) and out[0] > 0


cdef bint parse_levels_into(BookSync sync, const scan_value *levels, const char *end, Py_ssize_t at,
                            int pp, int qp, uint32_t is_ask) noexcept:
    """The pairs of a levels array the scan checked (closed, strings without escapes), each
    string parsed in the pass that finds its closing quote."""
    cdef const char *p = levels.ptr
    cdef level_update *level
    cdef Py_ssize_t k
    for k in range(levels.len):
        level = &sync.levels[at + k]
        while p[0] != b'"':
            p += 1
        if parse_fixed_quoted(p + 1, end, pp, &level.price, &p) != FIXED_OK or level.price <= 0:
            return False
        while p[0] != b'"':
            p += 1
        if parse_fixed_quoted(p + 1, end, qp, &level.qty, &p) != FIXED_OK:
            return False
        level.is_ask = is_ask
    return True


cdef class SymbolState:
    def __init__(self, instrument, int rule, bint with_book):
        self.symbol = instrument.symbol
        self.symbol_bytes = instrument.symbol.encode()
        self.instrument_id = instrument.instrument_id
        self.price_precision = instrument.price_precision
        self.qty_precision = instrument.size_precision
        self.book = BookSync(self.instrument_id, rule, self.price_precision, self.qty_precision) if with_book else None
        self.forget_ids()

    def forget_ids(self):
        """A fresh connection (not an overlapping one): ids start again from what it sends."""
        self.last_trade_id = self.last_agg_id = self.last_ticker_id = self.last_mark_ms = -1
        self.last_kline = {}
        self.held = {}


cdef class BinanceNormaliser:
    """Frames of one market (spot or usdm) into the tick ring and the book board."""

    def __init__(self, str market, instruments, BroadcastWriter ticks, BookBoardWriter board=None,
                 uint16_t venue_id=1, counters=None, Py_ssize_t max_frame_bytes=DEFAULT_MAX_FRAME_BYTES,
                 snapshot_needed=None, bint fast_path=True, latency_hist=None, bint with_books=True,
                 Py_ssize_t max_held=100_000):
        if market not in (SPOT, USDM):
            raise ValueError(f"market {market!r} is neither {SPOT!r} nor {USDM!r}")
        self.market = market
        self.rule = RULE_SPOT if market == SPOT else RULE_FUTURES
        wanted = MarketType.SPOT if market == SPOT else MarketType.LINEAR_PERPETUAL
        self.symbols = {i.symbol: SymbolState(i, self.rule, with_books)
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
        if latency_hist is None:
            latency_hist = np.zeros(TELEMETRY_VALUES, np.uint64)
        if (latency_hist.dtype != np.uint64 or latency_hist.shape[0] < TELEMETRY_VALUES
                or not latency_hist.flags.c_contiguous):
            raise ValueError(f"latency_hist must be a telemetry histogram: contiguous uint64[{TELEMETRY_VALUES}]")
        self.latency_hist = latency_hist
        cdef uint64_t[::1] hview = latency_hist
        self.hist = &hview[0]
        self.max_frame_bytes = max_frame_bytes
        self.snapshot_needed = snapshot_needed
        self.fast_path_enabled = fast_path
        self.held_frames = 0
        self.holding = set()
        self.max_held = max_held
        cdef uint64_t cap = 16
        while cap < 2 * len(self.symbols):
            cap *= 2
        self.sym_hash = <uint64_t *>calloc(cap, sizeof(uint64_t))
        self.sym_state = <void **>calloc(cap, sizeof(void *))
        if self.sym_hash == NULL or self.sym_state == NULL:
            raise MemoryError()
        self.sym_mask = cap - 1
        cdef uint64_t h, slot
        cdef SymbolState st
        for st in self.symbols.values():
            h = fnv1a(st.symbol_bytes, len(st.symbol_bytes))
            slot = h & self.sym_mask
            while self.sym_state[slot] != NULL:
                slot = (slot + 1) & self.sym_mask
            self.sym_hash[slot] = h
            self.sym_state[slot] = <void *>st

    def __dealloc__(self):
        free(self.sym_hash)
        free(self.sym_state)

    cdef SymbolState find_symbol(self, const char *s, Py_ssize_t n):
        cdef uint64_t h = fnv1a(s, n)
        cdef uint64_t i = h & self.sym_mask
        cdef SymbolState st
        while self.sym_state[i] != NULL:
            if self.sym_hash[i] == h:
                st = <SymbolState>self.sym_state[i]
                if len(st.symbol_bytes) == n and memcmp(<const char *>st.symbol_bytes, s, n) == 0:
                    return st
            i = (i + 1) & self.sym_mask
        return None

    cdef int fast_frame(self, int64_t ts_recv, const char *frame_end) except -1:
        """Publish a hot frame straight from the scan: 1 if done, 0 to take the orjson path.
        Nothing is counted or published before every field has been read successfully."""
        cdef frame_scan *f = &self.scan
        cdef scan_value *e = &f.field[F_e]
        cdef scan_value *sym = &f.field[F_s]
        if sym.kind != V_STRING:
            return 0
        if self.secondary:
            return 0            # a rollover's second connection: the careful way (held frames)
        cdef SymbolState st = self.find_symbol(sym.ptr, sym.len)
        if st is None:
            return 0
        cdef int pp = st.price_precision, qp = st.qty_precision
        cdef ttq_market_event *ev = &self.ev
        memset(ev, 0, sizeof(ttq_market_event))
        ev.ts_recv = ts_recv
        ev.instrument_id = st.instrument_id
        ev.venue_id = self.venue_id
        cdef int which           # 1 trade, 2 aggTrade, 3 bookTicker, 4 depthUpdate
        if e.kind == V_NONE:
            which = 3
        elif e.kind != V_STRING:
            return 0
        elif e.len == 5 and memcmp(e.ptr, b"trade", 5) == 0:
            which = 1
        elif e.len == 8 and memcmp(e.ptr, b"aggTrade", 8) == 0:
            which = 2
        elif e.len == 10 and memcmp(e.ptr, b"bookTicker", 10) == 0:
            which = 3
        elif e.len == 11 and memcmp(e.ptr, b"depthUpdate", 11) == 0:
            which = 4
        else:
            return 0
        if which == 1 or which == 2:
            if not (get_int(f, F_T, &ev.ts_exchange) and get_positive(f, F_p, pp, &ev.price)
                    and get_positive(f, F_q, qp, &ev.qty) and f.field[F_m].kind == V_BOOL):
                return 0
            if ev.ts_exchange > MAX_MS:
                return 0
            ev.ts_exchange *= MS
            if which == 1:
                if not get_int(f, F_t, <int64_t *>&ev.seq):
                    return 0
                if f.field[F_X].kind != V_NONE and not is_str(&f.field[F_X], b"MARKET", 6):
                    return 0
                ev.body.trade.first_trade_id = ev.body.trade.last_trade_id = ev.seq
                ev.flags = FLAG_LAST_IN_BATCH
                self.count[C_TRADES] += 1
                if <int64_t>ev.seq <= st.last_trade_id:
                    self.count[C_DUPLICATES] += 1
                    return 1
                st.last_trade_id = <int64_t>ev.seq
            else:
                if not (f.field[F_a].kind == V_INT and get_int(f, F_f, <int64_t *>&ev.body.trade.first_trade_id)
                        and get_int(f, F_l, <int64_t *>&ev.body.trade.last_trade_id)):
                    return 0
                ev.seq = <uint64_t>f.field[F_a].integer
                ev.flags = FLAG_LAST_IN_BATCH | FLAG_AGGREGATED
                self.count[C_AGG_TRADES] += 1
                if <int64_t>ev.seq <= st.last_agg_id:
                    self.count[C_DUPLICATES] += 1
                    return 1
                st.last_agg_id = <int64_t>ev.seq
            if not f.field[F_m].integer:
                ev.flags |= FLAG_BUYER_AGGRESSOR
            ev.kind = EVENT_TRADE
            self.publish()
            return 1
        if which == 3:
            if not (f.field[F_a].kind == V_STRING and get_int(f, F_u, <int64_t *>&ev.seq)
                    and get_positive(f, F_b, pp, &ev.price) and get_qty(f, F_B, qp, &ev.qty)
                    and get_positive(f, F_a, pp, &ev.body.bbo.ask_price)
                    and get_qty(f, F_A, qp, &ev.body.bbo.ask_qty)):
                return 0
            if f.field[F_T].kind == V_INT and f.field[F_T].integer <= MAX_MS:
                ev.ts_exchange = f.field[F_T].integer * MS
            elif f.field[F_T].kind == V_NONE and f.field[F_E].kind == V_INT and f.field[F_E].integer <= MAX_MS:
                ev.ts_exchange = f.field[F_E].integer * MS
            elif f.field[F_T].kind != V_NONE or f.field[F_E].kind != V_NONE:
                return 0
            ev.kind = EVENT_BBO
            ev.flags = FLAG_LAST_IN_BATCH
            self.count[C_BOOK_TICKERS] += 1
            if <int64_t>ev.seq <= st.last_ticker_id:
                self.count[C_DUPLICATES] += 1
                return 1
            st.last_ticker_id = <int64_t>ev.seq
            self.publish()
            return 1
        # depthUpdate: only a diff that applies cleanly; buffering, gaps and stale go the slow way
        cdef int64_t first_id, last_id, prev_id = 0, event_ms
        if not (get_int(f, F_U, &first_id) and get_int(f, F_u, &last_id) and get_int(f, F_E, &event_ms)
                and event_ms <= MAX_MS and f.field[F_b].kind == V_LEVELS and f.field[F_a].kind == V_LEVELS):
            return 0
        if self.rule == RULE_FUTURES and not get_int(f, F_pu, &prev_id):
            return 0
        cdef BookSync sync = st.book
        if sync is None or not sync.verified:
            return 0
        cdef int verdict = sync.check_diff(first_id, last_id, prev_id)
        if verdict == DIFF_STALE:           # a copy from the other connection of a rollover
            self.count[C_DEPTH_UPDATES] += 1
            self.count[C_BOOK_STALE] += 1
            sync.stale += 1
            return 1
        if verdict != DIFF_APPLIED:
            return 0
        cdef Py_ssize_t nb = f.field[F_b].len, na = f.field[F_a].len
        sync.ensure_levels(nb + na)
        if not (parse_levels_into(sync, &f.field[F_b], frame_end, 0, pp, qp, 0)
                and parse_levels_into(sync, &f.field[F_a], frame_end, nb, pp, qp, 1)):
            return 0
        sync.apply_diff(last_id, nb + na)
        self.count[C_DEPTH_UPDATES] += 1
        ev.ts_exchange = event_ms * MS
        self.publish_changes(st, first_id, last_id, prev_id, 0)
        return 1

    def counter_dict(self):
        return {name: int(self.counters[i]) for i, name in enumerate(COUNTER_NAMES)}

    cdef int publish(self) except -1:
        self.ev.ts_pub = ttq_now_ns()
        return self.publish_stamped()

    cdef int publish_stamped(self) except -1:
        """Publish self.ev with the ts_pub already in it."""
        broadcast_push(&self.ticks.ring, &self.ticks._position, &self.ev)
        self.count[C_EVENTS_PUBLISHED] += 1
        cdef int64_t waited = self.ev.ts_pub - self.ev.ts_recv
        # one sample per venue message: its last event is when the whole frame is in the ring
        if self.ev.flags & FLAG_LAST_IN_BATCH and self.ev.ts_recv > 0 and waited > 0:
            ttq_hist_observe(self.hist, <uint64_t>waited)
        return 0

    cpdef int on_frame(self, bytes payload, int64_t ts_recv, bint secondary=False) except -1:
        """One WebSocket text frame as received; returns how many events it published.
        secondary: it came from the second connection of a rollover (DESIGN.md §4): what that
        one delivers first is published, what both deliver goes out once, and what it runs
        ahead with waits until the first connection has delivered everything before it."""
        cdef uint64_t published = self.count[C_EVENTS_PUBLISHED]
        self.count[C_FRAMES] += 1
        if len(payload) > self.max_frame_bytes:
            self.count[C_DROP_OVERSIZED] += 1
            return 0
        self.secondary = secondary
        self.handle(payload, ts_recv)
        self.secondary = False
        if self.held_frames:
            if self.held_frames > self.max_held:
                self.end_overlap(True)          # the first connection has stopped delivering
            else:
                self.drain_held()
        return <int>(self.count[C_EVENTS_PUBLISHED] - published)

    cdef int handle(self, bytes payload, int64_t ts_recv) except -1:
        if self.fast_path_enabled and scan_frame(payload, len(payload), &self.scan) == SCAN_OK:
            if self.fast_frame(ts_recv, <const char *>payload + len(payload)):
                self.count[C_FAST_PATH] += 1
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
        except _Hold as hold:
            st = <SymbolState>hold.st
            queue = st.held.get(hold.stream)
            if queue is None:
                queue = st.held[hold.stream] = deque()
            queue.append((hold.key, payload, ts_recv))
            self.holding.add(st)
            self.held_frames += 1
            self.count[C_OVERLAP_HELD] += 1
        return 0

    cdef int drain_held(self) except -1:
        """Release the held frames that the first connection has caught up with."""
        if self.draining:
            return 0
        self.begin_replay()
        self.secondary = True
        try:
            for st in list(self.holding):
                self.drain_symbol(<SymbolState>st)
        finally:
            self.secondary = False
            self.end_replay()
        return 0

    cdef void begin_replay(self) noexcept:
        """Held frames are handled again: they were counted as received when they came, so the
        received-message counters are put back afterwards (end_replay)."""
        cdef int i
        for i in range(C_EVENTS_PUBLISHED):
            self.replay_saved[i] = self.count[i]
        self.replay_saved[C_FAST_PATH] = self.count[C_FAST_PATH]
        self.draining = True

    cdef void end_replay(self) noexcept:
        cdef int i
        for i in range(C_EVENTS_PUBLISHED):
            self.count[i] = self.replay_saved[i]
        self.count[C_FAST_PATH] = self.replay_saved[C_FAST_PATH]
        self.draining = False

    cdef int drain_symbol(self, SymbolState st) except -1:
        cdef BookSync sync = st.book
        cdef int64_t last
        cdef Py_ssize_t left = 0
        for stream, queue in st.held.items():
            while queue:
                key, payload, ts_recv = queue[0]
                if stream == HOLD_DEPTH:
                    if sync.synced and sync.check_diff(key[0], key[1], key[2]) == DIFF_GAP:
                        break
                else:
                    last = st.last_trade_id if stream == HOLD_TRADE else \
                        st.last_agg_id if stream == HOLD_AGG_TRADE else st.last_ticker_id
                    if key <= last:
                        self.count[C_DUPLICATES] += 1       # the first connection delivered it
                        queue.popleft()
                        self.held_frames -= 1
                        continue
                    # a ticker is published only from the first connection while it is up
                    if stream == HOLD_TICKER or key > last + 1:
                        break
                queue.popleft()
                self.held_frames -= 1
                self.handle(payload, ts_recv)     # it follows on now: as if it came from the first
            left += len(queue)
        if not left:
            self.holding.discard(st)
        return 0

    def end_overlap(self, bint promoted):
        """The rollover is over. promoted: the second connection is now the only one, so its
        held frames go out in order (a hole left now is a real one: books resync); otherwise
        it went away and the first one delivers everything itself. Returns the events published."""
        cdef uint64_t published = self.count[C_EVENTS_PUBLISHED]
        holding, self.holding = self.holding, set()
        self.held_frames = 0
        if not promoted:
            for st in holding:
                (<SymbolState>st).held = {}
            return 0
        self.secondary = False
        self.begin_replay()
        try:
            for st in holding:
                held, (<SymbolState>st).held = (<SymbolState>st).held, {}
                for queue in held.values():
                    for _, payload, ts_recv in queue:
                        self.handle(payload, ts_recv)
        finally:
            self.end_replay()
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
        cdef int64_t *last
        if aggregated:
            self.count[C_AGG_TRADES] += 1
            trade_id = integer(data, "a")
            last = &st.last_agg_id
            self.ev.body.trade.first_trade_id = integer(data, "f")
            self.ev.body.trade.last_trade_id = integer(data, "l")
            self.ev.flags = FLAG_AGGREGATED
        else:
            self.count[C_TRADES] += 1
            trade_id = integer(data, "t")
            last = &st.last_trade_id
            self.ev.body.trade.first_trade_id = self.ev.body.trade.last_trade_id = trade_id

        self.ev.kind = EVENT_TRADE
        self.ev.seq = trade_id
        self.ev.price = price(data, "p", st.price_precision)
        self.ev.qty = trade_qty(data, "q", st.qty_precision)
        buyer_is_maker = field(data, "m")
        if type(buyer_is_maker) is not bool:
            raise _Drop(C_DROP_BAD_TYPE)
        if not buyer_is_maker:
            self.ev.flags |= FLAG_BUYER_AGGRESSOR
        self.ev.ts_exchange = ms_to_ns(data, "T")
        self.ev.flags |= FLAG_LAST_IN_BATCH
        # trade ids run without a hole: one a second connection has skipped to must wait
        if <int64_t>trade_id <= last[0]:
            raise _Drop(C_DUPLICATES)
        cdef int stream = HOLD_AGG_TRADE if aggregated else HOLD_TRADE
        if self.secondary and last[0] >= 0 and (<int64_t>trade_id > last[0] + 1 or st.held.get(stream)):
            raise _Hold(st, stream, <int64_t>trade_id)
        last[0] = <int64_t>trade_id
        if not aggregated:
            x = PyDict_GetItem(data, "X")
            if x != NULL and <object>x != "MARKET":
                raise _Drop(C_IGNORED_NON_MARKET_TRADE)     # not on the book, but its id is taken
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
        if <int64_t>self.ev.seq <= st.last_ticker_id:
            raise _Drop(C_DUPLICATES)
        if self.secondary and st.last_ticker_id >= 0:
            raise _Hold(st, HOLD_TICKER, <int64_t>self.ev.seq)    # ticker ids have holes: wait for the first
        st.last_ticker_id = <int64_t>self.ev.seq
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
        self.ev.body.kline.quote_volume = fixed_truncated(k, "q", st.price_precision)
        self.ev.body.kline.trade_count = integer(k, "n")
        self.ev.body.kline.open_time_ns = ms_to_ns(k, "t")
        self.ev.body.kline.close_time_ns = ms_to_ns(k, "T")
        self.ev.ts_exchange = ms_to_ns(data, "E")
        closed = field(k, "x")
        if type(closed) is not bool:
            raise _Drop(C_DROP_BAD_TYPE)
        self.ev.flags = FLAG_LAST_IN_BATCH | (FLAG_CLOSED if closed else 0)
        interval = k["T"] - k["t"]
        stamp = (k["t"], data["E"])
        last = st.last_kline.get(interval)
        if last is not None and stamp <= last:
            raise _Drop(C_DUPLICATES)
        st.last_kline[interval] = stamp
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
        if <int64_t>self.ev.seq <= st.last_mark_ms:
            raise _Drop(C_DUPLICATES)
        st.last_mark_ms = <int64_t>self.ev.seq
        self.publish()

    cdef int on_depth(self, SymbolState st, dict data) except -1:
        cdef BookSync sync = st.book
        if sync is None:
            raise _Drop(C_DROP_UNKNOWN_STREAM)     # depth for a market configured without books
        cdef uint64_t first_id = integer(data, "U")
        cdef uint64_t last_id = integer(data, "u")
        cdef uint64_t prev_id = integer(data, "pu") if self.rule == RULE_FUTURES else 0
        bids, asks = field(data, "b"), field(data, "a")
        if type(bids) is not list or type(asks) is not list:
            raise _Drop(C_DROP_BAD_TYPE)
        cdef bint was_verified = sync.verified
        cdef int64_t ts_recv = self.ev.ts_recv
        if self.secondary and sync.synced and (st.held.get(HOLD_DEPTH) or
                                               sync.check_diff(first_id, last_id, prev_id) == DIFF_GAP):
            raise _Hold(st, HOLD_DEPTH, (first_id, last_id, prev_id))   # the ids before it are still to come
        cdef int result = sync.on_diff_c(first_id, last_id, prev_id, bids, asks)
        if result == DIFF_APPLIED and not was_verified:
            self._announce_book(st, ts_recv)    # this diff proved the snapshot: now strategies see it
        elif result == DIFF_APPLIED:
            self.ev.ts_exchange = ms_to_ns(data, "E")
            self.publish_changes(st, first_id, last_id, prev_id, 0)
        elif result == DIFF_BUFFERED:
            self.count[C_BOOK_BUFFERED] += 1
        elif result == DIFF_STALE:
            self.count[C_BOOK_STALE] += 1
        elif result == DIFF_GAP:
            self.count[C_BOOK_GAPS] += 1
            self._book_lost(st, last_id)
        elif result == DIFF_SNAPSHOT_MISMATCH:
            self.count[C_BOOK_SNAPSHOT_REJECTED] += 1
            if self.snapshot_needed is not None:
                self.snapshot_needed(st.symbol)
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

    def restart_books(self):
        """A new connection: every book starts again from a snapshot. Publishes BOOK_RESET,
        marks the board, and asks for each snapshot (snapshot_needed). Ids start afresh too."""
        cdef SymbolState st
        self.end_overlap(False)
        for st in self.symbols.values():
            st.forget_ids()
            if st.book is not None:
                st.book.restart()
                self._book_lost(st, 0)

    def books_in_sync(self):
        """(books in sync, books kept)."""
        cdef SymbolState st
        books = [st.book for st in self.symbols.values() if st.book is not None]
        return sum(1 for b in books if b.verified), len(books)

    def on_snapshot(self, str symbol, bytes body, int64_t ts_recv=0):
        """A REST depth snapshot for symbol; returns True when the book is in sync."""
        st = <SymbolState>self.symbols[symbol]
        if st.book is None:
            raise ValueError(f"{symbol}: this normaliser keeps no books")
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
        if result == SNAPSHOT_LOADED:
            self.count[C_BOOK_SNAPSHOTS] += 1
            return True         # the next diff proves it (then it is published) or asks for another
        if result != SNAPSHOT_SYNCED:
            self.count[C_BOOK_SNAPSHOT_REJECTED] += 1
            return False
        self.count[C_BOOK_SNAPSHOTS] += 1
        self._announce_book(st, ts_recv)
        return True

    def _announce_book(self, SymbolState st, int64_t ts_recv):
        """Strategies rebuild from here: a reset, then every level of the verified book."""
        cdef BookSync sync = st.book
        memset(&self.ev, 0, sizeof(self.ev))
        self.ev.kind = EVENT_BOOK_RESET
        self.ev.instrument_id = st.instrument_id
        self.ev.venue_id = self.venue_id
        self.ev.ts_recv = ts_recv
        self.ev.seq = sync.update_id
        self.publish()
        self._publish_whole_book(st, ts_recv)

    def _publish_whole_book(self, SymbolState st, int64_t ts_recv):
        cdef OrderBook book = st.book.book
        cdef book_side *side
        cdef Py_ssize_t k
        cdef int is_ask
        cdef uint64_t n_left = book.bids.live + book.asks.live
        self.ev.kind = EVENT_BOOK_LEVEL
        self.ev.seq = st.book.update_id
        for is_ask in range(2):
            side = &book.asks if is_ask else &book.bids
            for k in range(side.count - 1, -1, -1):     # best first
                if side.qty[k] == 0:
                    continue                            # a removed level's entry
                n_left -= 1
                self.ev.price = side.price[k]
                self.ev.qty = side.qty[k]
                self.ev.flags = (FLAG_SNAPSHOT | (FLAG_ASK_SIDE if is_ask else 0)
                                 | (FLAG_LAST_IN_BATCH if n_left == 0 else 0))
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
        # one clock read for the diff's levels (they reach the ring within ~1 µs of it; each
        # read is ~10% of a depth frame); the last one is stamped when it is really in
        self.ev.ts_pub = ttq_now_ns()
        for i in range(n):
            self.ev.price = sync.levels[i].price
            self.ev.qty = sync.levels[i].qty
            self.ev.flags = extra_flags | (FLAG_ASK_SIDE if sync.levels[i].is_ask else 0)
            if i == n - 1:
                self.ev.flags |= FLAG_LAST_IN_BATCH
                self.publish()
            else:
                self.publish_stamped()
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
