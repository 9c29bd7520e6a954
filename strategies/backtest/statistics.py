"""What a run did, in the numbers people compare strategies by (DESIGN.md §6).

From the equity curve sampled at a fixed period (`periods_per_year` of them: 525,600 for
minutes of a market that never closes, 252 for trading days) and the round trips the run
closed:

    returns             simple returns between samples
    total_return        last equity / first - 1
    annual_return       compounded: (1 + total_return) ** (periods_per_year / periods) - 1
    volatility          annualised standard deviation of the returns (ddof 1)
    sharpe              mean / std * sqrt(periods_per_year) (risk-free 0)
    sortino             mean * periods_per_year / annualised downside deviation (below 0)
    max_drawdown        the worst fall from a peak, as a fraction (negative)
    max_drawdown_periods  the longest time under a previous peak, in samples
    calmar              annual_return / |max_drawdown|
    win_rate, profit_factor, expectancy, avg_holding_s  from the round trips
    turnover            traded notional / average equity
    fees, slippage, funding  as the run paid them (positive: paid)

The definitions follow empyrical's (Quantopian's), and the tests check them against it.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

__all__ = ["Statistics", "RoundTrip", "compute_statistics", "drawdowns"]


@dataclasses.dataclass(frozen=True)
class RoundTrip:
    """A position opened and closed: when, and what it made net of its fees."""
    opened_ns: int
    closed_ns: int
    pnl: float


@dataclasses.dataclass(frozen=True)
class Statistics:
    periods: int
    total_return: float
    annual_return: float
    volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    max_drawdown_periods: int
    calmar: float
    trades: int
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_holding_s: float
    turnover: float
    fees: float
    slippage: float
    funding: float

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in dataclasses.asdict(self).items()}


def drawdowns(equity: np.ndarray) -> np.ndarray:
    """Each sample's fall from the highest equity before it, as a fraction (0 at a new peak)."""
    peak = np.maximum.accumulate(equity)
    return equity / peak - 1.0


def _longest_under_water(dd: np.ndarray) -> int:
    longest = run = 0
    for under in dd < 0:
        run = run + 1 if under else 0
        longest = max(longest, run)
    return longest


def _ratio(a: float, b: float) -> float:
    return a / b if b else (math.inf if a > 0 else (-math.inf if a < 0 else math.nan))


def compute_statistics(equity, periods_per_year: float, round_trips=(), traded_notional: float = 0.0,
                       fees: float = 0.0, slippage: float = 0.0, funding: float = 0.0) -> Statistics:
    """The statistics of an equity curve (at least two samples, all positive)."""
    equity = np.asarray(equity, dtype=np.float64)
    if equity.ndim != 1 or len(equity) < 2:
        raise ValueError("the equity curve needs at least two samples")
    if (equity <= 0).any():
        raise ValueError("equity must stay positive for returns to mean anything")
    returns = equity[1:] / equity[:-1] - 1.0
    n = len(returns)
    total = float(equity[-1] / equity[0] - 1.0)
    with np.errstate(over="ignore"):        # minutes of +3 % compound past any float: inf, not an error
        annual = float(np.power(1.0 + total, periods_per_year / n)) - 1.0
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    mean = float(np.mean(returns))
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2))) * math.sqrt(periods_per_year)
    dd = drawdowns(equity)
    max_dd = float(dd.min())
    trips = list(round_trips)
    pnl = np.array([t.pnl for t in trips], dtype=np.float64)
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    return Statistics(
        periods=n,
        total_return=total,
        annual_return=annual,
        volatility=std * math.sqrt(periods_per_year),
        sharpe=_ratio(mean, std) * math.sqrt(periods_per_year) if std else _ratio(mean, 0.0),
        sortino=_ratio(mean * periods_per_year, downside),
        max_drawdown=max_dd,
        max_drawdown_periods=_longest_under_water(dd),
        calmar=_ratio(annual, abs(max_dd)),
        trades=len(trips),
        win_rate=len(wins) / len(trips) if trips else math.nan,
        profit_factor=_ratio(float(wins.sum()), float(-losses.sum())) if trips else math.nan,
        expectancy=float(pnl.mean()) if trips else math.nan,
        avg_holding_s=float(np.mean([(t.closed_ns - t.opened_ns) / 1e9 for t in trips])) if trips else math.nan,
        turnover=traded_notional / float(np.mean(equity)),
        fees=fees, slippage=slippage, funding=funding,
    )
