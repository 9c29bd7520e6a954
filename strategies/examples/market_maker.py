"""Avellaneda-Stoikov market maker with inventory skew.

reservation r = s - q * gamma * sigma^2 * tau,  spread = gamma * sigma^2 * tau + (2/gamma) ln(1 + gamma/k)
quotes r -/+ spread/2 (at least `min_spread_ticks` wide), sigma the rolling volatility of the
mid in price units per sqrt(second), q the inventory in lots, tau the horizon in seconds, k the
order-arrival decay per tick. Quotes are post-only, replaced when they move by `requote_ticks`
or every `max_quote_age_s`; no new bid beyond `max_inventory` lots long, no ask beyond as many
short on a perpetual (on spot, only against inventory held)."""
import math

from ttquant.core.records import OrderType, Side
from ttquant.strategies.base import BaseStrategy
from ttquant.strategies.indicators import RollingVolatility


class AvellanedaStoikov(BaseStrategy):
    name = "market_maker"
    PARAMS = {"symbol": "BTCUSDT", "market": "spot", "qty": 0.001, "gamma": 0.1, "k": 1.5, "horizon_s": 30.0,
              "max_inventory": 5.0, "min_spread_ticks": 2.0, "requote_ticks": 2.0, "max_quote_age_s": 2.0,
              "vol_window": 100, "vol_sample_s": 0.1}

    def on_start(self):
        p = self.params
        self.inst = self.instrument(p["symbol"], p["market"])
        self.lot = float(p["qty"])
        self.gamma = float(p["gamma"])
        self.k = float(p["k"])
        self.tau = float(p["horizon_s"])
        self.max_inventory = float(p["max_inventory"])
        # spot cannot go short: the ask is only quoted against inventory held
        self.min_inventory = 0.0 if p["market"] == "spot" else -self.max_inventory
        self.tick = self.inst.tick_size / 10 ** self.inst.price_precision
        self.min_spread = float(p["min_spread_ticks"]) * self.tick
        self.requote = float(p["requote_ticks"]) * self.tick
        self.max_age_ns = int(float(p["max_quote_age_s"]) * 1e9)
        self.vol = RollingVolatility(int(p["vol_window"]), log_returns=False)
        self.sample_ns = int(float(p["vol_sample_s"]) * 1e9)
        self.last_sample = 0
        self.quotes = {Side.BUY: None, Side.SELL: None}     # side -> (client id, price, sent ns)

    def on_quote(self, q):
        if q.instrument.instrument_id != self.inst.instrument_id or not q.bid or not q.ask or q.ask <= q.bid:
            return
        now = self.now_ns()
        mid = q.mid
        if now - self.last_sample >= self.sample_ns:
            self.last_sample = now
            self.vol.update(mid)
        if not self.vol.ready:
            return
        # volatility per sample -> per second
        sigma = self.vol.value * math.sqrt(1e9 / self.sample_ns) if self.vol.value == self.vol.value else 0.0
        inventory = self.position(self.inst) / self.lot
        reservation = mid - inventory * self.gamma * sigma ** 2 * self.tau
        spread = self.gamma * sigma ** 2 * self.tau + (2 / self.gamma) * math.log(1 + self.gamma / self.k) * self.tick
        spread = max(spread, self.min_spread)
        bid = min(reservation - spread / 2, q.bid)          # never cross: post at or behind the touch
        ask = max(reservation + spread / 2, q.ask)
        self._quote(Side.BUY, bid, inventory < self.max_inventory, now)
        self._quote(Side.SELL, ask, inventory >= self.min_inventory + 1, now)

    def _quote(self, side, price, allowed, now):
        current = self.quotes[side]
        if current is not None and current[0] not in self.orders:
            current = self.quotes[side] = None              # filled, canceled or refused: gone
        if current is not None:
            cid, px, sent = current
            if allowed and abs(px - price) < self.requote and now - sent < self.max_age_ns:
                return
            if not self.orders[cid].cancel_sent:
                self.cancel(cid)
            return                  # the new quote goes out once this one is gone (its cancel confirmed)
        if allowed:
            cid = self.place_order(self.inst, side, self.lot, price, OrderType.POST_ONLY)
            self.quotes[side] = (cid, price, now)
