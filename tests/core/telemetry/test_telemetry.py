"""Telemetry segments: named values written in place by one process, read by any other."""
import numpy as np
import pytest

from ttquant.core.rings import RingError
from ttquant.core.rings.inspect import ring_info
from ttquant.core.rings.names import telemetry_segment
from ttquant.core.telemetry.telemetry import (
    HIST_BUCKETS,
    HIST_VALUES,
    TelemetryWriter,
    bucket_of,
    bucket_quantile,
    bucket_upper_bounds,
    observe,
    parse_series_name,
    read_telemetry,
    telemetry_segments,
)


def _series(name, **match):
    return [s for s in read_telemetry(name)["series"]
            if all(s.get(k) == v or s["labels"].get(k) == v for k, v in match.items())]


def test_a_reader_decodes_names_labels_and_kinds_from_the_segment_alone(venue, ring):
    ring("telemetry", "gateway")
    with TelemetryWriter(venue, "gateway", "gateway", labels={"venue": "binance"}) as w:
        orders = w.counters(["orders_total", "rejects_total{code=2001,reason=price_band}"], {"strategy": "mm"})
        gauges = w.gauges(["position{instrument=7}", "open_orders"], scale=8)
        hist = w.histogram("tick_to_order_seconds")
        orders[0] += 3
        orders[1] += 1
        gauges[0] = -150_000_000
        gauges[1] = 2 * 10 ** 8
        hist.observe(1500)
        observe(hist.values, 3)
        assert hist.count == 2
        got = read_telemetry(telemetry_segment(venue, "gateway"))
        assert got["labels"] == {"role": "gateway", "process": "gateway", "venue": "binance"}
        assert got["writer_alive"] and got["epoch"] == 1 and got["heartbeat_age_ns"] is not None
        by_id = {s["id"]: s for s in got["series"]}
        assert by_id["orders_total"] == {"kind": "counter", "name": "orders_total", "id": "orders_total",
                                         "labels": {"strategy": "mm"}, "value": 3, "scale": 0}
        assert type(by_id["orders_total"]["value"]) is int       # counts stay exact integers
        rej = by_id["rejects_total{code=2001,reason=price_band}"]
        assert rej["name"] == "rejects_total" and rej["value"] == 1
        assert rej["labels"] == {"strategy": "mm", "code": "2001", "reason": "price_band"}
        assert by_id["position{instrument=7}"]["value"] == -1.5 and by_id["open_orders"]["value"] == 2
        h = by_id["tick_to_order_seconds"]
        assert h["kind"] == "histogram" and h["count"] == 2 and h["sum"] == 1503 and h["scale"] == -9
        assert h["buckets"][bucket_of(1500)] == 1 and h["buckets"][3] == 1 and h["buckets"].sum() == 2
        assert telemetry_segments(venue) == [telemetry_segment(venue, "gateway")]
    assert not read_telemetry(telemetry_segment(venue, "gateway"))["writer_alive"]


def test_buckets_are_log_linear_and_their_bounds_hold_their_values():
    bounds = bucket_upper_bounds()
    assert len(bounds) == HIST_BUCKETS and bounds[-1] is None
    lows = [0] + bounds[:-1]
    for v in list(range(0, 300)) + [10 ** k + d for k in range(3, 10) for d in (-1, 0, 1)] + [2 ** 33 - 1]:
        b = bucket_of(v)
        assert lows[b] <= v and (bounds[b] is None or v < bounds[b]), v
    # 4 buckets per power of two: never wider than 25 % of their lower bound
    assert all((hi - lo) / lo <= 0.25 for lo, hi in zip(lows[8:-1], bounds[8:-1]))
    assert bucket_of(2 ** 40) == HIST_BUCKETS - 1 and bucket_of(2 ** 64 - 1) == HIST_BUCKETS - 1
    assert bucket_quantile({bucket_of(1000): 99, bucket_of(10 ** 6): 1}, 0.5) == bounds[bucket_of(1000)]
    assert bucket_quantile({bucket_of(1000): 98, bucket_of(10 ** 6): 2}, 0.99) == bounds[bucket_of(10 ** 6)]
    assert bucket_quantile({}, 0.5) is None


def test_a_new_run_starts_empty_under_a_new_epoch(venue, ring):
    name = ring("telemetry", "md")
    w = TelemetryWriter(venue, "md", "md")
    w.counters(["frames_total"], {"feed": "spot"})[0] = 5
    w.close()
    assert _series(name, id="frames_total")[0]["value"] == 5    # a stopped process's last counts stay
    w2 = TelemetryWriter(venue, "md", "md")
    got = read_telemetry(name)
    assert got["epoch"] == 2 and ring_info(name)["epoch"] == 2 and got["series"] == []
    c = w2.counters(["frames_total"], {"feed": "usdm"})
    assert not c.any()
    c[0] += 1
    assert [(s["labels"]["feed"], s["value"]) for s in read_telemetry(name)["series"]] == [("usdm", 1)]
    w2.close()


def test_one_writer_at_a_time_and_bad_names_are_refused(venue, ring):
    ring("telemetry", "strategy-mm")
    w = TelemetryWriter(venue, "strategy-mm", "strategy", groups=2)
    with pytest.raises(RingError):
        TelemetryWriter(venue, "strategy-mm", "strategy")
    for bad in (["Orders"], ["orders{code}"], [], ["x"] * 129):
        with pytest.raises(ValueError):
            w.counters(bad)
    with pytest.raises(ValueError, match="label"):
        w.counters(["orders_total"], {"strategy": "a,b"})
    with pytest.raises(ValueError):
        w.counters([f"a_long_counter_name_{i}_total" for i in range(100)])       # names over 1024 bytes
    w.counters(["a_total"])
    w.histogram("b_seconds")
    w.gauges(["c"])
    with pytest.raises(RingError, match="no room"):
        w.counters(["d_total"])
    with pytest.raises(ValueError):
        observe(np.zeros(HIST_VALUES - 1, np.uint64), 1)
    assert parse_series_name("messages_total{type=trade}") == ("messages_total", {"type": "trade"})
    w.close()


def test_the_normaliser_counts_into_shared_memory(venue, ring):
    from ttquant.core.md.binance.normaliser import COUNTER_NAMES, TELEMETRY_NAMES, BinanceNormaliser
    from ttquant.core.records import RecordType
    from ttquant.core.rings import BroadcastWriter
    ring("telemetry", "md")
    assert len(set(TELEMETRY_NAMES)) == len(COUNTER_NAMES)
    w = TelemetryWriter(venue, "md", "md")
    counters = w.counters(TELEMETRY_NAMES, {"feed": "spot"})
    hist = w.histogram("frame_to_ring_seconds", {"feed": "spot"}).values
    ticks = BroadcastWriter(ring("ticks"), RecordType.MARKET_EVENT, 64)
    norm = BinanceNormaliser("spot", [], ticks, counters=counters, latency_hist=hist)
    norm.on_frame(b"garbage", 1)
    got = {s["id"]: s["value"] for s in read_telemetry(w.name)["series"] if s["kind"] == "counter"}
    assert got["dropped_total{reason=malformed_json}"] == 1 and got["frames_total"] == 1
    with pytest.raises(ValueError, match="telemetry histogram"):
        BinanceNormaliser("spot", [], ticks, counters=counters, latency_hist=np.zeros(64, np.uint64))
    ticks.close()
    w.close()
