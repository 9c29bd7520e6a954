"""Python face of book_board.pxd: a writer for the md daemon, a reader for everyone else."""
import time
from collections import namedtuple

import numpy as np

from libc.stdint cimport uint32_t, uint64_t, int64_t
from libc.string cimport memcpy, memset
from ttquant.core.includes.atomics cimport (
    ttq_load_acquire_u64, ttq_load_relaxed_u64, ttq_store_release_u64, ttq_fence_acquire,
    ttq_fence_release, ttq_now_ns, ttq_cpu_relax,
)
from ttquant.core.rings.segment cimport ring_view, RingSegment
from ttquant.core.book.order_book cimport OrderBook
from ttquant.core.records cimport (
    ttq_market_event, EVENT_BOOK_LEVEL, EVENT_BOOK_RESET, FLAG_ASK_SIDE, FLAG_LAST_IN_BATCH,
)

from ttquant.core.records import RecordType
from ttquant.core.rings.segment import KIND_BOARD, RingError

__all__ = ["BookBoardWriter", "BookBoard", "BoardFromTicks", "BookTop", "board_record_size", "DEFAULT_DEPTH"]

DEFAULT_DEPTH = 20
DEFAULT_INSTRUMENTS = 256
READ_ATTEMPTS = 100_000     # spins on a slot that stays odd before asking whether its writer lives
WRITER_STALL_S = 2.0        # how long a live writer may stay mid-write (descheduled) before a read gives up

BookTop = namedtuple("BookTop", "instrument_id bids asks update_id ts_exchange ts_pub synced resets updates")
BookTop.__doc__ = "One instrument's top of book: bids and asks are (n, 2) int64 (price, qty), best first."


def board_record_size(int depth):
    if not 1 <= depth <= 126:
        raise ValueError(f"book board depth {depth} must be in [1, 126]")
    return BOARD_HEAD_SIZE + depth * 2 * BOARD_LEVEL_SIZE


cdef class BookBoardWriter:
    """The md daemon's side: one slot per instrument, rewritten after every book change."""

    def __init__(self, str name, int depth=DEFAULT_DEPTH, uint64_t instruments=DEFAULT_INSTRUMENTS,
                 int mode=0o660, group=None):
        size = board_record_size(depth)
        self.segment = RingSegment.create_or_attach(name, KIND_BOARD, RecordType.BOOK_TOP, size,
                                                    instruments, mode, group)
        self.segment.acquire_writer()       # bumps the epoch: readers can tell a restart
        self.ring = self.segment.view()
        self.slots = {}
        cdef uint64_t i, used = ttq_load_acquire_u64(&self.ring.header.write_position)
        cdef char *slot
        cdef uint64_t *stamp
        for i in range(used):               # a restarted writer keeps the slots it handed out
            slot = self.ring.slots + i * self.ring.slot_size
            stamp = <uint64_t *>slot
            self.slots[(<ttq_book_top *>(slot + 8)).instrument_id] = i
            if ttq_load_relaxed_u64(stamp) & 1:     # died mid-write: the levels may be torn
                (<ttq_book_top *>(slot + 8)).flags = 0
                (<ttq_book_top *>(slot + 8)).n_bids = 0
                (<ttq_book_top *>(slot + 8)).n_asks = 0
                ttq_store_release_u64(stamp, ttq_load_relaxed_u64(stamp) + 1)
        self.segment.heartbeat()

    cdef uint64_t slot_index(self, uint32_t instrument_id) except? 0xFFFFFFFFFFFFFFFF:
        index = self.slots.get(instrument_id)
        if index is not None:
            return index
        cdef uint64_t i = ttq_load_relaxed_u64(&self.ring.header.write_position)
        if i >= self.ring.capacity:
            raise RingError(f"book board {self.segment.name} is full: {self.ring.capacity} instruments")
        cdef char *slot = self.ring.slots + i * self.ring.slot_size
        memset(slot + 8, 0, self.ring.record_size)
        (<ttq_book_top *>(slot + 8)).instrument_id = instrument_id
        ttq_store_release_u64(<uint64_t *>slot, 2)                  # even: a valid, empty book
        ttq_store_release_u64(&self.ring.header.write_position, i + 1)
        self.slots[instrument_id] = i
        return i

    cpdef publish(self, OrderBook book, uint64_t update_id, int64_t ts_exchange=0, bint synced=True):
        """Put the book's top levels on the board (flags say whether it is in sync)."""
        if self.segment is None or self.segment.closed:
            raise RingError("book board writer is closed")
        cdef uint64_t index = self.slot_index(book.instrument_id)
        board_publish(&self.ring, index, book, update_id, ts_exchange, BOARD_SYNCED if synced else 0)

    def reset(self, uint32_t instrument_id, uint64_t update_id=0):
        """The book is being rebuilt: empty it on the board, not synced, and count the reset."""
        cdef uint64_t index = self.slot_index(instrument_id)
        cdef char *slot = self.ring.slots + index * self.ring.slot_size
        cdef uint64_t *stamp = <uint64_t *>slot
        cdef ttq_book_top *top = <ttq_book_top *>(slot + 8)
        cdef uint64_t s = ttq_load_relaxed_u64(stamp) | 1
        ttq_store_release_u64(stamp, s)
        ttq_fence_release()
        top.n_bids = top.n_asks = 0
        top.update_id = update_id
        top.ts_pub = ttq_now_ns()
        top.flags = 0
        top.resets += 1
        top.updates += 1
        ttq_store_release_u64(stamp, s + 1)

    def heartbeat(self):
        self.segment.heartbeat()

    @property
    def depth(self):
        return board_depth(&self.ring)

    @property
    def name(self):
        return self.segment.name

    def close(self):
        if self.segment is not None:
            self.segment.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


cdef class BoardFromTicks:
    """The board rebuilt from a tick stream's book events, where no md keeps it (a replay): each
    level into the instrument's book, the top published at the end of every venue message
    (LAST_IN_BATCH), a BOOK_RESET empties it (not synced) until its levels come again."""

    def __init__(self, BookBoardWriter writer not None):
        self.writer, self.books = writer, {}

    def feed(self, events):
        """MARKET_EVENT_DTYPE records (other kinds pass by); returns how many tops it published."""
        if events.dtype.itemsize != sizeof(ttq_market_event):
            raise TypeError("events must be MARKET_EVENT_DTYPE records")
        cdef const unsigned char[::1] raw = np.ascontiguousarray(events).view(np.uint8).reshape(-1)
        cdef Py_ssize_t i, n = raw.shape[0] // sizeof(ttq_market_event)
        cdef const ttq_market_event *e
        cdef OrderBook book
        cdef uint64_t before = self.published
        if n == 0:
            return 0
        e = <const ttq_market_event *>&raw[0]
        for i in range(n):
            if e[i].kind != EVENT_BOOK_LEVEL and e[i].kind != EVENT_BOOK_RESET:
                continue
            book = self.books.get(e[i].instrument_id)
            if book is None:
                book = OrderBook(e[i].instrument_id)
                self.books[e[i].instrument_id] = book
            if e[i].kind == EVENT_BOOK_RESET:
                book.clear()
                self.writer.reset(e[i].instrument_id, e[i].seq)
                continue
            book.set_level(e[i].flags & FLAG_ASK_SIDE, e[i].price, e[i].qty)
            if e[i].flags & FLAG_LAST_IN_BATCH:
                board_publish(&self.writer.ring, self.writer.slot_index(e[i].instrument_id), book, e[i].seq,
                              e[i].ts_exchange, BOARD_SYNCED)
                self.published += 1
        return self.published - before


cdef class BookBoard:
    """Any process's side: consistent top-of-book reads, no role taken, nothing written."""
    cdef readonly RingSegment segment
    cdef ring_view ring
    cdef dict slots
    cdef bytearray _copy

    def __init__(self, str name):
        self.segment = RingSegment.attach(name, ring_kind=KIND_BOARD, record_type=RecordType.BOOK_TOP,
                                          read_only=True)
        self.ring = self.segment.view()
        self.slots = {}
        self._copy = bytearray(self.ring.record_size)

    cdef int _scan(self) except -1:
        cdef uint64_t i, used = ttq_load_acquire_u64(&self.ring.header.write_position)
        for i in range(len(self.slots), used):
            self.slots[(<ttq_book_top *>(self.ring.slots + i * self.ring.slot_size + 8)).instrument_id] = i
        return 0

    def instruments(self):
        """Instrument ids on the board, in the order they were added."""
        self._check_open()
        self._scan()
        return list(self.slots)

    def read(self, uint32_t instrument_id):
        """A consistent BookTop of the instrument, or None if the board has no such book."""
        self._check_open()
        index = self.slots.get(instrument_id)
        if index is None:
            self._scan()
            index = self.slots.get(instrument_id)
            if index is None:
                return None
        cdef char *slot = self.ring.slots + <uint64_t>index * self.ring.slot_size
        cdef uint64_t *stamp = <uint64_t *>slot
        cdef char *dst = self._copy
        cdef uint64_t s1, s2
        cdef int _
        cdef double deadline = 0.0
        while True:
            for _ in range(READ_ATTEMPTS):
                s1 = ttq_load_acquire_u64(stamp)
                if s1 & 1 == 0:
                    memcpy(dst, slot + 8, self.ring.record_size)
                    ttq_fence_acquire()     # the copy completes before the stamp is read again
                    s2 = ttq_load_relaxed_u64(stamp)
                    if s1 == s2:
                        return self._decode()
                ttq_cpu_relax()
            # still odd: a live writer the scheduler stopped mid-write (more processes than
            # cores) gets its time back; a dead one never finishes
            if not self.segment.writer_alive():
                raise RingError(f"book board {self.segment.name}: slot of instrument {instrument_id} "
                                f"stayed mid-write; its writer died while writing it")
            if deadline == 0.0:
                deadline = time.monotonic() + WRITER_STALL_S
            elif time.monotonic() > deadline:
                raise RingError(f"book board {self.segment.name}: slot of instrument {instrument_id} "
                                f"stayed mid-write for {WRITER_STALL_S:g} s though its writer lives")
            time.sleep(50e-6)

    cdef object _decode(self):
        cdef ttq_book_top *top = <ttq_book_top *><char *>self._copy
        cdef uint32_t depth = board_depth(&self.ring)
        levels = np.frombuffer(self._copy, dtype=np.int64, offset=BOARD_HEAD_SIZE).reshape(2, depth, 2)
        return BookTop(top.instrument_id, levels[0, :top.n_bids].copy(), levels[1, :top.n_asks].copy(),
                       top.update_id, top.ts_exchange, top.ts_pub, bool(top.flags & BOARD_SYNCED),
                       top.resets, top.updates)

    def writer_status(self):
        return self.segment.status()

    @property
    def depth(self):
        return board_depth(&self.ring)

    def _check_open(self):
        if self.segment is None or self.segment.closed:
            raise RingError("book board reader is closed")

    def close(self):
        if self.segment is not None:
            self.segment.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def c_layout():
    """Offsets of the slot record's head as the C compiler laid them out (for the layout test)."""
    cdef ttq_book_top t
    base = <size_t>&t
    return sizeof(ttq_book_top), {
        "instrument_id": <size_t>&t.instrument_id - base, "n_bids": <size_t>&t.n_bids - base,
        "n_asks": <size_t>&t.n_asks - base, "update_id": <size_t>&t.update_id - base,
        "ts_exchange": <size_t>&t.ts_exchange - base, "ts_pub": <size_t>&t.ts_pub - base,
        "flags": <size_t>&t.flags - base, "resets": <size_t>&t.resets - base,
        "updates": <size_t>&t.updates - base,
    }
