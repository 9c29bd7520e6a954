# The records that cross process boundaries, declared once (DESIGN.md §3).
#
# Prices and quantities are int64 fixed point at the instrument's precision
# (price_raw = round(price * 10**price_precision)); timestamps are int64 ns, CLOCK_REALTIME.
# Every field is explicit, padding included, so the C compiler, numpy (records.pyx dtypes)
# and the journal files agree byte for byte; tests/core/test_records.py checks every offset.
#
# MarketEvent (120 bytes, one 128-byte ring slot with its stamp):
#
#    0 ts_exchange   8 ts_recv   16 ts_pub   24 seq
#   32 instrument_id(u32) 36 venue_id(u16) 38 kind(u8) 39 flags(u8)
#   40 price        48 qty
#   56 .. 120  body, by kind:
#       trade      56 first_trade_id   64 last_trade_id                      (aggTrade range)
#       bbo        56 ask_price        64 ask_qty                            (price/qty = bid)
#       book       56 first_update_id  64 prev_update_id                     (seq = last id)
#       kline      56 open  64 high  72 low  80 quote_volume  88 trade_count 96 open_time_ns
#                  104 close_time_ns                                      (price/qty = close/volume)
#       mark       56 index_price  64 funding_rate  72 next_funding_ns  80 settle_price
#
# Order (56 bytes, one 64-byte slot) and ExecReport (120 bytes, one 128-byte slot) below.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

cdef enum ttq_record_type:
    RECORD_MARKET_EVENT = 1
    RECORD_ORDER = 2
    RECORD_EXEC_REPORT = 3
    RECORD_BOOK_TOP = 4             # core/book/book_board.pxd
    # 5 was md's positional counters (md_stats), retired for telemetry
    RECORD_TELEMETRY = 6            # core/telemetry/telemetry.pxd: one group of a process's telemetry

# MarketEvent.kind and .flags (records.pyx: EventKind, EventFlag)
cdef enum event_kind:
    EVENT_TRADE = 1
    EVENT_BBO = 2
    EVENT_BOOK_LEVEL = 3
    EVENT_BOOK_RESET = 4
    EVENT_KLINE = 5
    EVENT_MARK = 6

cdef enum event_flag:
    FLAG_BUYER_AGGRESSOR = 1
    FLAG_ASK_SIDE = 2
    FLAG_SNAPSHOT = 4
    FLAG_LAST_IN_BATCH = 8
    FLAG_AGGREGATED = 16
    FLAG_CLOSED = 32
    FLAG_FROM_BOOK = 64

# Order.action / .side / .order_type, ExecReport.status / .liquidity / .reject_code
# (records.pyx: OrderAction, Side, OrderType, OrderStatus, Liquidity, RejectCode)
cdef enum order_action:
    ACTION_NEW = 1
    ACTION_CANCEL = 2
    ACTION_AMEND = 3
    ACTION_CANCEL_ALL = 4
    ACTION_SYNC = 5                 # "what do you hold for me": positions and open orders, on the exec ring

cdef enum order_side:
    SIDE_BUY = 1
    SIDE_SELL = 2

cdef enum order_type:
    TYPE_LIMIT = 1
    TYPE_MARKET = 2
    TYPE_IOC = 3
    TYPE_FOK = 4
    TYPE_POST_ONLY = 5

cdef enum order_status:
    STATUS_NEW = 1
    STATUS_ACCEPTED = 2
    STATUS_PARTIALLY_FILLED = 3
    STATUS_FILLED = 4
    STATUS_CANCELED = 5
    STATUS_REJECTED = 6
    STATUS_EXPIRED = 7
    STATUS_POSITION = 8             # SYNC's answer, one per instrument: a position, not an order (below)
    STATUS_SYNCED = 9               # SYNC's answer ends: client_order_id = the SYNC's (below)

cdef enum report_flag:
    REPORT_RESTATED = 1             # an open order's state sent again (SYNC), not a new event

cdef enum liquidity:
    LIQUIDITY_NONE = 0
    LIQUIDITY_MAKER = 1
    LIQUIDITY_TAKER = 2

# Stable reject codes (DESIGN.md §5): the thousands say which check refused.
cdef enum reject_code:
    REJECT_NONE = 0
    REJECT_ORDER_TOO_OLD = 1001
    REJECT_POSITION_LIMIT = 2001
    REJECT_INSUFFICIENT_FUNDS = 2002
    REJECT_RATE_LIMIT = 2003
    REJECT_MAX_OPEN_ORDERS = 2004
    REJECT_BAD_PRICE = 3001
    REJECT_BAD_QTY = 3002
    REJECT_FAT_FINGER = 3003
    REJECT_MAX_NOTIONAL = 3004
    REJECT_DUPLICATE_ORDER_ID = 4001
    REJECT_UNKNOWN_INSTRUMENT = 4002
    REJECT_UNKNOWN_ORDER = 4003
    REJECT_BAD_FIELD = 4004
    REJECT_REDUCE_ONLY = 4005
    REJECT_KILL_SWITCH = 5001
    REJECT_VENUE = 6001
    REJECT_VENUE_UNAVAILABLE = 6002


cdef struct ttq_trade_body:
    uint64_t first_trade_id
    uint64_t last_trade_id
    uint8_t _pad[48]

cdef struct ttq_bbo_body:
    int64_t ask_price
    int64_t ask_qty
    uint8_t _pad[48]

cdef struct ttq_book_body:
    uint64_t first_update_id
    uint64_t prev_update_id
    uint8_t _pad[48]

cdef struct ttq_kline_body:
    int64_t open
    int64_t high
    int64_t low
    int64_t quote_volume
    uint64_t trade_count
    int64_t open_time_ns
    int64_t close_time_ns
    uint8_t _pad[8]

cdef struct ttq_mark_body:
    int64_t index_price
    int64_t funding_rate            # fixed point at FUNDING_RATE_PRECISION
    int64_t next_funding_ns
    int64_t settle_price
    uint8_t _pad[32]

cdef union ttq_event_body:
    ttq_trade_body trade
    ttq_bbo_body bbo
    ttq_book_body book
    ttq_kline_body kline
    ttq_mark_body mark

cdef struct ttq_market_event:
    int64_t ts_exchange
    int64_t ts_recv
    int64_t ts_pub
    uint64_t seq                    # trade id, book update id (u), kline open time ms
    uint32_t instrument_id
    uint16_t venue_id
    uint8_t kind                    # EventKind
    uint8_t flags                   # EventFlag bits
    int64_t price                   # trade, best bid, book level, kline close, mark price
    int64_t qty                     # trade, best bid, book level (0 removes), kline volume
    ttq_event_body body


cdef struct ttq_order:
    int64_t ts_created
    uint64_t client_order_id        # unique per strategy, issued monotonically
    uint64_t target_order_id        # cancel / amend: the client order id acted on
    int64_t price
    int64_t qty
    uint32_t strategy_id
    uint32_t instrument_id
    uint8_t action                  # OrderAction
    uint8_t side                    # Side
    uint8_t order_type              # OrderType
    uint8_t reduce_only
    uint8_t _pad[4]


cdef struct ttq_exec_report:
    int64_t ts_exchange
    int64_t ts_recv
    int64_t ts_pub
    uint64_t client_order_id
    uint64_t venue_order_id
    uint32_t strategy_id
    uint32_t instrument_id
    int64_t price                   # the order's price
    int64_t qty                     # the order's quantity
    int64_t last_price              # this fill
    int64_t last_qty
    int64_t cum_qty
    int64_t leaves_qty
    int64_t fee                     # this fill's fee, fixed point at the instrument's fee precision
    uint16_t reject_code
    uint8_t status                  # OrderStatus
    uint8_t side
    uint8_t liquidity               # Liquidity (maker / taker)
    uint8_t order_type
    uint8_t flags                   # ReportFlag bits
    uint8_t _pad[1]
    uint64_t trade_id               # the venue's id of this fill (0: not a fill), so a fill counts once
#
# A strategy that starts sends an Order with action SYNC; the gateway answers on the exec ring,
# in this order and nothing of that strategy's in between:
#   POSITION  per instrument it has traded: qty = position (signed, size precision), cum_qty =
#             its cost basis, last_price = realised PnL net of fees, fee = fees, leaves_qty = fills
#             (the last four at max(price + size precision, 8): core/portfolio.py's _Book)
#   status of each open order, flags RESTATED: the order as the gateway's OMS has it now
#   SYNCED    qty = positions sent, cum_qty = orders sent, venue_order_id = the highest client
#             order id the gateway has seen from the strategy


# Python faces: one object per record, holding the struct inline.
cdef class MarketEvent:
    cdef ttq_market_event ev

cdef class Order:
    cdef ttq_order order

cdef class ExecReport:
    cdef ttq_exec_report report


cdef object new_record(uint32_t record_type, void **data)
cdef const void *record_data(object record, uint32_t record_type) except NULL
