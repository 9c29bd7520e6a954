"""TTQuant strategies: the BaseStrategy SDK, runtime, backtests and examples ([exec] issue)."""
from ttquant.core.portfolio import Portfolio, Position
from ttquant.strategies.indicators import ATR, EMA, RSI, SMA, VWAP, RollingVolatility, RollingVWAP, ZScore

__all__ = [
    "Portfolio", "Position",
    "EMA", "SMA", "RSI", "ATR", "RollingVolatility", "VWAP", "RollingVWAP", "ZScore",
]
