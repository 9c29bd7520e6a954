"""replay_throughput (DESIGN.md §9): journal files -> the tick ring at `--speed max`, events/s.

4 M MarketEvents (1 M quick; 120 bytes each, the record size md writes, the content does not
change the work) in journal files of 256 MB as the recorder writes them, a microsecond of
market time apart, replayed in-process by the replay daemon (core/journal/replay.py) into a
fresh ring: what is timed is serve(), from the first record read to the last one published,
a new ts_pub on each. Target: >= 5 M/s.
"""
import time
import uuid

import numpy as np
import pytest

from ttquant.core.daemon.runner import ServiceRunner
from ttquant.core.journal import JournalWriter
from ttquant.core.journal.replay import Replay, ReplayConfig
from ttquant.core.records import MARKET_EVENT_DTYPE, RecordType

from support import QUICK, rate_info
from ttq_testing import SESSION_PREFIX, unlink_venue

N = 1_000_000 if QUICK else 4_000_000


@pytest.mark.quick
def test_replay_throughput(benchmark, tmp_path):
    events = np.zeros(100_000, MARKET_EVENT_DTYPE)
    events["kind"] = 1
    events["price"] = 61_000_00 + np.arange(len(events)) % 1000
    reps = -(-N // len(events))
    directory = tmp_path / "journal" / "bench.ticks"
    w, written = None, 0
    for _ in range(reps):
        chunk = events[: min(len(events), N - written)].copy()
        chunk["ts_pub"] = 1_723_075_200_000_000_000 + (written + np.arange(len(chunk))) * 1000
        if w is None or w.size > 256 << 20:
            if w is not None:
                w.close()
            w = JournalWriter(str(directory), "/ttq.bench.ticks", RecordType.MARKET_EVENT,
                              MARKET_EVENT_DTYPE.itemsize, written, "{}", ring_created_ns=1)
        w.append(chunk)
        written += len(chunk)
    w.close()
    rings = f"{SESSION_PREFIX}rp{uuid.uuid4().hex[:6]}"
    cfg = ReplayConfig(directory=str(tmp_path / "journal"), speed=0.0, rings=rings, kinds=["ticks"],
                       capacity=1 << 16)
    runner = ServiceRunner("replay", rings, env={})
    replay = Replay(cfg, runner)
    seconds = []
    try:
        replay.start()

        def run():
            t0 = time.perf_counter()
            replay.serve()
            seconds.append(time.perf_counter() - t0)
        benchmark.pedantic(run, rounds=1, iterations=1)
    finally:
        replay.close()
        unlink_venue(rings)
    assert replay.published == written
    benchmark.extra_info.update(rate_info("replay_throughput", "ttquant", written, seconds[0],
                                          record_bytes=MARKET_EVENT_DTYPE.itemsize))
