# Binance combined-stream frames -> MarketEvents in the tick ring, books kept, board updated.
#
# The only place that knows Binance's field names (DESIGN.md §4). One normaliser per market
# (spot or USDT-M), owned by the thread that reads that market's WebSocket.
from libc.stdint cimport int64_t, uint16_t, uint32_t, uint64_t
from ttquant.core.records cimport ttq_market_event
from ttquant.core.rings.broadcast cimport BroadcastWriter
from ttquant.core.book.book_board cimport BookBoardWriter
from ttquant.core.md.binance.book_sync cimport BookSync
from ttquant.core.md.binance.frame_scan cimport frame_scan

# Counters by index; COUNTER_NAMES in normaliser.pyx names them in this order.
cdef enum:                      # md counter indexes
    C_FRAMES = 0
    C_TRADES
    C_AGG_TRADES
    C_BOOK_TICKERS
    C_DEPTH_UPDATES
    C_KLINES
    C_MARK_PRICES
    C_CONTROL                   # subscribe replies and other non-stream messages
    C_EVENTS_PUBLISHED
    C_DROP_OVERSIZED
    C_DROP_MALFORMED_JSON
    C_DROP_UNKNOWN_SHAPE        # valid JSON that is not a stream frame or a reply
    C_DROP_UNKNOWN_STREAM       # an event type this normaliser does not know
    C_DROP_UNKNOWN_SYMBOL       # not in the instrument table: never published
    C_DROP_MISSING_FIELD
    C_DROP_BAD_TYPE             # a field of the wrong JSON type
    C_DROP_BAD_NUMBER           # not a decimal at the instrument's precision; a zero price or trade qty
    C_DROP_NEGATIVE
    C_DROP_BAD_LEVEL            # a depth level that is not [price, qty] strings
    C_IGNORED_NON_MARKET_TRADE  # futures trades that are not on the book (insurance fund, ADL)
    C_BOOK_BUFFERED
    C_BOOK_STALE
    C_BOOK_GAPS
    C_BOOK_SNAPSHOTS
    C_BOOK_SNAPSHOT_REJECTED    # too old, gap on replay or bad levels: another one is fetched
    C_FAST_PATH                 # frames handled by the scanner without Python objects
    C_DUPLICATES                # a trade / ticker / kline / mark already published (connection overlap)
    C_OVERLAP_HELD              # a second connection's frame ahead of the stream, held until it fits
    C_COUNTER_COUNT


cdef class SymbolState:
    cdef readonly str symbol
    cdef bytes symbol_bytes
    cdef readonly uint32_t instrument_id
    cdef readonly int price_precision
    cdef readonly int qty_precision
    cdef readonly BookSync book         # None for a symbol without a depth stream yet
    cdef int64_t best_bid, best_bid_qty, best_ask, best_ask_qty
    # the last id published per stream: what a second connection delivers again is dropped
    cdef int64_t last_trade_id, last_agg_id, last_ticker_id, last_mark_ms
    cdef dict last_kline            # kline interval ms -> (open time ms, event time ms)
    cdef dict held                  # HOLD_* -> deque of (id, payload, ts_recv) from a second connection


cdef class BinanceNormaliser:
    cdef readonly str market
    cdef readonly uint16_t venue_id
    cdef readonly dict symbols          # venue symbol -> SymbolState
    cdef BroadcastWriter ticks
    cdef BookBoardWriter board
    cdef readonly object counters       # numpy uint64[C_COUNTER_COUNT], maybe in shared memory
    cdef uint64_t *count
    cdef readonly object latency_hist   # telemetry histogram (core/telemetry) of ts_recv -> ts_pub ns
    cdef uint64_t *hist
    cdef readonly Py_ssize_t max_frame_bytes
    cdef readonly object snapshot_needed    # callable(symbol), or None
    cdef int rule
    cdef ttq_market_event ev
    cdef frame_scan scan
    cdef bint fast_path_enabled
    # rollover: frames of the second connection that run ahead of the first wait here
    cdef bint secondary                 # the frame being handled came from the second connection
    cdef bint draining                  # held frames are being handled again (replay)
    cdef uint64_t replay_saved[C_COUNTER_COUNT]     # the received-message counters before it
    cdef readonly Py_ssize_t held_frames
    cdef set holding                    # SymbolStates with held frames
    cdef readonly Py_ssize_t max_held
    # symbol lookup without a str: open addressing on FNV-1a of the symbol bytes
    cdef uint64_t *sym_hash
    cdef void **sym_state               # borrowed SymbolState; self.symbols keeps them alive
    cdef uint64_t sym_mask

    cpdef int on_frame(self, bytes payload, int64_t ts_recv, bint secondary=*) except -1
    cdef int handle(self, bytes payload, int64_t ts_recv) except -1
    cdef int drain_held(self) except -1
    cdef int drain_symbol(self, SymbolState st) except -1
    cdef void begin_replay(self) noexcept
    cdef void end_replay(self) noexcept
    cdef int publish(self) except -1
    cdef int publish_stamped(self) except -1
    cdef int on_depth(self, SymbolState st, dict data) except -1
    cdef int publish_changes(self, SymbolState st, uint64_t first_id, uint64_t last_id,
                             uint64_t prev_id, int extra_flags) except -1
    cdef int publish_bbo_if_moved(self, SymbolState st) except -1
    cdef SymbolState find_symbol(self, const char *s, Py_ssize_t n)
    cdef int fast_frame(self, int64_t ts_recv, const char *frame_end) except -1
