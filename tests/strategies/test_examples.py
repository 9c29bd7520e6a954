"""The example strategies, backtested over the real BTCUSDT spot and USDT-M captures (the md
normaliser's own events): each trades, never raises, ends with positions equal to the venue's
own record, with PnL equal to the cash flows the venue reports, and behaves as it says."""
from decimal import Decimal

import pytest

from ttquant.core.records import Side
from ttquant.strategies.backtest import events_from_capture, run_backtest
from ttquant.strategies.examples.ema_cross import EmaCross
from ttquant.strategies.examples.grid import Grid
from ttquant.strategies.examples.market_maker import AvellanedaStoikov
from ttquant.strategies.examples.mean_reversion import MeanReversion
from ttquant.strategies.examples.spread_arb import SpreadArb

EXAMPLES = {
    "ema_cross": (EmaCross, {"fast": 20, "slow": 80, "qty": 0.001}),
    "mean_reversion": (MeanReversion, {"window": 200, "entry": 2.0, "exit": 0.5, "qty": 0.001}),
    "grid": (Grid, {"levels": 5, "spacing_ticks": 300, "qty": 0.001}),
    "market_maker": (AvellanedaStoikov, {"market": "usdm", "qty": 0.001, "max_inventory": 3}),
    "spread_arb": (SpreadArb, {"entry_bps": -3.0, "exit_bps": -3.5, "qty": 0.001}),
}


@pytest.fixture(scope="module")
def capture():
    return events_from_capture()


@pytest.fixture(scope="module")
def results(capture):
    events, table = capture
    return {name: run_backtest(cls, params, events, table) for name, (cls, params) in EXAMPLES.items()}


def cash_and_positions(matcher, table):
    """Cash (quote) and positions (base) from the venue's fills alone, exactly."""
    cash, pos = Decimal(0), {}
    for f in matcher.fills:
        inst = table[f["instrument_id"]]
        price = Decimal(f["price"]).scaleb(-inst.price_precision)
        qty = Decimal(f["qty"]).scaleb(-inst.size_precision)
        sign = 1 if f["side"] == Side.BUY else -1
        cash -= sign * price * qty + Decimal(f["fee"]).scaleb(-8)
        pos[inst.instrument_id] = pos.get(inst.instrument_id, Decimal(0)) + sign * qty
    return cash, pos


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_trades_and_its_books_match_the_venue(results, capture, name):
    events, table = capture
    r = results[name]
    assert r.errors == 0 and r.events == len(events)
    assert r.orders_sent >= 10 and r.fills >= 5, (r.orders_sent, r.fills)
    cash, venue_pos = cash_and_positions(r.matcher, table)
    for inst_id, qty in venue_pos.items():
        assert Decimal(str(r.strategy.position(table[inst_id]))) == qty or \
            abs(Decimal(str(r.strategy.position(table[inst_id]))) - qty) < Decimal("1e-12"), inst_id
        assert r.strategy.portfolio.position(table[inst_id]).qty == qty
    marked = cash + sum(q * Decimal(r.marks[i]).scaleb(-table[i].price_precision) for i, q in venue_pos.items())
    # average-cost rounding is one unit at the PnL precision per partial close (portfolio.py)
    assert abs(r.equity() - marked) <= Decimal(r.fills) * Decimal("1e-8"), (r.equity(), marked)


def test_ema_cross_holds_one_lot_or_nothing(results, capture):
    events, table = capture
    s = results["ema_cross"].strategy
    assert s.position(s.inst) in (0.0, 0.001) or abs(s.position(s.inst) - 0.001) < 1e-12


def test_market_maker_inventory_stays_within_its_limit(results, capture):
    events, table = capture
    r = results["market_maker"]
    s = r.strategy
    pos, worst = 0, 0
    for f in r.matcher.fills:
        pos += f["qty"] if f["side"] == Side.BUY else -f["qty"]
        worst = max(worst, abs(pos))
    lot = s.inst.qty_to_raw("0.001")
    assert worst <= (3 + 1) * lot                   # a quote in flight may fill past the limit once
    assert {f["liquidity"] for f in r.matcher.fills} == {1}     # post-only: every fill as maker


def test_spread_arb_ends_hedged(results, capture):
    events, table = capture
    s = results["spread_arb"].strategy
    assert abs(s.position(s.spot) + s.position(s.perp)) < 0.0005
    assert len(s.basis_seen) > 1000


def test_grid_replaces_every_filled_order_one_level_back(results):
    r = results["grid"]
    s = r.strategy
    assert len(s.by_order) == 2 * s.levels         # the grid keeps its size: each fill is replaced
    buys = [f for f in r.matcher.fills if f["side"] == Side.BUY]
    sells = [f for f in r.matcher.fills if f["side"] == Side.SELL]
    assert buys and sells
    # every order's limit sits on the grid (a fill may be better, when the market had moved past it)
    assert all((o.price - s.center) % s.spacing == 0 for o in r.matcher.orders.values())


def test_a_backtest_is_deterministic(capture):
    events, table = capture
    cls, params = EXAMPLES["market_maker"]
    a = run_backtest(cls, params, events[:200_000], table)
    b = run_backtest(cls, params, events[:200_000], table)
    assert a.matcher.fills == b.matcher.fills and a.equity() == b.equity()


def test_prices_and_quantities_round_onto_the_grid_never_more_aggressive():
    from ttquant.core.instruments import Instrument, MarketType
    from ttquant.strategies.base import BaseStrategy, OrderRefused
    inst = Instrument(1, "binance", "BTCUSDT", MarketType.LINEAR_PERPETUAL, "BTC", "USDT", 2, 3, 10, 1, 1, 0, 1, 0, 0)
    assert BaseStrategy.price_to_raw(inst, 60390.0, Side.BUY) == 6039000          # exact stays exact
    assert BaseStrategy.price_to_raw(inst, 60390.07, Side.BUY) == 6039000         # a buy rounds down to the tick
    assert BaseStrategy.price_to_raw(inst, 60390.07, Side.SELL) == 6039010        # a sell rounds up
    assert BaseStrategy.price_to_raw(inst, 0.1 * 3 * 1e5, Side.SELL) == 3000000   # binary noise is not a tick
    assert BaseStrategy.qty_to_raw(inst, 0.0019) == 1 and BaseStrategy.qty_to_raw(inst, 0.3) == 300
    assert BaseStrategy.price_to_raw(inst, "61000.5", Side.BUY) == 6100050
    for bad in (0, -1, float("nan"), float("inf"), None, "x"):
        with pytest.raises(OrderRefused):
            BaseStrategy.price_to_raw(inst, bad, Side.BUY)
