"""The whole system under test with no venue feed: `ttquant replay` puts recorded ticks back into
a stack's tick ring, the simulated venue's order side matches against them, and an unchanged
gateway (sim adapter) and strategy process trade on the replay as they do on md."""
import os
import signal
import subprocess

from ttquant.core.instruments import MarketType
from ttquant.core.records import OrderStatus
from ttquant.core.rings import BroadcastReader
from ttquant.core.rings.names import exec_ring, shm_path

from ttq_stack import record_market
from ttq_testing import TESTS_DIR, config_file, unlink_venue, wait_for


def test_a_strategy_and_the_gateway_trade_on_a_replay_as_on_md(children, venue, tmp_path):
    inst = record_market(tmp_path / "journal")
    replay = children.start("-m", "ttquant.core.cli", "replay", tmp_path / "journal", "--rings", venue,
                            "--kinds", "ticks", "--speed", "1", stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "replay.log", "wb"))
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--orders", venue,
                         "--balances", "USDT=100000,BTC=1", "--latency-ms", "1",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    (tmp_path / "risk.toml").write_text("max_order_age_ms = 3000\n[rate_limit]\norders_per_s = 100\nburst = 100\n")
    gw_config = config_file(tmp_path / "gateway.toml", "gateway", {
        "rings": {"name": venue}, "adapter": {"http_url": f"http://127.0.0.1:{port}"},
        "journal": {"path": "orders.journal"}, "risk": {"file": "risk.toml"}, "loop": {"discover_interval_s": 0.1}})
    gateway = children.start("-m", "ttquant.core.cli", "gateway", "binance", "--config", gw_config,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "gateway.log", "wb"))
    st_config = config_file(tmp_path / "acc.toml", "strategy", {
        "name": "acc", "strategy_id": 51,
        "class": os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:Accumulate"),
        "venues": {"binance": {"rings": venue}}, "params": {"market": None, "qty": None, "every": 3, "buys": 2}})
    strategy = children.start("-m", "ttquant.core.cli", "strategy", "run", "acc", "--config", st_config,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "acc.log", "wb"))
    try:
        wait_for(lambda: os.path.exists(shm_path(exec_ring(venue))), timeout=60, what="the gateway's exec ring")
        execs = BroadcastReader(exec_ring(venue), start="oldest")
        fills, seen = [], []

        def filled():
            r = execs.poll()
            while r is not None:
                if r.strategy_id == 51:
                    seen.append((int(r.status), int(r.reject_code)))
                    if r.last_qty:
                        fills.append(r)
                r = execs.poll()
            return len(fills) >= 2
        try:
            wait_for(filled, timeout=60, what="two fills of the strategy's market orders on the replayed quotes")
        except BaseException:
            raise AssertionError(f"reports of the strategy (status, reject code): {seen[:20]}") from None
        # market buys filled at the replayed asks: mid + a tick, mid 61000 and up to 49 ticks above
        base = 61_000 * 10 ** inst.price_precision
        assert all(f.instrument_id == inst.instrument_id and base + inst.tick_size <= f.last_price
                   <= base + 50 * inst.tick_size for f in fills), [f.last_price for f in fills]
        assert {int(f.status) for f in fills} <= {OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED}
        execs.close()
        for proc in (strategy, gateway, replay):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        assert inst.market_type == MarketType.SPOT
    finally:
        unlink_venue(venue)
