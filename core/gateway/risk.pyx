"""Pre-trade checks of the gateway; see risk.pxd.

`check` runs every check of a new order in the order DESIGN.md §5 gives and returns the first
reject code (0 when it passes); nothing in it allocates or touches Python objects, so it costs
tens of nanoseconds. State (positions, open orders, reserved funds, rate buckets) changes only
through `reserve` (an order the gateway sends), `on_fill` and `release` (the OMS, from venue
reports), and `on_trade` / `on_quote` (reference prices from the tick ring).
"""
from libc.stdint cimport int32_t, int64_t, uint32_t
from libc.string cimport memset
from cpython.mem cimport PyMem_Malloc, PyMem_Free

import numpy as np

from ttquant.core.includes.atomics cimport ttq_now_ns
from ttquant.core.includes.fixed_math cimport ttq_mul_div, ttq_beyond_ppm
from ttquant.core.records cimport (
    ttq_order, ttq_market_event, EVENT_TRADE, EVENT_BBO, ACTION_NEW, ACTION_CANCEL, ACTION_AMEND, ACTION_CANCEL_ALL,
    SIDE_BUY, SIDE_SELL, TYPE_LIMIT, TYPE_MARKET, TYPE_POST_ONLY, REJECT_NONE, REJECT_ORDER_TOO_OLD,
    REJECT_POSITION_LIMIT, REJECT_INSUFFICIENT_FUNDS, REJECT_RATE_LIMIT, REJECT_MAX_OPEN_ORDERS,
    REJECT_BAD_PRICE, REJECT_BAD_QTY, REJECT_FAT_FINGER, REJECT_MAX_NOTIONAL,
    REJECT_UNKNOWN_INSTRUMENT, REJECT_BAD_FIELD, REJECT_REDUCE_ONLY, REJECT_KILL_SWITCH,
)
from ttquant.core.records cimport Order

from ttquant.core.instruments import MarketType

__all__ = ["RiskEngine", "ACCOUNT_PRECISION"]

ACCOUNT_PRECISION_PY = ACCOUNT_PRECISION


cdef inline double bucket_level(token_bucket *b, int64_t now) noexcept:
    if b.last_ns and now > b.last_ns:
        b.tokens = min(b.burst, b.tokens + (now - b.last_ns) * 1e-9 * b.rate)
    b.last_ns = now
    return b.tokens


cdef inline int64_t order_price(const instrument_risk *r, const ttq_order *o) noexcept:
    """The order's price, or for a market order the touch it would take (the last trade when
    there is no book yet; 0 when there is nothing at all)."""
    cdef int64_t px
    if o.order_type != TYPE_MARKET:
        return o.price
    px = r.ask if o.side == SIDE_BUY else r.bid
    return px if px > 0 else r.last_price


cdef inline int64_t available(RiskEngine e, int32_t asset) noexcept:
    return e.balance[asset] - e.reserved[asset]


cdef class RiskEngine:
    """The gateway's pre-trade checks and the state they need, over one instrument table."""

    def __cinit__(self):
        self.inst = NULL

    def __dealloc__(self):
        PyMem_Free(self.inst)

    def __init__(self, limits, table):
        """limits: a RiskLimits (risk_config.load_risk_limits); table: the InstrumentTable."""
        n = max([i.instrument_id for i in table], default=0) + 1
        self.inst = <instrument_risk *>PyMem_Malloc(n * sizeof(instrument_risk))
        if self.inst == NULL:
            raise MemoryError()
        memset(self.inst, 0, n * sizeof(instrument_risk))
        self.n_inst = n
        self._arrays = [np.zeros(MAX_STRATEGIES * n, np.int64) for _ in range(4)]
        cdef int64_t[::1] a0 = self._arrays[0], a1 = self._arrays[1], a2 = self._arrays[2], a3 = self._arrays[3]
        self.strat_position, self.strat_open_buy = &a0[0], &a1[0]
        self.strat_open_sell, self.strat_max_position = &a2[0], &a3[0]
        self.asset_index = {}
        self.table = table
        self.apply_limits(limits)

    # -- limits -------------------------------------------------------------------------------
    def apply_limits(self, limits):
        """Put limits in force (at start, and on SIGHUP with a file already validated); the
        state - positions, open orders, reservations, balances once set - is kept."""
        cdef instrument_risk *r
        cdef Py_ssize_t k
        first = self.limits is None
        self.limits = limits
        self.max_order_age_ns = limits.max_order_age_ms * 1_000_000
        self.fat_finger_ppm = limits.fat_finger_ppm
        self.fat_finger_on_mid = limits.fat_finger_reference == "mid"
        self.max_open_orders = limits.max_open_orders
        self.max_open_orders_per_strategy = limits.max_open_orders_per_strategy
        self.bucket.rate, self.bucket.burst = limits.orders_per_s, limits.burst
        if first or self.bucket.tokens > limits.burst:     # a lower burst holds at once, not after the next refill
            self.bucket.tokens = limits.burst
        self.strategy_rate, self.strategy_burst = limits.strategy_orders_per_s, limits.strategy_burst
        for k in range(self.n_strat):
            self.strat[k].bucket.rate, self.strat[k].bucket.burst = self.strategy_rate, self.strategy_burst
        self.leverage = limits.leverage
        self.daily_loss_limit = limits.daily_loss_limit
        for asset, amount in limits.balances.items():
            if asset not in self.asset_index:
                if len(self.asset_index) >= MAX_ASSETS:
                    raise ValueError(f"more than {MAX_ASSETS} assets with a balance")
                self.asset_index[asset] = len(self.asset_index)
            if first or limits.reset_balances:
                self.balance[self.asset_index[asset]] = amount
        for inst in self.table:
            r = &self.inst[inst.instrument_id]
            r.known = 1
            r.is_spot = inst.market_type == MarketType.SPOT
            r.tick_size, r.step_size = inst.tick_size, inst.step_size
            r.min_qty, r.max_qty = inst.min_qty, inst.max_qty
            r.min_price, r.max_price = inst.min_price, inst.max_price
            shift = inst.price_precision + inst.size_precision - ACCOUNT_PRECISION
            if shift > 18 or shift < -18:
                raise ValueError(f"{inst.symbol}: price and size precision {inst.price_precision}+"
                                 f"{inst.size_precision} cannot be scaled to account precision")
            r.notional_mul = inst.multiplier * (10 ** -shift if shift < 0 else 1)
            r.notional_div = 10 ** shift if shift > 0 else 1
            if inst.price_precision <= ACCOUNT_PRECISION:
                r.min_notional = inst.min_notional * 10 ** (ACCOUNT_PRECISION - inst.price_precision)
            else:
                r.min_notional = inst.min_notional // 10 ** (inst.price_precision - ACCOUNT_PRECISION)
            sp = inst.size_precision
            r.qty_to_account = 10 ** (ACCOUNT_PRECISION - sp) if sp <= ACCOUNT_PRECISION else 0
            r.base_asset = self.asset_index.get(inst.base, -1)
            r.quote_asset = self.asset_index.get(inst.quote, -1)
            lim = limits.instrument(inst)
            r.max_position, r.max_notional = lim.max_position, lim.max_notional
        self._apply_strategy_limits()

    def _apply_strategy_limits(self):
        cdef Py_ssize_t k
        for k in range(self.n_strat):
            self._strategy_limits(k)

    def _strategy_limits(self, Py_ssize_t slot):
        cdef uint32_t sid = self.strat[slot].strategy_id
        for inst in self.table:
            self.strat_max_position[slot * self.n_inst + inst.instrument_id] = \
                self.limits.strategy_max_position(sid, inst)

    cdef int strategy_slot(self, uint32_t strategy_id) noexcept:
        """The strategy's slot, made on first sight; -1 when all slots are taken."""
        cdef Py_ssize_t k
        for k in range(self.n_strat):
            if self.strat[k].strategy_id == strategy_id:
                return <int>k
        if self.n_strat == MAX_STRATEGIES:
            return -1
        k = self.n_strat
        self.n_strat += 1
        memset(&self.strat[k], 0, sizeof(strategy_risk))
        self.strat[k].strategy_id = strategy_id
        self.strat[k].bucket.rate, self.strat[k].bucket.burst = self.strategy_rate, self.strategy_burst
        self.strat[k].bucket.tokens = self.strategy_burst
        try:
            self._strategy_limits(k)
        except BaseException:       # a limits object that cannot answer: no per-strategy limit
            pass
        return <int>k

    # -- the checks -----------------------------------------------------------------------------
    cdef int64_t order_notional(self, const instrument_risk *r, const ttq_order *o) noexcept:
        """At the order's price, or for a market order at the touch it would take (0: none)."""
        cdef int64_t px = order_price(r, o)
        return ttq_mul_div(px, o.qty, r.notional_mul, r.notional_div) if px > 0 else 0

    cdef int check(self, const ttq_order *o, int64_t now_ns, bint dry) noexcept:
        """The first check the order fails (0: none). dry: change nothing (a rehearsal that keeps
        this path in the caches while the gateway waits); else a passing order takes its tokens."""
        cdef instrument_risk *r
        cdef int64_t notional, ref, worst, need, spos
        cdef int slot
        cdef Py_ssize_t cell
        cdef bint buy = o.side == SIDE_BUY, new = o.action == ACTION_NEW
        if not dry:
            self.checks += 1
        if o.action == ACTION_CANCEL or o.action == ACTION_CANCEL_ALL:
            return REJECT_NONE              # a cancel is never held back (the OMS checks its target)
        if (o.action != ACTION_NEW and o.action != ACTION_AMEND) or (o.side != SIDE_BUY and o.side != SIDE_SELL) \
                or o.order_type < TYPE_LIMIT or o.order_type > TYPE_POST_ONLY:
            return REJECT_BAD_FIELD
        if self.max_order_age_ns and now_ns - o.ts_created > self.max_order_age_ns:
            return REJECT_ORDER_TOO_OLD
        if o.instrument_id >= self.n_inst or not self.inst[o.instrument_id].known:
            return REJECT_UNKNOWN_INSTRUMENT
        r = &self.inst[o.instrument_id]
        if o.order_type == TYPE_MARKET:
            if o.price != 0:
                return REJECT_BAD_PRICE     # a market order names no price
        elif o.price <= 0 or o.price % r.tick_size or o.price < r.min_price \
                or (r.max_price and o.price > r.max_price):
            return REJECT_BAD_PRICE
        if o.qty <= 0 or o.qty % r.step_size or o.qty < r.min_qty or (r.max_qty and o.qty > r.max_qty):
            return REJECT_BAD_QTY
        notional = self.order_notional(r, o)
        if notional == 0:
            return REJECT_BAD_PRICE         # a market order with no price to take: nothing to check it by
        if r.min_notional and notional < r.min_notional:
            return REJECT_BAD_QTY
        if self.fat_finger_ppm and o.order_type != TYPE_MARKET:
            if self.fat_finger_on_mid or r.last_price <= 0:
                ref = (r.bid + r.ask) // 2 if r.bid > 0 and r.ask > 0 else 0
            else:
                ref = r.last_price
            if ref > 0 and ttq_beyond_ppm(o.price, ref, self.fat_finger_ppm):
                return REJECT_FAT_FINGER
        if r.max_notional and notional > r.max_notional:
            return REJECT_MAX_NOTIONAL
        slot = self.strategy_slot(o.strategy_id)
        if slot < 0:
            return REJECT_BAD_FIELD         # more strategies than the engine keeps
        cell = slot * self.n_inst + o.instrument_id
        if new:
            spos = self.strat_position[cell]
            if o.reduce_only and ((buy and (spos >= 0 or o.qty > -spos)) or (not buy and (spos <= 0 or o.qty > spos))):
                return REJECT_REDUCE_ONLY
            # the worst case: every open order on this side fills too
            if r.max_position:
                worst = r.position + r.open_buy + o.qty if buy else r.position - r.open_sell - o.qty
                if worst > r.max_position or worst < -r.max_position:
                    return REJECT_POSITION_LIMIT
            if self.strat_max_position[cell]:
                worst = spos + self.strat_open_buy[cell] + o.qty if buy else spos - self.strat_open_sell[cell] - o.qty
                if worst > self.strat_max_position[cell] or worst < -self.strat_max_position[cell]:
                    return REJECT_POSITION_LIMIT
            if self.asset_index:            # funds are checked once balances are configured
                if r.is_spot and not buy:
                    if r.base_asset < 0 or o.qty * r.qty_to_account > available(self, r.base_asset):
                        return REJECT_INSUFFICIENT_FUNDS
                else:
                    need = notional if r.is_spot else notional // self.leverage
                    if r.quote_asset < 0 or need > available(self, r.quote_asset):
                        return REJECT_INSUFFICIENT_FUNDS
        if self.bucket.rate > 0 and bucket_level(&self.bucket, now_ns) < 1.0:
            return REJECT_RATE_LIMIT
        if self.strat[slot].bucket.rate > 0 and bucket_level(&self.strat[slot].bucket, now_ns) < 1.0:
            return REJECT_RATE_LIMIT
        if not dry:
            if self.bucket.rate > 0:
                self.bucket.tokens -= 1.0
            if self.strat[slot].bucket.rate > 0:
                self.strat[slot].bucket.tokens -= 1.0
        if new and ((self.max_open_orders and self.open_orders >= self.max_open_orders)
                    or (self.max_open_orders_per_strategy
                        and self.strat[slot].open_orders >= self.max_open_orders_per_strategy)):
            return REJECT_MAX_OPEN_ORDERS
        if self.kill_switch or (self.daily_loss_limit and self.daily_pnl <= -self.daily_loss_limit):
            return REJECT_KILL_SWITCH
        return REJECT_NONE

    cdef int reserve(self, const ttq_order *o, int slot, int64_t price) noexcept:
        """A new order that passed `check` goes out: it counts as open and holds its funds
        (at price: the order's, or for a market order the touch it was checked against)."""
        self.open_orders += 1
        self.strat[slot].open_orders += 1
        self.hold(&self.inst[o.instrument_id], slot * self.n_inst + o.instrument_id, o.side, o.qty, price)
        return 0

    cdef void reserve_new(self, const ttq_order *o) noexcept:
        """reserve() a new order that passed check(), at its reserve price."""
        self.reserve(o, self.strategy_slot(o.strategy_id), order_price(&self.inst[o.instrument_id], o))

    cdef void on_market_event(self, const ttq_market_event *e) noexcept:
        """A reference price: a trade, or the top of a book (FROM_BOOK BBO, else the venue's ticker)."""
        if e.instrument_id >= self.n_inst:
            return
        if e.kind == EVENT_TRADE:
            self.inst[e.instrument_id].last_price = e.price
        elif e.kind == EVENT_BBO:
            self.inst[e.instrument_id].bid = e.price
            self.inst[e.instrument_id].ask = e.body.bbo.ask_price

    cdef void perp_fill(self, instrument_risk *r, int64_t held, int64_t signed_qty, int64_t value) noexcept:
        """A perpetual's position moved from held by signed_qty (worth value): the PnL a close
        realises (at the average entry) goes to the quote balance, and the open position's
        margin (its entry value / leverage) stays held among the reservations."""
        cdef int64_t closing = 0, qty = signed_qty if signed_qty > 0 else -signed_qty
        cdef int64_t abs_held = held if held > 0 else -held
        cdef int64_t entry_part, exit_part, margin_before = r.entry_value // self.leverage
        if held != 0 and (held > 0) != (signed_qty > 0):
            closing = qty if qty < abs_held else abs_held
            entry_part = ttq_mul_div(r.entry_value, closing, 1, abs_held)      # all of it when flat
            exit_part = ttq_mul_div(value, closing, 1, qty)
            r.entry_value -= entry_part
            if self.asset_index and r.quote_asset >= 0:
                self.balance[r.quote_asset] += exit_part - entry_part if held > 0 else entry_part - exit_part
            value -= exit_part
        if qty > closing:
            r.entry_value += value                  # the rest opens (or flips) the position
        if self.asset_index and r.quote_asset >= 0:
            self.reserved[r.quote_asset] += r.entry_value // self.leverage - margin_before

    cdef void hold(self, instrument_risk *r, Py_ssize_t cell, int side, int64_t qty, int64_t price) noexcept:
        """qty more (qty < 0: less) resting at price on side: open quantity and reserved funds."""
        cdef int64_t value
        if side == SIDE_BUY:
            r.open_buy += qty
            self.strat_open_buy[cell] += qty
        else:
            r.open_sell += qty
            self.strat_open_sell[cell] += qty
        if not self.asset_index:
            return
        if r.is_spot and side == SIDE_SELL:
            if r.base_asset >= 0:
                self.reserved[r.base_asset] += qty * r.qty_to_account
        elif r.quote_asset >= 0:
            # on the size, then signed: holding and releasing the same order round the same way
            value = ttq_mul_div(price, qty if qty > 0 else -qty, r.notional_mul, r.notional_div)
            if not r.is_spot:
                value = value // self.leverage
            self.reserved[r.quote_asset] += value if qty > 0 else -value

    # -- the Python face ------------------------------------------------------------------------
    def check_order(self, Order order not None, now_ns=None, bint dry=False):
        """The reject code for this order now (0: it passes); changes only the rate buckets
        (dry: changes nothing at all)."""
        return self.check(&order.order, ttq_now_ns() if now_ns is None else now_ns, dry)

    def check_repeated(self, Order order not None, Py_ssize_t n, now_ns=None):
        """check() the same order n times from C (benchmarks: the cost without Python's)."""
        cdef int64_t t = ttq_now_ns() if now_ns is None else now_ns
        cdef int code = 0
        cdef Py_ssize_t _
        for _ in range(n):
            code = self.check(&order.order, t, False)
        return code

    def check_and_reserve(self, Order order not None, now_ns=None):
        """check, and when it passes a new order, reserve it: what the gateway does per order."""
        cdef int code = self.check(&order.order, ttq_now_ns() if now_ns is None else now_ns, False)
        if code == 0 and order.order.action == ACTION_NEW:
            self.reserve_new(&order.order)
        return code

    def restore(self, Order order not None, int64_t reserve_price):
        """An open order from the journal (on restart): open again, its funds held as before."""
        if order.order.instrument_id >= self.n_inst or not self.inst[order.order.instrument_id].known:
            return False
        self.reserve(&order.order, self.strategy_slot(order.order.strategy_id), reserve_price)
        return True

    def reserve_price(self, Order order not None):
        """The price funds are held at: the order's, or for a market order the touch now."""
        return order_price(&self.inst[order.order.instrument_id], &order.order)

    def release(self, uint32_t strategy_id, uint32_t instrument_id, int side, int64_t leaves_qty,
                int64_t reserve_price):
        """An order is done (canceled, expired, rejected by the venue) with leaves_qty unfilled."""
        cdef int slot = self.strategy_slot(strategy_id)
        cdef instrument_risk *r = &self.inst[instrument_id]
        cdef Py_ssize_t cell = slot * self.n_inst + instrument_id
        self.open_orders -= 1
        self.strat[slot].open_orders -= 1
        self.hold(r, cell, side, -leaves_qty, reserve_price)

    def amend(self, uint32_t strategy_id, uint32_t instrument_id, int side, int64_t old_leaves,
              int64_t old_price, int64_t new_leaves, int64_t new_price):
        """An amend the venue took: the order holds new_leaves at new_price instead (still one order)."""
        cdef int slot = self.strategy_slot(strategy_id)
        cdef instrument_risk *r = &self.inst[instrument_id]
        cdef Py_ssize_t cell = slot * self.n_inst + instrument_id
        self.hold(r, cell, side, -old_leaves, old_price)
        self.hold(r, cell, side, new_leaves, new_price)

    def on_fill(self, uint32_t strategy_id, uint32_t instrument_id, int side, int64_t price,
                int64_t qty, int64_t reserve_price, int64_t fee=0, bint order_done=False,
                bint reserved=True):
        """A fill of qty at price of an order held at reserve_price; fee in the quote asset at
        account precision. order_done: this fill completed the order. reserved: the order still
        held this quantity (not a fill reported after the order was released)."""
        cdef int slot = self.strategy_slot(strategy_id)
        cdef instrument_risk *r = &self.inst[instrument_id]
        cdef Py_ssize_t cell = slot * self.n_inst + instrument_id
        cdef int64_t signed_qty = qty if side == SIDE_BUY else -qty
        cdef int64_t filled_value = ttq_mul_div(price, qty, r.notional_mul, r.notional_div)
        cdef int64_t held = r.position
        r.position += signed_qty
        self.strat_position[cell] += signed_qty
        if reserved:
            self.hold(r, cell, side, -qty, reserve_price)
        if self.asset_index and r.is_spot and r.base_asset >= 0 and r.quote_asset >= 0:
            self.balance[r.base_asset] += signed_qty * r.qty_to_account
            self.balance[r.quote_asset] -= filled_value if side == SIDE_BUY else -filled_value
        elif not r.is_spot:
            self.perp_fill(r, held, signed_qty, filled_value)
        if self.asset_index and r.quote_asset >= 0:
            self.balance[r.quote_asset] -= fee
        if order_done:
            self.open_orders -= 1
            self.strat[slot].open_orders -= 1

    def on_market_events(self, events, Py_ssize_t n):
        """Reference prices from the first n MarketEvents of a MARKET_EVENT_DTYPE array: trades
        and the top of each book (FROM_BOOK BBO, else the venue's ticker)."""
        cdef const unsigned char[::1] raw = events.view(np.uint8).reshape(-1)
        if n * <Py_ssize_t>sizeof(ttq_market_event) > raw.shape[0]:
            raise ValueError("n is beyond the array")
        cdef const ttq_market_event *e = <const ttq_market_event *>&raw[0]
        cdef Py_ssize_t k
        for k in range(n):
            self.on_market_event(&e[k])

    def on_trade(self, uint32_t instrument_id, int64_t price):
        if instrument_id < self.n_inst:
            self.inst[instrument_id].last_price = price

    def on_quote(self, uint32_t instrument_id, int64_t bid, int64_t ask):
        if instrument_id < self.n_inst:
            self.inst[instrument_id].bid, self.inst[instrument_id].ask = bid, ask

    def set_balance(self, str asset, int64_t amount):
        """The venue's balance (reconciliation), account precision."""
        if asset not in self.asset_index:
            self.asset_index[asset] = len(self.asset_index)
            for inst in self.table:
                self.inst[inst.instrument_id].base_asset = self.asset_index.get(inst.base, -1)
                self.inst[inst.instrument_id].quote_asset = self.asset_index.get(inst.quote, -1)
        self.balance[self.asset_index[asset]] = amount

    @property
    def open_order_count(self):
        return self.open_orders

    def position_usage(self):
        """[(strategy id (0: all strategies), instrument id, used, limit)] for each position limit
        in force: used is |position + open orders on one side| at its worst, as the check counts it."""
        out = []
        cdef Py_ssize_t k, j
        cdef instrument_risk r
        cdef int64_t pos
        for inst in self.table:
            j = inst.instrument_id
            r = self.inst[j]
            if r.max_position > 0:
                out.append((0, j, max(abs(r.position + r.open_buy), abs(r.position - r.open_sell)), r.max_position))
        for k in range(self.n_strat):
            for inst in self.table:
                j = k * self.n_inst + inst.instrument_id
                if self.strat_max_position[j] > 0:
                    pos = self.strat_position[j]
                    out.append((self.strat[k].strategy_id, inst.instrument_id,
                                max(abs(pos + self.strat_open_buy[j]), abs(pos - self.strat_open_sell[j])),
                                self.strat_max_position[j]))
        return out

    def state(self):
        """Positions, open quantities, open orders, balances and reservations, for tools and tests."""
        out = {"open_orders": self.open_orders, "checks": self.checks,
               "balances": {a: self.balance[i] for a, i in self.asset_index.items()},
               "reserved": {a: self.reserved[i] for a, i in self.asset_index.items()},
               "instruments": {}, "strategies": {}}
        cdef Py_ssize_t k
        cdef instrument_risk r
        for inst in self.table:
            r = self.inst[inst.instrument_id]
            out["instruments"][inst.instrument_id] = {"position": r.position, "open_buy": r.open_buy,
                                                      "open_sell": r.open_sell, "entry_value": r.entry_value}
        for k in range(self.n_strat):
            out["strategies"][self.strat[k].strategy_id] = {
                "open_orders": self.strat[k].open_orders,
                "positions": {inst.instrument_id: int(self.strat_position[k * self.n_inst + inst.instrument_id])
                              for inst in self.table}}
        return out
