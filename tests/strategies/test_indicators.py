"""Indicators: each update against a naive reference that recomputes from the whole history
or window at every step, on seeded random series, to 1e-9 relative."""
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttquant.strategies.indicators import ATR, EMA, RSI, SMA, VWAP, RollingVolatility, RollingVWAP, ZScore

WINDOWS = [1, 2, 50, 1000]
N = 2500                    # > 2 windows of 1000: the add-only recount has swapped in more than once
REL = 1e-9
# z-scores and returns cross zero, where a relative bound means nothing; 1e-12 absolute is
# still far below anything a decision could notice
ABS_AT_ZERO = 1e-12


def _prices(seed, n=N, level=100.0, vol=0.01):
    rng = np.random.default_rng(seed)
    return level * np.exp(np.cumsum(vol * rng.standard_normal(n)))


def _bars(seed, n=N):
    rng = np.random.default_rng(seed)
    close = _prices(seed + 1000, n)
    high = close + np.abs(rng.standard_normal(n)) * 0.5
    low = close - np.abs(rng.standard_normal(n)) * 0.5
    return high, low, close


def _assert_series(got, expected, abs_tol=0.0):
    assert len(got) == len(expected)
    for t, (g, e) in enumerate(zip(got, expected)):
        if math.isnan(e):
            assert math.isnan(g), f"step {t}: expected NaN (not ready), got {g}"
        else:
            assert math.isclose(g, e, rel_tol=REL, abs_tol=abs_tol), f"step {t}: {g} != {e}"


def _wilder_reference(values, period):
    """Wilder's average at each step, from its closed form over the whole history:
    seed = mean of the first `period` values, then weights a(1-a)^k with a = 1/period."""
    a = 1.0 / period
    out = [math.nan] * len(values)
    for t in range(period - 1, len(values)):
        seed = np.mean(values[:period])
        later = np.asarray(values[period:t + 1])
        k = np.arange(len(later))[::-1]
        out[t] = (1 - a) ** len(later) * seed + np.sum(a * (1 - a) ** k * later)
    return out


# -- EMA -----------------------------------------------------------------------------------

@pytest.mark.parametrize("span", WINDOWS)
def test_ema_matches_the_weighted_sum_over_all_history(span):
    x = _prices(1)
    ema = EMA(span)
    got = [ema.update(v) for v in x]
    a = 2.0 / (span + 1)
    expected = []
    for t in range(len(x)):
        w = a * (1 - a) ** np.arange(t)[::-1]
        full = (1 - a) ** t * x[0] + np.sum(w * x[1:t + 1])
        expected.append(full if t + 1 >= span else math.nan)
    _assert_series(got, expected)
    assert ema.ready and ema.value == got[-1] and ema.count == N


def test_ema_by_alpha_and_warmup():
    ema = EMA(alpha=0.5, warmup=3)
    assert [ema.update(v) for v in [2.0, 4.0]] == [pytest.approx(math.nan, nan_ok=True)] * 2
    assert not ema.ready
    assert ema.update(8.0) == 5.5           # 2 -> 3 -> 5.5
    assert ema.ready
    assert EMA(alpha=1.0).update(7.0) == 7.0
    with pytest.raises(ValueError, match="exactly one"):
        EMA()
    with pytest.raises(ValueError, match="exactly one"):
        EMA(10, alpha=0.1)
    with pytest.raises(ValueError):
        EMA(alpha=0.0)
    with pytest.raises(ValueError):
        EMA(0.5)


# -- SMA -----------------------------------------------------------------------------------

@pytest.mark.parametrize("window", WINDOWS)
def test_sma_matches_the_mean_of_the_window(window):
    x = _prices(2)
    sma = SMA(window)
    got = [sma.update(v) for v in x]
    expected = [np.mean(x[t - window + 1:t + 1]) if t + 1 >= window else math.nan for t in range(N)]
    _assert_series(got, expected)


# -- RSI -----------------------------------------------------------------------------------

@pytest.mark.parametrize("period", WINDOWS)
def test_rsi_matches_wilders_closed_form(period):
    x = _prices(3)
    rsi = RSI(period)
    got = [rsi.update(v) for v in x]
    d = np.diff(x)
    gains = _wilder_reference(np.maximum(d, 0.0), period)
    losses = _wilder_reference(np.maximum(-d, 0.0), period)
    expected = [math.nan] + [math.nan if math.isnan(gain) else 100.0 * gain / (gain + loss) if gain + loss > 0 else 50.0
                             for gain, loss in zip(gains, losses)]
    _assert_series(got, expected)
    assert all(0.0 <= v <= 100.0 for v in got[period:])


def test_rsi_edges():
    rsi = RSI(2)
    assert [rsi.update(v) for v in [5.0, 5.0, 5.0]][-1] == 50.0        # no movement
    assert rsi.update(6.0) == 100.0                                     # only gains
    rsi.reset()
    assert math.isnan(rsi.value) and not rsi.ready and rsi.count == 0
    assert [rsi.update(v) for v in [5.0, 4.0, 3.0]][-1] == 0.0          # only losses


# -- ATR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("period", WINDOWS)
def test_atr_matches_wilders_closed_form_of_true_ranges(period):
    high, low, close = _bars(4)
    atr = ATR(period)
    got = [atr.update(h, lo, c) for h, lo, c in zip(high, low, close)]
    tr = [high[0] - low[0]] + [max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
                               for t in range(1, N)]
    _assert_series(got, _wilder_reference(tr, period))


def test_atr_counts_gaps_through_the_previous_close():
    atr = ATR(1)
    atr.update(11.0, 9.0, 10.0)
    assert atr.update(21.0, 20.0, 20.5) == 11.0                         # gap up: high - prev close


# -- rolling volatility --------------------------------------------------------------------

@pytest.mark.parametrize("log_returns", [True, False])
@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", WINDOWS)
def test_volatility_matches_the_stdev_of_the_window_of_returns(window, ddof, log_returns):
    if window <= ddof:
        with pytest.raises(ValueError, match="ddof"):
            RollingVolatility(window, ddof=ddof)
        return
    x = _prices(5)
    vol = RollingVolatility(window, ddof=ddof, log_returns=log_returns)
    got = [vol.update(v) for v in x]
    r = np.log(x[1:] / x[:-1]) if log_returns else x[1:] / x[:-1] - 1.0     # returns formed as update() forms them
    expected = [math.nan] + [np.std(r[t - window + 1:t + 1], ddof=ddof) if t + 1 >= window else math.nan
                             for t in range(N - 1)]
    _assert_series(got, expected, abs_tol=ABS_AT_ZERO if window <= ddof + 1 else 0.0)


# -- VWAP ----------------------------------------------------------------------------------

def _fills(seed):
    rng = np.random.default_rng(seed)
    qty = rng.exponential(1.0, N) * (rng.random(N) > 0.1)      # some fills of no quantity
    return _prices(seed + 1), qty


def test_cumulative_vwap_matches_the_full_sums():
    p, q = _fills(6)
    vwap = VWAP()
    got = [vwap.update(a, b) for a, b in zip(p, q)]
    expected = [np.sum(p[:t + 1] * q[:t + 1]) / np.sum(q[:t + 1]) if np.sum(q[:t + 1]) > 0 else math.nan
                for t in range(N)]
    _assert_series(got, expected)
    vwap.reset()
    assert not vwap.ready and math.isnan(vwap.update(10.0, 0.0))
    assert vwap.update(10.0, 2.0) == 10.0 and vwap.ready


@pytest.mark.parametrize("window", WINDOWS)
def test_rolling_vwap_matches_the_window_sums(window):
    p, q = _fills(7)
    vwap = RollingVWAP(window)
    got = [vwap.update(a, b) for a, b in zip(p, q)]
    expected = []
    for t in range(N):
        if t + 1 < window:
            expected.append(math.nan)
            continue
        sl = slice(t - window + 1, t + 1)
        qs = np.sum(q[sl])
        expected.append(np.sum(p[sl] * q[sl]) / qs if qs > 0 else math.nan)   # no quantity, no price
    _assert_series(got, expected)
    if window == 1:
        assert any(math.isnan(v) for v in got[1:]), "the series should have windows of no quantity"


# -- z-score -------------------------------------------------------------------------------

@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("window", WINDOWS)
def test_zscore_matches_the_window_mean_and_stdev(window, ddof):
    if window <= ddof:
        with pytest.raises(ValueError, match="ddof"):
            ZScore(window, ddof=ddof)
        return
    x = _prices(8)
    z = ZScore(window, ddof=ddof)
    got = [z.update(v) for v in x]
    expected = []
    for t in range(N):
        if t + 1 < window:
            expected.append(math.nan)
            continue
        w = x[t - window + 1:t + 1]
        sd = np.std(w, ddof=ddof)
        expected.append((x[t] - np.mean(w)) / sd if sd > 0 else 0.0)
    _assert_series(got, expected, abs_tol=ABS_AT_ZERO)
    w = x[-window:]
    assert math.isclose(z.mean, np.mean(w), rel_tol=REL)
    assert math.isclose(z.std, np.std(w, ddof=ddof), rel_tol=REL, abs_tol=ABS_AT_ZERO)


def test_zscore_of_a_flat_window_is_zero_after_movement():
    z = ZScore(3)
    for v in [1.0, 5.0, 2.0, 7.0, 3.0, 3.0, 3.0, 3.0]:
        last = z.update(v)
    assert last == 0.0 and z.std == 0.0


@pytest.mark.parametrize("level", [1e4, 1e6])
def test_rolling_windows_keep_their_precision_at_a_high_level(level):
    # a BTC-like price: a large level with tiny moves, where plain rolling sums cancel badly
    x = _prices(9, n=20000, level=level, vol=1e-6)
    sma, z = SMA(50), ZScore(50)
    got_sma = [sma.update(v) for v in x]
    got_z = [z.update(v) for v in x]
    for t in range(49, len(x), 97):
        w = x[t - 49:t + 1]
        assert math.isclose(got_sma[t], np.mean(w), rel_tol=REL)
        assert math.isclose(got_z[t], (x[t] - np.mean(w)) / np.std(w, ddof=1), rel_tol=REL, abs_tol=1e-9)


def _exact_moments(w, ddof):
    """Mean and variance of doubles, exactly (numpy's two-pass is itself off by ~1e-8 here)."""
    f = [Fraction(float(v)) for v in w]
    mean = sum(f) / len(f)
    return mean, sum((v - mean) ** 2 for v in f) / (len(f) - ddof)


def test_a_calm_window_after_a_wild_one_keeps_its_precision():
    # what sliding Welford or plain sums get wrong: a spread far below the samples just gone
    rng = np.random.default_rng(10)
    x = np.concatenate([1e3 * rng.standard_normal(30), 5.0 + 1e-7 * rng.standard_normal(30)])
    z, vol = ZScore(7), RollingVolatility(7, log_returns=False)
    got = [z.update(v) for v in x]
    prices = 10.0 + x * 1e-3
    got_vol = [vol.update(v) for v in prices]
    r = prices[1:] / prices[:-1] - 1.0
    for t in range(40, 60):
        mean, var = _exact_moments(x[t - 6:t + 1], 1)
        assert math.isclose(got[t], float(Fraction(float(x[t])) - mean) / math.sqrt(var), rel_tol=REL)
        assert math.isclose(got_vol[t], math.sqrt(_exact_moments(r[t - 7:t], 1)[1]), rel_tol=REL)


# -- common behaviour ----------------------------------------------------------------------

def _all():
    return [EMA(3), SMA(3), RSI(3), ATR(3), RollingVolatility(3), VWAP(), RollingVWAP(3), ZScore(3)]


def _feed(ind, v):
    if isinstance(ind, ATR):
        return ind.update(v + 1.0, v - 1.0, v)
    if isinstance(ind, (VWAP, RollingVWAP)):
        return ind.update(v, 1.0 + v % 3)
    return ind.update(v)


@pytest.mark.parametrize("ind", _all(), ids=lambda i: type(i).__name__)
def test_value_is_nan_until_ready_and_reset_starts_over(ind):
    series = [10.0, 11.0, 10.5, 12.0, 11.5, 13.0, 12.5]
    assert not ind.ready and math.isnan(ind.value)
    first = []
    for v in series:
        out = _feed(ind, v)
        assert (out == ind.value) or (math.isnan(out) and math.isnan(ind.value))
        assert math.isnan(out) != ind.ready
        first.append(out)
    assert ind.ready and ind.count == len(series)
    ind.reset()
    assert not ind.ready and math.isnan(ind.value) and ind.count == 0
    again = [_feed(ind, v) for v in series]
    assert np.array_equal(first, again, equal_nan=True)


@pytest.mark.parametrize("cls", [SMA, RollingVolatility, RollingVWAP, ZScore, RSI, ATR])
def test_windows_must_hold_something(cls):
    with pytest.raises(ValueError, match="at least 1"):
        cls(0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False), min_size=1, max_size=200),
       st.integers(2, 12))
def test_sma_and_zscore_on_arbitrary_series(xs, window):
    sma, z = SMA(window), ZScore(window, ddof=0)
    for t, v in enumerate(xs):
        m, s = sma.update(v), z.update(v)
        if t + 1 < window:
            assert math.isnan(m) and math.isnan(s)
            continue
        w = np.asarray(xs[t - window + 1:t + 1])
        assert math.isclose(m, np.mean(w), rel_tol=REL, abs_tol=1e-12)
        sd = np.std(w)
        # the documented contract (indicators.pxd): a stdev above ~1e-11 of the range of the
        # last two windows; here with room, and never below a few ulps of the samples
        recent = np.asarray(xs[max(0, t - 2 * window + 1):t + 1])
        if sd > 1e-9 * max(np.ptp(recent), np.max(np.abs(w))):
            assert math.isclose(s, (v - np.mean(w)) / sd, rel_tol=REL, abs_tol=ABS_AT_ZERO)
