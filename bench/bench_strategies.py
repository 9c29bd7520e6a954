"""Strategies for the tick-to-order benchmark (imported by `ttquant strategy run` via PYTHONPATH)."""
from ttquant.core.records import OrderType
from ttquant.strategies.base import BaseStrategy


class TradeEveryTick(BaseStrategy):
    """One limit buy 1 % under every trade: the decision is trivial, so the path is what is timed."""
    name = "bench"

    def on_start(self):
        self.inst = self.instrument("BTCUSDT", "spot")

    def on_trade(self, t):
        self.buy(self.inst, 0.001, t.price * 0.99, OrderType.LIMIT)
