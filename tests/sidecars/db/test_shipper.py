"""The shipper's core against a real PostgreSQL: a recorded journal loaded exactly (counts and
values equal the journal's), a second run loads nothing, and neither a crash inside a batch
nor the server stopping mid-ship loses or duplicates a row."""
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from ttquant.core.journal import JournalWriter
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, EventFlag, EventKind, RecordType
from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import ship

from ttq_testing import spot_table

T0 = 1_723_161_540_000_000_000          # 2024-08-08T23:59:00Z: the ticks cross midnight
N = 3000


def _journal(root):
    """N ticks (every third a trade, the rest quotes) 50 ms apart, and an exec report per 100
    ticks, in two files each (the recorder starts a new file after a gap)."""
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
    execs = np.zeros(N // 100, EXEC_REPORT_DTYPE)
    execs["ts_pub"] = T0 + np.arange(len(execs)) * 5_000_000_000
    execs["strategy_id"], execs["instrument_id"], execs["status"] = 7, 1, 4
    execs["client_order_id"] = 2**63 + np.arange(len(execs), dtype=np.uint64)     # u64 ids survive
    execs["last_price"], execs["last_qty"], execs["fee"] = 6_100_012, 150, 305
    for kind, records, rtype in (("ticks", ticks, RecordType.MARKET_EVENT), ("exec", execs, RecordType.EXEC_REPORT)):
        half = len(records) // 2
        for first, part in ((0, records[:half]), (half + 5, records[half:])):      # a gap of 5 between files
            w = JournalWriter(str(root / f"binance.{kind}"), f"/ttq.binance.{kind}", rtype, records.dtype.itemsize,
                              first, spot_table().to_json(), ring_created_ns=T0)
            w.append(part)
            w.close()
    return ticks, execs


def _counts(conn):
    return tuple(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("trades", "quotes", "exec_reports"))


def test_a_journal_is_shipped_exactly_once(database, tmp_path):
    ticks, execs = _journal(tmp_path / "journal")
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        loaded = ship(conn, tmp_path / "journal", batch=700)
        assert loaded == {"binance.ticks": N, "binance.exec": len(execs)}
        trades = int((ticks["kind"] == EventKind.TRADE).sum())
        assert _counts(conn) == (trades, N - trades, len(execs))
        # values exact: price raw / 10**2, qty raw / 10**5; positions past the gap kept
        row = conn.execute("SELECT price, qty, buyer_aggressor, trade_id, seq, ts_ns FROM trades "
                           "WHERE seq = %s", (N // 2 + 5,)).fetchone()
        k = N // 2                      # that position's record: the first of the second file
        assert ticks["kind"][k] == EventKind.TRADE
        assert row == (Decimal(6_100_000 + k) / 100, Decimal(100 + k) / 100_000, bool(k % 2 == 0),
                       9_000_000 + k, N // 2 + 5, int(ticks["ts_recv"][k]))
        bid, ask = conn.execute("SELECT bid_price, ask_price FROM quotes WHERE seq = 1").fetchone()
        assert (bid, ask) == (Decimal("61000.01"), Decimal("61000.02"))
        assert conn.execute("SELECT min(client_order_id), sum(fee), min(last_price) FROM exec_reports").fetchone() == \
            (Decimal(2**63), Decimal(305 * len(execs)) / 10**8, Decimal("61000.12"))
        days = conn.execute("SELECT tableoid::regclass::text, count(*) FROM trades GROUP BY 1 ORDER BY 1").fetchall()
        assert [d for d, _ in days] == ["trades_p20240808", "trades_p20240809"]
        assert conn.execute("SELECT symbol, tick_size FROM instruments").fetchall() == [("BTCUSDT", Decimal("0.01"))]
        assert ship(conn, tmp_path / "journal") == {"binance.ticks": 0, "binance.exec": 0}
        assert _counts(conn) == (trades, N - trades, len(execs))


def test_a_crash_inside_a_batch_loses_and_duplicates_nothing(database, tmp_path):
    ticks, execs = _journal(tmp_path / "journal")
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        # the exec stream goes first (two files: two batches), then the ticks': crash in their third
        with pytest.raises(RuntimeError, match="test crash in batch 5 of binance.ticks"):
            ship(conn, tmp_path / "journal", batch=500, fail_after_batches=4)
        assert conn.execute("SELECT next_position FROM ship_watermarks WHERE stream = 'binance.ticks'").fetchone() \
            == (1000,)
        assert sum(_counts(conn)) == 1000 + len(execs)      # two tick batches committed, the third not at all
        ship(conn, tmp_path / "journal", batch=500)
        trades = int((ticks["kind"] == EventKind.TRADE).sum())
        assert _counts(conn) == (trades, N - trades, len(execs))
        dupes = conn.execute("SELECT count(*) FROM (SELECT seq FROM trades GROUP BY seq HAVING count(*) > 1) d")
        assert dupes.fetchone()[0] == 0


def test_the_server_stopping_mid_ship_loses_and_duplicates_nothing(postgres, tmp_path):
    ticks, execs = _journal(tmp_path / "journal")
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
    conn = psycopg.connect(dsn, autocommit=True)
    calls = []
    original = conn.transaction

    def transaction():                  # the server goes away as the ticks' third batch begins
        calls.append(1)
        if len(calls) == 7:             # exec: instruments, 2 batches; ticks: instruments, 2 batches
            postgres.stop("immediate")
        return original()
    conn.transaction = transaction
    try:
        with pytest.raises(psycopg.OperationalError):
            ship(conn, tmp_path / "journal", batch=500)
    finally:
        conn.close()
        postgres.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        trades, quotes, _ = _counts(conn)
        (mark,) = conn.execute("SELECT next_position FROM ship_watermarks WHERE stream = 'binance.ticks'").fetchone()
        assert 0 < trades + quotes == mark < N       # what was committed is exactly what the watermark says
        ship(conn, tmp_path / "journal", batch=500)
        trades = int((ticks["kind"] == EventKind.TRADE).sum())
        assert _counts(conn) == (trades, N - trades, len(execs))
