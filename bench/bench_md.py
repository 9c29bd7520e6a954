"""Market-data decode + normalise per message type, against stdlib json + float (DESIGN.md §9).

Each sample is the mean cost per frame over a block of real captured frames (hftbacktest
BTCUSDT spot), from bytes as received to events in the tick ring: `ttquant` is the normaliser
as the md daemon runs it (frame scanner first), `ttquant_orjson` the same normaliser with the
scanner off, `stdlib_json` does json.loads and float() on every price and quantity of the frame
(what the original design did) and publishes nothing.
"""
import json
import time

import numpy as np
import orjson
import pytest

from ttquant.core.instruments import InstrumentTable
from ttquant.core.md.binance.exchange_info import SPOT, instruments_from_exchange_info, merge_instruments
from ttquant.core.md.binance.normaliser import BinanceNormaliser
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.core.rings.names import tick_ring
from ttquant.core.sim.captures import read_cryptofeed_http, read_hftbacktest, sample_data_dir

from support import QUICK, latency_info

DATA = sample_data_dir() / "binance"
BLOCKS = 200 if QUICK else 1000
KINDS = {"decode_trade": b"@trade", "decode_book_ticker": b"@bookTicker", "decode_depth": b"@depth"}


def _capture():
    table = InstrumentTable("binance")
    (msg,) = read_cryptofeed_http(DATA / "cryptofeed_spot_exchangeinfo.0")
    merge_instruments(table, instruments_from_exchange_info(orjson.loads(msg.payload), SPOT, symbols=["BTCUSDT"])[0])
    messages = list(read_hftbacktest(DATA / "spot_btcusdt_20240808.gz"))
    return table, messages


def _stdlib(frame):
    data = json.loads(frame)["data"]
    if "b" in data and isinstance(data["b"], list):
        for side in (data["b"], data["a"]):
            for price, qty in side:
                float(price)
                float(qty)
    elif "e" in data:
        float(data["p"])
        float(data["q"])
    else:
        float(data["b"]), float(data["B"]), float(data["a"]), float(data["A"])


DECODE_IMPLS = ("ttquant", "ttquant_orjson", "stdlib_json")


@pytest.mark.quick
@pytest.mark.parametrize("path", list(KINDS))
def test_decode(benchmark, path, ring, peer_results):
    """The three implementations take turns block by block, so a host that speeds up or slows
    down (this VM does, by 2x within seconds) moves all of them alike and the ratios hold;
    the peers' figures go into results.json as entries of their own."""
    table, messages = _capture()
    writers = {impl: BroadcastWriter(ring("ticks", impl.replace("_", "")), RecordType.MARKET_EVENT, 1 << 16)
               for impl in DECODE_IMPLS[:2]}
    norms = {impl: BinanceNormaliser(SPOT, list(table), writers[impl], fast_path=(impl == "ttquant"))
             for impl in DECODE_IMPLS[:2]}
    marker = KINDS[path]
    snapshot = next(m.payload for m in messages if m.source != "ws")
    snapshot_id = orjson.loads(snapshot)["lastUpdateId"]
    frames = [m.payload for m in messages if m.source == "ws" and marker in m.payload[:48]]
    resync = []
    if path == "decode_depth":
        # the diffs that follow the captured snapshot; each block re-syncs to it untimed (the
        # snapshot, and the first diff, which proves it and republishes the whole book as the
        # daemon does once per connection), so every timed diff is the steady state: applied
        # to a real 1000-level book
        frames = [f for f in frames if orjson.loads(f)["data"]["u"] > snapshot_id][:257]
        resync, frames = frames[:1], frames[1:]
    block = frames[:1000]
    sizes = [len(f) for f in block]
    samples = {impl: np.empty(BLOCKS, np.int64) for impl in DECODE_IMPLS}

    def run():
        for b in range(BLOCKS):
            for k in range(len(DECODE_IMPLS)):
                impl = DECODE_IMPLS[(b + k) % len(DECODE_IMPLS)]      # each goes first in turn
                if impl == "stdlib_json":
                    t0 = time.perf_counter_ns()
                    for f in block:
                        _stdlib(f)
                else:
                    norm = norms[impl]
                    if path == "decode_depth":
                        assert norm.on_snapshot("BTCUSDT", snapshot)
                        for f in resync:
                            norm.on_frame(f, 0)
                    on_frame = norm.on_frame
                    t0 = time.perf_counter_ns()
                    for f in block:
                        on_frame(f, 0)
                samples[impl][b] = (time.perf_counter_ns() - t0) // len(block)

    benchmark.pedantic(run, rounds=1, iterations=1)
    for norm in norms.values():
        counts = norm.counter_dict()
        assert all(v == 0 for k, v in counts.items() if k.startswith("drop_") or k == "book_gaps"), counts
    # every timed frame took the scanner's path (the re-sync diffs take the careful one)
    assert norms["ttquant"].counter_dict()["fast_path"] == BLOCKS * len(block)
    infos = {impl: latency_info(path, impl, samples[impl], frames_per_sample=len(block),
                                frame_bytes_mean=int(np.mean(sizes)), interleaved_with=list(DECODE_IMPLS))
             for impl in DECODE_IMPLS}
    benchmark.extra_info.update(infos["ttquant"])
    for impl in DECODE_IMPLS[1:]:
        peer_results.add(benchmark, impl, infos[impl])
    for w in writers.values():
        w.close()



# -- one md process fed by the simulated venue over loopback -------------------------------------

def _run_md_against_venue(tmp_path, name, children_procs):
    """Start venue-sim (full speed, waiting for both markets) and md (trade + bookTicker only);
    return (events, md counters) once the whole capture is through."""
    import json
    import subprocess
    import sys
    import urllib.request

    from ttquant.core.md.daemon import read_md_counters
    from ttquant.core.rings import BroadcastReader, RingNotFoundError

    cli = [sys.executable, "-m", "ttquant.core.cli"]
    sim = subprocess.Popen([*cli, "venue-sim", "binance", "--port", "0", "--speed", "0", "--wait-clients", "2"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    children_procs.append(sim)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    from ttq_testing import md_config
    streams = {m: (["BTCUSDT"], ["trade", "bookTicker"]) for m in ("spot", "usdm")}
    config = md_config(tmp_path / f"{name}.toml", name, port, streams, rings={"tick_capacity": 1048576})
    md = subprocess.Popen([*cli, "md", "binance", "--config", str(config)], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, start_new_session=True)
    children_procs.append(md)
    deadline = time.monotonic() + 120
    reader = None
    while reader is None and time.monotonic() < deadline:
        try:
            reader = BroadcastReader(tick_ring(name), start="oldest", wait="sleep")
        except RingNotFoundError:
            time.sleep(0.05)
    status = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/status", timeout=10).read())
    while time.monotonic() < deadline:
        st = status()
        if st["replay_done"]:
            c = read_md_counters(name)
            if sum(f["frames"] for f in c.values()) >= st["frames_sent"]:
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the capture did not get through md in 120 s")
    events = np.zeros(reader.lag, MARKET_EVENT_DTYPE)
    n = reader.poll_into(events)
    lost = reader.lost
    reader.close()
    return events[:n], read_md_counters(name), lost


def _kill(procs):
    import os
    import signal
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
    procs.clear()


@pytest.fixture(scope="module")
def md_rounds(tmp_path_factory):
    """Three runs of venue-sim (full speed) -> md over loopback: trade + bookTicker of the BTCUSDT
    spot and USDT-M captures, ~125k frames each. Per run: (frames/s, frames, seconds, per-frame
    ts_recv -> ts_pub of the frame's last event). The rate runs from the first frame's ts_recv
    to the last frame's ts_pub."""
    import uuid

    from ttq_testing import SESSION_PREFIX, unlink_venue
    tmp_path = tmp_path_factory.mktemp("md")
    rounds, procs = [], []
    for _ in range(3):
        name = f"{SESSION_PREFIX}md{uuid.uuid4().hex[:6]}"
        try:
            events, counters, lost = _run_md_against_venue(tmp_path, name, procs)
        finally:
            _kill(procs)
            unlink_venue(name)
        last = events[(events["flags"] & EventFlag.LAST_IN_BATCH) != 0]
        frames = sum(f["frames"] for f in counters.values())
        assert lost == 0 and len(last) == frames, (lost, len(last), frames)
        assert not any(v for f in counters.values() for k, v in f.items() if k.startswith("drop_"))
        seconds = (int(last["ts_pub"].max()) - int(last["ts_recv"].min())) / 1e9
        rounds.append((frames / seconds, frames, seconds, (last["ts_pub"] - last["ts_recv"]).astype(np.int64)))
    return rounds


@pytest.mark.quick
def test_md_throughput(benchmark, md_rounds):
    """md_throughput: frames/s into the ring, median of three runs (every run listed)."""
    from support import rate_info
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    rates = [r[0] for r in md_rounds]
    rate, frames, seconds, _ = md_rounds[sorted(range(3), key=lambda i: rates[i])[1]]
    benchmark.extra_info.update(rate_info("md_throughput", "ttquant", frames, seconds,
                                          rounds_per_s=[round(x) for x in rates]))


@pytest.mark.quick
def test_frame_to_ring(benchmark, md_rounds):
    """frame_to_ring: the frame's callback on the md WebSocket thread (ts_recv) to its last event
    in the tick ring (ts_pub), every frame of the three runs."""
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    samples = np.concatenate([r[3] for r in md_rounds])
    benchmark.extra_info.update(latency_info("frame_to_ring", "ttquant", samples))
