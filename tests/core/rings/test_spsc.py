"""SPSC ring: a full ring refuses at once, nothing is overwritten, restarts lose nothing."""
import numpy as np
import pytest

from ttquant.core.records import ORDER_DTYPE, Order, OrderAction, RecordType, Side
from ttquant.core.rings import RingFullError, SpscReader, SpscWriter

ORD = RecordType.ORDER


def _order(cid):
    return Order(client_order_id=cid, action=OrderAction.NEW, side=Side.BUY, price=100 + cid,
                 qty=1, strategy_id=3, instrument_id=1)


def test_orders_arrive_in_order(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 8) as w, SpscReader(name) as r:
        for i in range(5):
            w.push(_order(i))
        assert r.available == 5
        got = [r.poll() for _ in range(5)]
        assert [o.client_order_id for o in got] == list(range(5))
        assert got[3] == _order(3)
        assert r.poll() is None and r.available == 0


def test_full_ring_refuses_at_once_and_overwrites_nothing(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 4) as w, SpscReader(name) as r:
        assert all(w.offer(_order(i)) for i in range(4))
        assert w.free == 0
        assert w.offer(_order(99)) is False
        with pytest.raises(RingFullError, match=rf"ring {name} is full \(4 records unread\)"):
            w.push(_order(100))
        assert w.rejected_full == 2
        assert [r.poll().client_order_id for _ in range(4)] == [0, 1, 2, 3]
        assert r.poll() is None
        w.push(_order(4))                       # room again once the reader consumed
        assert r.poll().client_order_id == 4


def test_push_many_stops_at_full_and_reports_how_many(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 8) as w, SpscReader(name) as r:
        batch = np.zeros(20, ORDER_DTYPE)
        batch["client_order_id"] = np.arange(20)
        assert w.push_many(batch) == 8
        out = np.zeros(5, ORDER_DTYPE)
        assert r.poll_into(out) == 5
        assert list(out["client_order_id"]) == [0, 1, 2, 3, 4]
        assert w.push_many(batch[8:]) == 5
        out = np.zeros(20, ORDER_DTYPE)
        n = r.poll_into(out)
        assert n == 8 and list(out["client_order_id"][:n]) == list(range(5, 13))


def test_reader_restart_resumes_at_its_read_position(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 8) as w:
        with SpscReader(name) as r:
            for i in range(6):
                w.push(_order(i))
            assert [r.poll().client_order_id for _ in range(2)] == [0, 1]
        with SpscReader(name) as r2:        # a gateway restart: 2..5 are still there
            assert [o.client_order_id for o in iter(r2.poll, None)] == [2, 3, 4, 5]
            assert r2.writer_status()["reader_epoch"] == 2


def test_writer_restart_continues_without_duplicates(ring):
    name = ring("orders", "s1")
    with SpscReader(name, ORD, capacity=8, create=True) as r:
        with SpscWriter(name, ORD, 8) as w:
            w.push(_order(0))
            w.push(_order(1))
        with SpscWriter(name, ORD, 8) as w2:
            assert w2.position == 2
            w2.push(_order(2))
        assert [o.client_order_id for o in iter(r.poll, None)] == [0, 1, 2]



def test_writer_killed_inside_push_many_never_publishes_the_unfinished_batch(ring):
    """A writer that died after filling a batch's slots but before its position store left
    complete slots past write_position that the reader never saw: the next writer writes over
    them instead of publishing them late."""
    import struct
    name = ring("orders", "s1")
    with SpscReader(name, ORD, capacity=8, create=True) as r:
        with SpscWriter(name, ORD, 8) as w:
            batch = np.zeros(3, ORDER_DTYPE)
            batch["client_order_id"] = [0, 1, 2]
            assert w.push_many(batch) == 3
        with open("/dev/shm" + name, "r+b") as f:   # roll write_position back to before 1, 2
            f.seek(128)
            f.write(struct.pack("<Q", 1))
        assert r.available == 1
        with SpscWriter(name, ORD, 8) as w2:
            assert w2.position == 1
            w2.push(_order(10))
        assert [o.client_order_id for o in iter(r.poll, None)] == [0, 10]

def test_reader_can_create_the_ring_given_its_record_type(ring):
    from ttquant.core.rings.spsc import DEFAULT_SPSC_CAPACITY
    with pytest.raises(ValueError, match="needs a record type"):
        SpscReader(ring("orders", "a"), create=True, capacity=8)
    with SpscReader(ring("orders", "b"), ORD, create=True) as r:
        assert r.capacity == DEFAULT_SPSC_CAPACITY
    with SpscWriter(ring("orders", "b"), ORD) as w:     # capacity None: the ring's own
        assert w.capacity == DEFAULT_SPSC_CAPACITY


def test_wrong_record_type_is_refused(ring):
    from ttquant.core.records import MarketEvent
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 8) as w:
        with pytest.raises(TypeError, match="record type 2 cannot carry MarketEvent"):
            w.push(MarketEvent())
        with pytest.raises(ValueError, match="must be 56 bytes"):
            w.offer_bytes(b"x" * 55)
        assert w.offer_bytes(_order(1).tobytes())


def test_wrap_around_many_times(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 4) as w, SpscReader(name) as r:
        seen = []
        for i in range(1000):
            w.push(_order(i))
            if i % 3 == 2:
                seen.extend(o.client_order_id for o in iter(r.poll, None))
        seen.extend(o.client_order_id for o in iter(r.poll, None))
        assert seen == list(range(1000))
        assert w.rejected_full == 0


def test_restarted_reader_batch_read_sees_only_what_was_published(ring):
    """A new reader at read position > 0 must not read past the write position (its cached
    limit starts at its own position, never below it)."""
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 16) as w:
        with SpscReader(name) as r:
            for i in range(5):
                w.push(_order(i))
            assert r.poll_into(np.zeros(5, ORDER_DTYPE)) == 5
        with SpscReader(name) as r2:
            out = np.zeros(10, ORDER_DTYPE)
            assert r2.poll_into(out) == 0 and r2.available == 0
            w.push(_order(5))
            assert r2.poll_into(out) == 1 and out["client_order_id"][0] == 5
            assert w.free == 16


def test_peek_then_consume_keeps_an_order_until_it_is_handled(ring):
    name = ring("orders", "s1")
    with SpscWriter(name, ORD, 8) as w:
        w.push(_order(1))
        w.push(_order(2))
        with SpscReader(name) as r:
            assert r.peek().client_order_id == 1
            assert r.peek().client_order_id == 1     # still there
        with SpscReader(name) as r:                  # a crash before consume(): nothing lost
            assert r.peek().client_order_id == 1
            r.consume()
            assert r.peek().client_order_id == 2
            r.consume()
            assert r.peek() is None
            with pytest.raises(ValueError, match="cannot consume 1"):
                r.consume()


def test_closed_handles_refuse_instead_of_touching_unmapped_memory(ring):
    name = ring("orders", "s1")
    w = SpscWriter(name, ORD, 8)
    r = SpscReader(name)
    w.close()
    r.close()
    for action in (lambda: w.free, lambda: w.rejected_full, w.heartbeat, lambda: r.available,
                   r.heartbeat, r.poll, r.peek, lambda: r.writer_status()):
        with pytest.raises(ValueError, match="closed"):
            action()
