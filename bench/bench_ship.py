"""ship_rows (DESIGN.md §9): journal files -> PostgreSQL rows/s, the shipper's binary COPY against
a row-at-a-time executemany of the same rows into the same tables, in the same run.

A PostgreSQL 15 of its own (tests/ttq_postgres.py: a temporary data directory, fsync off), the
schema migrated (plain partitions). The journal: 1 M ticks (400 k quick), trades and quotes
half and half over 4 instruments, stamped today (the day partition being written, as live).
ttquant: `ship()` of the trades and quotes streams, two connections (one per stream), from the
first record read to the last commit. psycopg_executemany: the same journal records turned
into rows one by one (Decimal prices, as the shipper did before) and inserted with
`cursor.executemany` in transactions of the shipper's batch size, over the first 100 k rows of
each table (20 k quick): its rate per row does not depend on how many. Targets: >= 1 M rows/s,
>= 3x executemany.
"""
import datetime
import time
from decimal import Decimal

import numpy as np
import psycopg
import pytest

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.journal import JournalWriter
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind, RecordType
from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import BATCH, ship

from support import QUICK, rate_info
from ttq_postgres import PostgresServer

N = 400_000 if QUICK else 1_000_000
N_PEER = 20_000 if QUICK else 100_000
INSTRUMENTS = 4


def _table():
    t = InstrumentTable("bench")
    for iid in range(1, INSTRUMENTS + 1):
        t.add(Instrument(instrument_id=iid, venue="bench", symbol=f"S{iid}USDT", market_type=MarketType.SPOT,
                         base=f"S{iid}", quote="USDT", price_precision=2, size_precision=5, tick_size=1, step_size=1,
                         min_qty=1, max_qty=0, min_price=1, max_price=0, min_notional=0))
    return t


def _journal(directory):
    ev = np.zeros(N, MARKET_EVENT_DTYPE)
    i = np.arange(N)
    now = time.time_ns()
    start = now - now % 86_400_000_000_000 + 3_600_000_000_000      # today 01:00 UTC, 10 µs apart
    ev["ts_recv"] = start + i * 10_000
    ev["ts_exchange"] = ev["ts_recv"] - 1_000_000
    ev["ts_pub"] = ev["ts_recv"] + 2_000
    ev["instrument_id"] = 1 + i % INSTRUMENTS
    trade = i % 2 == 0
    ev["kind"] = np.where(trade, EventKind.TRADE, EventKind.BBO)
    ev["flags"] = np.where(trade, np.where(i % 4 == 0, EventFlag.BUYER_AGGRESSOR, 0), EventFlag.FROM_BOOK)
    ev["price"] = 6_100_000 + (i * 7919) % 5000
    ev["qty"] = 100 + (i * 104_729) % 100_000
    ev["ask_price"][~trade] = ev["price"][~trade] + 1
    ev["ask_qty"][~trade] = 200 + i[~trade] % 1000
    ev["first_trade_id"][trade] = 3_000_000_000 + i[trade]
    w = JournalWriter(str(directory / "bench.ticks"), "/ttq.bench.ticks", RecordType.MARKET_EVENT,
                      MARKET_EVENT_DTYPE.itemsize, 0, _table().to_json(), ring_created_ns=start)
    w.append(ev)
    w.close()
    return ev, start


def _rows_one_by_one(records, table, ring_created_ns):
    """The journal records as Python rows, one at a time (the peer's side of the work)."""
    utc = datetime.UTC
    trades, quotes = [], []
    for pos, rec in enumerate(records.tolist()):
        ts_exchange, ts_recv, _pub, _seq, iid, _v, kind, flags, price, qty = rec[:10]
        inst = table.get(iid)
        pp, sp = inst.price_precision, inst.size_precision
        ts = datetime.datetime.fromtimestamp(ts_recv // 1_000_000_000, utc).replace(
            microsecond=(ts_recv // 1000) % 1_000_000)
        if kind == EventKind.TRADE:
            trades.append(("bench", iid, ts, ts_recv, ts_exchange or None, Decimal(price).scaleb(-pp),
                           Decimal(qty).scaleb(-sp), bool(flags & EventFlag.BUYER_AGGRESSOR), rec[10] or None, pos,
                           ring_created_ns))
        else:
            quotes.append(("bench", iid, ts, ts_recv, ts_exchange or None, Decimal(price).scaleb(-pp),
                           Decimal(qty).scaleb(-sp), Decimal(rec[12]).scaleb(-pp), Decimal(rec[13]).scaleb(-sp),
                           bool(flags & EventFlag.FROM_BOOK), pos, ring_created_ns))
    return trades, quotes


@pytest.fixture(scope="module")
def server():
    s = PostgresServer()
    try:
        yield s
    finally:
        s.close()


@pytest.mark.quick
def test_ship_rows(benchmark, server, tmp_path, peer_results):
    ev, start = _journal(tmp_path / "journal")
    dsn = server.dsn(server.create_database())
    conn = psycopg.connect(dsn, autocommit=True)
    more = [psycopg.connect(dsn, autocommit=True)]
    seconds, loaded = [], {}
    try:
        migrate(conn, timescale=False)

        def run():
            t0 = time.perf_counter()
            loaded.update(ship(conn, tmp_path / "journal", streams=("trades", "quotes"), more_conns=more))
            seconds.append(time.perf_counter() - t0)
        benchmark.pedantic(run, rounds=1, iterations=1)
        counts = conn.execute("SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM quotes)").fetchone()
    finally:
        for c in (conn, *more):
            c.close()
    assert loaded == {"bench.trades": N, "bench.quotes": N} and sum(counts) == N
    benchmark.extra_info.update(rate_info("ship_rows", "ttquant", N, seconds[0], connections=2, batch=BATCH))

    # the peer: the same records, rows built one by one, executemany into the same tables
    peer_dsn = server.dsn(server.create_database())
    with psycopg.connect(peer_dsn, autocommit=True) as pc:
        migrate(pc, timescale=False)
        pc.execute("SELECT ttq_ensure_partitions('trades', %s, 1), ttq_ensure_partitions('quotes', %s, 1)",
                   (datetime.datetime.fromtimestamp(start / 1e9, datetime.UTC).date(),) * 2)
        names = {"trades": "venue, instrument_id, ts, ts_ns, ts_exchange_ns, price, qty, buyer_aggressor, trade_id, "
                           "seq, ring_created_ns",
                 "quotes": "venue, instrument_id, ts, ts_ns, ts_exchange_ns, bid_price, bid_qty, ask_price, ask_qty, "
                           "from_book, seq, ring_created_ns"}
        records = ev[:2 * N_PEER]
        t0 = time.perf_counter()
        trades, quotes = _rows_one_by_one(records, _table(), start)
        with pc.cursor() as cur:
            for name, rows in (("trades", trades), ("quotes", quotes)):
                marks = ", ".join(["%s"] * len(names[name].split(", ")))
                for at in range(0, len(rows), BATCH):
                    with pc.transaction():
                        cur.executemany(f"INSERT INTO {name} ({names[name]}) VALUES ({marks})", rows[at:at + BATCH])
        peer_s = time.perf_counter() - t0
        got = pc.execute("SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM quotes)").fetchone()
    assert sum(got) == len(records)
    peer_results.add(benchmark, "psycopg_executemany", rate_info("ship_rows", "psycopg_executemany", len(records),
                                                                 peer_s))
    print(f"\nship_rows: ttquant {N / seconds[0]:,.0f} rows/s, executemany {len(records) / peer_s:,.0f} rows/s")
