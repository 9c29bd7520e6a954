"""The simulated venue's matching: orders against the market the md daemon sees, by one fill
model that backtests share (DESIGN.md §5, §6).

A request takes effect `latency` after it was sent (fixed + uniform random part). Then:
  - a taker order (market, IOC, FOK, or a limit that crosses) walks the book top it knows (the
    book board, or the best bid/offer), each level used once until the book moves, at a price
    `slippage` worse; IOC and market leave the rest EXPIRED, FOK fills all or nothing;
    a post-only order that would cross is REJECTED;
  - a resting limit order waits behind the quantity displayed at its price when it arrived
    (queue position): trades at its price eat the queue first, then fill it; a trade through
    its price, or the other side's best moving across it, fills what is left, as maker.
Fees are fee_ppm of the fill's notional (quote asset, account precision, rounded up).
Every request is kept in `ledger` - the venue's own record of what it was sent. With an
`account` (SimAccount), every fill moves the venue's balances too.
"""
from __future__ import annotations

import dataclasses
import random

from ttquant.core.instruments import MarketType
from ttquant.core.records import ExecReport, Liquidity, OrderAction, OrderStatus, OrderType, RejectCode, Side

__all__ = ["FillModel", "SimMatcher", "SimAccount", "RestingOrder", "ACCOUNT_PRECISION"]

ACCOUNT_PRECISION = 8
S = OrderStatus


@dataclasses.dataclass(frozen=True)
class FillModel:
    maker_fee_ppm: int = 200            # 0.02 %
    taker_fee_ppm: int = 500            # 0.05 %
    slippage_ppm: int = 0               # taker fills this much worse than the level
    latency_ns: int = 1_000_000         # request to effect, fixed part
    latency_jitter_ns: int = 0          # plus uniform [0, jitter]
    queue_position: bool = True         # a resting order waits behind the displayed size
    seed: int = 1


@dataclasses.dataclass
class RestingOrder:
    strategy_id: int
    client_order_id: int
    venue_order_id: int
    instrument_id: int
    side: int
    order_type: int
    price: int
    qty: int
    cum_qty: int = 0
    queue_ahead: int = 0
    status: OrderStatus = S.ACCEPTED

    @property
    def leaves(self):
        return self.qty - self.cum_qty


class _Market:
    """What the venue knows of one instrument's market: the top levels and the last trade."""
    __slots__ = ("bids", "asks", "bid", "ask", "last")

    def __init__(self):
        self.bids, self.asks = [], []      # [[price, qty]] best first, qty left to take until the book moves
        self.bid = self.ask = self.last = 0


class SimAccount:
    """The venue's balances, asset -> amount at ACCOUNT_PRECISION: a spot fill moves the base
    by its quantity and the quote by its notional, a perpetual's moves the quote by the PnL it
    realises (average cost per instrument); every fee is paid in the quote asset. The same
    arithmetic as the gateway's shadow balances (notional truncated at account precision)."""

    def __init__(self, balances: dict[str, int] | None = None):
        self.balances = {a: int(v) for a, v in (balances or {}).items()}
        self._perp = {}             # instrument id -> [signed qty raw, cost raw (price * qty, signed)]

    def _add(self, asset, amount):
        self.balances[asset] = self.balances.get(asset, 0) + amount

    def on_fill(self, inst, side, price: int, qty: int, notional: int, fee: int):
        sign = 1 if side == Side.BUY else -1
        if inst.market_type == MarketType.SPOT:
            self._add(inst.base, sign * qty * 10**ACCOUNT_PRECISION // 10**inst.size_precision)
            self._add(inst.quote, -sign * notional)
        else:
            pos = self._perp.setdefault(inst.instrument_id, [0, 0])
            held, cost = pos
            closing = min(qty, abs(held)) if held and (held > 0) != (sign > 0) else 0
            if closing:
                # realised: (exit - average entry) * closed qty, in the quote at account precision
                entry_cost = cost * closing // abs(held)        # all of it when the position closes
                pnl = (price * closing - entry_cost) * (1 if held > 0 else -1)
                self._add(inst.quote, pnl * inst.multiplier * 10**ACCOUNT_PRECISION
                          // 10**(inst.price_precision + inst.size_precision))
                pos[1] -= entry_cost
                pos[0] += sign * closing
            opening = qty - closing
            if opening:
                pos[0] += sign * opening
                pos[1] += price * opening
        self._add(inst.quote, -fee)


class SimMatcher:
    def __init__(self, table, model: FillModel = FillModel(), account: SimAccount | None = None):
        self.table, self.model, self.account = table, model, account
        self.rng = random.Random(model.seed)
        self.markets: dict[int, _Market] = {}
        self.pending: list[tuple[int, int, object]] = []        # (effective ns, seq, request Order)
        self.resting: dict[tuple[int, int], RestingOrder] = {}
        self.orders: dict[tuple[int, int], RestingOrder] = {}   # every order it accepted or filled
        self.ledger: list[dict] = []
        self.fills: list[dict] = []
        self.reports: list[ExecReport] = []
        self._seq = 0
        self._last_effective = 0
        self._venue_id = 0
        self._trade_id = 0
        self.counts = {"requests": 0, "duplicates": 0, "unknown_cancels": 0, "fills": 0}

    # -- market data --------------------------------------------------------------------------
    def market(self, instrument_id):
        m = self.markets.get(instrument_id)
        if m is None:
            m = self.markets[instrument_id] = _Market()
        return m

    def on_book(self, instrument_id, bids, asks, now_ns):
        """The top levels (pairs of raw price, qty, best first), from the book board."""
        m = self.market(instrument_id)
        m.bids = [[int(p), int(q)] for p, q in bids]
        m.asks = [[int(p), int(q)] for p, q in asks]
        m.bid = m.bids[0][0] if m.bids else 0
        m.ask = m.asks[0][0] if m.asks else 0
        self._crossed(instrument_id, now_ns)

    def on_quote(self, instrument_id, bid, bid_qty, ask, ask_qty, now_ns):
        m = self.market(instrument_id)
        m.bid, m.ask = bid, ask
        if not m.bids or m.bids[0][0] != bid:
            m.bids = [[bid, bid_qty]] if bid else []
        if not m.asks or m.asks[0][0] != ask:
            m.asks = [[ask, ask_qty]] if ask else []
        self._crossed(instrument_id, now_ns)

    def on_trade(self, instrument_id, price, qty, buyer_aggressor, now_ns):
        m = self.market(instrument_id)
        m.last = price
        # a buyer-aggressor trade takes asks: our resting sells at or below its price
        side = Side.SELL if buyer_aggressor else Side.BUY
        left = qty                              # what the trade leaves for orders at its price
        for o in self._resting_side(instrument_id, side):
            if (price > o.price) if side == Side.SELL else (price < o.price):
                self._fill(o, o.leaves, o.price, Liquidity.MAKER, now_ns)   # it traded through us
            elif price == o.price and left > 0:
                if self.model.queue_position:
                    eaten = min(o.queue_ahead, left)
                    o.queue_ahead -= eaten
                    left -= eaten
                take = min(o.leaves, left)
                left -= take
                self._fill(o, take, o.price, Liquidity.MAKER, now_ns)

    def _resting_side(self, instrument_id, side):
        orders = [o for o in self.resting.values() if o.instrument_id == instrument_id and o.side == side]
        # price priority for the venue's own orders: the best first, then by arrival
        orders.sort(key=lambda o: (-o.price if side == Side.BUY else o.price, o.venue_order_id))
        return orders

    def _crossed(self, instrument_id, now_ns):
        """The other side's best moved across a resting order: the level it sat on is gone."""
        m = self.market(instrument_id)
        for o in list(self.resting.values()):
            if o.instrument_id != instrument_id:
                continue
            if ((o.side == Side.BUY and m.ask and m.ask <= o.price)
                    or (o.side == Side.SELL and m.bid and m.bid >= o.price)):
                self._fill(o, o.leaves, o.price, Liquidity.MAKER, now_ns)

    # -- requests -------------------------------------------------------------------------------
    def latency(self):
        jitter = self.model.latency_jitter_ns
        return self.model.latency_ns + (self.rng.randint(0, jitter) if jitter else 0)

    def submit(self, request, now_ns):
        """An order request (a records.Order) as the gateway sent it."""
        self.counts["requests"] += 1
        self.ledger.append({"ts": now_ns, "strategy_id": request.strategy_id,
                            "client_order_id": request.client_order_id, "target_order_id": request.target_order_id,
                            "action": int(request.action), "instrument_id": request.instrument_id,
                            "side": int(request.side), "price": request.price, "qty": request.qty})
        self._seq += 1
        # one connection: the jitter delays requests but never reorders them (a cancel-all
        # sent after a new order must find it)
        self._last_effective = max(now_ns + self.latency(), self._last_effective)
        self.pending.append((self._last_effective, self._seq, request.copy()))

    def advance(self, now_ns):
        """Requests due by now take effect; returns the exec reports produced (and keeps them)."""
        due = sorted(p for p in self.pending if p[0] <= now_ns)
        if due:
            self.pending = [p for p in self.pending if p[0] > now_ns]
            for at, _, req in due:
                self._handle(req, at)
        out, self.reports = self.reports, []
        return out

    def _handle(self, req, now_ns):
        if req.action == OrderAction.NEW:
            self._new(req, now_ns)
        elif req.action == OrderAction.CANCEL:
            o = self.resting.get((req.strategy_id, req.target_order_id))
            if o is None:
                self.counts["unknown_cancels"] += 1      # filled or canceled already: nothing to do
                return
            self._end(o, S.CANCELED, now_ns)
        elif req.action == OrderAction.CANCEL_ALL:
            for o in list(self.resting.values()):
                if o.strategy_id == req.strategy_id and (not req.instrument_id or o.instrument_id == req.instrument_id):
                    self._end(o, S.CANCELED, now_ns)
        elif req.action == OrderAction.AMEND:
            o = self.resting.get((req.strategy_id, req.target_order_id))
            if o is None or req.qty <= o.cum_qty:
                self.counts["unknown_cancels"] += 1
                return
            keeps_place = req.price == o.price and req.qty < o.qty      # only a smaller size keeps priority
            o.price, o.qty = req.price, req.qty
            if not keeps_place:
                o.queue_ahead = self._displayed(o.instrument_id, o.side, o.price)
            self._report(o, S.ACCEPTED, now_ns)

    def _new(self, req, now_ns):
        key = (req.strategy_id, req.client_order_id)
        if key in self.orders:
            self.counts["duplicates"] += 1               # the venue refuses a client id it has seen
            self.reports.append(self._plain_report(req, S.REJECTED, RejectCode.DUPLICATE_ORDER_ID, now_ns))
            return
        self._venue_id += 1
        o = RestingOrder(req.strategy_id, req.client_order_id, self._venue_id, req.instrument_id, req.side,
                         req.order_type, req.price, req.qty)
        self.orders[key] = o
        m = self.market(req.instrument_id)
        book = m.asks if req.side == Side.BUY else m.bids
        limit = req.price if req.order_type != OrderType.MARKET else 0
        crosses = bool(book) and (limit == 0 or (book[0][0] <= limit if req.side == Side.BUY else book[0][0] >= limit))
        if req.order_type == OrderType.POST_ONLY and crosses:
            o.status = S.REJECTED
            self.reports.append(self._plain_report(req, S.REJECTED, RejectCode.VENUE, now_ns, o.venue_order_id))
            return
        if req.order_type == OrderType.FOK and self._available(book, req.side, limit) < req.qty:
            self._end(o, S.EXPIRED, now_ns, ack=False)
            return
        if crosses:
            self._take(o, book, limit, now_ns)
        if o.status in (S.FILLED,):
            return
        if req.order_type in (OrderType.MARKET, OrderType.IOC, OrderType.FOK):
            self._end(o, S.EXPIRED, now_ns, ack=o.cum_qty == 0)
            return
        o.queue_ahead = self._displayed(req.instrument_id, req.side, req.price)
        self.resting[key] = o
        if o.cum_qty == 0:
            self._report(o, S.ACCEPTED, now_ns)

    def _available(self, book, side, limit):
        return sum(q for p, q in book if limit == 0 or (p <= limit if side == Side.BUY else p >= limit))

    def _take(self, o, book, limit, now_ns):
        for level in book:
            p, q = level
            if o.leaves == 0 or (limit and (p > limit if o.side == Side.BUY else p < limit)):
                break
            take = min(q, o.leaves)
            if take <= 0:
                continue
            level[1] -= take                    # used until the book moves
            price = self._slipped(o, p)
            self._fill(o, take, price, Liquidity.TAKER, now_ns, level_price=p)

    def _slipped(self, o, price):
        ppm = self.model.slippage_ppm
        if not ppm:
            return price
        inst = self.table[o.instrument_id]
        tick = inst.tick_size
        if o.side == Side.BUY:
            worse = -(-price * (1_000_000 + ppm) // 1_000_000)
            return -(-worse // tick) * tick
        worse = price * (1_000_000 - ppm) // 1_000_000
        return worse // tick * tick

    def _displayed(self, instrument_id, side, price):
        if not self.model.queue_position:
            return 0
        m = self.market(instrument_id)
        for p, q in (m.bids if side == Side.BUY else m.asks):
            if p == price:
                return q
        return 0

    # -- reports --------------------------------------------------------------------------------
    def _fill(self, o, qty, price, liquidity, now_ns, level_price=0):
        if qty <= 0 or o.leaves <= 0:
            return
        inst = self.table[o.instrument_id]
        o.cum_qty += qty
        scale = 10**(inst.price_precision + inst.size_precision)
        notional = price * qty * inst.multiplier * 10**ACCOUNT_PRECISION // scale
        # what the slippage model cost against the level taken (quote, account precision)
        slippage = abs(price - level_price) * qty * inst.multiplier * 10**ACCOUNT_PRECISION // scale \
            if level_price else 0
        ppm = self.model.maker_fee_ppm if liquidity == Liquidity.MAKER else self.model.taker_fee_ppm
        fee = -(-notional * ppm // 1_000_000)
        if self.account is not None:
            self.account.on_fill(inst, o.side, price, qty, notional, fee)
        self._trade_id += 1
        self.counts["fills"] += 1
        self.fills.append({"ts": now_ns, "trade_id": self._trade_id, "strategy_id": o.strategy_id,
                           "client_order_id": o.client_order_id, "instrument_id": o.instrument_id,
                           "side": int(o.side), "price": price, "qty": qty, "fee": fee, "liquidity": int(liquidity),
                           "slippage": slippage})
        o.status = S.FILLED if o.leaves == 0 else S.PARTIALLY_FILLED
        if o.status == S.FILLED:
            self.resting.pop((o.strategy_id, o.client_order_id), None)
        r = self._order_report(o, o.status, now_ns)
        r.last_price, r.last_qty, r.fee, r.liquidity = price, qty, fee, liquidity
        r.trade_id = self._trade_id
        self.reports.append(r)

    def _end(self, o, status, now_ns, ack=False):
        if ack:
            self._report(o, S.ACCEPTED, now_ns)
        o.status = status
        self.resting.pop((o.strategy_id, o.client_order_id), None)
        self._report(o, status, now_ns)

    def _report(self, o, status, now_ns):
        self.reports.append(self._order_report(o, status, now_ns))

    def _order_report(self, o, status, now_ns):
        done = status in (S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED)
        return ExecReport(ts_exchange=now_ns, client_order_id=o.client_order_id, venue_order_id=o.venue_order_id,
                          strategy_id=o.strategy_id, instrument_id=o.instrument_id, price=o.price, qty=o.qty,
                          cum_qty=o.cum_qty, leaves_qty=0 if done else o.leaves,
                          status=status, side=o.side, order_type=o.order_type)

    def _plain_report(self, req, status, code, now_ns, venue_order_id=0):
        return ExecReport(ts_exchange=now_ns, client_order_id=req.client_order_id, venue_order_id=venue_order_id,
                          strategy_id=req.strategy_id, instrument_id=req.instrument_id, price=req.price, qty=req.qty,
                          status=status, reject_code=code, side=req.side, order_type=req.order_type)

    # -- the venue's own view ---------------------------------------------------------------------
    def open_orders(self):
        return list(self.resting.values())

    def position(self, strategy_id, instrument_id):
        return sum(f["qty"] if f["side"] == Side.BUY else -f["qty"] for f in self.fills
                   if f["strategy_id"] == strategy_id and f["instrument_id"] == instrument_id)
