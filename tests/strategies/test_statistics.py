"""The statistics of a run against empyrical (Quantopian's, kept as empyrical-reloaded), the
oracle: the same returns give the same Sharpe, Sortino, drawdown, Calmar, volatility and annual
return; the round-trip figures by hand."""
import math

import empyrical
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ttquant.strategies.backtest.statistics import RoundTrip, compute_statistics, drawdowns

MINUTES_A_YEAR = 525_600


def _equity(returns, start=100_000.0):
    return start * np.concatenate([[1.0], np.cumprod(1.0 + np.asarray(returns))])


# returns a price series can have (a denormal one would be lost in the equity curve itself)
RETURN = st.floats(-0.05, 0.05, allow_nan=False).map(lambda x: 0.0 if abs(x) < 1e-9 else x)


@settings(max_examples=200, deadline=None)
@given(st.lists(RETURN, min_size=3, max_size=500),
       st.sampled_from([252, 365, MINUTES_A_YEAR]))
@example([0.0] * 7 + [0.03365134741633817, 0.03002541589770212, -0.04802157497831845], MINUTES_A_YEAR)
def test_the_same_returns_give_empyricals_figures(returns, ppy):
    r = np.asarray(returns)
    s = compute_statistics(_equity(r), ppy)
    close = dict(rel=1e-9, abs=1e-12)
    assert s.total_return == pytest.approx(empyrical.cum_returns_final(r), **close)
    assert s.volatility == pytest.approx(empyrical.annual_volatility(r, annualization=ppy), **close)
    assert s.max_drawdown == pytest.approx(empyrical.max_drawdown(r), **close)
    years = len(r) / ppy
    if (1 + s.total_return) > 0 and years and math.isfinite(s.annual_return):
        assert s.annual_return == pytest.approx(empyrical.annual_return(r, annualization=ppy), rel=1e-7, abs=1e-12)
    if np.std(r, ddof=1) > 1e-12:
        assert s.sharpe == pytest.approx(empyrical.sharpe_ratio(r, annualization=ppy), rel=1e-7, abs=1e-9)
    if (r < 0).any():
        assert s.sortino == pytest.approx(empyrical.sortino_ratio(r, annualization=ppy), rel=1e-7, abs=1e-9)
    if s.max_drawdown < -1e-12 and math.isfinite(s.annual_return):
        if math.isfinite(s.calmar):
            assert s.calmar == pytest.approx(empyrical.calmar_ratio(r, annualization=ppy), rel=1e-7, abs=1e-9)
        else:       # a finite annual return past 1e308 * |drawdown|: ours overflows to inf, empyrical's to nan
            assert s.calmar == math.copysign(math.inf, s.annual_return) and abs(s.annual_return) > 1e300


def test_drawdown_duration_and_round_trips_by_hand():
    equity = [100, 110, 99, 105, 109, 111, 90, 95]
    dd = drawdowns(np.array(equity, dtype=float))
    assert dd[2] == pytest.approx(99 / 110 - 1) and dd[5] == 0.0
    trips = [RoundTrip(0, 2_000_000_000, 30.0), RoundTrip(0, 4_000_000_000, -10.0),
             RoundTrip(0, 6_000_000_000, 20.0), RoundTrip(0, 8_000_000_000, -20.0)]
    s = compute_statistics(equity, 252, trips, traded_notional=1000.0, fees=3.5)
    assert s.max_drawdown_periods == 3                 # 99, 105, 109 under 110
    assert (s.trades, s.win_rate, s.profit_factor, s.expectancy, s.avg_holding_s) == (4, 0.5, 50 / 30, 5.0, 5.0)
    assert s.turnover == pytest.approx(1000.0 / np.mean(equity)) and s.fees == 3.5
    flat = compute_statistics([100.0, 100.0, 100.0], 252)
    assert flat.max_drawdown == 0.0 and math.isnan(flat.win_rate) and flat.as_dict()["win_rate"] is None
    with pytest.raises(ValueError, match="at least two samples"):
        compute_statistics([100.0], 252)
    with pytest.raises(ValueError, match="positive"):
        compute_statistics([100.0, -5.0], 252)
