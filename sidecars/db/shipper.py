"""The journal shipper's core: recorded journal files (never the rings) into PostgreSQL.

Each recorded stream (`<rings>.ticks`, `<rings>.exec`) has a watermark in `ship_watermarks`: the
ring run (ring_created_ns) and the next ring position to load. Records are loaded in batches
with binary COPY, and the batch's rows and the advanced watermark are committed in one
transaction, so a crash or a database outage anywhere neither loses nor duplicates a row: what
was not committed is loaded again from the watermark. Ticks go to `trades` and `quotes`
(partitions for their UTC days made ahead), exec reports to `exec_reports`; the instrument
table recorded in the files' headers to `instruments`. Prices and quantities are exact: the raw
fixed-point integer over 10**precision as numeric.

The daemon around it is sidecars/db/daemon.py (`ttquant db ship VENUE`).
"""
from __future__ import annotations

import datetime
import logging
from decimal import Decimal

import numpy as np

from ttquant.core.journal.journal_file import journal_files
from ttquant.core.journal.replay import recorded_rings
from ttquant.core.records import EventFlag, EventKind

__all__ = ["ship", "stream_rows"]

log = logging.getLogger("ttquant.db.ship")
BATCH = 20_000                  # records per transaction
UTC = datetime.UTC
TRADE_COLUMNS = ("venue", "instrument_id", "ts", "ts_ns", "ts_exchange_ns", "price", "qty", "buyer_aggressor",
                 "trade_id", "seq", "ring_created_ns")
QUOTE_COLUMNS = ("venue", "instrument_id", "ts", "ts_ns", "ts_exchange_ns", "bid_price", "bid_qty", "ask_price",
                 "ask_qty", "from_book", "seq", "ring_created_ns")
EXEC_COLUMNS = ("venue", "ts", "ts_ns", "ts_exchange_ns", "seq", "ring_created_ns", "strategy_id", "client_order_id",
                "venue_order_id", "instrument_id", "status", "reject_code", "side", "order_type", "price", "qty",
                "cum_qty", "leaves_qty", "last_price", "last_qty", "fee", "liquidity", "trade_id")


def _ts(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns // 1000) % 1_000_000)


def _scaled(raw: int, precision: int) -> Decimal:
    return Decimal(int(raw)).scaleb(-precision)


def _tick_rows(records, positions, venue, table, ring_created_ns):
    trades, quotes = [], []
    scales = {}
    for rec, pos in zip(records.tolist(), positions.tolist()):
        ts_exchange, ts_recv, ts_pub, _seq, iid, _venue_id, kind, flags, price, qty = rec[:10]
        if kind not in (EventKind.TRADE, EventKind.BBO):
            continue
        scale = scales.get(iid)
        if scale is None:
            inst = table.get(iid) if table is not None else None
            if inst is None:
                continue            # not in the recorded table: nothing to scale it by
            scale = scales[iid] = (inst.price_precision, inst.size_precision)
        pp, sp = scale
        ts_ns = ts_recv or ts_exchange or ts_pub
        if kind == EventKind.TRADE:
            trades.append((venue, iid, _ts(ts_ns), ts_ns, ts_exchange or None, _scaled(price, pp), _scaled(qty, sp),
                           bool(flags & EventFlag.BUYER_AGGRESSOR), rec[10] or None, pos, ring_created_ns))
        else:
            quotes.append((venue, iid, _ts(ts_ns), ts_ns, ts_exchange or None, _scaled(price, pp), _scaled(qty, sp),
                           _scaled(rec[12], pp), _scaled(rec[13], sp), bool(flags & EventFlag.FROM_BOOK), pos,
                           ring_created_ns))
    return trades, quotes


def _exec_rows(records, positions, venue, table, ring_created_ns):
    rows = []
    names = records.dtype.names
    for rec, pos in zip(records.tolist(), positions.tolist()):
        r = dict(zip(names, rec))
        inst = table.get(r["instrument_id"]) if table is not None else None
        pp, sp = (inst.price_precision, inst.size_precision) if inst is not None else (0, 0)
        ts_ns = r["ts_pub"] or r["ts_exchange"]
        rows.append((venue, _ts(ts_ns), ts_ns, r["ts_exchange"] or None, pos, ring_created_ns, r["strategy_id"],
                     r["client_order_id"], r["venue_order_id"] or None, r["instrument_id"], r["status"],
                     r["reject_code"], r["side"], r["order_type"], _scaled(r["price"], pp), _scaled(r["qty"], sp),
                     _scaled(r["cum_qty"], sp), _scaled(r["leaves_qty"], sp), _scaled(r["last_price"], pp),
                     _scaled(r["last_qty"], sp), _scaled(r["fee"], 8), r["liquidity"], r["trade_id"] or None))
    return rows


def stream_rows(kind, records, positions, venue, table, ring_created_ns) -> dict[str, list]:
    """{table: rows} of a run of records of one stream."""
    if kind == "ticks":
        trades, quotes = _tick_rows(records, positions, venue, table, ring_created_ns)
        return {"trades": trades, "quotes": quotes}
    return {"exec_reports": _exec_rows(records, positions, venue, table, ring_created_ns)}


COLUMNS = {"trades": TRADE_COLUMNS, "quotes": QUOTE_COLUMNS, "exec_reports": EXEC_COLUMNS}
# binary COPY needs each column's type named
TYPES = {
    "trades": ["text", "int4", "timestamptz", "int8", "int8", "numeric", "numeric", "bool", "numeric", "int8", "int8"],
    "quotes": ["text", "int4", "timestamptz", "int8", "int8", "numeric", "numeric", "numeric", "numeric", "bool",
               "int8", "int8"],
    "exec_reports": ["text", "timestamptz", "int8", "int8", "int8", "int8", "int8", "numeric", "numeric", "int4",
                     "int2", "int4", "int2", "int2", "numeric", "numeric", "numeric", "numeric", "numeric",
                     "numeric", "numeric", "int2", "numeric"],
}


def _copy(cur, table_name, rows):
    if not rows:
        return
    with cur.copy(f"COPY {table_name} ({', '.join(COLUMNS[table_name])}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(TYPES[table_name])
        for row in rows:
            copy.write_row(row)


def _days(rows):
    return sorted({row[2].date() for row in rows})


def _instruments(conn, venue, table):
    with conn.transaction():
        for inst in table:
            conn.execute(
                "INSERT INTO instruments (venue, instrument_id, symbol, market, base, quote, price_precision, "
                "size_precision, tick_size, step_size, multiplier) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (venue, instrument_id) DO NOTHING",
                (venue, inst.instrument_id, inst.symbol, inst.market_type.name.lower(), inst.base, inst.quote,
                 inst.price_precision, inst.size_precision, _scaled(inst.tick_size, inst.price_precision),
                 _scaled(inst.step_size, inst.size_precision), inst.multiplier))


def ship(conn, directory, batch: int = BATCH, fail_after_batches: int | None = None,
         should_stop=None, rings: str | None = None) -> dict[str, int]:
    """Load every recorded stream under directory (of the stack `rings`, or all) from its
    watermark; {stream: records loaded}. conn: a psycopg connection in autocommit mode.
    should_stop(): checked between batches.
    fail_after_batches: tests' crash point (raises inside the transaction of that batch, after
    its rows were copied)."""
    loaded: dict[str, int] = {}
    batches = 0
    for recorded, kinds in sorted(recorded_rings(str(directory)).items()):
        if rings is not None and recorded != rings:
            continue
        for kind, path in sorted(kinds.items()):
            stream = f"{recorded}.{kind}"
            files = [f for f in journal_files(path) if f.count]
            if not files:
                continue
            mark = conn.execute("SELECT ring_created_ns, next_position FROM ship_watermarks WHERE stream = %s",
                                (stream,)).fetchone()
            loaded[stream] = 0
            table = None
            for f in files:
                table = f.instruments or table
                if table is not None and f is files[0]:
                    _instruments(conn, table.venue, table)
                if mark is not None and (f.ring_created_ns < mark[0]
                                         or (f.ring_created_ns == mark[0] and f.next_position <= mark[1])):
                    continue                                    # loaded already
                start = mark[1] if mark is not None and f.ring_created_ns == mark[0] else f.first_position
                start = max(start, f.first_position)
                venue = table.venue if table is not None else recorded
                records = f.records
                for at in range(start, f.next_position, batch):
                    if should_stop is not None and should_stop():
                        return loaded
                    end = min(at + batch, f.next_position)
                    chunk = np.asarray(records[at - f.first_position:end - f.first_position])
                    positions = np.arange(at, end, dtype=np.int64)
                    by_table = stream_rows(kind, chunk, positions, venue, table, f.ring_created_ns)
                    with conn.transaction(), conn.cursor() as cur:
                        for name in ("trades", "quotes"):
                            for day in _days(by_table.get(name, ())):
                                cur.execute("SELECT ttq_ensure_partitions(%s, %s, 1)", (name, day))
                        for name, rows in by_table.items():
                            _copy(cur, name, rows)
                        cur.execute(
                            "INSERT INTO ship_watermarks (stream, ring_created_ns, next_position, file, updated_at) "
                            "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (stream) DO UPDATE SET ring_created_ns = "
                            "excluded.ring_created_ns, next_position = excluded.next_position, file = excluded.file, "
                            "updated_at = now()", (stream, f.ring_created_ns, end, f.path))
                        batches += 1
                        if fail_after_batches is not None and batches > fail_after_batches:
                            raise RuntimeError(f"test crash in batch {batches} of {stream}")
                    mark = (f.ring_created_ns, end)
                    loaded[stream] += end - at
    return loaded
