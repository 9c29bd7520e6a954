"""Binance book sync: the documented rules on hand-made diffs, and every captured book."""
import collections
from decimal import Decimal

import orjson
import pytest

from ttquant.core.book.order_book import ASK, BID
from ttquant.core.md.binance.book_sync import FUTURES, SPOT, BookSync, DiffResult, SnapshotResult
from ttquant.core.sim.captures import read_cryptofeed, read_hftbacktest, sample_data_dir

P = 8       # Binance strings carry 8 decimals


def raw(text):
    return int(Decimal(text).scaleb(P))


def lv(*pairs):
    return [[str(p), str(q)] for p, q in pairs]


def test_spot_buffers_until_snapshot_then_replays_by_the_rules():
    s = BookSync(1, SPOT, P, P)
    assert s.on_diff(95, 99, 0, lv((1, 5)), []) == DiffResult.BUFFERED        # all <= lastUpdateId
    assert s.on_diff(100, 103, 0, lv((2, 1)), lv((4, 1))) == DiffResult.BUFFERED  # straddles 101
    assert s.on_diff(104, 104, 0, lv((2, 0)), []) == DiffResult.BUFFERED
    assert s.on_snapshot(100, lv((1, 1), (2, 3)), lv((5, 2))) == SnapshotResult.SYNCED
    assert s.synced and s.update_id == 104 and s.stale == 1 and s.applied == 2
    assert s.book.best(BID) == (raw("1"), raw("1")) and s.book.best(ASK) == (raw("4"), raw("1"))
    assert s.on_diff(105, 106, 0, [], lv((4, 0))) == DiffResult.APPLIED
    assert s.changes().tolist() == [[raw("4"), 0, 1]]
    assert s.on_diff(100, 106, 0, [], lv((9, 9))) == DiffResult.STALE          # u <= book's id


def test_spot_gap_drops_the_book_and_a_new_snapshot_recovers():
    s = BookSync(1, SPOT, P, P)
    assert s.on_snapshot(10, lv((1, 1)), lv((3, 1))) == SnapshotResult.LOADED
    assert s.on_diff(11, 12, 0, lv((1, 2)), []) == DiffResult.APPLIED
    assert s.on_diff(14, 15, 0, lv((1, 3)), []) == DiffResult.GAP              # 13 is missing
    assert not s.synced and s.gaps == 1 and s.book.depth == (0, 0) and s.pending_count == 1
    assert s.on_diff(16, 16, 0, lv((2, 1)), []) == DiffResult.BUFFERED
    assert s.on_snapshot(12, lv((1, 2)), lv((3, 1))) == SnapshotResult.TOO_OLD  # 13 still missing
    assert s.on_snapshot(14, lv((1, 2)), lv((3, 1))) == SnapshotResult.SYNCED
    assert s.book.best(BID) == (raw("2"), raw("1")) and s.update_id == 16


def test_spot_gap_while_replaying_keeps_the_rest_for_the_next_snapshot():
    s = BookSync(1, SPOT, P, P)
    s.on_diff(11, 12, 0, [], [])
    s.on_diff(20, 21, 0, lv((5, 1)), [])           # 13..19 never came
    s.on_diff(22, 22, 0, lv((6, 1)), [])
    assert s.on_snapshot(10, lv((1, 1)), []) == SnapshotResult.GAP
    assert s.pending_count == 2 and not s.synced
    assert s.on_snapshot(19, lv((1, 1)), []) == SnapshotResult.SYNCED
    assert s.book.best(BID) == (raw("6"), raw("1"))


def test_futures_uses_pu_and_the_first_event_must_cover_the_snapshot():
    s = BookSync(1, FUTURES, P, P)
    s.on_diff(90, 99, 80, [], [])                  # u < lastUpdateId: dropped on replay
    s.on_diff(100, 105, 99, lv((1, 1)), [])        # U <= 100 <= u: the first one
    s.on_diff(106, 110, 105, lv((2, 1)), [])
    assert s.on_snapshot(100, [], lv((9, 1))) == SnapshotResult.SYNCED
    assert s.stale == 1 and s.update_id == 110
    assert s.on_diff(111, 112, 110, [], []) == DiffResult.APPLIED
    assert s.on_diff(120, 125, 119, [], []) == DiffResult.GAP                  # pu != previous u
    assert s.on_snapshot(119, [], []) == SnapshotResult.TOO_OLD                # U 120 > 119
    assert s.on_snapshot(126, [], []) == SnapshotResult.LOADED                 # diff 120..125 stale
    assert s.stale == 2 and s.update_id == 126 and s.synced and not s.verified
    assert s.on_diff(127, 130, 125, [], []) == DiffResult.SNAPSHOT_MISMATCH    # U 127 > 126: no fit
    assert s.gaps == 1 and s.snapshot_mismatches == 1 and not s.synced
    assert s.on_snapshot(128, [], []) == SnapshotResult.SYNCED and s.verified  # 127..130 covers it
    s2 = BookSync(1, FUTURES, P, P)
    s2.on_diff(101, 105, 100, [], [])
    assert s2.on_snapshot(100, [], []) == SnapshotResult.TOO_OLD               # U > lastUpdateId


def test_a_bad_level_drops_the_diff_and_the_next_one_is_a_gap():
    s = BookSync(1, SPOT, P, P)
    assert s.on_snapshot(10, lv((1, 1)), lv((3, 1))) == SnapshotResult.LOADED  # nothing buffered yet
    assert s.on_diff(11, 11, 0, [], []) == DiffResult.APPLIED and s.verified
    for bad in ([["1.0", "-2"]], [["abc", "1"]], [["1"]], [[1.0, "1"]], ["x"], [["0", "1"]]):
        assert s.on_diff(12, 12, 0, bad, []) == DiffResult.BAD
    assert s.bad == 6 and s.book.best(BID) == (raw("1"), raw("1"))             # nothing half-applied
    assert s.on_diff(13, 13, 0, [], []) == DiffResult.GAP
    assert s.on_snapshot(13, [["1", "x"]], []) == SnapshotResult.BAD


def test_pending_diffs_are_capped_while_the_snapshot_is_late():
    s = BookSync(1, SPOT, P, P, max_pending=3)
    for i in range(5):
        s.on_diff(i + 1, i + 1, 0, [], [])
    assert s.pending_count == 3 and s.pending_dropped == 2


# -- every captured Binance book ------------------------------------------------------------

DATA = sample_data_dir() / "binance"
CAPTURES = {
    "hftbacktest_spot": (SPOT, lambda: read_hftbacktest(DATA / "spot_btcusdt_20240808.gz")),
    "hftbacktest_usdm": (FUTURES, lambda: read_hftbacktest(DATA / "usdm_btcusdt_20240808.gz")),
    "cryptofeed_spot": (SPOT, lambda: read_cryptofeed(DATA / "cryptofeed_spot.ws.0", DATA / "cryptofeed_spot.http.0")),
    "cryptofeed_usdm": (FUTURES, lambda: read_cryptofeed(DATA / "cryptofeed_usdm.ws.0",
                                                         DATA / "cryptofeed_usdm.http.0")),
}


def replay(messages, rule):
    """Feed a capture through one BookSync per symbol; per symbol: the sync, the top of book
    after every applied diff (by its last update id), and the bookTickers seen."""
    books, tops, tickers = {}, collections.defaultdict(dict), collections.defaultdict(list)
    crossed = []
    for m in messages:
        if m.source == "ws":
            frame = orjson.loads(m.payload)
            data, stream = frame["data"], frame["stream"]
            symbol = data["s"]
            if "@depth" in stream:
                sync = books.setdefault(symbol, BookSync(len(books) + 1, rule, P, P))
                result = sync.on_diff(data["U"], data["u"], data.get("pu", 0), data["b"], data["a"])
                assert result in (DiffResult.APPLIED, DiffResult.BUFFERED, DiffResult.STALE), (
                    symbol, data["u"], result)
                if result == DiffResult.APPLIED:
                    if sync.book.crossed:
                        crossed.append((symbol, data["u"]))
                    tops[symbol][data["u"]] = (sync.book.best(BID), sync.book.best(ASK))
            elif stream.endswith("@bookTicker"):
                tickers[symbol].append(data)
        else:
            # hftbacktest has one symbol and no URL; cryptofeed names it in the URL
            symbol = m.source.split("symbol=")[1].split("&")[0] if "symbol=" in m.source else "BTCUSDT"
            body = orjson.loads(m.payload)
            sync = books.setdefault(symbol, BookSync(len(books) + 1, rule, P, P))
            assert sync.on_snapshot(body["lastUpdateId"], body["bids"], body["asks"]) in (
                SnapshotResult.SYNCED, SnapshotResult.LOADED)
            tops[symbol][body["lastUpdateId"]] = (sync.book.best(BID), sync.book.best(ASK))
    return books, tops, tickers, crossed


@pytest.mark.parametrize("capture", CAPTURES)
def test_captured_books_rebuild_without_gap_never_crossed_and_match_the_ticker(capture):
    rule, read = CAPTURES[capture]
    assert DATA.is_dir(), f"sample data not found at {DATA} (set TTQ_SAMPLE_DATA)"
    books, tops, tickers, crossed = replay(read(), rule)
    assert books, "no depth stream in the capture"
    for symbol, sync in books.items():
        assert sync.verified and sync.gaps == 0 and sync.bad == 0 and sync.applied > 0, (symbol, sync.gaps)
        assert sync.snapshot_mismatches == 0
    assert crossed == []
    compared = 0
    for symbol, ticks in tickers.items():
        for t in ticks:
            top = tops[symbol].get(t["u"])
            if top is None:
                continue        # a ticker inside a diff's update range: no book state to compare
            assert top == ((raw(t["b"]), raw(t["B"])), (raw(t["a"]), raw(t["A"]))), (symbol, t)
            compared += 1
    assert compared >= 20, f"only {compared} tickers shared an update id with the book"
