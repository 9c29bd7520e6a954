"""Property-based tests of the broadcast and SPSC rings against a pure-Python model.

Hypothesis drives random interleavings of push / push_many / poll / poll_into (random batch
sizes, capacities 2..64 so laps happen all the time), broadcast readers attaching at
"oldest" / "latest" / arbitrary positions, writers and SPSC readers closing and
re-attaching. After every step the rings' counters (positions, lost, laps, lag,
available, free, rejected_full, epochs) must equal the model's exactly, and every record
read must be exactly the record published at the position the model says it reads.

Each record carries a unique key (MarketEvent.seq / Order.client_order_id) = base + position,
and every other field is derived from the key, so a record from the wrong position, a
stale slot or a torn copy cannot pass for the right one.

Every example creates its own uniquely named segments and unlinks them in teardown().
"""
import functools
import os
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from ttquant.core.records import (
    MARKET_EVENT_DTYPE,
    ORDER_DTYPE,
    MarketEvent,
    Order,
    RecordType,
)
from ttquant.core.rings import (
    BroadcastReader,
    BroadcastWriter,
    RingBusyError,
    RingFullError,
    RingSegment,
    SpscReader,
    SpscWriter,
    unlink,
)

SHM_DIR = "/dev/shm"
CAPACITIES = st.sampled_from([2, 4, 8, 16, 32, 64])
RECORD_TYPES = st.sampled_from([RecordType.MARKET_EVENT, RecordType.ORDER])
BASES = st.integers(min_value=0, max_value=2**63)       # key = base + position, fits u64
BATCH = st.integers(min_value=0, max_value=2 * 64 + 3)  # reduced modulo 2*capacity + 4
SLOT = st.integers(min_value=0, max_value=7)            # a reader, modulo how many there are
JUNK = 0xA5                                             # poll_into buffers start as this byte

_M64 = (1 << 64) - 1


def _mix(key, salt):
    """A 64-bit value derived from (key, salt) that uses every bit."""
    x = (key * 0x9E3779B97F4A7C15 + salt * 0xBF58476D1CE4E5B9) & _M64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 29)


def _i64(key, salt):
    x = _mix(key, salt)
    return x - (1 << 64) if x >= (1 << 63) else x


def _event_fields(key):
    # The kline body covers the whole union (offsets 56..112), so every payload byte varies.
    return dict(
        ts_exchange=_i64(key, 1), ts_recv=_i64(key, 2), ts_pub=_i64(key, 3), seq=key,
        instrument_id=_mix(key, 4) & 0xFFFFFFFF, venue_id=_mix(key, 5) & 0xFFFF,
        kind=1 + _mix(key, 6) % 6, flags=_mix(key, 7) & 0xFF, price=_i64(key, 8),
        qty=_i64(key, 9), open=_i64(key, 10), high=_i64(key, 11), low=_i64(key, 12),
        quote_volume=_i64(key, 13), trade_count=_mix(key, 14), open_time_ns=_i64(key, 15),
        close_time_ns=_i64(key, 16),
    )


def _order_fields(key):
    return dict(
        ts_created=_i64(key, 1), client_order_id=key, target_order_id=_mix(key, 2),
        price=_i64(key, 3), qty=_i64(key, 4), strategy_id=_mix(key, 5) & 0xFFFFFFFF,
        instrument_id=_mix(key, 6) & 0xFFFFFFFF, action=_mix(key, 7) & 0xFF,
        side=_mix(key, 8) & 0xFF, order_type=_mix(key, 9) & 0xFF, reduce_only=_mix(key, 10) & 0xFF,
    )


# record type -> (class, dtype, key field, fields of a key)
RECORDS = {
    RecordType.MARKET_EVENT: (MarketEvent, MARKET_EVENT_DTYPE, "seq", _event_fields),
    RecordType.ORDER: (Order, ORDER_DTYPE, "client_order_id", _order_fields),
}


class Records:
    """The records of one ring: the one published at position p has key base + p."""

    def __init__(self, record_type, base):
        self.cls, self.dtype, self.key_field, fields = RECORDS[record_type]
        self.fields = functools.lru_cache(maxsize=4096)(fields)
        self.base = base
        self._raw = {}

    def key(self, position):
        return self.base + position

    def record(self, position):
        return self.cls(**self.fields(self.key(position)))

    def raw(self, position):
        raw = self._raw.get(position)
        if raw is None:
            raw = self._raw[position] = self.record(position).tobytes()
        return raw

    def batch(self, start, n):
        """Positions start..start+n-1 as a record-dtype array, filled field by field (not
        from the record objects' bytes, so the dtype and the C struct are checked too)."""
        arr = np.zeros(n, self.dtype)
        if n:
            rows = [self.fields(self.key(p)) for p in range(start, start + n)]
            for name in rows[0]:
                arr[name] = np.array([row[name] for row in rows], self.dtype.fields[name][0])
        return arr

    def junk(self, n):
        arr = np.zeros(n, self.dtype)
        arr.view(np.uint8)[:] = JUNK
        return arr

    def check_record(self, rec, position):
        assert type(rec) is self.cls
        assert getattr(rec, self.key_field) == self.key(position), (
            f"read key {getattr(rec, self.key_field)}, expected position {position} "
            f"(key {self.key(position)})")
        assert rec == self.record(position)

    def check_batch(self, arr, count, first_positions):
        assert len(first_positions) == count
        for i, position in enumerate(first_positions):
            assert int(arr[self.key_field][i]) == self.key(position), (
                f"batch item {i}: key {int(arr[self.key_field][i])}, expected position "
                f"{position} (key {self.key(position)})")
            assert arr[i:i + 1].tobytes() == self.raw(position)
        # nothing is written past the count
        assert (arr[count:].view(np.uint8) == JUNK).all()


def _unique_name(kind):
    # t<pid>x... like the venue fixture's names, so the session's shm check claims them too
    return f"/ttq.t{os.getpid()}xhp{uuid.uuid4().hex[:12]}.{kind}"


def _reduce(n, capacity):
    return n % (2 * capacity + 4)


# --------------------------------------------------------------------------------------------
# Broadcast ring
# --------------------------------------------------------------------------------------------


class BroadcastCursorModel:
    """What one broadcast reader's cursor must do."""

    def __init__(self, position, epoch):
        self.position = position
        self.lost = 0
        self.laps = 0
        self.seen_epoch = epoch

    def read(self, write_position, capacity):
        """The position read next, or None; applies a lap like the ring does.

        Lapped means position p + capacity (or later) was written over p's slot. The reader
        then jumps to write_position - capacity, the oldest slot the writer may not have
        overwritten yet; with no writer running concurrently its stamp is complete, so the
        reader reads it and loses exactly the positions in between.
        """
        p = self.position
        if p >= write_position:
            return None
        if write_position > p + capacity:
            event("broadcast: a reader was lapped")
            oldest = write_position - capacity
            self.lost += oldest - p
            self.laps += 1
            p = oldest
        self.position = p + 1
        return p

    def lag(self, write_position):
        return max(write_position - self.position, 0)


class BroadcastMachine(RuleBasedStateMachine):
    MAX_READERS = 4

    def __init__(self):
        super().__init__()
        self.name = None
        self.writer = None
        self.observer = None
        self.readers = []       # [(BroadcastReader, BroadcastCursorModel)]

    @initialize(capacity=CAPACITIES, record_type=RECORD_TYPES, base=BASES,
                starts=st.lists(st.sampled_from(["oldest", "latest"]), max_size=2))
    def create(self, capacity, record_type, base, starts):
        self.name = _unique_name("ticks")
        self.capacity = capacity
        self.record_type = record_type
        self.records = Records(record_type, base)
        self.write_position = 0
        self.epoch = 1
        self.writer = BroadcastWriter(self.name, record_type, capacity)
        self.observer = RingSegment.attach(self.name)   # no role: header snapshots only
        assert self.writer.capacity == capacity
        assert self.writer.epoch == 1
        for start in starts:                            # readers there from the first record
            reader = BroadcastReader(self.name, start=start)
            assert reader.position == 0
            self.readers.append((reader, BroadcastCursorModel(0, self.epoch)))

    def teardown(self):
        for reader, _ in self.readers:
            reader.close()
        self.readers = []
        if self.writer is not None:
            self.writer.close()
        if self.observer is not None:
            self.observer.close()
        if self.name is not None:
            unlink(self.name)
            assert not os.path.exists(SHM_DIR + self.name)

    # ---- writer -------------------------------------------------------------------------

    def _oldest(self):
        w = self.write_position
        return w - self.capacity + 1 if w >= self.capacity else 0

    @precondition(lambda self: self.writer is not None)
    @rule(as_bytes=st.booleans())
    def push(self, as_bytes):
        if as_bytes:
            self.writer.push_bytes(self.records.raw(self.write_position))
        else:
            self.writer.push(self.records.record(self.write_position))
        self.write_position += 1

    @precondition(lambda self: self.writer is not None)
    @rule(n=BATCH)
    def push_many(self, n):
        n = _reduce(n, self.capacity)
        assert self.writer.push_many(self.records.batch(self.write_position, n)) == n
        self.write_position += n

    @precondition(lambda self: self.writer is not None)
    @rule(extra=BATCH)
    def burst(self, extra):
        """More than a capacity at once: every reader not at the write position is lapped."""
        n = self.capacity + 1 + extra % (2 * self.capacity)
        assert self.writer.push_many(self.records.batch(self.write_position, n)) == n
        self.write_position += n

    @precondition(lambda self: self.writer is not None)
    @rule()
    def writer_close(self):
        self.writer.close()
        self.writer = None

    @precondition(lambda self: self.writer is None)
    @rule(create=st.booleans())
    def writer_reattach(self, create):
        self.writer = BroadcastWriter(self.name, self.record_type, self.capacity, create=create)
        self.epoch += 1
        event(f"broadcast: writer re-attached with {len(self.readers)} readers attached")
        assert self.writer.epoch == self.epoch
        assert self.writer.position == self.write_position

    @precondition(lambda self: self.writer is not None)
    @rule()
    def second_writer_is_refused(self):
        with pytest.raises(RingBusyError):
            BroadcastWriter(self.name, self.record_type, self.capacity)

    # ---- readers ------------------------------------------------------------------------

    @precondition(lambda self: len(self.readers) < self.MAX_READERS)
    @rule(start=st.sampled_from(["oldest", "latest", "position"]),
          offset=st.integers(min_value=-140, max_value=3), typed=st.booleans())
    def add_reader(self, start, offset, typed):
        if start == "oldest":
            expected = self._oldest()
        elif start == "latest":
            expected = self.write_position
        else:
            start = expected = self.write_position + offset
            if not 0 <= start <= self.write_position:
                # a position must be one already published (or the next one)
                with pytest.raises(ValueError, match="must be 'latest', 'oldest' or a position"):
                    BroadcastReader(self.name, start=start)
                return
        reader = BroadcastReader(self.name, self.record_type if typed else None, start=start)
        assert reader.position == expected
        assert reader.capacity == self.capacity
        self.readers.append((reader, BroadcastCursorModel(expected, self.epoch)))
        event(f"broadcast: {len(self.readers)} readers attached at once")

    @precondition(lambda self: self.readers)
    @rule(i=SLOT)
    def close_reader(self, i):
        reader, _ = self.readers.pop(i % len(self.readers))
        reader.close()

    @precondition(lambda self: self.readers)
    @rule(i=SLOT)
    def poll(self, i):
        reader, model = self.readers[i % len(self.readers)]
        rec = reader.poll()
        expected = model.read(self.write_position, self.capacity)
        if expected is None:
            assert rec is None
        else:
            assert rec is not None, f"poll returned None, expected position {expected}"
            self.records.check_record(rec, expected)

    @precondition(lambda self: self.readers)
    @rule(i=SLOT, n=BATCH)
    def poll_into(self, i, n):
        reader, model = self.readers[i % len(self.readers)]
        n = _reduce(n, self.capacity)
        out = self.records.junk(n)
        count = reader.poll_into(out)
        expected = []
        while len(expected) < n:
            p = model.read(self.write_position, self.capacity)
            if p is None:
                break
            expected.append(p)
        assert count == len(expected), f"poll_into copied {count}, the model {len(expected)}"
        self.records.check_batch(out, count, expected)

    @precondition(lambda self: self.readers)
    @rule(i=SLOT)
    def writer_status(self, i):
        reader, model = self.readers[i % len(self.readers)]
        status = reader.writer_status()
        assert status["writer_epoch"] == self.epoch
        assert status["epoch_changed"] == (self.epoch != model.seen_epoch)
        model.seen_epoch = self.epoch
        assert status["write_position"] == self.write_position
        assert status["writer_alive"] == (self.writer is not None)

    # ---- after every step ---------------------------------------------------------------

    @invariant()
    def counters_match_the_model(self):
        if self.observer is None:
            return
        header = self.observer.header_fields()
        assert header["write_position"] == self.write_position
        assert header["writer_epoch"] == self.epoch
        if self.writer is not None:
            assert self.writer.position == self.write_position
        for reader, model in self.readers:
            assert (reader.position, reader.lost, reader.laps) == \
                (model.position, model.lost, model.laps)
            assert reader.lag == model.lag(self.write_position)


# --------------------------------------------------------------------------------------------
# SPSC ring
# --------------------------------------------------------------------------------------------


class SpscMachine(RuleBasedStateMachine):

    def __init__(self):
        super().__init__()
        self.name = None
        self.writer = None
        self.reader = None
        self.observer = None

    @initialize(capacity=CAPACITIES, record_type=RECORD_TYPES, base=BASES,
                creator=st.sampled_from(["writer", "reader"]))
    def create(self, capacity, record_type, base, creator):
        self.name = _unique_name("orders") + ".s1"
        self.capacity = capacity
        self.record_type = record_type
        self.records = Records(record_type, base)
        self.write_position = 0
        self.read_position = 0
        self.rejected = 0
        if creator == "writer":
            self.writer = SpscWriter(self.name, record_type, capacity)
            self.reader = SpscReader(self.name)
        else:
            self.reader = SpscReader(self.name, record_type, capacity=capacity, create=True)
            self.writer = SpscWriter(self.name, record_type, capacity)
        self.writer_epoch = 1
        self.reader_epoch = 1
        self.observer = RingSegment.attach(self.name)
        assert self.writer.capacity == self.reader.capacity == capacity

    def teardown(self):
        for handle in (self.reader, self.writer, self.observer):
            if handle is not None:
                handle.close()
        if self.name is not None:
            unlink(self.name)
            assert not os.path.exists(SHM_DIR + self.name)

    def _unread(self):
        return self.write_position - self.read_position

    def _full(self):
        return self._unread() >= self.capacity

    # ---- writer -------------------------------------------------------------------------

    @precondition(lambda self: self.writer is not None)
    @rule(how=st.sampled_from(["offer", "offer_bytes", "push"]))
    def push(self, how):
        full = self._full()
        if how == "offer":
            ok = self.writer.offer(self.records.record(self.write_position))
            assert ok is (not full)
        elif how == "offer_bytes":
            ok = self.writer.offer_bytes(self.records.raw(self.write_position))
            assert ok is (not full)
        elif full:
            with pytest.raises(RingFullError):
                self.writer.push(self.records.record(self.write_position))
        else:
            self.writer.push(self.records.record(self.write_position))
        if full:
            event("spsc: a push was refused")
            self.rejected += 1
        else:
            self.write_position += 1

    @precondition(lambda self: self.writer is not None)
    @rule(n=BATCH)
    def push_many(self, n):
        n = _reduce(n, self.capacity)
        room = self.capacity - self._unread()
        fits = min(n, room)
        assert self.writer.push_many(self.records.batch(self.write_position, n)) == fits
        self.write_position += fits
        if n > room:
            event("spsc: push_many stopped at full")
            self.rejected += 1      # the push that found the ring full, then push_many stops

    @precondition(lambda self: self.writer is not None)
    @rule()
    def writer_close(self):
        self.writer.close()
        self.writer = None

    @precondition(lambda self: self.writer is None)
    @rule(create=st.booleans())
    def writer_reattach(self, create):
        self.writer = SpscWriter(self.name, self.record_type, self.capacity, create=create)
        self.writer_epoch += 1
        event(f"spsc: writer re-attached, {'full' if self._full() else 'room'}")
        assert self.writer.position == self.write_position

    @precondition(lambda self: self.writer is not None)
    @rule()
    def second_writer_is_refused(self):
        with pytest.raises(RingBusyError):
            SpscWriter(self.name, self.record_type, self.capacity)

    # ---- reader -------------------------------------------------------------------------

    @precondition(lambda self: self.reader is not None)
    @rule()
    def poll(self):
        rec = self.reader.poll()
        if self._unread() == 0:
            assert rec is None
        else:
            assert rec is not None, f"poll returned None with {self._unread()} unread"
            self.records.check_record(rec, self.read_position)
            self.read_position += 1

    @precondition(lambda self: self.reader is not None)
    @rule(n=BATCH)
    def poll_into(self, n):
        n = _reduce(n, self.capacity)
        out = self.records.junk(n)
        count = self.reader.poll_into(out)
        expected = list(range(self.read_position, self.read_position + min(n, self._unread())))
        assert count == len(expected), (
            f"poll_into({n}) copied {count} records with {self._unread()} unread "
            f"(read position {self.read_position}, write position {self.write_position})")
        self.records.check_batch(out, count, expected)
        self.read_position += count

    @precondition(lambda self: self.reader is not None)
    @rule()
    def reader_close(self):
        self.reader.close()
        self.reader = None

    @precondition(lambda self: self.reader is None)
    @rule(typed=st.booleans())
    def reader_reattach(self, typed):
        self.reader = SpscReader(self.name, self.record_type if typed else None)
        self.reader_epoch += 1
        event(f"spsc: reader re-attached, {'some' if self._unread() else 'nothing'} unread")
        assert self.reader.position == self.read_position

    @precondition(lambda self: self.reader is not None)
    @rule()
    def second_reader_is_refused(self):
        with pytest.raises(RingBusyError):
            SpscReader(self.name)

    # ---- after every step ---------------------------------------------------------------

    @invariant()
    def counters_match_the_model(self):
        if self.observer is None:
            return
        header = self.observer.header_fields()
        assert header["write_position"] == self.write_position
        assert header["read_position"] == self.read_position
        assert header["rejected_full"] == self.rejected
        assert header["writer_epoch"] == self.writer_epoch
        assert header["reader_epoch"] == self.reader_epoch
        if self.writer is not None:
            assert self.writer.position == self.write_position
            assert self.writer.rejected_full == self.rejected
            assert self.writer.free == self.capacity - self._unread()
        if self.reader is not None:
            assert self.reader.position == self.read_position
            assert self.reader.available == self._unread()


_SETTINGS = dict(deadline=None, database=None, stateful_step_count=80,
                 suppress_health_check=[HealthCheck.too_slow])

TestBroadcastRingMatchesModel = BroadcastMachine.TestCase
TestBroadcastRingMatchesModel.settings = settings(max_examples=300, **_SETTINGS)

TestSpscRingMatchesModel = SpscMachine.TestCase
TestSpscRingMatchesModel.settings = settings(max_examples=300, **_SETTINGS)


# --------------------------------------------------------------------------------------------
# Regression, the shortest case the SPSC machine shrank to: a re-attached SpscReader whose
# first call is poll_into. With the reader's cached write position (read_limit) starting at 0
# while its position starts at the ring's read position, spsc_pop_many's uint64
# read_limit - position wrapped to a huge number, so it neither refreshed the limit nor capped
# the batch: it "read" len(out) records past the write position and moved the read position
# beyond the write position (the writer then saw more than capacity free, and records it
# published into those positions were never delivered).
# --------------------------------------------------------------------------------------------


def test_reattached_spsc_reader_poll_into_reads_nothing_past_the_write_position(ring):
    name = ring("orders", "s1")
    records = Records(RecordType.ORDER, 1000)
    with SpscWriter(name, RecordType.ORDER, 4) as w:
        w.push(records.record(0))
        with SpscReader(name) as r:
            records.check_record(r.poll(), 0)
        with SpscReader(name) as r2:            # resumes at read position 1: nothing unread
            assert r2.position == 1 and r2.available == 0
            out = records.junk(3)
            assert r2.poll_into(out) == 0
            assert r2.position == 1 and r2.available == 0
            assert w.free == 4
