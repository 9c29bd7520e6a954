"""Market-data counters in shared memory: written in place, read by another process's view."""
import pytest

from ttquant.core.md.feed_stats import HIST_BUCKETS, NUM_COUNTERS, FeedStatsReader, FeedStatsWriter
from ttquant.core.rings import RingError
from ttquant.core.rings.inspect import ring_info


def test_counters_live_in_the_segment(ring):
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
    r.close()
    w.close()


def test_a_new_run_starts_at_zero_under_a_new_epoch(ring):
    name = ring("md_stats")
    w = FeedStatsWriter(name, feeds=4)
    for feed in ("spot", "usdm"):
        counters, hist = w.feed(feed)
        counters[:] = 5
        hist[:] = 3
    r = FeedStatsReader(name)           # a reader that stays attached across the restart
    assert r.status()["writer_epoch"] == 1 and r.read()["usdm"][0][0] == 5
    w.close()
    assert r.read()["spot"][1][10] == 3     # a stopped md's last counts stay readable
    w2 = FeedStatsWriter(name, feeds=4)
    assert r.status()["writer_epoch"] == 2 and ring_info(name)["epoch"] == 2
    assert r.read() == {}               # no feed of the old run is shown as this run's
    counters, hist = w2.feed("usdm")    # registered in another order than before
    assert not counters.any() and not hist.any()
    counters[1] += 1
    spot, spot_hist = w2.feed("spot")
    assert not spot.any() and not spot_hist.any()
    got = r.read()
    assert list(got) == ["usdm", "spot"] and got["usdm"][0][1] == 1 and got["usdm"][0].sum() == 1
    assert not got["spot"][0].any() and not got["usdm"][1].any()
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
