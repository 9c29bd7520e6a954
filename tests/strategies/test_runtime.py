"""`ttquant strategy run` as a real process on the trading stack: orders go out through its own
ring and come back as its own exec reports; a strategy that raises stops cleanly (its orders
canceled, exit 3) or carries on, by config, and never takes the gateway or another strategy
down; a full order ring refuses at once."""
import os
import signal
import subprocess
import time

import pytest

from ttquant.core.records import OrderStatus as S
from ttquant.core.records import RecordType
from ttquant.core.rings import SpscWriter
from ttquant.strategies.base import OrderRefused
from ttquant.strategies.runtime import LiveContext, StrategyConfigError, load_strategy_config

from ttq_stack import TradingStack
from ttq_testing import TESTS_DIR, config_file, wait_for


def strategy_config(tmp_path, venue, name, sid, **params):
    on_error = params.pop("on_error", "stop")
    return config_file(tmp_path / f"{name}.toml", "strategy", {
        "name": name, "strategy_id": sid,
        "class": os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:RestingOrder"),
        "venues": {"binance": {"rings": venue}}, "params": {"market": None, "qty": None, **params},
        "runtime": {"on_error": on_error, "cancel_all_on_stop": True}})


def run(children, tmp_path, name, config, log_name=None):
    log = open(tmp_path / f"{log_name or name}.log", "wb")
    env = {"PYTHONPATH": os.path.join(TESTS_DIR, "strategies") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return children.start("-m", "ttquant.core.cli", "strategy", "run", name, "--config", config,
                          stdout=log, stderr=subprocess.STDOUT, env=env), log.name


def test_a_failing_strategy_stops_cleanly_and_the_others_go_on(children, venue, tmp_path):
    s = TradingStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        steady, steady_log = run(children, tmp_path, "steady", strategy_config(tmp_path, venue, "steady", 31, every=20))
        crasher, crash_log = run(children, tmp_path, "crasher",
                                 strategy_config(tmp_path, venue, "crasher", 32, every=5, crash_after=12))
        assert crasher.wait(timeout=90) == 3                   # stopped on the error, cleanly
        text = open(crash_log).read()
        assert "deliberate failure" in text and "Traceback" in text
        def crasher_ids(status):
            return {r.client_order_id for r in s.drain() if r.strategy_id == 32 and r.status == status}

        # what it placed before the error reaches the venue (its reports may still be on their
        # way when it has exited), and its cancel-all on the way out cancels every one of them
        wait_for(lambda: crasher_ids(S.ACCEPTED) and crasher_ids(S.ACCEPTED) <= crasher_ids(S.CANCELED),
                 timeout=30, what="the failed strategy's orders accepted, then canceled")
        # the gateway and the other strategy carry on
        before = len([r for r in s.drain() if r.strategy_id == 31 and r.status == S.ACCEPTED])
        wait_for(lambda: len([r for r in s.drain() if r.strategy_id == 31 and r.status == S.ACCEPTED]) > before,
                 timeout=60, what="the steady strategy's next order accepted")
        assert s.gateway.poll() is None and steady.poll() is None
        steady.send_signal(signal.SIGTERM)
        assert steady.wait(timeout=30) == 0
    finally:
        s.close()


def test_on_error_continue_keeps_the_strategy_running(children, venue, tmp_path):
    s = TradingStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        proc, log = run(children, tmp_path, "stubborn",
                        strategy_config(tmp_path, venue, "stubborn", 33, every=5, crash_after=3, on_error="continue"))
        wait_for(lambda: open(log).read().count("deliberate failure") >= 3, timeout=60, what="three failures")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "handler errors" in open(log).read()
    finally:
        s.close()


def test_a_full_order_ring_refuses_at_once(venue, tmp_path):
    cfg = load_strategy_config(strategy_config(tmp_path, venue, "full", 34))
    ctx = LiveContext(cfg)
    ring = SpscWriter(f"/ttq.{venue}.orders.full", RecordType.ORDER, 4)

    ctx.order_entry.add_venue("binance", ring)
    from ttquant.core.instruments import Instrument, MarketType
    from ttquant.core.records import Order
    inst = Instrument(1, "binance", "BTCUSDT", MarketType.SPOT, "BTC", "USDT", 2, 3, 1, 1, 1, 0, 1, 0, 0)
    for k in range(4):
        ctx.send(inst, Order(client_order_id=k + 1))
    with pytest.raises(OrderRefused, match="full"):
        ctx.send(inst, Order(client_order_id=5))
    assert ctx.orders_refused == 1
    ring.unlink()
    ring.close()


def test_a_bad_strategy_config_names_the_key(tmp_path):
    here = os.path.join(TESTS_DIR, "strategies")
    for overrides, key in [({"strategy_id": 0}, "strategy_id:"), ({"class": "nope"}, "class:"),
                           ({"name": "X Y"}, "name:"), ({"loop": {"wait": "busy"}}, "loop.wait:"),
                           ({"runtime": {"wiat": 1}}, "runtime.wiat: unknown key (known: cancel_all_on_stop, "),
                           ({"venues": {"binance": {"ring": "x"}}}, "venues.binance.ring: unknown key (known: rings)"),
                           ({"class": os.path.join(here, "runtime_strategies.py:Nope")}, "class:"),
                           ({"class": os.path.join(here, "missing.py:Nope")}, "missing.py: no such file")]:
        path = config_file(tmp_path / "s.toml", "strategy", overrides)
        with pytest.raises(StrategyConfigError) as err:
            load_strategy_config(str(path))
        assert str(path) in str(err.value) and key in str(err.value), str(err.value)


def _started_holding(log_path, after=0):
    """What the strategy said it held as it started (the n-th start from `after`)."""
    import json
    lines = [line for line in open(log_path).read().splitlines() if "started holding " in line]
    return json.loads(lines[after].split("started holding ", 1)[1]) if len(lines) > after else None


def test_a_strategy_killed_holding_a_position_resumes_with_it_and_its_open_orders(children, venue, tmp_path):
    """Under systemd a restart is routine: a strategy SIGKILLed mid-position starts again with the
    position the venue says it has (exact to the raw unit, cost basis and fees included) and its
    resting order, and carries on with client ids the gateway has not seen."""
    from ttquant.core.instruments import InstrumentTable, instruments_path
    from ttquant.core.portfolio import Portfolio
    s = TradingStack(children, venue, tmp_path, venue_args=("--balances", "USDT=100000,BTC=1"))
    try:
        s.wait_ready()
        config = config_file(tmp_path / "acc.toml", "strategy", {
            "name": "acc", "strategy_id": 41,
            "class": os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:Accumulate"),
            "venues": {"binance": {"rings": venue}}, "params": {"market": None, "qty": None, "every": 3, "buys": 3}})
        first, log = run(children, tmp_path, "acc", config)
        assert wait_for(lambda: _started_holding(log), timeout=60, what="the start") == {"positions": [], "orders": []}

        def venue_side():
            state = s.venue_state()
            fills = [f for f in state["fills"] if f["strategy_id"] == 41]
            resting = sorted(o["client_order_id"] for o in state["open"] if o["strategy_id"] == 41)
            return state, fills, resting
        wait_for(lambda: len(venue_side()[1]) >= 3 and venue_side()[2], timeout=90,
                 what="three fills and a resting bid")
        os.killpg(first.pid, signal.SIGKILL)                  # holding a position, an order resting
        first.wait(timeout=10)
        time.sleep(0.5)                                       # anything in flight lands
        state, fills, resting = venue_side()
        table = InstrumentTable.load(instruments_path(venue))
        expected = Portfolio(fee_precision=8)
        for f in sorted(fills, key=lambda f: f["ts"]):
            expected.on_fill(table.get(f["instrument_id"]), f["side"], f["price"], f["qty"], f["fee"])
        want = [[p.instrument_id, p.qty_raw, p.cost_raw, p.realised_raw, p.fees_raw, p.fills]
                for p in expected.positions()]

        second, log2 = run(children, tmp_path, "acc", config, log_name="acc-restarted")
        held = wait_for(lambda: _started_holding(log2), timeout=60, what="the restarted strategy's start")
        assert held == {"positions": want, "orders": resting}, (held, want, resting)
        assert want and want[0][1] > 0
        # it carries on: new orders accepted (client ids above the ones the gateway has seen)
        before = {r.client_order_id for r in s.drain() if r.strategy_id == 41 and r.status == S.ACCEPTED}
        wait_for(lambda: {r.client_order_id for r in s.drain()
                          if r.strategy_id == 41 and r.status in (S.ACCEPTED, S.FILLED)} - before,
                 timeout=60, what="an order after the restart")
        assert not [r for r in s.drain() if r.strategy_id == 41 and r.reject_code == 4001]
        assert all(n == 1 for n in s.venue_state()["new_requests"].values())
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    finally:
        s.close()
