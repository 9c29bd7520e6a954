"""`ttquant demo`: the whole trading path on the embedded default, about 30 seconds.

    venue-sim (the real BTCUSDT captures from $TTQ_SAMPLE_DATA, default the project's data/,
    else the synthetic market; taking orders) -> md -> an example strategy (the
    Avellaneda-Stoikov market maker on the USDT-M perpetual by default) -> gateway with the
    sim adapter -> exec reports

each its own process. Every second it prints the mid, the strategy's position, orders, fills,
rejects and PnL from the exec ring; at the end a summary with tick-to-order latency (a tick's
ts_pub in the ring -> the gateway has checked the order it caused) and one machine-readable
line `demo: events=N orders=N fills=N rejects=N pnl=X tick_to_order_p50_ns=N tick_to_order_p99_ns=N`.
Everything it started is stopped and its segments removed, whatever happens.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

import numpy as np

from ttquant.core.md.demo import _spawn, _start_venue, _stop

__all__ = ["run_trading_demo", "STRATEGIES"]

STRATEGIES = {
    "market_maker": ("ttquant.strategies.examples.market_maker:AvellanedaStoikov",
                     {"market": "usdm", "qty": 0.002, "max_inventory": 5, "gamma": 0.1, "requote_ticks": 2,
                      "vol_window": 30}),
    "ema_cross": ("ttquant.strategies.examples.ema_cross:EmaCross", {"market": "usdm", "qty": 0.002}),
    "mean_reversion": ("ttquant.strategies.examples.mean_reversion:MeanReversion", {"market": "usdm", "qty": 0.002}),
    "grid": ("ttquant.strategies.examples.grid:Grid", {"market": "usdm", "qty": 0.002, "spacing_ticks": 20}),
    "spread_arb": ("ttquant.strategies.examples.spread_arb:SpreadArb", {"qty": 0.002, "entry_bps": -3, "exit_bps": -3.5}),
}
RISK = """max_order_age_ms = 1000
fat_finger_pct = 2
max_notional = 100000
max_open_orders = 50
max_open_orders_per_strategy = 20
daily_loss_limit = 500
[rate_limit]
orders_per_s = 200
burst = 400
strategy_orders_per_s = 100
strategy_burst = 200
[balances]
USDT = 100000
BTC = 1
[instruments.usdm.BTCUSDT]
max_position = 0.1
[instruments.spot.BTCUSDT]
max_position = 0.1
"""


def _toml_value(v):
    return f'"{v}"' if isinstance(v, str) else repr(v)


def run_trading_demo(seconds: float = 30.0, speed: float = 1.0, strategy: str = "market_maker",
                     synthetic: bool = False, out=print) -> int:
    from ttquant.core.instruments import InstrumentTable, instruments_path
    from ttquant.core.records import OrderStatus, RejectCode
    from ttquant.core.rings import BroadcastReader, RingNotFoundError
    from ttquant.core.sim.captures import sample_data_dir
    from ttquant.strategies.portfolio import Portfolio

    if strategy not in STRATEGIES:
        out(f"demo: unknown strategy {strategy!r} ({', '.join(STRATEGIES)})")
        return 2
    source = "synthetic" if synthetic else "btcusdt"
    if not synthetic and not (sample_data_dir() / "binance" / "spot_btcusdt_20240808.gz").exists():
        out(f"demo: no captures at {sample_data_dir()} (TTQ_SAMPLE_DATA): using the synthetic market instead")
        source = "synthetic"
    name = f"demo{os.getpid()}"
    tmp = tempfile.TemporaryDirectory(prefix="ttq-demo-")
    d = tmp.name
    procs = {}
    try:
        # the venue's account: the gateway takes these balances on start (risk.toml's are the fallback)
        procs["venue"], port = _start_venue(out, "--speed", str(speed), "--replay", source, "--orders", name,
                                            "--balances", "USDT=100000,BTC=1")
        if port is None:
            return 1
        with open(f"{d}/md.toml", "w") as f:
            f.write(f'[rings]\nname = "{name}"\n' + "".join(
                f'[markets.{m}]\nsymbols = ["BTCUSDT"]\nws_url = "ws://127.0.0.1:{port}/{m}"\n'
                f'rest_url = "http://127.0.0.1:{port}"\n' for m in ("spot", "usdm")))
        procs["md"] = _spawn("md", "binance", "--config", f"{d}/md.toml", stdout=subprocess.DEVNULL,
                             stderr=open(f"{d}/md.log", "w"))
        with open(f"{d}/risk.toml", "w") as f:
            f.write(RISK)
        with open(f"{d}/gateway.toml", "w") as f:
            f.write(f'venue = "binance"\n[rings]\nname = "{name}"\n[adapter]\nkind = "sim"\n'
                    f'http_url = "http://127.0.0.1:{port}"\n[journal]\npath = "orders.journal"\nfsync = "interval"\n'
                    f'[risk]\nfile = "risk.toml"\n[loop]\ndiscover_interval_s = 0.2\n')
        procs["gateway"] = _spawn("gateway", "binance", "--config", f"{d}/gateway.toml",
                                  stdout=subprocess.DEVNULL, stderr=open(f"{d}/gateway.log", "w"),
                                  env={"TTQ_GATEWAY_TRACE": f"{d}/gateway_trace.npy"})
        class_path, params = STRATEGIES[strategy]
        with open(f"{d}/strategy.toml", "w") as f:
            f.write(f'name = "{strategy.replace("_", "-")}"\nstrategy_id = 7\nclass = "{class_path}"\n'
                    f'[venues.binance]\nrings = "{name}"\n[params]\n'
                    + "".join(f"{k} = {_toml_value(v)}\n" for k, v in params.items())
                    + '[runtime]\non_error = "stop"\ncancel_all_on_stop = true\n')
        deadline = time.monotonic() + 60
        exec_reader = ticks = None
        while time.monotonic() < deadline and (exec_reader is None or ticks is None):
            for p, what in ((procs["md"], "md"), (procs["gateway"], "gateway")):
                if p.poll() is not None:
                    out(f"demo: {what} exited with {p.returncode}: {open(f'{d}/{what}.log').read()[-2000:]}")
                    return 1
            try:
                ticks = ticks or BroadcastReader(f"/ttq.{name}.ticks", start="latest", wait="sleep")
                exec_reader = exec_reader or BroadcastReader(f"/ttq.{name}.exec", start="latest")
            except RingNotFoundError:
                time.sleep(0.1)
        if exec_reader is None:
            out("demo: the md daemon and the gateway did not come up in 60 s")
            return 1
        while "ready:" not in open(f"{d}/gateway.log").read():
            if time.monotonic() > deadline or procs["gateway"].poll() is not None:
                out(f"demo: the gateway did not get ready: {open(f'{d}/gateway.log').read()[-2000:]}")
                return 1
            time.sleep(0.1)
        procs["strategy"] = _spawn("strategy", "run", strategy.replace("_", "-"), "--config", f"{d}/strategy.toml",
                                   stdout=subprocess.DEVNULL, stderr=open(f"{d}/strategy.log", "w"),
                                   env={"TTQ_STRATEGY_TRACE": f"{d}/strategy_trace.npy"})
        table = InstrumentTable.load(instruments_path(name))
        out(f"demo: md, gateway (sim adapter) and strategy {strategy} running on /ttq.{name}.*; "
            f"{seconds:.0f} s")
        portfolio = Portfolio(fee_precision=8)
        marks, fills_seen = {}, set()
        events = orders = 0
        rejects: dict[int, int] = {}
        t0 = time.monotonic()
        next_print = t0 + 1
        from ttquant.core.records import MARKET_EVENT_DTYPE
        buf = np.zeros(1 << 14, MARKET_EVENT_DTYPE)
        while time.monotonic() - t0 < seconds:
            n = ticks.wait_into(buf, timeout=0.05)
            events += n
            for e in buf[:n][buf[:n]["kind"] == 1]:
                marks[(table.venue, int(e["instrument_id"]))] = int(e["price"])
            r = exec_reader.poll()
            while r is not None:
                if r.strategy_id == 7:
                    if r.status == OrderStatus.REJECTED:
                        rejects[r.reject_code] = rejects.get(r.reject_code, 0) + 1
                    if r.status in (OrderStatus.ACCEPTED, OrderStatus.REJECTED) or (r.last_qty and r.cum_qty == r.last_qty):
                        orders += 1
                    if r.last_qty and (r.client_order_id, r.trade_id) not in fills_seen:
                        fills_seen.add((r.client_order_id, r.trade_id))
                        portfolio.on_fill(table[r.instrument_id], r.side, r.last_price, r.last_qty, r.fee)
                r = exec_reader.poll()
            if procs["strategy"].poll() is not None:
                out(f"demo: the strategy exited with {procs['strategy'].returncode}: "
                    f"{open(f'{d}/strategy.log').read()[-2000:]}")
                break
            if time.monotonic() >= next_print:
                next_print += 1
                pos = "  ".join(f"{p.symbol} {p.qty:+}" for p in portfolio.positions()) or "flat"
                pnl = portfolio.equity(marks) if marks else 0
                out(f"  t={time.monotonic() - t0:4.1f}s  events {events:>7,}  orders {orders:>5}  fills "
                    f"{len(fills_seen):>4}  rejects {sum(rejects.values()):>3}  position {pos}  pnl {float(pnl):+.4f}")
        strategy_rc = _stop(procs.pop("strategy"))
        time.sleep(0.5)                     # its cancel-all comes back
        r = exec_reader.poll()
        while r is not None:
            if r.strategy_id == 7 and r.last_qty and (r.client_order_id, r.trade_id) not in fills_seen:
                fills_seen.add((r.client_order_id, r.trade_id))
                portfolio.on_fill(table[r.instrument_id], r.side, r.last_price, r.last_qty, r.fee)
            r = exec_reader.poll()
        gateway_rc = _stop(procs.pop("gateway"))
        latency = _tick_to_order(f"{d}/strategy_trace.npy", f"{d}/gateway_trace.npy")
        try:
            orders = len(np.load(f"{d}/strategy_trace.npy"))     # every new order the strategy sent
        except (FileNotFoundError, ValueError):
            pass
        pnl = portfolio.equity(marks) if marks else 0
        out("")
        for p in portfolio.positions():
            out(f"{p.symbol}: position {p.qty:+}, average {float(p.avg_price) if p.avg_price else 0:.2f}, "
                f"realised {float(p.realised):+.4f} (fees {float(p.fees):.4f})")
        names = {int(c): RejectCode(c).name for c in rejects}
        out(f"orders {orders}, fills {len(fills_seen)}, rejects {dict((names[c], k) for c, k in rejects.items())}; "
            f"strategy exit {strategy_rc}, gateway exit {gateway_rc}")
        if latency is not None:
            out(f"tick-to-order (tick in the ring -> order checked by the gateway), {latency['n']} orders: "
                f"p50 {latency['p50']} ns, p99 {latency['p99']} ns, max {latency['max']} ns; p50 of its legs: "
                f"tick to order created {latency['decide_p50']} ns, created to checked {latency['hop_p50']} ns")
        ok = strategy_rc == 0 and gateway_rc == 0 and events > 0
        out(f"demo: events={events} orders={orders} fills={len(fills_seen)} rejects={sum(rejects.values())} "
            f"pnl={float(pnl):.6f} tick_to_order_p50_ns={latency['p50'] if latency else -1} "
            f"tick_to_order_p99_ns={latency['p99'] if latency else -1}" + (" ok" if ok else " FAILED"))
        return 0 if ok else 1
    finally:
        for p in procs.values():
            _stop(p)
        _unlink_all(name)
        tmp.cleanup()


def _tick_to_order(strategy_trace, gateway_trace):
    """Per order: the gateway's check time minus the ts_pub of the tick the strategy answered."""
    try:
        st = np.load(strategy_trace)
        gw = np.load(gateway_trace)
    except (FileNotFoundError, ValueError):
        return None
    trigger = {int(c): int(t) for c, t in st if t > 0}
    rows = [(int(checked) - trigger[int(cid)], int(created) - trigger[int(cid)], int(checked) - int(created))
            for sid, cid, created, _taken, checked in gw if int(cid) in trigger]
    if not rows:
        return None
    lat, decide, hop = (np.array(col, dtype=np.int64) for col in zip(*rows))
    return {"n": len(lat), "p50": int(np.percentile(lat, 50)), "p99": int(np.percentile(lat, 99)),
            "max": int(lat.max()), "samples": lat,
            "decide_p50": int(np.percentile(decide, 50)), "hop_p50": int(np.percentile(hop, 50))}


def _unlink_all(name):
    shm = "/dev/shm"
    for entry in os.listdir(shm):
        if entry.startswith(f"ttq.{name}."):
            try:
                os.unlink(os.path.join(shm, entry))
            except FileNotFoundError:
                pass
