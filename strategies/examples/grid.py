"""Grid: limit orders every `spacing` (in ticks) around the first mid, `levels` a side; when one
fills, the opposite order goes one level back, so the grid buys low and sells high."""
from ttquant.core.records import OrderStatus, OrderType, Side
from ttquant.strategies.base import BaseStrategy


class Grid(BaseStrategy):
    name = "grid"
    PARAMS = {"symbol": "BTCUSDT", "market": "spot", "qty": 0.001, "levels": 5, "spacing_ticks": 200}

    def on_start(self):
        p = self.params
        self.inst = self.instrument(p["symbol"], p["market"])
        self.qty = float(p["qty"])
        self.levels = int(p["levels"])
        self.spacing = int(p["spacing_ticks"]) * self.inst.tick_size
        self.center = None
        self.by_order = {}          # client order id -> grid price (raw)

    def on_quote(self, q):
        if q.instrument.instrument_id != self.inst.instrument_id or self.center is not None or not q.bid:
            return
        mid = (q.price_raw + q.ask_raw) // 2
        self.center = mid // self.inst.tick_size * self.inst.tick_size
        for k in range(1, self.levels + 1):
            self._place(Side.BUY, self.center - k * self.spacing)
            self._place(Side.SELL, self.center + k * self.spacing)

    def _place(self, side, price_raw):
        px = price_raw / 10 ** self.inst.price_precision
        cid = self.place_order(self.inst, side, self.qty, px, OrderType.LIMIT)
        self.by_order[cid] = (side, price_raw)

    def on_order_update(self, u):
        placed = self.by_order.get(u.client_order_id)
        if placed is None or u.status != OrderStatus.FILLED:
            return
        del self.by_order[u.client_order_id]
        side, price = placed
        # bought low: offer it one level up; sold high: bid one level down
        if side == Side.BUY:
            self._place(Side.SELL, price + self.spacing)
        else:
            self._place(Side.BUY, price - self.spacing)
