"""The synthetic market is a consistent Binance feed: diffs rebuild the book with no gap, the
book never crosses, and every bookTicker sharing an update id with a diff is the book's top."""
from decimal import Decimal

import orjson
import pytest

from ttquant.core.book.order_book import ASK, BID
from ttquant.core.md.binance.book_sync import FUTURES, SPOT, BookSync, DiffResult
from ttquant.core.sim.synthetic import synthetic_feed


def raw(text):
    return int(Decimal(text).scaleb(8))


@pytest.mark.parametrize("market", ["spot", "usdm"])
def test_synthetic_feed_is_consistent(market):
    feed = synthetic_feed(seconds=20, seed=11)
    sync = BookSync(1, SPOT if market == "spot" else FUTURES, 8, 8)
    snap = orjson.loads(feed.snapshots[(market, "BTCUSDT")][0][1])
    sync.on_snapshot(snap["lastUpdateId"], snap["bids"], snap["asks"])
    tops, trades = {}, 0
    for f in feed.frames:
        if f.market != market:
            continue
        data = orjson.loads(f.payload)["data"]
        if f.depth:
            assert sync.on_diff(data["U"], data["u"], data.get("pu", 0), data["b"], data["a"]) in (
                DiffResult.APPLIED, DiffResult.STALE)
            assert not sync.book.crossed
            tops[data["u"]] = (sync.book.best(BID), sync.book.best(ASK))
        trades += data.get("e") == "trade"
    assert sync.gaps == 0 and sync.applied > 150 and trades > 1000
    compared = 0
    for f in feed.frames:
        if f.market == market and f.key.endswith("@bookticker"):
            d = orjson.loads(f.payload)["data"]
            if d["u"] in tops:
                assert tops[d["u"]] == ((raw(d["b"]), raw(d["B"])), (raw(d["a"]), raw(d["A"])))
                compared += 1
    assert compared > 30


def test_same_seed_same_market():
    a, b = synthetic_feed(seconds=2, seed=3), synthetic_feed(seconds=2, seed=3)
    assert [f.payload for f in a.frames] == [f.payload for f in b.frames]


def test_klines_sum_the_trades_of_their_minute_and_usdm_has_a_mark_each_second():
    feed = synthetic_feed(seconds=130, seed=5)
    for market in ("spot", "usdm"):
        trades, last_kline, marks = {}, {}, 0
        for f in feed.frames:
            if f.market != market:
                continue
            data = orjson.loads(f.payload)["data"]
            if data.get("e") == "trade":
                trades.setdefault(data["T"] // 60_000 * 60_000, []).append(data)
            elif data.get("e") == "kline":
                k = data["k"]
                last_kline[k["t"]] = k
            elif data.get("e") == "markPriceUpdate":
                marks += 1
                assert data["T"] % 28_800_000 == 0 and data["T"] > data["E"]
        closed = {t: k for t, k in last_kline.items() if k["x"]}
        assert len(closed) == 2, sorted(last_kline)     # minutes 1 and 2 of 130 s have ended
        for start, k in closed.items():
            ts = trades[start]
            prices = [Decimal(t["p"]) for t in ts]
            assert (Decimal(k["o"]), Decimal(k["c"])) == (prices[0], prices[-1])
            assert (Decimal(k["h"]), Decimal(k["l"])) == (max(prices), min(prices))
            assert Decimal(k["v"]) == sum(Decimal(t["q"]) for t in ts) and k["n"] == len(ts)
        assert (marks >= 125) == (market == "usdm") and (marks == 0) == (market == "spot")
