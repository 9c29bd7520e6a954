"""The book board: top N per instrument in shared memory, consistent reads across processes."""
import subprocess

import numpy as np
import pytest

from ttquant.core.book.book_board import BookBoard, BookBoardWriter, board_record_size
from ttquant.core.book.order_book import OrderBook
from ttquant.core.rings import RingError, RingLayoutError, RingNotFoundError
from ttquant.core.rings.inspect import ring_info

from ttq_testing import wait_for


def book_with(instrument_id, bids, asks):
    b = OrderBook(instrument_id)
    b.load(bids, asks)
    return b


def test_publish_and_read_the_top_levels(ring):
    name = ring("books")
    w = BookBoardWriter(name, depth=3, instruments=4)
    r = BookBoard(name)
    assert r.read(7) is None and r.instruments() == []
    book = book_with(7, [[100, 1], [99, 2], [98, 3], [97, 4]], [[101, 5]])
    w.publish(book, update_id=55, ts_exchange=123)
    top = r.read(7)
    assert top.instrument_id == 7 and top.update_id == 55 and top.ts_exchange == 123 and top.synced
    assert top.bids.tolist() == [[100, 1], [99, 2], [98, 3]]      # depth 3: best three
    assert top.asks.tolist() == [[101, 5]]
    assert top.ts_pub > 0 and top.updates == 1 and top.resets == 0
    w.publish(book_with(9, [[5, 5]], []), update_id=1)
    assert r.instruments() == [7, 9] and r.read(9).asks.shape == (0, 2)
    w.reset(7, update_id=60)
    top = r.read(7)
    assert not top.synced and top.resets == 1 and len(top.bids) == 0 and top.update_id == 60
    info = ring_info(name)
    assert info["kind"] == "board" and info["record"] == "book_top" and info["write_position"] == 2
    r.close()
    w.close()


def test_board_full_and_bad_depth_and_wrong_kind(ring):
    name = ring("books")
    w = BookBoardWriter(name, depth=2, instruments=2)
    w.publish(book_with(1, [], []), 1)
    w.publish(book_with(2, [], []), 1)
    with pytest.raises(RingError, match="full"):
        w.publish(book_with(3, [], []), 1)
    with pytest.raises(ValueError, match="depth"):
        board_record_size(0)
    with pytest.raises(RingLayoutError, match="record size"):
        BookBoardWriter(name, depth=5, instruments=2)           # same name, other depth
    with pytest.raises(RingNotFoundError):
        BookBoard(ring("nobooks"))
    from ttquant.core.rings import BroadcastReader
    with pytest.raises(RingLayoutError, match="board"):
        BroadcastReader(name)
    w.close()


def test_restarted_writer_keeps_slots_and_bumps_the_epoch(ring):
    name = ring("books")
    w = BookBoardWriter(name, depth=2, instruments=4)
    w.publish(book_with(4, [[10, 1]], [[11, 1]]), 5)
    epoch = ring_info(name)["epoch"]
    w.close()
    w2 = BookBoardWriter(name, depth=2, instruments=4)
    assert ring_info(name)["epoch"] == epoch + 1
    w2.publish(book_with(8, [[1, 1]], []), 1)
    r = BookBoard(name)
    assert r.instruments() == [4, 8] and r.read(4).bids.tolist() == [[10, 1]]
    r.close()
    w2.close()


WRITER = r"""
import sys, numpy as np
from ttquant.core.book.book_board import BookBoardWriter
from ttquant.core.book.order_book import OrderBook
w = BookBoardWriter(sys.argv[1], depth=20, instruments=4)
book = OrderBook(1)
print("ready", flush=True)
i = 0
while True:
    i += 1
    # every level of version i says i: a torn read would mix versions
    book.load([[1_000_000 - k, i] for k in range(30)], [[1_000_001 + k, i] for k in range(30)])
    w.publish(book, update_id=i)
"""


def test_reads_are_never_torn_while_another_process_writes(ring, children):
    name = ring("books")
    proc = children.start("-c", WRITER, name, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    r = wait_for(lambda: _attach(name), what="the board")
    wait_for(lambda: r.read(1) is not None, what="the first publish")
    seen = set()
    for _ in range(20_000):
        top = r.read(1)
        qty = np.concatenate([top.bids[:, 1], top.asks[:, 1]])
        assert len(top.bids) == 20 and len(top.asks) == 20
        assert (qty == top.update_id).all(), (top.update_id, set(qty.tolist()))
        seen.add(top.update_id)
    assert len(seen) > 10       # the writer really was moving underneath
    r.close()


def _attach(name):
    try:
        return BookBoard(name)
    except RingNotFoundError:
        return None


def test_slot_head_layout_is_the_documented_one():
    from ttquant.core.book.book_board import c_layout
    size, offsets = c_layout()
    assert size == 48 and board_record_size(20) == 48 + 20 * 32
    assert offsets == {"instrument_id": 0, "n_bids": 4, "n_asks": 6, "update_id": 8, "ts_exchange": 16,
                       "ts_pub": 24, "flags": 32, "resets": 36, "updates": 40}


def _stamp(name):
    """The first slot's seqlock stamp, mapped from /dev/shm (what a writer mid-write leaves odd)."""
    import mmap
    import os

    from ttquant.core.rings.segment import HEADER_SIZE, SHM_DIR
    fd = os.open(os.path.join(SHM_DIR, name.lstrip("/")), os.O_RDWR)
    m = mmap.mmap(fd, 0)
    os.close(fd)
    return m, np.frombuffer(m, np.uint64, 1, HEADER_SIZE)


def test_a_read_waits_for_a_live_writer_stopped_mid_write_and_gives_up_on_a_dead_one(ring, children):
    import threading
    import time
    name = ring("books")
    w = BookBoardWriter(name, depth=3, instruments=4)
    w.publish(book_with(7, [[100, 1]], [[101, 2]]), update_id=1)
    r = BookBoard(name)
    m, stamp = _stamp(name)
    stamp[0] += 1                       # this process, the writer, "descheduled" mid-write
    done = threading.Timer(0.05, np.add, (stamp, 1, stamp))     # ... and back 50 ms later
    done.start()
    t0 = time.monotonic()
    assert r.read(7).bids.tolist() == [[100, 1]]        # waited for it, no error
    assert time.monotonic() - t0 >= 0.04
    done.join()
    w.close()
    r.close()
    # a writer that dies mid-write: the read says so at once, not after the stall allowance
    code = (f"from ttquant.core.book.book_board import BookBoardWriter\n"
            f"from ttquant.core.book.order_book import OrderBook\n"
            f"w = BookBoardWriter({name!r}, depth=3, instruments=4)\n"
            f"b = OrderBook(7); b.load([[100, 1]], [[101, 2]]); w.publish(b, 2)\n"
            f"print('published', flush=True); import time; time.sleep(60)\n")
    child = children.start("-c", code, stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"published"
    m, stamp = _stamp(name)
    stamp[0] += 1
    child.kill()
    child.wait(timeout=10)
    r = BookBoard(name)
    t0 = time.monotonic()
    with pytest.raises(RingError, match="its writer died while writing it"):
        r.read(7)
    assert time.monotonic() - t0 < 1.0
    r.close()
