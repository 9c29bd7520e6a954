"""Market-data counters in shared memory: written in place, read by another process's view."""
import pytest

from ttquant.core.md.feed_stats import HIST_BUCKETS, NUM_COUNTERS, FeedStatsReader, FeedStatsWriter
from ttquant.core.rings import RingError
from ttquant.core.rings.inspect import ring_info


def test_counters_live_in_the_segment_and_survive_a_restart(ring):
    name = ring("md_stats")
    w = FeedStatsWriter(name, feeds=2)
    counters, hist = w.feed("spot")
    assert counters.shape == (NUM_COUNTERS,) and hist.shape == (HIST_BUCKETS,)
    counters[3] += 7
    hist[10] += 2
    r = FeedStatsReader(name)
    got = r.read()
    assert list(got) == ["spot"] and got["spot"][0][3] == 7 and got["spot"][1][10] == 2
    w.feed("usdm")
    with pytest.raises(RingError, match="no room"):
        w.feed("coinm")
    with pytest.raises(ValueError):
        w.feed("")
    w.close()
    w2 = FeedStatsWriter(name, feeds=2)
    again, _ = w2.feed("spot")
    assert again[3] == 7            # the same slot: counts carry on across a restart
    assert ring_info(name)["epoch"] == 2
    r.close()
    w2.close()


def test_the_normaliser_counts_into_shared_memory(ring):
    from ttquant.core.md.binance.normaliser import COUNTER_NAMES, BinanceNormaliser
    from ttquant.core.records import RecordType
    from ttquant.core.rings import BroadcastWriter
    name = ring("md_stats")
    stats = FeedStatsWriter(name)
    counters, hist = stats.feed("spot")
    ticks = BroadcastWriter(ring("ticks"), RecordType.MARKET_EVENT, 64)
    norm = BinanceNormaliser("spot", [], ticks, counters=counters, latency_hist=hist)
    norm.on_frame(b"garbage", 1)
    got = FeedStatsReader(name).read()["spot"][0]
    assert got[COUNTER_NAMES.index("drop_malformed_json")] == 1 and got[COUNTER_NAMES.index("frames")] == 1
    ticks.close()
    stats.close()
