"""`ttquant replay`: recorded journals back into a stack's rings, in the order they were
published, with the recorded instrument table; paced at Nx, back to back at max; a window by
time; SIGTERM stops it cleanly; a ring somebody writes is refused."""
import os
import signal
import subprocess
import sys

import numpy as np

from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.journal import JournalWriter
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter
from ttquant.core.rings.names import exec_ring, shm_path, tick_ring

from ttq_testing import spot_table, unlink_venue, wait_for

CLI = [sys.executable, "-m", "ttquant.core.cli"]
T0 = 1_723_075_200_000_000_000           # 2024-08-08T00:00:00Z
STEP = 5_000_000                          # 5 ms between recorded ticks


def _journal(root, recorded="binance", n=400, every_exec=10):
    """n ticks STEP apart, and an exec report after every `every_exec`-th, as the recorder writes them."""
    ticks = np.zeros(n, MARKET_EVENT_DTYPE)
    ticks["seq"] = np.arange(n)
    ticks["price"] = 61_000_00 + np.arange(n)
    ticks["ts_pub"] = T0 + np.arange(n) * STEP
    ticks["ts_recv"] = ticks["ts_pub"] - 1000
    k = np.arange(0, n, every_exec)
    execs = np.zeros(len(k), EXEC_REPORT_DTYPE)
    execs["client_order_id"] = k
    execs["ts_pub"] = T0 + k * STEP + STEP // 2
    table = spot_table().to_json()
    for kind, records, rtype in (("ticks", ticks, RecordType.MARKET_EVENT), ("exec", execs, RecordType.EXEC_REPORT)):
        w = JournalWriter(os.path.join(root, f"{recorded}.{kind}"), f"/ttq.{recorded}.{kind}", rtype,
                          records.dtype.itemsize, 0, table, ring_created_ns=T0)
        w.append(records)
        w.close()
    return ticks, execs


def _replay(root, venue, *args, **kwargs):
    return subprocess.run([*CLI, "replay", str(root), "--rings", venue, *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def _drain(name, dtype):
    r = BroadcastReader(name, start="oldest")
    out = np.zeros(1 << 16, dtype)
    n = r.poll_into(out)
    r.close()
    return out[:n]


def test_max_speed_replays_everything_in_publish_order_with_the_recorded_table(venue, tmp_path):
    ticks, execs = _journal(tmp_path / "journal")
    out = _replay(tmp_path / "journal", venue, "--speed", "max")
    try:
        assert out.returncode == 0, out.stderr
        assert "replay ended: 440 records" in out.stderr
        got_ticks, got_execs = _drain(tick_ring(venue), MARKET_EVENT_DTYPE), _drain(exec_ring(venue), EXEC_REPORT_DTYPE)
        assert list(got_ticks["seq"]) == list(ticks["seq"]) and list(got_ticks["price"]) == list(ticks["price"])
        assert list(got_ticks["ts_recv"]) == list(ticks["ts_recv"])          # as recorded; ts_pub is new
        assert list(got_execs["client_order_id"]) == list(execs["client_order_id"])
        # merged by recorded ts_pub across the two rings: the replayed ts_pub keep that order
        recorded = np.concatenate([ticks["ts_pub"], execs["ts_pub"]])
        replayed = np.concatenate([got_ticks["ts_pub"], got_execs["ts_pub"]])
        order = np.argsort(recorded, kind="stable")
        assert (np.diff(replayed[order]) >= 0).all()
        assert InstrumentTable.load(instruments_path(venue)) == spot_table()
    finally:
        unlink_venue(venue)


def test_paced_replay_never_runs_faster_than_asked_and_a_window_selects_by_time(venue, tmp_path):
    ticks, _ = _journal(tmp_path / "journal", n=200)
    span = int(ticks["ts_pub"][-1] - ticks["ts_pub"][0])                  # 1 s of market time
    out = _replay(tmp_path / "journal", venue, "--speed", "4", "--kinds", "ticks")
    try:
        assert out.returncode == 0, out.stderr
        got = _drain(tick_ring(venue), MARKET_EVENT_DTYPE)
        assert len(got) == 200
        assert got["ts_pub"][-1] - got["ts_pub"][0] >= 0.95 * span / 4        # the gaps kept, 4x shorter
        unlink_venue(venue)
        frm = "2024-08-08T00:00:00.250000Z"
        to = str(T0 + 500_000_000)
        out = _replay(tmp_path / "journal", venue, "--speed", "max", "--kinds", "ticks", "--from", frm, "--to", to)
        assert out.returncode == 0, out.stderr
        got = _drain(tick_ring(venue), MARKET_EVENT_DTYPE)
        assert list(got["seq"]) == list(range(50, 100))                      # [0.25 s, 0.5 s)
    finally:
        unlink_venue(venue)


def test_sigterm_stops_a_replay_cleanly(children, venue, tmp_path):
    _journal(tmp_path / "journal", n=2000)                                   # 10 s of market time
    log = open(tmp_path / "replay.log", "wb")
    proc = children.start("-m", "ttquant.core.cli", "replay", tmp_path / "journal", "--rings", venue,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: os.path.exists(shm_path(tick_ring(venue))), timeout=30, what="the tick ring")
        wait_for(lambda: len(_drain(tick_ring(venue), MARKET_EVENT_DTYPE)) > 10, timeout=30, what="ticks replayed")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "replay stopped" in open(log.name).read()
    finally:
        unlink_venue(venue)


def test_a_ring_with_a_live_writer_and_bad_arguments_are_refused_in_one_line(venue, tmp_path):
    _journal(tmp_path / "journal")
    md = BroadcastWriter(tick_ring(venue), RecordType.MARKET_EVENT, 1024)     # md of that stack, running
    try:
        out = _replay(tmp_path / "journal", venue, "--speed", "max")
        assert out.returncode == 4 and "has a live writer" in out.stderr and "Traceback" not in out.stderr
    finally:
        md.close()
        unlink_venue(venue)
    for args, said in ((["--speed", "fast"], "--speed: 1, a factor like 10, or max"),
                       (["--from", "yesterday"], "'yesterday' is not a time"),
                       (["--kinds", "books"], "kinds: 'books' is not one of ticks, exec")):
        out = _replay(tmp_path / "journal", venue, *args)
        assert out.returncode == 2 and said in out.stderr, out.stderr
    out = _replay(tmp_path / "nothing", venue)
    assert out.returncode == 2 and "no such directory" in out.stderr


def test_the_book_board_is_rebuilt_from_the_recorded_book_events(venue, tmp_path):
    """Strategies that read books (book()) work on a replay: the levels md recorded go into the
    board and its top is published at the end of each venue message, as md does."""
    from ttquant.core.book.book_board import BookBoard
    from ttquant.core.records import EventFlag, EventKind
    from ttquant.core.rings.names import book_board
    rows = [(EventKind.BOOK_RESET, 0, 0, 0)]
    rows += [(EventKind.BOOK_LEVEL, 0, 61_000_00 - k, 10 + k) for k in range(5)]                  # bids
    rows += [(EventKind.BOOK_LEVEL, EventFlag.ASK_SIDE, 61_001_00 + k, 20 + k) for k in range(5)]  # asks
    rows += [(EventKind.BOOK_LEVEL, 0, 61_000_00, 0),                   # the best bid leaves,
             (EventKind.BOOK_LEVEL, EventFlag.ASK_SIDE, 61_000_50, 7)]  # a better ask comes
    ticks = np.zeros(len(rows), MARKET_EVENT_DTYPE)
    for i, (kind, flags, price, qty) in enumerate(rows):
        ticks[i]["kind"], ticks[i]["flags"], ticks[i]["price"], ticks[i]["qty"] = kind, flags, price, qty
    ticks["instrument_id"] = 1
    ticks["seq"] = np.arange(len(rows))
    ticks["ts_pub"] = T0 + np.arange(len(rows)) * STEP
    ticks["flags"][10] |= EventFlag.LAST_IN_BATCH           # the snapshot's end
    ticks["flags"][12] |= EventFlag.LAST_IN_BATCH           # one diff's end
    w = JournalWriter(str(tmp_path / "journal" / "binance.ticks"), "/ttq.binance.ticks", RecordType.MARKET_EVENT,
                      MARKET_EVENT_DTYPE.itemsize, 0, spot_table().to_json(), ring_created_ns=T0)
    w.append(ticks)
    w.close()
    out = _replay(tmp_path / "journal", venue, "--speed", "max")
    try:
        assert out.returncode == 0, out.stderr
        board = BookBoard(book_board(venue))
        top = board.read(1)
        board.close()
        assert top is not None and top.synced and top.update_id == 12
        assert top.bids.tolist() == [[61_000_00 - k, 10 + k] for k in range(1, 5)]
        assert top.asks.tolist() == [[61_000_50, 7]] + [[61_001_00 + k, 20 + k] for k in range(5)]
        assert top.resets == 1
    finally:
        unlink_venue(venue)
