"""Strategies for the runtime tests (imported by `ttquant strategy run` through PYTHONPATH)."""
from ttquant.core.records import OrderType
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
