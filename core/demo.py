"""`ttquant demo` at the spine stage: the rings working across processes.

A tick writer publishes synthetic trades to a broadcast ring; a strategy-like reader follows
it (hybrid wait) and sends every 100th tick on as an order through its SPSC order ring to a
gateway-like reader; a deliberately slow reader shows laps being counted. At the end: records
moved, loss, and hop latency percentiles (ts_pub -> read, CLOCK_REALTIME on one host).
Later issues replace this with the whole trading path.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import time

import numpy as np

from ttquant.core.records import (
    MARKET_EVENT_DTYPE,
    EventFlag,
    EventKind,
    MarketEvent,
    Order,
    OrderAction,
    OrderType,
    RecordType,
    Side,
)
from ttquant.core.rings import BroadcastReader, BroadcastWriter, SpscReader, SpscWriter, unlink
from ttquant.core.rings.names import order_ring, tick_ring

__all__ = ["run_demo"]

TICK_CAPACITY = 1 << 14
ORDER_CAPACITY = 1 << 12
TICK_RATE = 100_000         # ticks/s, evenly paced: the writer spins to its next tick time
ORDER_EVERY = 100
MAX_SAMPLES = 4_000_000


def _percentiles(samples):
    if len(samples) == 0:
        return {}
    q = np.percentile(samples, [50, 99, 99.9])
    return {"n": int(len(samples)), "p50_ns": int(q[0]), "p99_ns": int(q[1]), "p999_ns": int(q[2]),
            "max_ns": int(samples.max())}


def _ignore_sigint():
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # the parent decides when we stop


def _tick_writer(name, stop, results):
    _ignore_sigint()
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, TICK_CAPACITY)
    ev = MarketEvent(kind=EventKind.TRADE, instrument_id=1, venue_id=1, qty=1000)
    price = 6_500_000
    rng = np.random.default_rng(7)
    steps = rng.integers(-2, 3, size=1 << 16)
    gap_ns = 1_000_000_000 // TICK_RATE
    next_ns = time.perf_counter_ns()
    i = 0
    while not stop.is_set():
        for _ in range(1000):
            while time.perf_counter_ns() < next_ns:
                pass
            next_ns += gap_ns
            price += int(steps[i & 0xFFFF])
            ev.seq = i
            ev.price = price
            ev.flags = EventFlag.BUYER_AGGRESSOR if i & 1 else 0
            ev.ts_exchange = ev.ts_pub = time.time_ns()
            w.push(ev)
            i += 1
        w.heartbeat()
    results.put(("writer", {"published": w.position, "epoch": w.epoch}))
    w.close()


def _strategy_reader(ticks, orders, stop, done, results):
    _ignore_sigint()
    r = BroadcastReader(ticks, start="oldest", wait="hybrid", max_sleep=0.05)
    out = SpscWriter(orders, RecordType.ORDER, ORDER_CAPACITY)
    order = Order(strategy_id=1, instrument_id=1, action=OrderAction.NEW, order_type=OrderType.LIMIT,
                  side=Side.BUY, qty=1000)
    hops = np.zeros(MAX_SAMPLES, np.int64)
    n = sent = refused = 0
    while not stop.is_set():
        ev = r.wait(timeout=0.1)
        if ev is None:
            continue
        now = time.time_ns()
        if n < MAX_SAMPLES:
            hops[n] = now - ev.ts_pub
        n += 1
        if ev.seq % ORDER_EVERY == 0:
            order.client_order_id = sent + refused + 1
            order.price = ev.price
            order.ts_created = time.time_ns()
            if out.offer(order):
                sent += 1
            else:
                refused += 1
    results.put(("strategy", {"received": n, "lost": r.lost, "laps": r.laps, "sent": sent,
                              "refused": refused, "hop": _percentiles(hops[:min(n, MAX_SAMPLES)])}))
    r.close()
    out.close()
    done.set()          # the gateway drains the order ring once nothing more can come


def _slow_reader(ticks, stop, results):
    _ignore_sigint()
    r = BroadcastReader(ticks, start="oldest", wait="sleep")
    batch = np.zeros(64, MARKET_EVENT_DTYPE)
    n = 0
    while not stop.is_set():
        n += r.wait_into(batch, timeout=0.1)
        time.sleep(0.02)     # a reader that cannot keep up: the writer laps it, it counts the loss
    results.put(("slow", {"received": n, "lost": r.lost, "laps": r.laps}))
    r.close()


def _order_gateway(orders, stop, strategy_done, results):
    _ignore_sigint()
    r = SpscReader(orders, RecordType.ORDER, capacity=ORDER_CAPACITY, create=True, wait="sleep",
                   max_sleep=0.05)
    hops = np.zeros(MAX_SAMPLES, np.int64)
    n = 0
    last_id = 0
    out_of_order = 0
    while not stop.is_set():
        o = r.wait(timeout=0.1)
        if o is None:
            continue
        if n < MAX_SAMPLES:
            hops[n] = time.time_ns() - o.ts_created
        if o.client_order_id <= last_id:
            out_of_order += 1
        last_id = o.client_order_id
        n += 1
    strategy_done.wait(timeout=10)
    while (o := r.poll()) is not None:        # what the strategy sent before it stopped
        if o.client_order_id <= last_id:
            out_of_order += 1
        last_id = o.client_order_id
        n += 1
    results.put(("gateway", {"received": n, "out_of_order": out_of_order,
                             "hop": _percentiles(hops[:min(n, MAX_SAMPLES)])}))
    r.close()


def _fmt_hop(h):
    if not h:
        return "no samples"
    return (f"hop p50 {h['p50_ns'] / 1e3:.1f} us  p99 {h['p99_ns'] / 1e3:.1f} us  "
            f"p99.9 {h['p999_ns'] / 1e3:.1f} us  max {h['max_ns'] / 1e3:.0f} us")


def run_demo(seconds: float = 10.0, venue: str | None = None, out=print) -> int:
    venue = venue or f"demo{os.getpid()}"
    ticks, orders = tick_ring(venue), order_ring(venue, "strategy")
    ctx = mp.get_context("spawn")
    stop, strategy_done, results = ctx.Event(), ctx.Event(), ctx.Queue()
    # the order ring first, so the strategy and the gateway agree on its shape
    SpscReader(orders, RecordType.ORDER, capacity=ORDER_CAPACITY, create=True).close()
    BroadcastWriter(ticks, RecordType.MARKET_EVENT, TICK_CAPACITY).close()
    procs = [
        ctx.Process(target=_order_gateway, args=(orders, stop, strategy_done, results), name="gateway"),
        ctx.Process(target=_strategy_reader, args=(ticks, orders, stop, strategy_done, results), name="strategy"),
        ctx.Process(target=_slow_reader, args=(ticks, stop, results), name="slow"),
        ctx.Process(target=_tick_writer, args=(ticks, stop, results), name="writer"),
    ]
    out(f"demo: {seconds:.0f} s on {os.cpu_count()} cores; rings {ticks} (broadcast, {TICK_CAPACITY}) "
        f"and {orders} (spsc, {ORDER_CAPACITY})")
    out("  processes: tick writer -> strategy reader (hybrid wait) -> order ring -> gateway reader; "
        "plus a slow tick reader")
    got = {}
    try:
        for p in procs:
            p.start()
        from ttquant.core.rings.inspect import ring_info
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(1.0)
            if any(not p.is_alive() for p in procs):
                break
            t, o = ring_info(ticks), ring_info(orders)
            out(f"  t={time.monotonic() - t0:4.1f}s  ticks published {t['write_position']:>11,}  "
                f"orders sent {o['write_position']:>9,}  unread orders {o['unread']}")
        stop.set()
        deadline = time.monotonic() + 15
        while len(got) < len(procs) and time.monotonic() < deadline:
            try:
                role, stats = results.get(timeout=0.5)
                got[role] = stats
            except queue.Empty:
                if all(not p.is_alive() for p in procs) and results.empty():
                    break
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        unlink(ticks)
        unlink(orders)
    missing = [p.name for p in procs if p.name not in got]
    if missing:
        out(f"demo: FAILED - no results from {missing} (exit codes "
            f"{[p.exitcode for p in procs]})")
        return 1
    w, s, slow, g = got["writer"], got["strategy"], got["slow"], got["gateway"]
    out("")
    out(f"ticks    published {w['published']:,} (writer epoch {w['epoch']})")
    out(f"  strategy reader  received {s['received']:,}  lost {s['lost']:,} in {s['laps']} laps  "
        f"{_fmt_hop(s['hop'])}")
    out(f"  slow reader      received {slow['received']:,}  lost {slow['lost']:,} in {slow['laps']} laps  "
        f"(received + lost = {slow['received'] + slow['lost']:,})")
    out(f"orders   sent {s['sent']:,}  refused (ring full) {s['refused']:,}")
    out(f"  gateway reader   received {g['received']:,}  out of order {g['out_of_order']}  "
        f"{_fmt_hop(g['hop'])}")
    ok = g["received"] == s["sent"] and g["out_of_order"] == 0 and slow["laps"] > 0
    hop = s["hop"]
    out(f"demo: ticks={w['published']} tick_reader_lost={s['lost']} slow_reader_laps={slow['laps']} "
        f"orders={s['sent']} orders_received={g['received']} "
        f"tick_hop_p50_ns={hop.get('p50_ns', -1)} tick_hop_p99_ns={hop.get('p99_ns', -1)} "
        f"{'ok' if ok else 'MISMATCH'}")
    return 0 if ok else 1
