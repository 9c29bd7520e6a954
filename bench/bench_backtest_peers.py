"""backtest_noop, backtest_ema_cross, backtest_full (DESIGN.md §9, issue 10) in the peers:
NautilusTrader's BacktestEngine (impl nautilus_trader) and hftbacktest (impl hftbacktest).

The work is TTQuant's (bench/bench_backtest.py): the events of bench/backtest_data.py
(`bench_events`: the BTCUSDT spot + USD-M captures repeated to >= 10 M events; "top" = trades
and BBOs for noop and ema_cross, "full" = every recorded event, depth levels too, for
backtest_full, which runs the EMA cross) and its EMA 10/50 cross rule on the USD-M perpetual's
trades, an order on every cross. per_s = our events / the engine's run time (conversion into
the peer's data, engine set-up and numba compilation excluded); extra_info carries the orders
sent beside the reference count of `ema_cross_decisions` over the same events.

The peers run in their own venv (build/bench/peers-venv, requirements/bench-peers.txt: they
pin numpy / pandas below our lock) as a subprocess of this session: bench/backtest_peers.py.
NautilusTrader's runs take about a minute each here (10 M Python-level events at ~0.2-0.3 M/s,
plus ~20 s of conversion), so only hftbacktest's are part of bench-quick.
"""
import warnings

import pytest

from backtest_data import bench_events, bench_events_path, ema_cross_decisions, ema_instrument_id
from backtest_peers import ensure_peers_venv, instruments_meta, run_peer
from support import rate_info

_WORK = {}


def _work(which):
    """(cache path, instruments meta, EMA instrument, reference order count) of one selection."""
    if which not in _WORK:
        events, table = bench_events(which)
        iid = ema_instrument_id(table)
        _WORK[which] = (bench_events_path(which), instruments_meta(table), iid,
                        ema_cross_decisions(events, iid, table))
        del events
    return _WORK[which]


@pytest.fixture(scope="module")
def peers_venv():
    return ensure_peers_venv()


def _run(benchmark, path_name, impl, strategy, which):
    path, meta, iid, reference = _work(which)
    if strategy == "noop":
        reference = 0
    result = {}

    def run():
        result.update(run_peer(impl, strategy, which, path, meta, iid))
    benchmark.pedantic(run, rounds=1, iterations=1)
    extra = {k: v for k, v in result.items() if k not in ("seconds", "events", "orders")}
    match = result["orders"] == reference
    if not match:
        warnings.warn(f"{impl} {path_name}: {result['orders']} orders, the rule says {reference}", stacklevel=2)
    benchmark.extra_info.update(rate_info(
        path_name, impl, result["events"], result["seconds"], events=result["events"],
        orders=result["orders"], reference_orders=reference, orders_match=match,
        strategy="ema_cross" if strategy == "ema" else "noop", events_kind=which, **extra))
    return result


IMPLS = [pytest.param("hftbacktest", marks=pytest.mark.quick), "nautilus_trader"]


@pytest.mark.parametrize("impl", IMPLS)
def test_backtest_noop(benchmark, peers_venv, impl):
    _run(benchmark, "backtest_noop", impl, "noop", "top")


@pytest.mark.parametrize("impl", IMPLS)
def test_backtest_ema_cross(benchmark, peers_venv, impl):
    _run(benchmark, "backtest_ema_cross", impl, "ema", "top")


@pytest.mark.parametrize("impl", IMPLS)
def test_backtest_full(benchmark, peers_venv, impl):
    _run(benchmark, "backtest_full", impl, "ema", "full")
