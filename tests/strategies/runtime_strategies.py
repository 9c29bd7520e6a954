"""Strategies for the runtime tests (imported by `ttquant strategy run` through PYTHONPATH)."""
from ttquant.core.records import OrderStatus, OrderType
from ttquant.strategies.base import BaseStrategy


class RestingOrder(BaseStrategy):
    """Places one resting bid far below the market at start, then one more each `every` trades;
    raises in on_trade after `crash_after` trades when that is set."""
    name = "resting"

    def on_start(self):
        self.inst = self.instrument("BTCUSDT", "spot")
        self.trades = 0
        self.placed = []
        self.accepted = 0

    def on_trade(self, t):
        if t.instrument.instrument_id != self.inst.instrument_id:
            return
        self.trades += 1
        crash_after = self.params.get("crash_after", 0)
        if crash_after and self.trades > crash_after:
            raise RuntimeError(f"deliberate failure after {crash_after} trades")
        if self.trades == 1 or self.trades % self.params.get("every", 50) == 0:
            self.placed.append(self.buy(self.inst, 0.001, round(t.price * 0.97, 2), OrderType.LIMIT))

    def on_order_update(self, u):
        if u.status == 2:
            self.accepted += 1
            self.log.info("accepted %d (%d so far)", u.client_order_id, self.accepted)


class Accumulate(BaseStrategy):
    """Buys `qty` at market every `every` trades until it holds `buys` of them, and keeps one bid
    resting 3 % below the market; says what it holds when it starts (the restart test reads it)."""
    name = "accumulate"

    def on_start(self):
        import json
        self.inst = self.instrument("BTCUSDT", "spot")
        self.trades = 0
        held = [[p.instrument_id, p.qty_raw, p.cost_raw, p.realised_raw, p.fees_raw, p.fills]
                for p in self.portfolio.positions()]
        self.log.info("started holding %s", json.dumps({"positions": held, "orders": sorted(self.orders)}))

    def on_trade(self, t):
        if t.instrument.instrument_id != self.inst.instrument_id:
            return
        self.trades += 1
        from decimal import Decimal
        held = self.portfolio.position(self.inst).qty
        buying = any(o.order_type == OrderType.MARKET for o in self.orders.values())
        if self.trades % self.params.get("every", 5) == 0 and not buying \
                and held < self.params.get("buys", 3) * Decimal("0.001"):
            self.buy(self.inst, 0.001, order_type=OrderType.MARKET)
        if not any(o.order_type == OrderType.LIMIT for o in self.orders.values()):
            self.buy(self.inst, 0.001, round(t.price * 0.97, 2), OrderType.LIMIT)


class MarketOnly(BaseStrategy):
    """Orders decided by the market alone, never by fills or their timing (parity tests: the same
    orders live and in a backtest). mode "burst": on the first trade, `buys` limit buys far below
    and then `sells` limit sells far above, all at once (the gateway's position limit and rate
    bucket decide which pass); mode "cross": EMA 5/20 of trade prices, on every cross an IOC at
    the last trade price, buying above, selling below."""
    name = "market_only"

    def on_start(self):
        from ttquant.strategies.indicators import EMA
        self.inst = self.instrument("BTCUSDT", "spot")
        self.fast, self.slow = EMA(span=5), EMA(span=20)
        self.trades, self.state = 0, 0
        self.codes = []                 # (client id, reject code) of every REJECTED report

    def on_trade(self, t):
        if t.instrument.instrument_id != self.inst.instrument_id:
            return
        self.trades += 1
        p = self.params
        if p.get("mode") == "burst":
            if self.trades == 1:
                for _ in range(p.get("buys", 4)):
                    self.buy(self.inst, 0.001, round(t.price * 0.9, 2), OrderType.LIMIT)
                for _ in range(p.get("sells", 3)):
                    self.sell(self.inst, 0.001, round(t.price * 1.1, 2), OrderType.LIMIT)
            return
        fast, slow = self.fast.update(t.price), self.slow.update(t.price)
        if self.trades < 20 or fast == slow:
            return
        state = 1 if fast > slow else -1
        if state != self.state:
            self.state = state
            (self.buy if state > 0 else self.sell)(self.inst, 0.001, t.price, OrderType.IOC)

    def on_order_update(self, u):
        if u.status == OrderStatus.REJECTED:
            self.codes.append((u.client_order_id, u.reject_code))
