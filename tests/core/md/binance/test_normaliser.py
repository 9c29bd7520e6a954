"""Binance frames -> tick ring and book board: real captures end to end, every bad frame counted."""
from decimal import Decimal

import numpy as np
import orjson
import pytest

from ttquant.core.book.book_board import BookBoard, BookBoardWriter
from ttquant.core.instruments import InstrumentTable
from ttquant.core.md.binance.exchange_info import SPOT, USDM, instruments_from_exchange_info, merge_instruments
from ttquant.core.md.binance.normaliser import COUNTER_NAMES, BinanceNormaliser
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter
from ttquant.core.sim.captures import read_cryptofeed_http, read_hftbacktest, sample_data_dir

DATA = sample_data_dir() / "binance"


@pytest.fixture(scope="module")
def table():
    t = InstrumentTable("binance")
    for market, name in ((SPOT, "cryptofeed_spot_exchangeinfo.0"), (USDM, "cryptofeed_usdm_exchangeinfo.0")):
        (msg,) = read_cryptofeed_http(DATA / name)
        insts, _ = instruments_from_exchange_info(orjson.loads(msg.payload), market,
                                                  symbols=["BTCUSDT", "NKNUSDT", "SUSHIUSDT"])
        merge_instruments(t, insts)
    return t


@pytest.fixture
def feed(ring, table):
    """(normaliser factory, tick reader, board reader) over real segments."""
    ticks = ring("ticks")
    books = ring("books")
    w = BroadcastWriter(ticks, RecordType.MARKET_EVENT, 1 << 20)
    board = BookBoardWriter(books, depth=20, instruments=16)
    r = BroadcastReader(ticks, start="oldest")
    asked = []

    def make(market):
        return BinanceNormaliser(market, list(table), w, board, snapshot_needed=asked.append)

    yield make, r, BookBoard(books), asked
    r.close()
    board.close()
    w.close()


def drain(reader):
    out = np.zeros(1 << 21, MARKET_EVENT_DTYPE)
    n = reader.poll_into(out)
    return out[:n]


def dec(text, p):
    return int(Decimal(text).scaleb(p))


@pytest.mark.parametrize("market,capture", [(SPOT, "spot_btcusdt_20240808.gz"), (USDM, "usdm_btcusdt_20240808.gz")])
def test_capture_through_the_normaliser(feed, table, market, capture):
    make, reader, board, asked = feed
    norm = make(market)
    inst = table[norm.symbols["BTCUSDT"].instrument_id]
    pp, qp = inst.price_precision, inst.size_precision
    frames = tickers = trades = 0
    last_ticker = None
    trade_prices = []
    for m in read_hftbacktest(DATA / capture):
        if m.source == "ws":
            frames += 1
            norm.on_frame(m.payload, m.recv_ns)
            data = orjson.loads(m.payload)["data"]
            if "@bookTicker" in orjson.loads(m.payload)["stream"]:
                tickers += 1
                last_ticker = data
            elif data.get("e") == "trade":
                trades += 1
                trade_prices.append((data["t"], dec(data["p"], pp), dec(data["q"], qp)))
        else:
            assert norm.on_snapshot("BTCUSDT", m.payload, m.recv_ns)
    c = norm.counter_dict()
    drops = {k: v for k, v in c.items() if k.startswith("drop_") and v}
    assert drops == {}
    assert c["frames"] == frames and c["book_tickers"] == tickers and c["book_gaps"] == 0
    assert c["book_snapshots"] == 1 and asked == []
    events = drain(reader)
    assert len(events) == c["events_published"] and reader.lost == 0
    ev_trades = events[events["kind"] == EventKind.TRADE]
    assert len(trade_prices) > 9000
    assert [(int(e["seq"]), int(e["price"]), int(e["qty"])) for e in ev_trades] == trade_prices
    inst_id = norm.symbols["BTCUSDT"].instrument_id
    assert (events["instrument_id"] == inst_id).all()
    assert (events["ts_pub"] >= events["ts_recv"]).all()
    bbo = events[(events["kind"] == EventKind.BBO) & ((events["flags"] & EventFlag.FROM_BOOK) == 0)]
    assert len(bbo) == tickers
    last = bbo[-1]
    assert (int(last["price"]), int(last["ask_price"])) == (dec(last_ticker["b"], pp), dec(last_ticker["a"], pp))
    # the board shows what the kept book holds, and the book is never crossed at the end
    top = board.read(inst_id)
    book = norm.book("BTCUSDT")
    bids, asks = book.top(20)
    assert top.synced and top.update_id == norm.book_sync("BTCUSDT").update_id
    assert np.array_equal(top.bids, bids) and np.array_equal(top.asks, asks) and not book.crossed
    # book-level events carry ids, and each applied diff ends with LAST_IN_BATCH
    levels = events[(events["kind"] == EventKind.BOOK_LEVEL) & ((events["flags"] & EventFlag.SNAPSHOT) == 0)]
    assert len(levels) > 1000
    assert (levels["first_update_id"] <= levels["seq"]).all()


BAD_FRAMES = {
    b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"': "drop_malformed_json",
    b'not json at all': "drop_malformed_json",
    b'[1,2,3]': "drop_unknown_shape",
    b'{"stream":"x","data":[]}': "drop_unknown_shape",
    b'{"stream":"x","data":{"e":"trade","s":"DOGEUSDT"}}': "drop_unknown_symbol",
    b'{"stream":"x","data":{"e":"weird","s":"BTCUSDT"}}': "drop_unknown_stream",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1.0","T":1,"m":true}}': "drop_missing_field",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":1.0,"q":"1","T":1,"m":true}}': "drop_bad_type",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"NaN","q":"1","T":1,"m":true}}': "drop_bad_number",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"0","q":"1","T":1,"m":true}}': "drop_bad_number",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1","q":"-1","T":1,"m":true}}': "drop_negative",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":1,"p":"1e5","q":"1","T":1,"m":true}}': "drop_bad_number",
    b'{"stream":"x","data":{"e":"trade","s":"BTCUSDT","t":-1,"p":"1","q":"1","T":1,"m":true}}': "drop_negative",
    b'{"stream":"x","data":{"u":1,"s":"BTCUSDT","b":"1","B":"1","a":"x","A":"1"}}': "drop_bad_number",
    b'{"stream":"x","data":{"e":"kline","E":1,"s":"BTCUSDT","k":"no"}}': "drop_bad_type",
    b'{"stream":"x","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":{},"a":[]}}': "drop_bad_type",
}


def test_every_bad_frame_is_counted_by_reason_and_the_feed_goes_on(feed):
    make, reader, board, asked = feed
    norm = make(SPOT)
    good = lambda t: (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":2,"s":"BTCUSDT","t":%d,'
                      b'"p":"61000.10","q":"0.5","T":2,"m":false}}' % t)
    for t, (frame, reason) in enumerate(BAD_FRAMES.items(), 7):
        before = norm.counter_dict()
        assert norm.on_frame(frame, 1) == 0
        after = norm.counter_dict()
        changed = {k for k in COUNTER_NAMES if after[k] != before[k]} - {"frames", "trades", "klines",
                                                                           "depth_updates", "book_tickers"}
        assert changed == {reason}, (frame, changed)
        assert norm.on_frame(good(t), 1) == 1   # and the next good frame still goes through
    assert norm.on_frame(b"x" * (norm.max_frame_bytes + 1), 1) == 0
    assert norm.counter_dict()["drop_oversized"] == 1
    assert norm.on_frame(b'{"result":null,"id":1}', 1) == 0 and norm.counter_dict()["control"] == 1
    events = drain(reader)
    assert len(events) == len(BAD_FRAMES)
    e = events[0]
    assert e["kind"] == EventKind.TRADE and e["flags"] & EventFlag.BUYER_AGGRESSOR
    assert e["price"] == 6100010000000 and e["qty"] == 50000000 and e["ts_exchange"] == 2_000_000


def test_kline_mark_and_aggtrade(feed, table):
    make, reader, board, asked = feed
    norm = make(USDM)
    frames = [
        b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":5,"s":"BTCUSDT","a":9,"p":"100.5","q":"0.010","f":3,"l":6,"T":4,"m":true}}',
        b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":10,"s":"BTCUSDT","k":{"t":60000,"T":119999,"s":"BTCUSDT","i":"1m","o":"1.00","c":"2.00","h":"3.00","l":"0.50","v":"7.000","n":12,"x":true,"q":"14.00"}}}',
        b'{"stream":"btcusdt@markPrice","data":{"e":"markPriceUpdate","E":20,"s":"BTCUSDT","p":"100.10","i":"100.00","P":"100.05","r":"-0.00010000","T":28800000}}',
    ]
    for f in frames:
        assert norm.on_frame(f, 1) == 1, norm.counter_dict()
    agg, kline, mark = drain(reader)
    assert agg["flags"] & EventFlag.AGGREGATED and not agg["flags"] & EventFlag.BUYER_AGGRESSOR
    assert (agg["seq"], agg["first_trade_id"], agg["last_trade_id"], agg["price"], agg["qty"]) == (9, 3, 6, 10050, 10)
    assert kline["kind"] == EventKind.KLINE and kline["flags"] & EventFlag.CLOSED
    assert (kline["open"], kline["high"], kline["low"], kline["price"], kline["qty"]) == (100, 300, 50, 200, 7000)
    assert kline["trade_count"] == 12 and kline["open_time_ns"] == 60_000_000_000
    assert mark["kind"] == EventKind.MARK and mark["price"] == 10010 and mark["index_price"] == 10000
    assert mark["funding_rate"] == -1_000_000 and mark["next_funding_ns"] == 28_800_000_000_000


def test_a_gap_publishes_a_reset_asks_for_a_snapshot_and_recovers(feed):
    make, reader, board, asked = feed
    norm = make(SPOT)
    diff = lambda U, u, b: orjson.dumps({"stream": "btcusdt@depth@100ms", "data": {
        "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": U, "u": u, "b": b, "a": [["101", "1"]]}})
    norm.on_frame(diff(1, 10, [["100", "1"]]), 1)
    assert norm.on_snapshot("BTCUSDT", b'{"lastUpdateId":5,"bids":[["99","2"]],"asks":[["102","1"]]}')
    inst = norm.symbols["BTCUSDT"].instrument_id
    assert board.read(inst).synced
    norm.on_frame(diff(11, 12, [["100", "2"]]), 1)
    norm.on_frame(diff(20, 21, [["100", "3"]]), 1)          # 13..19 missing
    assert asked == ["BTCUSDT"] and norm.counter_dict()["book_gaps"] == 1
    top = board.read(inst)
    assert not top.synced and top.resets == 1
    events = drain(reader)
    assert EventKind.BOOK_RESET in events["kind"][-3:]
    assert norm.on_snapshot("BTCUSDT", b'{"lastUpdateId":19,"bids":[["100","2"]],"asks":[["101","1"]]}')
    top = board.read(inst)
    assert top.synced and top.bids.tolist()[0][1] == 300000000     # diff 20..21 replayed on top
    assert norm.on_snapshot("BTCUSDT", b'{"nope":1}') is False
    assert norm.counter_dict()["book_snapshot_rejected"] == 1


@pytest.mark.parametrize("market,capture", [(SPOT, "spot_btcusdt_20240808.gz"), (USDM, "usdm_btcusdt_20240808.gz")])
def test_fast_path_publishes_exactly_what_the_orjson_path_does(ring, table, market, capture):
    runs = []
    for fast in (True, False):
        name = ring("ticks", "fast" if fast else "slow")
        w = BroadcastWriter(name, RecordType.MARKET_EVENT, 1 << 20)
        r = BroadcastReader(name, start="oldest")
        norm = BinanceNormaliser(market, list(table), w, None, fast_path=fast)
        for m in read_hftbacktest(DATA / capture):
            if m.source == "ws":
                norm.on_frame(m.payload, m.recv_ns)
            else:
                norm.on_snapshot("BTCUSDT", m.payload, m.recv_ns)
        events = drain(r)
        events["ts_pub"] = 0
        runs.append((events, norm.counter_dict()))
        r.close()
        w.close()
    (fast_events, fast_counts), (slow_events, slow_counts) = runs
    assert fast_counts.pop("fast_path") > 0.9 * fast_counts["frames"]
    assert slow_counts.pop("fast_path") == 0
    assert fast_counts == slow_counts
    assert len(fast_events) == len(slow_events) and (fast_events == slow_events).all()



def _trade(t, p, q, aggregated=False):
    if aggregated:
        return (b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":5,"s":"BTCUSDT","a":%d,"p":"%s","q":"%s",'
                b'"f":%d,"l":%d,"T":4,"m":true}}' % (t, p.encode(), q.encode(), t, t))
    return (b'{"stream":"btcusdt@trade","data":{"e":"trade","E":5,"s":"BTCUSDT","t":%d,"p":"%s","q":"%s",'
            b'"T":4,"m":false}}' % (t, p.encode(), q.encode()))


# (price, qty) of trades that moved nothing or came at no price: BTCUSDT's size precision is
# 8 on spot and 3 on the perpetual, so "0.000000001" / "0.0004" would truncate to 0 there
ZERO_TRADES = {
    SPOT: [("61000.10", "0"), ("61000.10", "0.00000000"), ("61000.10", "0.000000001"), ("0.00", "0.5"), ("0", "0")],
    USDM: [("61000.10", "0"), ("61000.10", "0.000"), ("61000.10", "0.0004"), ("0.00", "0.010")],
}


@pytest.mark.parametrize("fast", [True, False], ids=["scanner", "orjson"])
@pytest.mark.parametrize("aggregated", [False, True], ids=["trade", "aggTrade"])
@pytest.mark.parametrize("market", [SPOT, USDM])
def test_a_trade_of_zero_quantity_or_price_is_dropped_as_a_bad_number(ring, table, market, aggregated, fast):
    name = ring("ticks", "zero")
    w = BroadcastWriter(name, RecordType.MARKET_EVENT, 1 << 12)
    r = BroadcastReader(name, start="oldest")
    norm = BinanceNormaliser(market, list(table), w, None, fast_path=fast)
    good_qty = "0.5" if market == SPOT else "0.010"
    try:
        for t, (p, q) in enumerate(ZERO_TRADES[market], 1):
            before = norm.counter_dict()
            assert norm.on_frame(_trade(t, p, q, aggregated), 1) == 0, (p, q)
            after = norm.counter_dict()
            moved = {k for k in COUNTER_NAMES if after[k] != before[k]}
            assert moved == {"frames", "agg_trades" if aggregated else "trades", "drop_bad_number"}, (p, q, moved)
            # the dropped trade took no id: the good one with the same id goes out, by the scanner if asked
            assert norm.on_frame(_trade(t, "61000.10", good_qty, aggregated), 1) == 1
            assert norm.counter_dict()["fast_path"] == (t if fast else 0)
        events = drain(r)
        assert len(events) == len(ZERO_TRADES[market]) and (events["qty"] > 0).all() and (events["price"] > 0).all()
        assert norm.counter_dict()["drop_bad_number"] == len(ZERO_TRADES[market])
    finally:
        r.close()
        w.close()


# every outcome a frame can have, as counters: exactly one of them moves per frame
OUTCOMES = {"events_published", "control", "ignored_non_market_trade", "book_buffered", "book_stale", "duplicates",
            "overlap_held", "book_gaps", "drop_bad_level", "book_snapshot_rejected",
            *(n for n in COUNTER_NAMES if n.startswith("drop_"))}


def _mutations():
    from hypothesis import strategies as st
    frames = [m.payload for m in read_hftbacktest(DATA / "usdm_btcusdt_20240808.gz") if m.source == "ws"][:400]
    return st.tuples(st.sampled_from(frames), st.lists(st.tuples(
        st.sampled_from(["flip", "cut", "dup", "insert"]), st.integers(0, 10_000), st.integers(1, 12),
        st.binary(min_size=1, max_size=3)), min_size=1, max_size=4))


def _mutate(frame, ops):
    frame = bytearray(frame)
    for op, at, length, junk in ops:
        i = at % max(len(frame), 1)
        if op == "flip" and frame:
            frame[i] = b'"{}[],:0123456789.-etrufalsnEuUbBaApq \\'[length % 38]
        elif op == "cut":
            del frame[i:i + length]
        elif op == "dup":
            frame[i:i] = frame[i:i + length]
        else:
            frame[i:i] = junk
    return bytes(frame)


def test_fuzz_mutated_real_frames_each_counted_once_never_a_crash(feed):
    from hypothesis import HealthCheck, given, settings
    make, reader, board, asked = feed
    norm = make(USDM)
    norm.on_snapshot("BTCUSDT", b'{"lastUpdateId":1,"bids":[["1.0","1"]],"asks":[["2.0","1"]]}')

    @settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_mutations())
    def check(case):
        frame, ops = case
        before = norm.counter_dict()
        norm.on_frame(_mutate(frame, ops), 1)
        after = norm.counter_dict()
        assert after["frames"] == before["frames"] + 1
        moved = {k for k in OUTCOMES if after[k] != before[k]}
        assert moved, "a frame with no outcome counted"
        # a frame either publishes or is dropped/ignored, never both
        assert not ({"events_published"} <= moved and moved & {n for n in OUTCOMES if n.startswith("drop_")}), moved

    check()
    reader.poll_into(np.zeros(1 << 16, MARKET_EVENT_DTYPE))


def _streams(events):
    """Per (instrument, kind, from-book) the events in order, without the times of this run."""
    events = events.copy()
    events["ts_pub"] = events["ts_recv"] = 0
    out = {}
    for key in sorted({(int(e["instrument_id"]), int(e["kind"]), int(e["flags"]) & EventFlag.FROM_BOOK)
                       for e in events}):
        inst, kind, from_book = key
        sel = (events["instrument_id"] == inst) & (events["kind"] == kind) & \
            ((events["flags"] & EventFlag.FROM_BOOK) == from_book)
        out[key] = events[sel]
    return out


@pytest.mark.parametrize("skew", [-7, 0, 5])
@pytest.mark.parametrize("market,capture", [(SPOT, "spot_btcusdt_20240808.gz"), (USDM, "usdm_btcusdt_20240808.gz")])
def test_two_overlapping_connections_publish_each_event_once_and_no_gap(ring, table, market, capture, skew):
    """A rollover as the normaliser sees it: connection A delivers the capture up to a cut, B
    joins from an earlier point and runs `skew` frames ahead of (or behind) A while both are up,
    then B alone carries on. Every stream must come out exactly as from one connection."""
    messages = list(read_hftbacktest(DATA / capture))
    runs = []
    for overlapped in (False, True):
        name = ring("ticks", "two" if overlapped else "one")
        w = BroadcastWriter(name, RecordType.MARKET_EVENT, 1 << 20)
        r = BroadcastReader(name, start="oldest")
        norm = BinanceNormaliser(market, list(table), w, None)
        ws = [m for m in messages if m.source == "ws"]
        snap_at = next(i for i, m in enumerate(messages) if m.source != "ws")
        snapshot = messages[snap_at]
        n_before_snapshot = sum(1 for m in messages[:snap_at] if m.source == "ws")
        for m in ws[:n_before_snapshot]:
            norm.on_frame(m.payload, m.recv_ns)
        norm.on_snapshot("BTCUSDT", snapshot.payload, snapshot.recv_ns)
        rest = ws[n_before_snapshot:]
        if not overlapped:
            for m in rest:
                norm.on_frame(m.payload, m.recv_ns)
        else:
            join, cut = len(rest) // 3, 2 * len(rest) // 3      # B joins at `join`, A leaves at `cut`
            for m in rest[:join]:
                norm.on_frame(m.payload, m.recv_ns)
            a, b = join, join + skew if skew > 0 else join
            while a < cut:
                norm.on_frame(rest[a].payload, rest[a].recv_ns)
                a += 1
                if a - join >= -skew:           # B starts late when behind
                    norm.on_frame(rest[b].payload, rest[b].recv_ns, secondary=True)
                    b += 1
            norm.end_overlap(True)              # A has closed: B is the only connection
            for m in rest[b:]:
                norm.on_frame(m.payload, m.recv_ns)
        counts = norm.counter_dict()
        runs.append((_streams(drain(r)), counts))
        r.close()
        w.close()
    (single, single_counts), (double, double_counts) = runs
    assert single_counts["duplicates"] == 0 and single_counts["overlap_held"] == 0
    assert double_counts["duplicates"] > 100 and double_counts["book_gaps"] == 0
    assert double_counts["events_published"] == single_counts["events_published"]
    if skew > 0:
        assert double_counts["overlap_held"] > 0        # B's frames ahead of A's waited for them
    assert single.keys() == double.keys()
    for key in single:
        assert len(single[key]) == len(double[key]) and (single[key] == double[key]).all(), key


def test_a_kline_quote_volume_finer_than_the_price_is_cut_not_refused(feed):
    """Quote volume is price x qty: Binance sends more decimals than the price has (USDT-M
    BTCUSDT "q":"2843016.43110" at price precision 2). It is kept to the price's precision."""
    make, reader, board, asked = feed
    norm = make(USDM)
    kline = lambda q, e: (b'{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":%d,"s":"BTCUSDT","k":{"t":60000,'
                          b'"T":119999,"s":"BTCUSDT","i":"1m","o":"1.00","c":"2.00","h":"3.00","l":"0.50",'
                          b'"v":"7.000","n":12,"x":false,"q":"%s"}}}' % (e, q.encode()))
    assert norm.on_frame(kline("2843016.43119", 10), 1) == 1
    assert norm.on_frame(kline("12.5x1", 11), 1) == 0 and norm.counter_dict()["drop_bad_number"] == 1
    assert norm.on_frame(kline("12.5", 10), 1) == 0 and norm.counter_dict()["duplicates"] == 1   # same E again
    (k,) = drain(reader)
    assert k["quote_volume"] == 284301643
