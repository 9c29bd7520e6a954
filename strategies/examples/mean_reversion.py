"""Mean reversion on the z-score of the mid: buy below -entry, sell above +entry, back to flat
when |z| falls under exit. Limit orders at the touch, canceled when the signal is gone."""
from ttquant.core.records import OrderType
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.indicators import ZScore


class MeanReversion(BaseStrategy):
    name = "mean_reversion"

    def on_start(self):
        p = self.params
        self.inst = self.instrument(p.get("symbol", "BTCUSDT"), p.get("market", "spot"))
        self.qty = float(p.get("qty", 0.001))
        self.z = ZScore(int(p.get("window", 200)))
        self.entry, self.exit = float(p.get("entry", 2.0)), float(p.get("exit", 0.5))
        self.can_short = p.get("market", "spot") != "spot"

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
