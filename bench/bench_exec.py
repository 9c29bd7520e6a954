"""The order path (DESIGN.md §9): tick_to_order and risk_check.

tick_to_order: a trade written to the tick ring (its ts_pub) -> `ttquant strategy run` with a
strategy that buys on every trade -> its order ring -> `ttquant gateway` (dry adapter) has
taken the client id and run every risk check (its trace's check time); the two processes
pinned to the two cores, spinning (`ttquant_spin`) or hybrid (`ttquant_hybrid`). The same chain
over pyzmq ipc PUB/SUB + PUSH/PULL with the same strategy class, OMS and risk engine, in the
same session, is `pyzmq_ipc`.

risk_check: every check of a new order that passes them all (the dearest path), from C, per
order; `python` is the same rules written in plain Python (what the original design had).
"""
import os
import pathlib
import subprocess
import sys
import time
import uuid

import numpy as np
import orjson
import pytest

from ttquant.core.gateway.risk import RiskEngine
from ttquant.core.gateway.risk_config import parse_risk_limits
from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
from ttquant.core.records import EventFlag, EventKind, MarketEvent, Order, OrderAction, OrderType, RecordType, Side
from ttquant.core.rings import BroadcastWriter
from ttquant.core.rings.names import order_ring, shm_path, tick_ring
from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir

from support import QUICK, latency_info
from ttq_testing import config_file

BENCH_DIR = str(pathlib.Path(__file__).resolve().parent)
TICKS = 2_000 if QUICK else 20_000
TICK_INTERVAL_S = 0.0005                 # 2000 ticks/s: each order is answered before the next tick
RISK = """max_order_age_ms = 500
fat_finger_pct = 10
max_notional = 1000000
max_open_orders = 0
[rate_limit]
orders_per_s = 1000000
burst = 1000000000000
strategy_orders_per_s = 1000000
strategy_burst = 1000000000000
[balances]
USDT = 1000000000
BTC = 1000
[instruments.spot.BTCUSDT]
max_position = 1000000
"""


def _table():
    t = InstrumentTable("binance")
    for market, name in (("spot", "cryptofeed_spot_exchangeinfo.0"), ("usdm", "cryptofeed_usdm_exchangeinfo.0")):
        (msg,) = read_cryptofeed_http(sample_data_dir() / "binance" / name)
        merge_instruments(t, instruments_from_exchange_info(orjson.loads(msg.payload), market, symbols=["BTCUSDT"])[0])
    return t


def _trade(inst, k):
    return MarketEvent(kind=EventKind.TRADE, instrument_id=inst.instrument_id, venue_id=1, seq=k,
                       price=inst.price_to_raw("61000") + k % 100 * inst.tick_size, qty=inst.qty_to_raw("0.01"),
                       flags=EventFlag.LAST_IN_BATCH)


def _join(strategy_trace, gateway_trace):
    trigger = {int(c): int(t) for c, t in np.load(strategy_trace) if t > 0}
    gw = np.load(gateway_trace)
    return np.array([int(row[-1]) - trigger[int(row[1])] for row in gw if int(row[1]) in trigger], np.int64)


def _run_ttquant(tmp_path, wait):
    """tick ring (here) -> strategy process (CPU 0) -> gateway process (CPU 1); latency per order."""
    from ring_kernels import pace_ticks
    from ttq_testing import SESSION_PREFIX, unlink_venue
    name = f"{SESSION_PREFIX}tto{uuid.uuid4().hex[:6]}"
    table = _table()
    spot = table.by_symbol("BTCUSDT", MarketType.SPOT)
    procs = []
    try:
        table.save(instruments_path(name))
        ticks = BroadcastWriter(tick_ring(name), RecordType.MARKET_EVENT, 1 << 16)
        (tmp_path / "risk.toml").write_text(RISK)
        config_file(tmp_path / "gateway.toml", "gateway", {
            "rings": {"name": name}, "adapter": {"kind": "dry"},
            "journal": {"path": f"{name}.journal", "fsync": "never"}, "risk": {"file": "risk.toml"},
            "loop": {"wait": wait, "discover_interval_s": 0.05}, "process": {"cpus": [1]}})
        config_file(tmp_path / "strategy.toml", "strategy", {
            "name": "bench", "strategy_id": 3, "class": "bench_strategies:TradeEveryTick",
            "venues": {"binance": None, name: {"rings": name}}, "params": {"market": None, "qty": None},
            "runtime": {"cancel_all_on_stop": False}, "loop": {"wait": wait}, "process": {"cpus": [0]}})
        cli = [sys.executable, "-m", "ttquant.core.cli"]
        env = dict(os.environ, TTQ_GATEWAY_TRACE=str(tmp_path / "gw.npy"), TTQ_STRATEGY_TRACE=str(tmp_path / "st.npy"),
                   PYTHONPATH=BENCH_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""), TTQ_LOG_LEVEL="WARNING")
        gw = subprocess.Popen([*cli, "gateway", "binance", "--config", str(tmp_path / "gateway.toml")], env=env,
                              start_new_session=True, stderr=subprocess.PIPE)
        procs.append(gw)
        st = subprocess.Popen([*cli, "strategy", "run", "bench", "--config", str(tmp_path / "strategy.toml")], env=env,
                              start_new_session=True, stderr=subprocess.PIPE)
        procs.append(st)
        deadline = time.monotonic() + 60
        while not os.path.exists(shm_path(order_ring(name, "bench"))) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)                          # the gateway picks the ring up; both loops settle
        # the tick writer shares the gateway's core: its wake-ups then delay the order's second hop,
        # not the strategy that has to see the tick first
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(os.environ.get("TTQ_WRITER_CPU", "1"))})
        # warm-up (200, not measured), then the ticks: each stamped ts_pub at the store and the
        # writer asleep straight after, as md is between frames
        ticks_raw = np.frombuffer(b"".join(_trade(spot, k).tobytes() for k in range(200 + TICKS)), np.uint8)
        pace_ticks(ticks, ticks_raw, 200 + TICKS, int(TICK_INTERVAL_S * 1e9))
        time.sleep(0.5)
        os.sched_setaffinity(0, before)
        for p in (st, gw):
            p.terminate()
            assert p.wait(timeout=30) == 0, p.stderr.read().decode()[-2000:]
        lat = _join(tmp_path / "st.npy", tmp_path / "gw.npy")
        ticks.close()
        return lat[200:] if len(lat) > TICKS else lat
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        unlink_venue(name)
        for f in os.listdir(tmp_path):
            if f.endswith(".journal"):
                os.unlink(tmp_path / f)


def _run_zmq(tmp_path, peers):
    import zmq

    import zmq_chain
    table = _table()
    path = tmp_path / "instruments.json"
    table.save(str(path))
    (tmp_path / "risk.toml").write_text(RISK)
    spot = table.by_symbol("BTCUSDT", MarketType.SPOT)
    tag = uuid.uuid4().hex[:8]
    ticks_ep, orders_ep = f"ipc:///tmp/ttq-bench-{tag}-ticks", f"ipc:///tmp/ttq-bench-{tag}-orders"
    n = TICKS + 200
    zctx = zmq.Context()
    pub = zctx.socket(zmq.PUB)
    pub.bind(ticks_ep)
    gw_ready, st_ready = peers.event(), peers.event()
    peers.start(zmq_chain.gateway, str(path), str(tmp_path / "risk.toml"), orders_ep, n, 1, gw_ready,
                str(tmp_path / "zgw.npy"))
    gw_ready.wait(30)
    peers.start(zmq_chain.strategy, str(path), ticks_ep, orders_ep, n, 0, st_ready, str(tmp_path / "zst.npy"))
    st_ready.wait(30)
    time.sleep(1.0)                              # SUB joined (zmq's slow joiner)
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {1})                 # as for TTQuant: the writer beside the gateway
    for k in range(n):
        ev = _trade(spot, k)
        ev.ts_pub = time.time_ns()
        pub.send(ev.tobytes())
        t_next = time.perf_counter() + TICK_INTERVAL_S
        while time.perf_counter() < t_next:
            time.sleep(0.0001)
    os.sched_setaffinity(0, before)
    peers.stop()
    pub.close(0)
    zctx.term()
    for ep in (ticks_ep, orders_ep):
        try:
            os.unlink(ep[len("ipc://"):])
        except FileNotFoundError:
            pass
    lat = _join(tmp_path / "zst.npy", tmp_path / "zgw.npy")
    return lat[200:]


def _host_stalls(seconds=0.5, threshold_ns=20_000):
    """What the VM itself takes from a spinning loop on each core just before a run: stalls over
    20 us per second, the share of time they cost, the longest. The tail percentiles of
    tick_to_order cannot be better than the time the two cores are not running at all."""
    from ring_kernels import stall_probe
    before = os.sched_getaffinity(0)
    out = {}
    try:
        for cpu in sorted(before)[:2]:
            os.sched_setaffinity(0, {cpu})
            gaps, total, longest = stall_probe(int(seconds * 1e9), threshold_ns)
            out[f"host_stalls_per_s_cpu{cpu}"] = round(gaps / seconds, 1)
            out[f"host_stall_pct_cpu{cpu}"] = round(100 * total / (seconds * 1e9), 3)
            out[f"host_stall_max_ns_cpu{cpu}"] = int(longest)
    finally:
        os.sched_setaffinity(0, before)
    return out


@pytest.mark.quick
@pytest.mark.parametrize("impl", ["ttquant_spin", "ttquant_hybrid", "pyzmq_ipc"])
def test_tick_to_order(benchmark, impl, tmp_path, peers):
    stalls = _host_stalls()
    if impl == "pyzmq_ipc":
        samples = _run_zmq(tmp_path, peers)
    else:
        samples = _run_ttquant(tmp_path, "spin" if impl == "ttquant_spin" else "hybrid")
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    assert len(samples) >= TICKS * 0.95, len(samples)
    benchmark.extra_info.update(latency_info("tick_to_order", impl, samples, ticks_per_s=int(1 / TICK_INTERVAL_S),
                                             **stalls))


# -- risk_check ----------------------------------------------------------------------------------

def _python_check(limits, state, inst, o, now):
    """The same rules in plain Python, in the same order, over dicts."""
    if now - o["ts_created"] > limits["max_age_ns"]:
        return 1001
    r = state.get(o["instrument_id"])
    if r is None:
        return 4002
    if (o["price"] <= 0 or o["price"] % r["tick"] or o["price"] < r["min_price"]
            or (r["max_price"] and o["price"] > r["max_price"])):
        return 3001
    if o["qty"] <= 0 or o["qty"] % r["step"] or o["qty"] < r["min_qty"] or (r["max_qty"] and o["qty"] > r["max_qty"]):
        return 3002
    notional = o["price"] * o["qty"] * r["mul"] // r["div"]
    if r["min_notional"] and notional < r["min_notional"]:
        return 3002
    ref = r["last"]
    if ref and abs(o["price"] - ref) * 1_000_000 > limits["ppm"] * ref:
        return 3003
    if r["max_notional"] and notional > r["max_notional"]:
        return 3004
    buy = o["side"] == 1
    worst = r["position"] + r["open_buy"] + o["qty"] if buy else r["position"] - r["open_sell"] - o["qty"]
    if r["max_position"] and abs(worst) > r["max_position"]:
        return 2001
    if notional > state["balances"]["USDT"] - state["reserved"]["USDT"]:
        return 2002
    b = state["bucket"]
    b["tokens"] = min(b["burst"], b["tokens"] + (now - b["last"]) * 1e-9 * b["rate"])
    b["last"] = now
    if b["tokens"] < 1:
        return 2003
    b["tokens"] -= 1
    if limits["max_open"] and state["open_orders"] >= limits["max_open"]:
        return 2004
    if state["kill"]:
        return 5001
    return 0


@pytest.mark.quick
@pytest.mark.parametrize("impl", ["ttquant", "python"])
def test_risk_check(benchmark, impl):
    table = _table()
    spot = table.by_symbol("BTCUSDT", MarketType.SPOT)
    limits = parse_risk_limits(__import__("tomllib").loads(RISK), table)
    engine = RiskEngine(limits, table)
    engine.on_trade(spot.instrument_id, spot.price_to_raw("61000"))
    now = time.time_ns()
    order = Order(ts_created=now, client_order_id=1, strategy_id=3, instrument_id=spot.instrument_id,
                  action=OrderAction.NEW, side=Side.BUY, order_type=OrderType.LIMIT,
                  price=spot.price_to_raw("60990"), qty=spot.qty_to_raw("0.01"))
    assert engine.check_order(order, now) == 0
    blocks, per_block = (200, 10_000) if QUICK else (1000, 10_000)
    samples = np.empty(blocks, np.int64)
    if impl == "ttquant":
        def run():
            for b in range(blocks):
                t0 = time.perf_counter_ns()
                code = engine.check_repeated(order, per_block, now)
                samples[b] = (time.perf_counter_ns() - t0) // per_block
            assert code == 0
    else:
        o = {f: getattr(order, f) for f in ("ts_created", "instrument_id", "price", "qty", "side")}
        lim = {"max_age_ns": 500_000_000, "ppm": limits.fat_finger_ppm, "max_open": 0}
        r = {"tick": spot.tick_size, "step": spot.step_size, "min_price": spot.min_price, "max_price": spot.max_price,
             "min_qty": spot.min_qty, "max_qty": spot.max_qty, "mul": 1, "div": 10**8, "min_notional": 10**9,
             "last": spot.price_to_raw("61000"), "max_notional": 10**14, "position": 0, "open_buy": 0, "open_sell": 0,
             "max_position": 10**14}
        state = {spot.instrument_id: r, "balances": {"USDT": 10**17}, "reserved": {"USDT": 0}, "open_orders": 0,
                 "kill": False, "bucket": {"tokens": 1e12, "burst": 1e12, "rate": 1e6, "last": now}}
        n = per_block // 10

        def run():
            for b in range(blocks):
                t0 = time.perf_counter_ns()
                for _ in range(n):
                    code = _python_check(lim, state, spot, o, now)
                samples[b] = (time.perf_counter_ns() - t0) // n
            assert code == 0
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(latency_info("risk_check", impl, samples, checks_per_sample=per_block))
