"""`ttquant demo` at the market-data stage: simulated venue -> md daemon -> a live reader.

Starts `ttquant venue-sim binance` (replaying the real BTCUSDT spot and USDT-M captures from
$TTQ_SAMPLE_DATA, default the project's data/, or the synthetic market when they are not
there) and `ttquant md binance` against it, as separate processes, then reads the tick ring
and the book board like a strategy would: every second it prints each book's best bid/ask,
trades per second and the drop/gap counters; at the end a summary and one machine-readable
line. Everything it started is stopped, and its rings removed, whatever happens.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

from ttquant.core.daemon.config import render_example
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.records import MARKET_EVENT_DTYPE, EventKind
from ttquant.core.rings.names import book_board, telemetry_segment, tick_ring
from ttquant.core.telemetry.telemetry import bucket_quantile

__all__ = ["run_md_demo"]


def _spawn(*args, env=None, **kw):
    """`ttquant ARGS` in its own process group (so stopping it stops its children too)."""
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "ttquant.core.cli", *args], start_new_session=True,
                            env=full, **kw)


def _stop(proc, sig=signal.SIGTERM, timeout=20):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc else None
    try:
        os.killpg(proc.pid, sig)
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()
    except ProcessLookupError:
        return proc.wait()


def _start_venue(out, *args):
    """`ttquant venue-sim binance ARGS` on a free port: (process, port), or (process, None) when
    it did not start (said through out)."""
    venue = _spawn("venue-sim", "binance", "--port", "0", *args, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    line = venue.stdout.readline().decode().strip()
    if "listening on 127.0.0.1:" not in line:
        out(f"demo: the simulated venue did not start: {line}")
        return venue, None
    out(f"demo: {line.split(': ', 1)[1]}")
    return venue, int(line.split("127.0.0.1:")[1].split()[0])


def run_md_demo(seconds: float = 20.0, speed: float = 1.0, synthetic: bool = False, out=print) -> int:
    from ttquant.core.book.book_board import BookBoard
    from ttquant.core.md.daemon import read_md_counters
    from ttquant.core.rings import BroadcastReader, RingNotFoundError, unlink
    from ttquant.core.sim.captures import sample_data_dir

    data = sample_data_dir()
    source = "btcusdt"
    if synthetic:
        source = "synthetic"
    elif not (data / "binance" / "spot_btcusdt_20240808.gz").exists():
        out(f"demo: no captures at {data} (TTQ_SAMPLE_DATA): using the synthetic market instead")
        source = "synthetic"
    name = f"demo{os.getpid()}"
    venue = md = None
    tmp = tempfile.TemporaryDirectory(prefix="ttq-demo-")
    summary = {}
    try:
        venue, port = _start_venue(out, "--speed", str(speed), "--replay", source)
        if port is None:
            return 1
        config = os.path.join(tmp.name, "md.toml")
        with open(config, "w") as f:          # md's example, pointed at the simulated venue
            f.write(render_example("md", {"rings": {"name": name}, "markets": {
                "spot": {"symbols": ["BTCUSDT"], "ws_url": f"ws://127.0.0.1:{port}/spot",
                         "rest_url": f"http://127.0.0.1:{port}"},
                "usdm": {"symbols": ["BTCUSDT"], "streams": ["trade", "bookTicker", "depth@0ms"],
                         "ws_url": f"ws://127.0.0.1:{port}/usdm", "rest_url": f"http://127.0.0.1:{port}"}}}))
        log_path = os.path.join(tmp.name, "md.log")
        md = _spawn("md", "binance", "--config", config, stdout=subprocess.DEVNULL,
                    stderr=open(log_path, "w"))
        out(f"demo: md daemon pid {md.pid} (rings /ttq.{name}.*), reading for {seconds:.0f} s")
        deadline = time.monotonic() + 30
        reader = board = None
        while time.monotonic() < deadline and (reader is None or board is None):
            if md.poll() is not None:
                out(f"demo: md exited with {md.returncode}: {open(log_path).read()[-2000:]}")
                return 1
            try:
                reader = reader or BroadcastReader(tick_ring(name), start="oldest", wait="sleep")
                board = board or BookBoard(book_board(name))
            except RingNotFoundError:
                time.sleep(0.1)
        if reader is None or board is None:
            out("demo: the md daemon did not create its rings in 30 s")
            return 1
        table = InstrumentTable.load(instruments_path(name))
        labels = {i.instrument_id: (f"{i.symbol} {i.market_type.name.lower()}", i) for i in table}
        buf = np.zeros(1 << 16, MARKET_EVENT_DTYPE)
        trades_total = events_total = 0
        t_start = time.monotonic()
        next_print = t_start + 1
        trades_window = 0
        while time.monotonic() - t_start < seconds:
            n = reader.wait_into(buf, timeout=0.2)
            events = buf[:n]
            events_total += n
            k = int((events["kind"] == EventKind.TRADE).sum())
            trades_total += k
            trades_window += k
            if time.monotonic() >= next_print:
                next_print += 1
                c = read_md_counters(name)
                drops = sum(v for f in c.values() for key, v in f.items() if key.startswith("drop_"))
                gaps = sum(f["book_gaps"] for f in c.values())
                tops = []
                for inst_id in board.instruments():
                    top = board.read(inst_id)
                    label, inst = labels.get(inst_id, (str(inst_id), None))
                    if top.synced and len(top.bids) and len(top.asks) and inst:
                        tick = inst.price_from_raw(inst.tick_size)
                        tops.append(f"{label} {inst.price_from_raw(int(top.bids[0, 0])).quantize(tick)} / "
                                    f"{inst.price_from_raw(int(top.asks[0, 0])).quantize(tick)}")
                    else:
                        tops.append(f"{label} (syncing)")
                out(f"  t={time.monotonic() - t_start:4.1f}s  {' | '.join(tops)}  trades/s {trades_window:>5}  "
                    f"drops {drops}  gaps {gaps}  lost {reader.lost}")
                trades_window = 0
        c = read_md_counters(name)
        synced = sum(board.read(i).synced for i in board.instruments())
        hist = {}
        for f in c.values():
            for b, v in f.get("latency_hist", {}).items():
                hist[b] = hist.get(b, 0) + v
        summary = {"frames": sum(f["frames"] for f in c.values()),
                   "events": events_total, "trades": trades_total,
                   "books_synced": f"{synced}/{len(board.instruments())}",
                   "gaps": sum(f["book_gaps"] for f in c.values()),
                   "drops": sum(v for f in c.values() for key, v in f.items() if key.startswith("drop_")),
                   "lost": reader.lost,
                   "frame_to_ring_p50_ns": bucket_quantile(hist, 0.5),
                   "frame_to_ring_p99_ns": bucket_quantile(hist, 0.99)}
        reader.close()
        board.close()
        rc = _stop(md)
        md = None
        out("")
        for market, f in c.items():
            out(f"{market}: {f['frames']:,} frames, {f['trades']:,} trades, {f['book_tickers']:,} book tickers, "
                f"{f['depth_updates']:,} depth diffs, {f['book_snapshots']} snapshots, gaps {f['book_gaps']}, "
                f"fast path {f['fast_path'] / max(f['frames'], 1):.0%}")
        out(f"reader: {events_total:,} events, {trades_total:,} trades, lost {summary['lost']}; "
            f"md exit code {rc}; frame-to-ring (callback to last event in the ring) p50 < "
            f"{summary['frame_to_ring_p50_ns']} ns, p99 < {summary['frame_to_ring_p99_ns']} ns (buckets 25 % wide)")
        ok = (rc == 0 and summary["drops"] == 0 and summary["gaps"] == 0 and summary["trades"] > 0
              and synced == len(table))
        out("demo: " + " ".join(f"{k}={v}" for k, v in summary.items()) + (" ok" if ok else " FAILED"))
        return 0 if ok else 1
    finally:
        _stop(md)
        _stop(venue)
        for ring in (tick_ring(name), book_board(name), telemetry_segment(name, "md")):
            unlink(ring)
        try:
            os.unlink(instruments_path(name))
        except FileNotFoundError:
            pass
        tmp.cleanup()


