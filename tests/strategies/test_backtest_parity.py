"""One kernel: a strategy run live (its own process, the gateway daemon, the simulated venue)
against `ttquant replay --speed max` of a journal, and the same strategy backtested on the same
journal, send the same orders in the same order, and the gateway refuses the same ones with the
same codes (position limit 2001, rate limit 2003)."""
import os
import signal
import subprocess

from ttquant.core.gateway.risk_config import load_risk_limits
from ttquant.core.records import OrderStatus, RejectCode
from ttquant.core.rings import BroadcastReader
from ttquant.core.rings.names import exec_ring, shm_path
from ttquant.core.sim.matching import FillModel
from ttquant.strategies.backtest import run_backtest
from ttquant.strategies.backtest.data import events_from_journal
from ttquant.strategies.loader import load_strategy_class

from ttq_stack import record_market
from ttq_testing import TESTS_DIR, config_file, unlink_venue, wait_for

SID = 61
STRATEGY = os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:MarketOnly")    # as live names it
MarketOnly = load_strategy_class(STRATEGY)
BURST_RISK = """max_order_age_ms = 60000
[rate_limit]
strategy_orders_per_s = 0.001
strategy_burst = 5
[balances]
USDT = 100000
BTC = 1
[instruments.spot.BTCUSDT]
max_position = 0.003
"""
OPEN_RISK = """max_order_age_ms = 60000
[rate_limit]
orders_per_s = 100000
burst = 100000
[balances]
USDT = 100000000
BTC = 1000
"""


def _live(children, venue, tmp_path, journal, params, risk_file):
    """The strategy live on a max-speed replay of journal: [(side, type, price, qty, reject code)]
    of its orders by client id, once `expect` of them have a report."""
    expect = params.pop("expect")
    replay = children.start("-m", "ttquant.core.cli", "replay", journal, "--rings", venue, "--kinds", "ticks",
                            "--speed", "max", "--wait-for-strategy", "parity", stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "replay.log", "wb"))
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--orders", venue,
                         "--balances", "USDT=100000000,BTC=1000", "--latency-ms", "0",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    gw_config = config_file(tmp_path / "gateway.toml", "gateway", {
        "rings": {"name": venue}, "adapter": {"http_url": f"http://127.0.0.1:{port}"},
        "journal": {"path": "orders.journal"}, "risk": {"file": str(risk_file)},
        "loop": {"discover_interval_s": 0.1}})
    gateway = children.start("-m", "ttquant.core.cli", "gateway", "binance", "--config", gw_config,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gateway.log", "wb"))
    wait_for(lambda: os.path.exists(shm_path(exec_ring(venue))), timeout=60, what="the gateway's exec ring")
    execs = BroadcastReader(exec_ring(venue), start="oldest")
    st_config = config_file(tmp_path / "parity.toml", "strategy", {
        "name": "parity", "strategy_id": SID,
        "class": STRATEGY,
        "venues": {"binance": {"rings": venue}}, "params": params})
    strategy = children.start("-m", "ttquant.core.cli", "strategy", "run", "parity", "--config", st_config,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "parity.log", "wb"))
    orders = {}

    def reported():
        r = execs.poll()
        while r is not None:
            if r.strategy_id == SID and r.status < OrderStatus.POSITION:
                code = r.reject_code if r.status == OrderStatus.REJECTED else 0
                seen = orders.setdefault(r.client_order_id, [int(r.side), int(r.order_type), r.price, r.qty, 0])
                seen[4] = seen[4] or int(code)
            r = execs.poll()
        return len(orders) >= expect
    try:
        wait_for(reported, timeout=90, what=f"reports of {expect} orders of the strategy")
        for proc in (strategy, gateway, replay):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        reported()
    finally:
        execs.close()
        unlink_venue(venue)
    return [tuple(orders[k]) for k in sorted(orders)]


class _Sent(MarketOnly):
    """MarketOnly, keeping what it sent (a refused order never reaches the gateway's OMS)."""

    def place_order(self, instrument, side, qty, price=None, order_type=None, reduce_only=False):
        cid = super().place_order(instrument, side, qty, price, order_type, reduce_only)
        o = self.orders.get(cid)
        self.sent[cid] = (int(side), int(o.order_type), o.price_raw, o.qty_raw)
        return cid

    def on_start(self):
        super().on_start()
        self.sent = {}


def _backtest_rows(journal, params, risk_file):
    events, table = events_from_journal(journal)
    r = run_backtest(_Sent, params, events, table, model=FillModel(latency_ns=0), strategy_id=SID,
                     limits=load_risk_limits(str(risk_file), table))
    refused = dict(r.strategy.codes)
    rows = [(*r.strategy.sent[cid], refused.get(cid, 0)) for cid in sorted(r.strategy.sent)]
    return r, rows


def test_risk_rejects_in_a_backtest_are_the_live_ones(children, venue, tmp_path):
    record_market(tmp_path / "journal", seconds=4)
    risk = tmp_path / "risk.toml"
    risk.write_text(BURST_RISK)
    params = {"mode": "burst", "buys": 4, "sells": 3}
    r, backtest = _backtest_rows(tmp_path / "journal", dict(params), risk)
    codes = [row[4] for row in backtest]
    # 3 buys fill the position limit, the 4th is refused for it; 2 sells take the rate bucket's
    # last tokens (a refused order takes none), the 3rd finds it empty
    assert codes == [0, 0, 0, RejectCode.POSITION_LIMIT, 0, 0, RejectCode.RATE_LIMIT], codes
    assert r.rejects_by_code == {RejectCode.POSITION_LIMIT: 1, RejectCode.RATE_LIMIT: 1}
    live = _live(children, venue, tmp_path, tmp_path / "journal", {**params, "expect": len(backtest)}, risk)
    assert live == backtest


def test_a_backtest_sends_the_orders_the_strategy_sends_live_on_a_replay(children, venue, tmp_path):
    record_market(tmp_path / "journal", seconds=20, waves=True)
    risk = tmp_path / "risk.toml"
    risk.write_text(OPEN_RISK)
    params = {"mode": "cross"}
    r, backtest = _backtest_rows(tmp_path / "journal", dict(params), risk)
    assert len(backtest) >= 20 and not any(row[4] for row in backtest), backtest[:5]
    assert {row[0] for row in backtest} == {1, 2}
    live = _live(children, venue, tmp_path, tmp_path / "journal", {**params, "expect": len(backtest)}, risk)
    assert live == backtest
