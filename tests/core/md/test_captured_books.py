"""Every captured Binance book rebuilt through the real daemon from the simulated venue.

Each capture is replayed at 5-20x (the stream must outlast the first sync, or a book loaded
from a snapshot taken after its last diff could never be proved); the test reads the tick ring like a
strategy and checks: no drop, no gap, no loss; every book in sync; the top of book never
crossed; and at every update id that the capture's own bookTicker stream also reports, the
book's top (from the daemon's FROM_BOOK BBO events) equals the ticker exactly.
"""
import json
import subprocess
import urllib.request

import numpy as np
import pytest

from ttquant.core.book.book_board import BookBoard
from ttquant.core.md.daemon import read_md_counters
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind

from ttq_testing import attach_ticks, md_config, unlink_venue, wait_for

# (speed, clients the venue waits for, markets): the 30 s cryptofeed captures run at 5x so
# their diffs arrive after the books are synced and each one's top can be compared
CAPTURES = {
    "btcusdt": ("20", 2, {"spot": (["BTCUSDT"], ["trade", "bookTicker", "depth@100ms"]),
                    "usdm": (["BTCUSDT"], ["trade", "bookTicker", "depth@0ms"])}),
    "cryptofeed-spot": ("5", 1, {"spot": (["NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"],
                                     ["aggTrade", "bookTicker", "depth@100ms", "kline_1m"])}),
    "synthetic": ("20", 2, {"spot": (["BTCUSDT"], ["trade", "bookTicker", "depth@100ms"]),
                            "usdm": (["BTCUSDT"], ["trade", "bookTicker", "depth@0ms"])}),
    "cryptofeed-usdm": ("5", 1, {"usdm": (["SUSHIUSDT", "AKROUSDT", "KEEPUSDT", "CTKUSDT"],
                                     ["aggTrade", "bookTicker", "depth@100ms", "kline_1m"])}),
}


def _config(tmp_path, venue, port, markets):
    return md_config(tmp_path / "md.toml", venue, port, markets, rings={"tick_capacity": 1048576})


@pytest.mark.parametrize("capture", CAPTURES)
def test_captured_books_through_the_daemon(capture, children, venue, tmp_path):
    speed, clients, markets = CAPTURES[capture]
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", speed,
                         "--replay", capture, "--wait-clients", clients,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    line = sim.stdout.readline().decode()
    port = int(line.split("127.0.0.1:")[1].split()[0])
    status = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/status", timeout=10).read())
    md = children.start("-m", "ttquant.core.cli", "md", "binance", "--config",
                        _config(tmp_path, venue, port, markets), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        expected_books = sum(len(symbols) for symbols, _ in markets.values())
        reader = wait_for(lambda: attach_ticks(venue), timeout=30, what="the tick ring")
        chunks = []
        buf = np.zeros(1 << 16, MARKET_EVENT_DTYPE)

        def drained():
            while (n := reader.poll_into(buf)):
                chunks.append(buf[:n].copy())
            st = status()
            if not st["replay_done"]:
                return False
            c = read_md_counters(venue)
            if sum(f["frames"] for f in c.values()) < st["frames_sent"]:
                return False
            # at full speed the stream can end before the snapshots are in: wait for every book
            # to be proved by a diff and on the board
            board = BookBoard(f"/ttq.{venue}.books")
            try:
                ids = board.instruments()
                if len(ids) < expected_books or not all(board.read(i).synced for i in ids):
                    return False
            finally:
                board.close()
            while (n := reader.poll_into(buf)):
                chunks.append(buf[:n].copy())
            return reader.lag == 0

        wait_for(drained, timeout=240, interval=0.001, what="the whole capture through the daemon")
        events = np.concatenate(chunks)
        assert reader.lost == 0
        counters = read_md_counters(venue)
        for market, c in counters.items():
            assert c["book_gaps"] == 0 and c["connects"] == 1, (market, c)
            assert not {k: v for k, v in c.items() if k.startswith("drop_") and v}, (market, c)
        board = BookBoard(f"/ttq.{venue}.books")
        assert len(board.instruments()) == expected_books
        unsynced = [board.read(i) for i in board.instruments() if not board.read(i).synced]
        assert not unsynced, (unsynced, counters, md.stderr.read1(100_000).decode()[-3000:] if md.stderr else "")
        board.close()
        compared = _check_tops(events)
        print(f"{capture}: {compared} tickers matched the book top at their update id")
        assert compared >= 10, compared
        reader.close()
    finally:
        unlink_venue(venue)



def _check_tops(events):
    """Replay the event stream per instrument; returns how many tickers were compared."""
    compared = 0
    for inst in np.unique(events["instrument_id"]):
        ev = events[events["instrument_id"] == inst]
        top, top_at = None, {}
        for e in ev:
            kind, flags, seq = int(e["kind"]), int(e["flags"]), int(e["seq"])
            if kind == EventKind.BOOK_RESET:
                top = None
            elif kind == EventKind.BBO and flags & EventFlag.FROM_BOOK:
                top = (int(e["price"]), int(e["qty"]), int(e["ask_price"]), int(e["ask_qty"]))
                if top[0] and top[2]:
                    assert top[0] < top[2], f"crossed book {inst} at {seq}: {top}"
                top_at[seq] = top
            elif kind == EventKind.BOOK_LEVEL and flags & EventFlag.LAST_IN_BATCH and top is not None:
                top_at[seq] = top       # a FROM_BOOK BBO with this seq follows when the top moved
        for e in ev[(ev["kind"] == EventKind.BBO) & ((ev["flags"] & EventFlag.FROM_BOOK) == 0)]:
            book_top = top_at.get(int(e["seq"]))
            if book_top is None:
                continue        # the ticker sits inside a diff's range: no book state to compare
            assert book_top == (int(e["price"]), int(e["qty"]), int(e["ask_price"]), int(e["ask_qty"])), \
                (int(inst), int(e["seq"]))
            compared += 1
    return compared
