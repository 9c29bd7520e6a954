"""Broadcast ring: in-order delivery, independent cursors, exact loss accounting on laps."""
import numpy as np
import pytest

from ttquant.core.records import MARKET_EVENT_DTYPE, EventKind, MarketEvent, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter

ME = RecordType.MARKET_EVENT


def _event(seq):
    return MarketEvent(kind=EventKind.TRADE, seq=seq, price=seq * 10, qty=seq + 1, instrument_id=7)


def test_records_arrive_in_order_with_their_contents(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 64) as w, BroadcastReader(name) as r:
        assert r.poll() is None
        for i in range(40):
            w.push(_event(i))
        got = [r.poll() for _ in range(40)]
        assert [e.seq for e in got] == list(range(40))
        assert got[7] == _event(7)
        assert r.poll() is None
        assert (r.lost, r.laps, r.position, w.position) == (0, 0, 40, 40)


def test_each_reader_has_its_own_cursor(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 64) as w:
        early = BroadcastReader(name)
        for i in range(5):
            w.push(_event(i))
        late = BroadcastReader(name)                    # start="latest": only what comes next
        oldest = BroadcastReader(name, start="oldest")  # everything still in the ring
        resumed = BroadcastReader(name, start=3)
        w.push(_event(5))
        assert [e.seq for e in iter(early.poll, None)] == [0, 1, 2, 3, 4, 5]
        assert [e.seq for e in iter(late.poll, None)] == [5]
        assert [e.seq for e in iter(oldest.poll, None)] == [0, 1, 2, 3, 4, 5]
        assert [e.seq for e in iter(resumed.poll, None)] == [3, 4, 5]
        for r in (early, late, oldest, resumed):
            r.close()


def test_lapped_reader_counts_exactly_what_it_lost_and_jumps_to_the_oldest(ring):
    name = ring("ticks")
    capacity = 8
    with BroadcastWriter(name, ME, capacity) as w, BroadcastReader(name) as r:
        for i in range(3):
            w.push(_event(i))
        assert r.poll().seq == 0
        for i in range(3, 30):
            w.push(_event(i))
        # write position 30: slots hold 22..29, all intact (the writer is between records)
        ev = r.poll()
        assert ev.seq == 30 - capacity
        assert r.lost == ev.seq - 1 and r.laps == 1
        rest = [e.seq for e in iter(r.poll, None)]
        assert rest == list(range(ev.seq + 1, 30))
        assert r.lost + 1 + 1 + len(rest) == 30    # lost + first read + the lapped read + rest


def test_resume_from_an_old_position_counts_the_loss(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 4) as w:
        for i in range(100):
            w.push(_event(i))
        r = BroadcastReader(name, start=10)
        assert r.poll().seq == 96 and r.lost == 86 and r.laps == 1
        r.close()


def test_poll_into_copies_batches_and_counts_laps(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name) as r:
        batch = np.zeros(40, MARKET_EVENT_DTYPE)
        batch["seq"] = np.arange(40)
        batch["kind"] = EventKind.TRADE
        assert w.push_many(batch) == 40
        out = np.zeros(32, MARKET_EVENT_DTYPE)
        n = r.poll_into(out)
        assert n == 16 and r.lost == 24
        assert list(out["seq"][:n]) == list(range(24, 40))
        assert r.poll_into(out) == 0


def test_push_many_writes_the_ring_exactly_as_push_does_one_by_one(ring):
    """push_many runs broadcast_publish_many: the same stamps, payloads and write position as
    one push per record, laps within one call included, and the heartbeat stamped."""
    import struct
    records = np.zeros(40, MARKET_EVENT_DTYPE)
    records["seq"] = np.arange(40)
    records["price"] = np.arange(40) * 7 + 3
    records["kind"] = EventKind.TRADE
    one, many = ring("ticks", "one"), ring("ticks", "many")
    with BroadcastWriter(one, ME, 16) as w1, BroadcastWriter(many, ME, 16) as w2:
        for rec in records:
            w1.push_bytes(rec.tobytes())
        assert w2.push_many(records[:5]) == 5 and w2.push_many(records[5:]) == 35
        assert w1.position == w2.position == 40
    with open("/dev/shm" + one, "rb") as f1, open("/dev/shm" + many, "rb") as f2:
        a, b = f1.read(), f2.read()
    assert a[128:136] == b[128:136] == struct.pack("<Q", 40)      # write_position
    assert a[4096:] == b[4096:]                                     # every stamp and payload
    assert struct.unpack_from("<q", b, 272)[0] > 0                  # heartbeat_ns


def test_poll_into_refuses_a_buffer_of_the_wrong_record_size(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16), BroadcastReader(name) as r:
        with pytest.raises(ValueError, match="not whole records of 120 bytes"):
            r.poll_into(np.zeros(4, np.int64))
        with pytest.raises(ValueError, match="not whole records of 120 bytes"):
            r.poll_into(np.zeros(3, np.dtype("V60")))


def test_push_of_the_wrong_record_type_is_refused(ring):
    from ttquant.core.records import Order
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w:
        with pytest.raises(TypeError, match="record type 1 cannot carry Order"):
            w.push(Order())
        with pytest.raises(ValueError, match="must be 120 bytes, got 3"):
            w.push_bytes(b"abc")
        w.push_bytes(_event(9).tobytes())
        assert w.position == 1


def test_poll_returns_fresh_objects(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name) as r:
        w.push(_event(1))
        w.push(_event(2))
        a, b = r.poll(), r.poll()
        assert a is not b and (a.seq, b.seq) == (1, 2)


def test_writer_restart_continues_the_positions(ring):
    name = ring("ticks")
    r = None
    with BroadcastWriter(name, ME, 16) as w:
        r = BroadcastReader(name)
        for i in range(3):
            w.push(_event(i))
    with BroadcastWriter(name, ME, 16) as w2:
        assert w2.position == 3 and w2.epoch == 2
        w2.push(_event(3))
    assert [e.seq for e in iter(r.poll, None)] == [0, 1, 2, 3]
    status = r.writer_status()
    assert status["epoch_changed"] and status["writer_epoch"] == 2
    assert not r.writer_status()["epoch_changed"]
    r.close()


def test_writer_killed_after_the_final_stamp_does_not_publish_that_position_twice(ring):
    """A writer that died between a slot's final stamp and the position store left a complete
    record past write_position; the next writer keeps it instead of rewriting the position."""
    import struct
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w:
        r = BroadcastReader(name)
        w.push(_event(0))
        w.push(_event(1))
    with open("/dev/shm" + name, "r+b") as f:       # roll write_position back by one
        f.seek(128)
        f.write(struct.pack("<Q", 1))
    with BroadcastWriter(name, ME, 16) as w2:
        assert w2.position == 2
        w2.push(_event(2))
    assert [e.seq for e in iter(r.poll, None)] == [0, 1, 2]
    r.close()


def test_lag_property(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16) as w, BroadcastReader(name) as r:
        for i in range(5):
            w.push(_event(i))
        assert r.lag == 5
        r.poll()
        assert r.lag == 4


def test_bad_start_is_refused(ring):
    name = ring("ticks")
    with BroadcastWriter(name, ME, 16):
        with pytest.raises(ValueError, match="must be 'latest', 'oldest' or a position"):
            BroadcastReader(name, start="newest")
