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

from support import QUICK, latency_info
from ttquant.core.instruments import InstrumentTable
from ttquant.core.md.binance.exchange_info import SPOT, instruments_from_exchange_info, merge_instruments
from ttquant.core.md.binance.normaliser import BinanceNormaliser
from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.core.sim.captures import read_cryptofeed_http, read_hftbacktest, sample_data_dir

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


@pytest.mark.quick
@pytest.mark.parametrize("impl", ["ttquant", "ttquant_orjson", "stdlib_json"])
@pytest.mark.parametrize("path", list(KINDS))
def test_decode(benchmark, path, impl, ring):
    table, messages = _capture()
    w = BroadcastWriter(ring("ticks"), RecordType.MARKET_EVENT, 1 << 16)
    norm = BinanceNormaliser(SPOT, list(table), w, fast_path=(impl == "ttquant"))
    marker = KINDS[path]
    snapshot = next(m.payload for m in messages if m.source != "ws")
    snapshot_id = orjson.loads(snapshot)["lastUpdateId"]
    frames = [m.payload for m in messages if m.source == "ws" and marker in m.payload[:48]]
    if path == "decode_depth":
        # the diffs that follow the captured snapshot; each block re-syncs to it untimed,
        # so every timed diff is applied to a real 1000-level book, as in the daemon
        frames = [f for f in frames if orjson.loads(f)["data"]["u"] > snapshot_id][:256]
    block = frames[:1000]
    sizes = [len(f) for f in block]
    samples = np.empty(BLOCKS, np.int64)

    def run():
        for b in range(BLOCKS):
            if path == "decode_depth" and impl != "stdlib_json":
                assert norm.on_snapshot("BTCUSDT", snapshot)
            t0 = time.perf_counter_ns()
            if impl == "stdlib_json":
                for f in block:
                    _stdlib(f)
            else:
                for f in block:
                    norm.on_frame(f, 0)
            samples[b] = (time.perf_counter_ns() - t0) // len(block)

    benchmark.pedantic(run, rounds=1, iterations=1)
    counts = norm.counter_dict()
    assert all(v == 0 for k, v in counts.items() if k.startswith("drop_") or k == "book_gaps"), counts
    benchmark.extra_info.update(latency_info(path, impl, samples, frames_per_sample=len(block),
                                             frame_bytes_mean=int(np.mean(sizes))))
    w.close()

