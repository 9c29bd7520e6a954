"""Read-only ring views used by `ttquant rings ls/inspect`."""
import os

import pytest

from ttquant.core.records import EventKind, MarketEvent, Order, RecordType
from ttquant.core.rings import BroadcastWriter, RingError, SpscReader, SpscWriter
from ttquant.core.rings.inspect import last_records, ring_info, ring_infos


def test_broadcast_info_reports_writer_positions_and_heartbeat(ring):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 64)
    for i in range(5):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=100 + i))
    w.heartbeat()
    info = ring_info(name)
    assert info["kind"] == "broadcast" and info["record"] == "market_event"
    assert info["capacity"] == 64 and info["write_position"] == 5
    assert info["writer_pid"] == os.getpid() and info["writer_alive"]
    assert info["epoch"] == 1
    assert info["heartbeat_age_ns"] is not None and info["heartbeat_age_ns"] < 60e9
    assert "read_position" not in info
    w.close()
    assert not ring_info(name)["writer_alive"]     # closed writer: the role is released


def test_spsc_info_has_reader_side_and_refusals(ring):
    name = ring("orders", "s1")
    r = SpscReader(name, RecordType.ORDER, capacity=4, create=True)
    w = SpscWriter(name, RecordType.ORDER, create=False, capacity=None)
    for i in range(6):
        w.offer(Order(client_order_id=i))
    r.poll()
    info = ring_info(name)
    assert info["kind"] == "spsc" and info["record"] == "order"
    assert info["write_position"] == 4 and info["read_position"] == 1 and info["unread"] == 3
    assert info["rejected_full"] == 2
    assert info["reader_pid"] == os.getpid() and info["reader_alive"]
    w.close()
    r.close()


def test_last_records_are_the_newest_still_in_the_ring_oldest_first(ring):
    name = ring("ticks")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 8)
    for i in range(20):
        w.push(MarketEvent(kind=EventKind.TRADE, seq=i, price=1000 + i))
    info, recs = last_records(name, 5)
    assert info["positions"] == [15, 16, 17, 18, 19]
    assert list(recs["seq"]) == [15, 16, 17, 18, 19] and list(recs["price"]) == [1015, 1016, 1017, 1018, 1019]
    info, recs = last_records(name, 100)      # asks for more than the ring holds
    assert info["positions"] == list(range(13, 20))     # the slot of 12 may be under rewrite
    w.close()


def test_last_records_of_an_empty_ring(ring):
    name = ring("ticks")
    BroadcastWriter(name, RecordType.MARKET_EVENT, 8).close()
    info, recs = last_records(name, 10)
    assert len(recs) == 0 and info["positions"] == []


def test_ring_infos_lists_bad_segments_with_their_error(ring, venue):
    good = ring("ticks")
    BroadcastWriter(good, RecordType.MARKET_EVENT, 8).close()
    bad = ring("junk")
    with open(f"/dev/shm{bad}", "wb") as f:
        f.write(b"not a ring" * 10)
    mine = {i["name"]: i for i in ring_infos() if i["name"].startswith(f"/ttq.{venue}.")}
    assert set(mine) == {good, bad}
    assert "error" not in mine[good]
    assert bad in mine[bad]["error"]
    with pytest.raises(RingError, match="junk"):
        ring_info(bad)
