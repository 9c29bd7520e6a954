"""backtest_noop, backtest_ema_cross, backtest_full (DESIGN.md §9, issue 10), impl ttquant:
events/s of run_backtest, the live kernel (strategies/tick_dispatch.pyx fed from an array, the
gateway's checks and order state machine in-process, the sim matcher), over the events of
bench/backtest_data.py: the trades and best bid/offer quotes of the BTCUSDT captures repeated
to at least 10 M events (the whole stream with depth levels for backtest_full). The decision
rule is the one every peer follows (backtest_data.ema_cross_sides): EMA 10/50 of the USD-M
perpetual's trade prices, a market order of 0.001 on every cross, filled against the quotes;
the order count is checked against the rule's reference and printed beside the figure.
Targets: no-op >= 5 M events/s, EMA cross >= 1 M events/s and 10x NautilusTrader on the same
work, backtest_full at least hftbacktest's rate (bench/bench_backtest_peers.py, same session).
"""
import time

import pytest

from ttquant.core.records import OrderType
from ttquant.strategies.backtest import run_backtest
from ttquant.strategies.base import BaseStrategy

import backtest_data as data
from support import QUICK, rate_info

MIN_EVENTS = 2_000_000 if QUICK else 10_000_000


class Noop(BaseStrategy):
    """Handlers that take every event and do nothing: the engine's own cost per event."""
    name = "noop"

    def on_trade(self, t):
        pass

    def on_quote(self, q):
        pass


class EmaCrossEveryCross(BaseStrategy):
    """The benchmark's rule (backtest_data module doc), as a strategy author writes it."""
    name = "ema_cross_bench"

    def on_start(self):
        self.inst = self.instrument("BTCUSDT", "usdm")
        self.iid = self.inst.instrument_id
        self.af, self.aslow = 2.0 / (data.EMA_FAST + 1.0), 2.0 / (data.EMA_SLOW + 1.0)
        self.ef = self.es = None
        self.n, self.prev = 0, 0

    def on_trade(self, t):
        if t.instrument.instrument_id != self.iid:
            return
        p = t.price
        if self.ef is None:
            self.ef = self.es = p
        self.ef = self.af * p + (1.0 - self.af) * self.ef
        self.es = self.aslow * p + (1.0 - self.aslow) * self.es
        self.n += 1
        if self.n < data.EMA_SLOW:
            return
        d = self.ef - self.es
        s = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
        if s:
            if self.prev and s != self.prev:
                (self.buy if s > 0 else self.sell)(self.inst, data.ORDER_QTY, order_type=OrderType.MARKET)
            self.prev = s


def _run(benchmark, path, which, cls):
    events, table = data.bench_events(which, MIN_EVENTS)
    out = {}

    def run():
        t0 = time.perf_counter()
        out["result"] = run_backtest(cls, {}, events, table)
        out["seconds"] = time.perf_counter() - t0
    benchmark.pedantic(run, rounds=1, iterations=1)
    r = out["result"]
    assert r.events == len(events) and r.errors == 0
    info = rate_info(path, "ttquant", len(events), out["seconds"], orders=r.orders_sent, fills=r.fills,
                     events=len(events), rejects=sum(r.rejects_by_code.values()))
    benchmark.extra_info.update(info)
    print(f"\n{path} ttquant: {len(events):,} events, {info['per_s'] / 1e6:.2f} M events/s, "
          f"{r.orders_sent} orders, {r.fills} fills")
    return r, events, table


@pytest.mark.quick
def test_backtest_noop(benchmark):
    r, _, _ = _run(benchmark, "backtest_noop", "top", Noop)
    assert r.orders_sent == 0


@pytest.mark.quick
def test_backtest_ema_cross(benchmark):
    r, events, table = _run(benchmark, "backtest_ema_cross", "top", EmaCrossEveryCross)
    iid = data.ema_instrument_id(table)
    expected = data.ema_cross_sides(data.trade_prices(events, iid, table[iid].price_precision))
    assert r.orders_sent == len(expected) and r.fills >= len(expected) * 0.9, (r.orders_sent, len(expected))
    benchmark.extra_info["reference_orders"] = len(expected)


def test_backtest_full(benchmark):
    r, events, table = _run(benchmark, "backtest_full", "full", EmaCrossEveryCross)
    iid = data.ema_instrument_id(table)
    assert r.orders_sent == len(data.ema_cross_sides(data.trade_prices(events, iid, table[iid].price_precision)))
