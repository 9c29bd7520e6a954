"""The shipper's core against a real PostgreSQL: recorded journals and the gateway's order journal
loaded exactly (counts and values equal the sources'), a second run loads nothing, and neither a
crash inside any batch of any stream nor the server stopping mid-ship loses or duplicates a
row; the partitions are made ahead, indexed when their day is over and dropped by retention."""
import datetime
from contextlib import nullcontext
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from ttquant.core.gateway.order_journal import OrderJournal
from ttquant.core.journal import JournalWriter
from ttquant.core.portfolio import Portfolio
from ttquant.core.records import (
    EXEC_REPORT_DTYPE,
    MARKET_EVENT_DTYPE,
    EventFlag,
    EventKind,
    Order,
    OrderAction,
    RecordType,
)
from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import COPY_HEADER, COPY_TRAILER, _numeric, maintain_partitions, ship, ship_orders

from ttq_testing import spot_table

T0 = 1_723_161_540_000_000_000          # 2024-08-08T23:59:00Z: the ticks cross midnight
N = 3000
BOOK_AT = range(0, N, 10)               # every tenth tick is a book event
TABLES = {   # every column but audit_log's serial id, in an order that makes a dump comparable
    "trades": "*", "quotes": "*", "exec_reports": "*", "book_snapshots": "*", "position_snapshots": "*",
    "orders": "*", "audit_log": "ts, who, venue, action, detail", "instruments": "venue, instrument_id, symbol",
    "ship_watermarks": "stream, ring_created_ns, next_position, state",
}


def _journal(root):
    """N ticks 50 ms apart: book events at every tenth (a reset, then levels, a venue message
    ending every third one), the rest trades (every third) and quotes; fills (an exec report
    per 100 ticks); in two files each (the recorder starts a new file after a gap)."""
    ticks = np.zeros(N, MARKET_EVENT_DTYPE)
    i = np.arange(N)
    ticks["ts_recv"] = T0 + i * 50_000_000
    ticks["ts_pub"] = ticks["ts_recv"] + 1000
    ticks["instrument_id"] = 1
    trade = i % 3 == 0
    ticks["kind"] = np.where(trade, EventKind.TRADE, EventKind.BBO)
    ticks["flags"] = np.where(trade, np.where(i % 2 == 0, EventFlag.BUYER_AGGRESSOR, 0), EventFlag.FROM_BOOK)
    ticks["price"] = 6_100_000 + i
    ticks["qty"] = 100 + i
    quotes = ~trade
    ticks["ask_price"][quotes] = ticks["price"][quotes] + 1
    ticks["ask_qty"][quotes] = 7
    ticks["first_trade_id"][trade] = 9_000_000 + i[trade]
    book = np.array(BOOK_AT)
    ticks["kind"][book] = EventKind.BOOK_LEVEL
    ticks["kind"][0] = EventKind.BOOK_RESET
    j = np.arange(len(book))
    ticks["flags"][book] = (np.where(j % 2 == 1, EventFlag.ASK_SIDE, 0)
                            | np.where(j % 3 == 2, EventFlag.LAST_IN_BATCH, 0))
    ticks["price"][book] = np.where(j % 2 == 1, 6_200_000 + j % 40, 6_000_000 - j % 40)
    ticks["qty"][book] = np.where(j % 7 == 6, 0, 1000 + j)          # some levels removed
    ticks["seq"][book] = 50_000 + j
    execs = np.zeros(N // 100, EXEC_REPORT_DTYPE)
    k = np.arange(len(execs))
    execs["ts_pub"] = T0 + k * 5_000_000_000
    execs["strategy_id"], execs["instrument_id"], execs["status"] = 7, 1, 4
    execs["side"] = np.where(k % 3 == 2, 2, 1)
    execs["client_order_id"] = 2**63 + k.astype(np.uint64)      # u64 ids survive
    execs["last_price"], execs["last_qty"], execs["fee"] = 6_100_012 + k * 3, 150 + k, 305
    execs["trade_id"] = 77_000 + k
    for kind, records, rtype in (("ticks", ticks, RecordType.MARKET_EVENT), ("exec", execs, RecordType.EXEC_REPORT)):
        half = len(records) // 2
        for first, part in ((0, records[:half]), (half + 5, records[half:])):      # a gap of 5 between files
            w = JournalWriter(str(root / f"binance.{kind}"), f"/ttq.binance.{kind}", rtype, records.dtype.itemsize,
                              first, spot_table().to_json(), ring_created_ns=T0)
            w.append(part)
            w.close()
    return ticks, execs


def _order_journal(path):
    """A gateway's order journal: a start, 40 orders (a duplicate id among them, refused), a
    cancel, another start."""
    j = OrderJournal(str(path), "binance", fsync="never")
    j.mark(T0)
    for n in range(40):
        o = Order(ts_created=T0 + n * 1000, client_order_id=2**63 + n, price=6_100_000 + n, qty=100 + n,
                  strategy_id=7, instrument_id=1, action=OrderAction.NEW, side=1 + n % 2, order_type=1)
        j.order(o, 6_100_000 + n)
        if n == 20:
            j.reject(o, 4001)
    j.cancel(Order(ts_created=T0 + 50_000, client_order_id=2**63 + 100, target_order_id=2**63 + 3, strategy_id=7,
                   instrument_id=1, action=OrderAction.CANCEL))
    j.mark(T0 + 60_000)
    j.close()


def _dump(conn):
    return {t: sorted(conn.execute(f"SELECT {cols} FROM {t}").fetchall(), key=repr) for t, cols in TABLES.items()}


def _ship_all(conn, root, **kw):
    loaded = ship(conn, root / "journal", **kw)
    loaded["binance.orders"] = ship_orders(conn, root / "orders.journal", "binance.orders",
                                           **{k: v for k, v in kw.items() if k == "batch"})
    return loaded


@pytest.fixture
def sources(tmp_path):
    ticks, execs = _journal(tmp_path / "journal")
    _order_journal(tmp_path / "orders.journal")
    return ticks, execs


@pytest.fixture
def reference(postgres, tmp_path, sources):
    """What one uninterrupted ship loads: the dump every interrupted one must end equal to."""
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
        _ship_all(conn, tmp_path, batch=500, book_interval_ms=0)
        return _dump(conn)


def _expected_books(ticks):
    """(update id, best-first bids, asks) at each venue message end, rebuilt with dicts."""
    bids, asks, out = {}, {}, []
    for k in BOOK_AT:
        if k >= len(ticks):
            break
        e = ticks[k]
        if e["kind"] == EventKind.BOOK_RESET:
            bids.clear()
            asks.clear()
            continue
        side = asks if e["flags"] & EventFlag.ASK_SIDE else bids
        side[int(e["price"])] = int(e["qty"])
        if not side[int(e["price"])]:
            del side[int(e["price"])]
        if e["flags"] & EventFlag.LAST_IN_BATCH:
            out.append((int(e["seq"]), sorted(bids.items(), reverse=True)[:20], sorted(asks.items())[:20]))
    return out


def test_journals_are_shipped_exactly_once(database, tmp_path, sources):
    ticks, execs = sources
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        loaded = _ship_all(conn, tmp_path, batch=700, book_interval_ms=0)
        assert loaded == {"binance.trades": N, "binance.quotes": N, "binance.book": N, "binance.exec": len(execs),
                          "binance.positions": len(execs), "binance.orders": 44}
        trades = int((ticks["kind"] == EventKind.TRADE).sum())
        quotes = int((ticks["kind"] == EventKind.BBO).sum())
        counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("trades", "quotes", "exec_reports", "position_snapshots", "orders", "audit_log")]
        assert counts == [trades, quotes, len(execs), len(execs), 42, 2]
        # values exact: price raw / 10**2, qty raw / 10**5; positions past the gap kept
        k = N // 2 + 3                      # a trade of the second file
        assert ticks["kind"][k] == EventKind.TRADE
        row = conn.execute("SELECT price, qty, buyer_aggressor, trade_id, seq, ts_ns FROM trades "
                           "WHERE seq = %s", (k + 5,)).fetchone()
        assert row == (Decimal(6_100_000 + k) / 100, Decimal(100 + k) / 100_000, bool(k % 2 == 0),
                       9_000_000 + k, k + 5, int(ticks["ts_recv"][k]))
        assert str(row[0]) == f"{(6_100_000 + k) // 100}.{(6_100_000 + k) % 100:02d}"     # the scale kept
        bid, ask = conn.execute("SELECT bid_price, ask_price FROM quotes WHERE seq = 1").fetchone()
        assert (bid, ask) == (Decimal("61000.01"), Decimal("61000.02"))
        assert conn.execute("SELECT min(client_order_id), sum(fee), min(last_price) FROM exec_reports").fetchone() == \
            (Decimal(2**63), Decimal(305 * len(execs)) / 10**8, Decimal("61000.12"))
        days = conn.execute("SELECT tableoid::regclass::text, count(*) FROM trades GROUP BY 1 ORDER BY 1").fetchall()
        assert [d for d, _ in days] == ["trades_p20240808", "trades_p20240809"]
        assert conn.execute("SELECT symbol, tick_size FROM instruments").fetchall() == [("BTCUSDT", Decimal("0.01"))]
        # books: every venue message's top 20, as rebuilt independently (the gap drops none of them:
        # it falls between book events, and the second file starts with a level, not a reset)
        books = conn.execute("SELECT update_id, bid_prices, bid_qtys, ask_prices, ask_qtys FROM book_snapshots "
                             "ORDER BY ts_ns").fetchall()
        expected = _expected_books(ticks[:N // 2])
        assert len(books) == len(expected) > 10
        for (uid, bp, bq, ap, aq), (euid, ebids, easks) in zip(books, expected):
            assert uid == euid
            assert list(zip(bp, bq)) == [(Decimal(p) / 100, Decimal(q) / 100_000) for p, q in ebids]
            assert list(zip(ap, aq)) == [(Decimal(p) / 100, Decimal(q) / 100_000) for p, q in easks]
        # positions: one per fill, what a Portfolio fed the same fills says
        pf = Portfolio(fee_precision=8)
        inst = spot_table().get(1)
        want = []
        for e in execs:
            p = pf.on_fill(inst, int(e["side"]), int(e["last_price"]), int(e["last_qty"]), int(e["fee"]))
            want.append((p.qty, p.realised, p.fees, p.fills))
        got = conn.execute("SELECT qty, realised, fees, fills FROM position_snapshots ORDER BY ts_ns").fetchall()
        assert got == want and got[-1][1] != 0                   # some fills closed part of the position
        # orders: each entry a row, the duplicate id's refusal beside the order it repeated
        assert conn.execute("SELECT count(*), max(reject_code) FROM orders WHERE client_order_id = %s",
                            (2**63 + 20,)).fetchone() == (2, 4001)
        assert conn.execute("SELECT price, qty, side FROM orders WHERE client_order_id = %s AND reject_code IS NULL",
                            (2**63 + 7,)).fetchone() == (Decimal("61000.07"), Decimal("0.00107"), 2)
        assert conn.execute("SELECT action, target_order_id, price FROM orders WHERE action = %s",
                            (int(OrderAction.CANCEL),)).fetchone() == (int(OrderAction.CANCEL), 2**63 + 3, None)
        assert [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY ts")] == ["gateway_start"] * 2
        before = _dump(conn)
        again = _ship_all(conn, tmp_path)
        assert set(again.values()) == {0}
        assert _dump(conn) == before


def test_numeric_digits_are_exact_for_any_scale_and_sign(database):
    values = np.array([0, 1, -1, 9999, 10_000, -10_001, 123_456_789, 2**62, -(2**62), 10**18, 2**63 - 1], np.int64)
    with psycopg.connect(database, autocommit=True) as conn:
        for scales in [[s] * len(values) for s in (0, 1, 2, 3, 4, 5, 8, 9, 12, 17, 18)] + \
                [list(np.arange(len(values)) % 19)]:
            parts = _numeric(values, np.array(scales))
            payload = b"".join(b"\x00\x01" + (2 * len(p)).to_bytes(4, "big") + p.astype(">i2").tobytes()
                               for p in parts)
            conn.execute("DROP TABLE IF EXISTS t")
            conn.execute("CREATE TEMP TABLE t (i serial, v numeric)")
            with conn.cursor().copy("COPY t (v) FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(COPY_HEADER + payload + COPY_TRAILER)
            got = [(r[0], r[0].as_tuple().exponent) for r in conn.execute("SELECT v FROM t ORDER BY i")]
            assert got == [(Decimal(int(v)).scaleb(-int(s)), -int(s)) for v, s in zip(values, scales)]


def test_a_crash_inside_any_batch_of_any_stream_loses_and_duplicates_nothing(postgres, tmp_path, sources, reference):
    points = []
    for crash in range(100):
        dsn = postgres.dsn(postgres.create_database())
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, timescale=False)
            with pytest.raises(RuntimeError, match="test crash in batch") if crash < 100 else nullcontext():
                try:
                    ship(conn, tmp_path / "journal", batch=500, book_interval_ms=0, fail_after_batches=crash)
                except RuntimeError:
                    points.append("journal")
                    raise
                # every journal batch was a crash point: now those of the order journal (3 of 20)
                ship_orders(conn, tmp_path / "orders.journal", "binance.orders", batch=20,
                            fail_after_batches=crash - len(points))
            _ship_all(conn, tmp_path, batch=500, book_interval_ms=0)
            assert _dump(conn) == reference, f"after a crash in batch {crash + 1}"
        if crash - len(points) == 2:
            break
    assert len(points) > 20                 # every stream's batches were crash points


def test_the_server_stopping_mid_ship_loses_and_duplicates_nothing(postgres, tmp_path, sources, reference):
    for stop_at in (5, 9, 16, 24, 28):      # transactions: in positions, trades, quotes, book, orders
        dsn = postgres.dsn(postgres.create_database())
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn, timescale=False)
        conn = psycopg.connect(dsn, autocommit=True)
        calls = []
        original = conn.transaction

        def transaction(original=original, calls=calls, stop_at=stop_at):
            calls.append(1)
            if len(calls) == stop_at:
                postgres.stop("immediate")
            return original()
        conn.transaction = transaction
        try:
            with pytest.raises(psycopg.OperationalError):
                _ship_all(conn, tmp_path, batch=500, book_interval_ms=0)
        finally:
            conn.close()
            postgres.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            marks = conn.execute("SELECT count(*) FROM ship_watermarks").fetchone()[0]
            _ship_all(conn, tmp_path, batch=500, book_interval_ms=0)
            assert _dump(conn) == reference, f"server stopped at transaction {stop_at} ({marks} streams marked)"


def test_streams_on_several_connections_load_the_same(postgres, tmp_path, sources, reference):
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
        more = [psycopg.connect(dsn, autocommit=True) for _ in range(2)]
        lags = []
        try:
            ship(conn, tmp_path / "journal", batch=500, book_interval_ms=0, more_conns=more,
                 progress=lambda *a: lags.append(a))
        finally:
            for c in more:
                c.close()
        ship_orders(conn, tmp_path / "orders.journal", "binance.orders")
        assert _dump(conn) == reference
    ticks, _ = sources
    newest = int(ticks["ts_pub"][-1])
    trades = [(n, lag) for s, n, lag in lags if s == "binance.trades"]
    # the first batch of the first file: 500 records, its last ts_pub that far behind the newest
    assert trades[0] == (500, newest - int(ticks["ts_pub"][499]))
    assert trades[-1] == (0, 0) and sum(n for n, _ in trades) == N


def test_book_snapshots_at_most_once_per_interval(database, tmp_path, sources):
    ticks, _ = sources
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        ship(conn, tmp_path / "journal", streams=("book",), book_interval_ms=2000)
        ts = [r[0] for r in conn.execute("SELECT ts_ns FROM book_snapshots ORDER BY ts_ns")]
    ends = [int(ticks["ts_recv"][k]) for k in BOOK_AT[1:N // 20] if ticks["flags"][k] & EventFlag.LAST_IN_BATCH]
    want, last = [], 0
    for t in ends:
        if t >= last + 2_000_000_000:
            want.append(t)
            last = t - t % 2_000_000_000
    assert ts == want and len(want) < len(ends)


def test_partitions_are_made_ahead_indexed_when_closed_and_dropped_by_retention(database, tmp_path, sources):
    today = datetime.datetime.now(datetime.UTC).date()
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        ship(conn, tmp_path / "journal", streams=("trades",))          # 2024-08-08 and -09
        done = maintain_partitions(conn, keep_days=0, today=today)
        assert done["trades"] == (2, 2, 0) and done["quotes"] == (2, 0, 0)

        def parts(table):
            return sorted(r[0] for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = %s::regclass", (table,)))

        def indexed(part):
            return conn.execute("SELECT to_regclass(%s) IS NOT NULL", (part + "_by_instrument",)).fetchone()[0]
        days = [today + datetime.timedelta(days=d) for d in (0, 1)]
        assert parts("trades") == ["trades_p20240808", "trades_p20240809"] + [f"trades_p{d:%Y%m%d}" for d in days]
        assert [indexed(p) for p in parts("trades")] == [True, True, False, False]     # today's is written to
        assert maintain_partitions(conn, keep_days=0, today=today)["trades"] == (0, 0, 0)     # twice: nothing
        done = maintain_partitions(conn, keep_days=30, today=today)
        assert done["trades"] == (0, 0, 2)                                   # 2024 is past 30 days
        assert parts("trades") == [f"trades_p{d:%Y%m%d}" for d in days]
