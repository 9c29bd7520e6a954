"""Mean reversion on the z-score of the mid: buy below -entry, sell above +entry, back to flat
when |z| falls under exit. Limit orders at the touch, canceled when the signal is gone."""
from ttquant.core.records import OrderType
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.indicators import ZScore


class MeanReversion(BaseStrategy):
    name = "mean_reversion"
    PARAMS = {"symbol": "BTCUSDT", "market": "spot", "qty": 0.001, "window": 200, "entry": 2.0, "exit": 0.5}

    def on_start(self):
        p = self.params
        self.inst = self.instrument(p["symbol"], p["market"])
        self.qty = float(p["qty"])
        self.z = ZScore(int(p["window"]))
        self.entry, self.exit = float(p["entry"]), float(p["exit"])
        self.can_short = p["market"] != "spot"

    def on_quote(self, q):
        if q.instrument.instrument_id != self.inst.instrument_id or not q.bid or not q.ask:
            return
        z = self.z.update(q.mid)
        if not self.z.ready:
            return
        pos = self.position(self.inst)
        if z < -self.entry:
            target = self.qty
        elif z > self.entry:
            target = -self.qty if self.can_short else 0.0
        elif abs(z) < self.exit:
            target = 0.0
        else:
            return
        working = self.open_orders(self.inst)
        delta = target - pos
        if abs(delta) < self.qty / 2:
            for o in working:
                self.cancel(o.client_order_id)
            return
        if working:
            return
        if delta > 0:
            self.buy(self.inst, delta, q.bid, OrderType.LIMIT)
        else:
            self.sell(self.inst, -delta, q.ask, OrderType.LIMIT)
