"""The [backtest] table of a strategy's config: how `ttquant backtest` fills its orders and which
limits the gateway's checks use. The same file runs the strategy live (the table is ignored
there) and in backtests, so the parameters tested are the parameters traded.

    [backtest.fill]                   # the sim venue's fill model (core/sim/matching.py)
    maker_fee_ppm = 200
    taker_fee_ppm = 500
    slippage_ppm = 0                  # a taker fill this much worse than the level
    latency_us = 1000                 # order to effect, fixed part
    latency_jitter_us = 0             # plus uniform [0, jitter], from seed
    queue_position = true             # a resting order waits behind the size shown at its price
    seed = 1
    [backtest]
    risk = "risk.binance.toml"        # the gateway's risk file (relative to this file); "": no limits
    capital = 100000                  # quote asset, for the equity curve and its returns
    period_s = 60                     # the equity curve's sampling period (market time)
"""
from __future__ import annotations

import msgspec

from ttquant.core.daemon.config import Table
from ttquant.core.sim.matching import FillModel

__all__ = ["FillTable", "BacktestTable"]


class FillTable(Table):
    maker_fee_ppm: int = 200
    taker_fee_ppm: int = 500
    slippage_ppm: int = 0
    latency_us: float = 1000.0
    latency_jitter_us: float = 0.0
    queue_position: bool = True
    seed: int = 1

    def __post_init__(self):
        for key in ("maker_fee_ppm", "taker_fee_ppm", "slippage_ppm", "latency_us", "latency_jitter_us"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")

    def model(self) -> FillModel:
        return FillModel(self.maker_fee_ppm, self.taker_fee_ppm, self.slippage_ppm, int(self.latency_us * 1000),
                         int(self.latency_jitter_us * 1000), self.queue_position, self.seed)


class BacktestTable(Table):
    fill: FillTable = msgspec.field(default_factory=FillTable)
    risk: str = ""
    capital: float = 100_000.0
    period_s: float = 60.0

    def __post_init__(self):
        if self.capital <= 0:
            raise ValueError(f"capital: must be > 0, got {self.capital}")
        if self.period_s <= 0:
            raise ValueError(f"period_s: must be > 0, got {self.period_s}")
