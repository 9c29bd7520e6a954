"""EMA cross: long when the fast EMA of trade prices is above the slow one, flat (or short on
a perpetual) when below; one IOC order at the touch per cross."""
from ttquant.core.records import OrderType
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.indicators import EMA


class EmaCross(BaseStrategy):
    name = "ema_cross"
    PARAMS = {"symbol": "BTCUSDT", "market": "spot", "qty": 0.001, "fast": 20, "slow": 80}

    def on_start(self):
        p = self.params
        self.inst = self.instrument(p["symbol"], p["market"])
        self.qty = float(p["qty"])
        self.fast, self.slow = EMA(span=int(p["fast"])), EMA(span=int(p["slow"]))
        self.can_short = p["market"] != "spot"
        self.state = 0              # +1 above, -1 below, 0 not known yet
        self.bid = self.ask = 0.0

    def on_quote(self, q):
        if q.instrument.instrument_id == self.inst.instrument_id:
            self.bid, self.ask = q.bid, q.ask

    def on_trade(self, t):
        if t.instrument.instrument_id != self.inst.instrument_id:
            return
        fast, slow = self.fast.update(t.price), self.slow.update(t.price)
        if not self.slow.ready or self.open_orders(self.inst):
            return
        state = 1 if fast > slow else -1
        if state == self.state:
            return
        self.state = state
        target = self.qty if state > 0 else (-self.qty if self.can_short else 0.0)
        delta = target - self.position(self.inst)
        if abs(delta) < self.qty / 2:
            return
        if delta > 0 and self.ask:
            self.buy(self.inst, delta, self.ask, OrderType.IOC)
        elif delta < 0 and self.bid:
            self.sell(self.inst, -delta, self.bid, OrderType.IOC)
