# Pre-trade validation and risk, in the documented order, each refusal a stable reject code
# (DESIGN.md §5). One RiskEngine per gateway, used only by the gateway's order thread.
#
# Amounts: quantities are raw at the instrument's size precision; money (notional, balances,
# PnL) is raw at ACCOUNT_PRECISION decimals of its asset, whatever the instrument's precision,
# so limits and balances add up across instruments. Products are taken in 128 bits.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from ttquant.core.records cimport ttq_order, ttq_market_event

cdef enum:
    ACCOUNT_PRECISION = 8
    MAX_STRATEGIES = 64
    MAX_ASSETS = 64


cdef struct instrument_risk:
    # from the instrument table
    int64_t tick_size, step_size, min_qty, max_qty, min_price, max_price
    int64_t min_notional            # account precision
    int64_t notional_mul, notional_div      # price * qty * mul / div = notional at account precision
    int64_t qty_to_account          # qty raw * this = base asset amount at account precision (spot)
    int32_t base_asset, quote_asset  # balance indexes; -1 when the asset has no balance configured
    uint8_t known
    uint8_t is_spot
    uint8_t _pad[2]
    # limits
    int64_t max_position            # |position + open orders on that side| of all strategies; 0: none
    int64_t max_notional            # per order, account precision; 0: none
    # state
    int64_t position                # all strategies
    int64_t open_buy, open_sell     # quantity resting (all strategies)
    int64_t last_price, bid, ask
    int64_t entry_value             # perpetuals: what the open position cost, account precision (margin: / leverage)


cdef struct token_bucket:
    double tokens
    double rate                     # per second; 0: no limit
    double burst
    int64_t last_ns


cdef struct strategy_risk:
    uint32_t strategy_id
    int32_t open_orders
    token_bucket bucket


cdef class RiskEngine:
    cdef instrument_risk *inst
    cdef Py_ssize_t n_inst
    cdef strategy_risk strat[MAX_STRATEGIES]
    cdef Py_ssize_t n_strat
    cdef object _arrays                 # numpy arrays behind the per-strategy pointers below
    cdef int64_t *strat_position        # [MAX_STRATEGIES * n_inst]
    cdef int64_t *strat_open_buy
    cdef int64_t *strat_open_sell
    cdef int64_t *strat_max_position    # 0: none
    cdef int64_t balance[MAX_ASSETS]    # shadow balances, account precision
    cdef int64_t reserved[MAX_ASSETS]   # held by open orders
    cdef readonly int64_t max_order_age_ns
    cdef readonly int64_t fat_finger_ppm    # 0: off
    cdef readonly bint fat_finger_on_mid    # reference: mid (else the last trade, mid when none)
    cdef readonly int32_t max_open_orders, max_open_orders_per_strategy
    cdef int32_t open_orders
    cdef token_bucket bucket
    cdef double strategy_rate, strategy_burst
    cdef readonly int64_t leverage
    cdef readonly int64_t daily_loss_limit  # account precision; 0: none
    cdef public int64_t daily_pnl           # realised today, account precision (the gateway sets it)
    cdef public bint kill_switch
    cdef readonly object limits             # the RiskLimits in force
    cdef readonly object table              # the InstrumentTable
    cdef readonly dict asset_index
    cdef uint64_t checks, rejects

    cdef int check(self, const ttq_order *o, int64_t now_ns, bint dry) noexcept
    cdef int reserve(self, const ttq_order *o, int slot, int64_t price) noexcept
    cdef void reserve_new(self, const ttq_order *o) noexcept
    cdef void on_market_event(self, const ttq_market_event *e) noexcept
    cdef int strategy_slot(self, uint32_t strategy_id) noexcept
    cdef int64_t order_notional(self, const instrument_risk *r, const ttq_order *o) noexcept
    cdef void hold(self, instrument_risk *r, Py_ssize_t cell, int side, int64_t qty, int64_t price) noexcept
    cdef void perp_fill(self, instrument_risk *r, int64_t held, int64_t signed_qty, int64_t value) noexcept
