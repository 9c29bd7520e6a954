"""The journal shipper's core: recorded journal files and the gateway's order journal (never the
rings) into PostgreSQL.

Streams, each with a watermark in `ship_watermarks` (the source's run and the next position to
load) committed in the same transaction as its rows, so a crash or a database outage anywhere
neither loses nor duplicates a row: what was not committed is loaded again from the watermark.

    <rings>.ticks      tick journal -> trades, quotes (partitions for their UTC days made ahead)
    <rings>.book       tick journal -> book_snapshots: the books rebuilt from the book events, the
                       top `book_depth` levels at the end of a venue message, at most one per
                       instrument per `book_interval_ms` (0: every message); the books themselves
                       are the stream's state, committed with its watermark
    <rings>.exec       exec journal -> exec_reports
    <rings>.positions  exec journal -> position_snapshots: one per fill, per strategy and
                       instrument (core/portfolio.py's average cost, fees at 8 decimals); the
                       portfolios are the stream's state
    <rings>.orders     the gateway's order journal -> orders (new, amend, cancel, the gateway's
                       own rejects) and audit_log (each gateway start, kill switch change and
                       risk reload); position = byte offset
    <rings>.runs       the strategies' run records (a directory of JSON files) -> strategy_runs,
                       upserted; the state is each file's size, mtime and sha256 (exactly once
                       by content: a record rewritten at its run's stop updates its row)

The instrument table recorded in the files' headers goes to `instruments`. Prices and quantities
are exact: the raw fixed-point integer over 10**precision as numeric. The rows of the busy
tables are sent as one PGCOPY binary payload built with numpy (no Python object per row):
numeric in its binary form (base-10000 digits, a fixed count per column and batch, which the
server strips), timestamptz as microseconds since 2000-01-01.

The daemon around it is sidecars/db/daemon.py (`ttquant db ship VENUE`).
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import socket
import struct
import zlib
from decimal import Decimal

import numpy as np

from ttquant.core.gateway.order_journal import KILL, RISK_RELOAD, entry_size_ok
from ttquant.core.journal.journal_file import journal_files
from ttquant.core.journal.replay import recorded_rings
from ttquant.core.records import (
    ORDER_DTYPE,
    EventFlag,
    EventKind,
    OrderStatus,
    ReportFlag,
)

__all__ = ["ship", "ship_orders", "ship_runs", "run_row", "maintain_partitions", "copy_payload", "stream_rows",
           "TICK_TABLES", "BOOK_DEPTH", "BOOK_INTERVAL_MS"]

log = logging.getLogger("ttquant.db.ship")
BATCH = 100_000                 # records per transaction
BOOK_DEPTH = 20                 # the book board's default depth (core/book/book_board.pyx)
BOOK_INTERVAL_MS = 1000
FEE_PRECISION = 8               # ExecReport.fee (the gateway's Portfolio(fee_precision=8))
TICK_TABLES = ("trades", "quotes", "book_snapshots")
UTC = datetime.UTC

# -- PGCOPY binary, built with numpy ----------------------------------------------------------
#   header: signature, flags (i32), extension length (i32); trailer: -1 (i16)
#   row:    field count (i16), then per field its length (i32, -1 for NULL) and big-endian bytes
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
EPOCH_2000_US = 946_684_800_000_000     # timestamptz counts microseconds from 2000-01-01 UTC
NUMERIC_NEG = 0x4000
_POW10 = np.array([10 ** k for k in range(20)], dtype=np.uint64)
COPY_CHUNK = 32_768             # rows per write: the next chunk is built while the server parses this one


def _numeric(raw, scale) -> np.ndarray:
    """NUMERIC binary of raw / 10**scale, one row per value: (n, 4 + ndigits) int16 of ndigits,
    weight, sign, dscale, then base-10000 digits, most significant first. raw: int64 or uint64;
    scale: an int or one per value (0..18). Every row has the same number of digits (leading
    and trailing zero digits are allowed; the server strips them), so a column is fixed width."""
    raw = np.asarray(raw)
    n = len(raw)
    if raw.dtype == np.uint64:
        neg, mag = np.zeros(n, bool), raw
    else:
        raw = raw.astype(np.int64, copy=False)
        neg = raw < 0
        mag = np.abs(raw).view(np.uint64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.int64), (n,))
    groups = (scale + 3) // 4                           # fraction digits (base 10000) per row
    fg = int(groups.max()) if n else 0
    top = int(mag.max()) if n else 0
    ig = 1                                              # integer digits: enough for the largest
    while top >= 10_000 ** ig:
        ig += 1
    nd = ig + fg
    out = np.zeros((n, 4 + nd), np.int16)
    out[:, 0] = nd
    out[:, 1] = ig - 1
    out[:, 2] = np.where(neg & (mag != 0), NUMERIC_NEG, 0)
    out[:, 3] = scale
    if n and (scale == scale[0]).all():             # one scale: whole columns, no per-row index
        s0 = int(scale[0])
        g0 = (s0 + 3) // 4
        pad = g0 * 4 - s0
        low = int(_POW10[4 - pad])
        col = 4 + ig + g0 - 1
        small = top < 2 ** 63                           # int64 arithmetic is the faster
        v = mag.astype(np.int64) if small else mag
        base = 10_000 if small else np.uint64(10_000)
        out[:, col] = (v % low) * 10 ** pad if small else (v % np.uint64(low)) * np.uint64(10 ** pad)
        v = v // (low if small else np.uint64(low))
        for c in range(col - 1, 3, -1):
            out[:, c] = v % base
            v = v // base
        return out
    rows = np.arange(n)
    pad = groups * 4 - scale                            # zeros that align the point to a digit
    # the last (least significant) digit holds 4 - pad decimal digits of the value, shifted up
    low = _POW10[4 - pad]
    col = 4 + ig + groups - 1                           # that digit's column, per row
    out[rows, col] = ((mag % low) * _POW10[pad]).astype(np.int16)
    rest = mag // low
    for _ in range(1, nd):
        col = col - 1
        live = col >= 4
        if not live.any():
            break
        out[rows[live], col[live]] = (rest[live] % np.uint64(10_000)).astype(np.int16)
        rest = rest // np.uint64(10_000)
    return out


def _column(kind, values, n):
    """(numpy field format, per-row data or None for a constant, width in bytes, constant)."""
    if kind == "text":
        b = values.encode()
        return f"S{len(b)}", None, len(b), b
    if kind == "ts":                                    # ns since the epoch -> timestamptz
        return ">i8", np.asarray(values, np.int64) // 1000 - EPOCH_2000_US, 8, None
    if kind in ("int2", "int4", "int8"):
        fmt = {"int2": ">i2", "int4": ">i4", "int8": ">i8"}[kind]
        return fmt, np.asarray(values), int(fmt[2]), None
    if kind == "bool":
        return "u1", np.asarray(values, bool), 1, None
    if kind == "u64":                                   # u64 ids as numeric(20)
        kind, values = ("numeric", 0), (np.asarray(values, np.uint64), None)
    if isinstance(kind, tuple) and kind[0] == "numeric":
        raw, scale = values
        parts = _numeric(raw, kind[1] if scale is None else scale)
        return (">i2", (parts.shape[1],)), parts, 2 * parts.shape[1], None
    raise ValueError(f"no binary COPY encoding for {kind!r}")


def copy_payload(n: int, columns) -> list[bytes]:
    """The PGCOPY binary body (no header, no trailer) of n rows, as chunks of bytes.
    columns: (kind, values, null) each: kind "text" (values: one str for every row), "int2",
    "int4", "int8", "bool", "ts" (ns), "u64" (numeric(20)), ("numeric", scale) with values
    (raw, per-row scale or None); null: a bool mask of rows that are NULL, or None."""
    cols = [_column(kind, values, n) for kind, values, _ in columns]
    code = np.zeros(n, np.int64)
    for i, (_, _, null) in enumerate(columns):
        if null is not None:
            code |= np.asarray(null, bool).astype(np.int64) << i
    chunks = []
    patterns = np.unique(code) if n else []
    for pattern in patterns:
        # rows of one NULL pattern are one fixed-width structured array (their order is free)
        idx = None if len(patterns) == 1 else np.flatnonzero(code == pattern)
        nulls = [bool(pattern >> i & 1) for i in range(len(cols))]
        fields = [("nf", ">i2")]
        for i, (fmt, _, _, _) in enumerate(cols):
            fields.append((f"l{i}", ">i4"))
            if not nulls[i]:
                fields.append((f"d{i}",) + (fmt if isinstance(fmt, tuple) else (fmt,)))
        dtype = np.dtype(fields)
        m = n if idx is None else len(idx)
        for at in range(0, m, COPY_CHUNK):
            end = min(at + COPY_CHUNK, m)
            sel = slice(at, end) if idx is None else idx[at:end]
            rec = np.empty(end - at, dtype)
            rec["nf"] = len(cols)
            for i, (_, data, width, const) in enumerate(cols):
                rec[f"l{i}"] = -1 if nulls[i] else width
                if nulls[i]:
                    continue
                rec[f"d{i}"] = const if data is None else data[sel]
            chunks.append(rec.tobytes())
    return chunks


def _copy_fast(cur, table, names, n, columns):
    if not n:
        return
    from psycopg.copy import QueuedLibpqWriter
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)",
                  writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(COPY_HEADER)
        for chunk in copy_payload(n, columns):
            copy.write(chunk)
        copy.write(COPY_TRAILER)


def _copy_rows(cur, table, names, types, rows):
    """Row by row (psycopg's own binary encoding): for the few rows of arrays and json."""
    if not rows:
        return
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


# -- rows of each stream ----------------------------------------------------------------------

def _dec(raw: int, precision: int) -> Decimal:
    return Decimal(int(raw)).scaleb(-precision)


def _scales(table, iids):
    """(price precision, size precision, known) per record from the instrument table."""
    pp = np.zeros(len(iids), np.int64)
    sp = np.zeros(len(iids), np.int64)
    known = np.zeros(len(iids), bool)
    for iid in np.unique(iids):
        inst = table.get(int(iid)) if table is not None else None
        if inst is None:
            continue
        at = iids == iid
        pp[at], sp[at], known[at] = inst.price_precision, inst.size_precision, True
    return pp, sp, known


def _event_ts(records):
    """A tick's time: when it was received, else the exchange's, else the publish time."""
    ts = records["ts_recv"]
    ts = np.where(ts != 0, ts, records["ts_exchange"])
    return np.where(ts != 0, ts, records["ts_pub"])


class Batch:
    """Rows for one table, column by column: names and copy_payload's (kind, values, null)."""

    def __init__(self, table, n, columns, days=None):
        self.table, self.n, self.columns = table, n, columns
        self.names = [c[0] for c in columns]
        self.days = days          # ns times of the rows, for the partitions they need

    def copy(self, cur):
        _copy_fast(cur, self.table, self.names, self.n, [c[1:] for c in self.columns])


def _tick_batches(records, positions, venue, table, ring_created_ns, only=("trades", "quotes")):
    kind = records["kind"]
    iids = records["instrument_id"]
    pp, sp, known = _scales(table, iids)            # not in the recorded table: nothing to scale it by
    ts = _event_ts(records)
    out = []
    fields = ("instrument_id", "ts_exchange", "price", "qty", "flags", "first_trade_id", "ask_price", "ask_qty")
    for name, want in (("trades", EventKind.TRADE), ("quotes", EventKind.BBO)):
        if name not in only:
            continue
        sel = np.flatnonzero((kind == want) & known)
        # field by field: indexing the records (overlapping fields, a union) copies slowly
        r = {f: records[f][sel] for f in fields}
        t = ts[sel]
        tx = r["ts_exchange"]
        common = [("venue", "text", venue, None), ("instrument_id", "int4", r["instrument_id"], None),
                  ("ts", "ts", t, None), ("ts_ns", "int8", t, None), ("ts_exchange_ns", "int8", tx, tx == 0)]
        tail = [("seq", "int8", positions[sel], None),
                ("ring_created_ns", "int8", np.full(len(sel), ring_created_ns, np.int64), None)]
        p, s = pp[sel], sp[sel]
        if name == "trades":
            tid = r["first_trade_id"]
            cols = common + [("price", ("numeric", 0), (r["price"], p), None),
                             ("qty", ("numeric", 0), (r["qty"], s), None),
                             ("buyer_aggressor", "bool", (r["flags"] & EventFlag.BUYER_AGGRESSOR) != 0, None),
                             ("trade_id", "u64", tid, tid == 0)] + tail
        else:
            cols = common + [("bid_price", ("numeric", 0), (r["price"], p), None),
                             ("bid_qty", ("numeric", 0), (r["qty"], s), None),
                             ("ask_price", ("numeric", 0), (r["ask_price"], p), None),
                             ("ask_qty", ("numeric", 0), (r["ask_qty"], s), None),
                             ("from_book", "bool", (r["flags"] & EventFlag.FROM_BOOK) != 0, None)] + tail
        out.append(Batch(name, len(sel), cols, days=t))
    return out


def _exec_batches(records, positions, venue, table, ring_created_ns):
    r = {f: records[f] for f in records.dtype.names}
    pp, sp, _ = _scales(table, r["instrument_id"])     # unknown instrument: raw units (scale 0)
    ts = np.where(r["ts_pub"] != 0, r["ts_pub"], r["ts_exchange"])
    n = len(records)
    vid, tid, tx = r["venue_order_id"], r["trade_id"], r["ts_exchange"]
    cols = [("venue", "text", venue, None), ("ts", "ts", ts, None), ("ts_ns", "int8", ts, None),
            ("ts_exchange_ns", "int8", tx, tx == 0), ("seq", "int8", positions, None),
            ("ring_created_ns", "int8", np.full(n, ring_created_ns, np.int64), None),
            ("strategy_id", "int8", r["strategy_id"].astype(np.int64), None),
            ("client_order_id", "u64", r["client_order_id"], None), ("venue_order_id", "u64", vid, vid == 0),
            ("instrument_id", "int4", r["instrument_id"].astype(np.int32), None),
            ("status", "int2", r["status"], None), ("reject_code", "int4", r["reject_code"], None),
            ("side", "int2", r["side"], None), ("order_type", "int2", r["order_type"], None),
            ("price", ("numeric", 0), (r["price"], pp), None), ("qty", ("numeric", 0), (r["qty"], sp), None),
            ("cum_qty", ("numeric", 0), (r["cum_qty"], sp), None),
            ("leaves_qty", ("numeric", 0), (r["leaves_qty"], sp), None),
            ("last_price", ("numeric", 0), (r["last_price"], pp), None),
            ("last_qty", ("numeric", 0), (r["last_qty"], sp), None),
            ("fee", ("numeric", FEE_PRECISION), (r["fee"], None), None),
            ("liquidity", "int2", r["liquidity"], None), ("trade_id", "u64", tid, tid == 0)]
    return [Batch("exec_reports", n, cols)]


def stream_rows(name, records, positions, venue, table, ring_created_ns) -> dict[str, Batch]:
    """{table: Batch} of a run of records of the stream `name` (trades, quotes: of the tick
    journal; exec: of the exec journal)."""
    positions = np.asarray(positions, np.int64)
    if name == "exec":
        batches = _exec_batches(records, positions, venue, table, ring_created_ns)
    else:
        batches = _tick_batches(records, positions, venue, table, ring_created_ns, only=(name,))
    return {b.table: b for b in batches}


# -- derived streams with state: books, positions ---------------------------------------------

class BookStream:
    """The books rebuilt from the tick journal's book events, as md keeps them: a BOOK_RESET
    empties an instrument's book and marks it synced (its whole book follows), a gap in the
    positions or a new ring run leaves every book unsynced until its next reset; a synced
    book's top goes out at the end of a venue message (LAST_IN_BATCH), at most once per
    interval per instrument."""
    tables = ("book_snapshots",)
    NAMES = ("venue", "instrument_id", "ts", "ts_ns", "update_id", "bid_prices", "bid_qtys", "ask_prices",
             "ask_qtys")
    TYPES = ("text", "int4", "timestamptz", "int8", "numeric", "numeric[]", "numeric[]", "numeric[]", "numeric[]")

    def __init__(self, state, depth=BOOK_DEPTH, interval_ms=BOOK_INTERVAL_MS):
        from ttquant.core.book.order_book import OrderBook
        self.OrderBook = OrderBook
        self.depth, self.interval_ns = depth, interval_ms * 1_000_000
        self.books, self.last = {}, {}
        for iid, (bids, asks, last) in (state or {}).get("books", {}).items():
            book = self.books[int(iid)] = OrderBook(int(iid))
            book.load(np.array(bids, np.int64).reshape(-1, 2), np.array(asks, np.int64).reshape(-1, 2))
            self.last[int(iid)] = last

    def state(self):
        return {"books": {str(iid): [b.levels(0).tolist(), b.levels(1).tolist(), self.last.get(iid, 0)]
                          for iid, b in self.books.items()}}

    def unsync(self):
        self.books.clear()
        self.last.clear()

    def rows(self, records, positions, venue, table, ring_created_ns):
        kind = records["kind"]
        sel = np.flatnonzero((kind == EventKind.BOOK_LEVEL) | (kind == EventKind.BOOK_RESET))
        r = records[sel]
        ts = _event_ts(r).tolist()
        out = []
        books, last, book_cls = self.books, self.last, self.OrderBook
        for k, (kd, flags, iid, price, qty, seq) in enumerate(zip(
                r["kind"].tolist(), r["flags"].tolist(), r["instrument_id"].tolist(), r["price"].tolist(),
                r["qty"].tolist(), r["seq"].tolist())):
            if kd == EventKind.BOOK_RESET:
                books[iid] = book_cls(iid)
                last[iid] = 0
                continue
            book = books.get(iid)
            if book is None:
                continue                # not synced: wait for its reset
            book.set(1 if flags & EventFlag.ASK_SIDE else 0, price, qty)
            if flags & EventFlag.LAST_IN_BATCH and ts[k] >= last[iid] + self.interval_ns \
                    and table is not None and table.get(iid) is not None:
                last[iid] = ts[k] if self.interval_ns == 0 else ts[k] - ts[k] % self.interval_ns
                inst = table.get(iid)
                bids, asks = book.top(self.depth)
                pp, sp = inst.price_precision, inst.size_precision
                out.append((venue, iid, _utc(ts[k]), ts[k], seq,
                            [_dec(p, pp) for p in bids[:, 0].tolist()], [_dec(q, sp) for q in bids[:, 1].tolist()],
                            [_dec(p, pp) for p in asks[:, 0].tolist()], [_dec(q, sp) for q in asks[:, 1].tolist()]))
        return {"book_snapshots": out}


class PositionStream:
    """Positions per strategy and instrument from the exec journal's fills (a report with a
    last quantity that is not a restatement), one snapshot per fill, by core/portfolio.py."""
    tables = ("position_snapshots",)
    NAMES = ("venue", "strategy_id", "instrument_id", "ts", "ts_ns", "seq", "ring_created_ns", "qty", "cost",
             "realised", "fees", "fills")
    TYPES = ("text", "int8", "int4", "timestamptz", "int8", "int8", "int8", "numeric", "numeric", "numeric",
             "numeric", "int8")
    FILLED = (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED)

    def __init__(self, state):
        from ttquant.core.portfolio import Portfolio
        self.Portfolio = Portfolio
        self.saved = {(int(sid), int(iid)): v for sid, per in (state or {}).get("positions", {}).items()
                      for iid, v in per.items()}
        self.portfolios = {}

    def _portfolio(self, sid, inst):
        pf = self.portfolios.get(sid)
        if pf is None:
            pf = self.portfolios[sid] = self.Portfolio(fee_precision=FEE_PRECISION)
        saved = self.saved.pop((sid, inst.instrument_id), None)
        if saved is not None:
            pf.restore(inst, *saved)
        return pf

    def state(self):
        out = {}
        for (sid, iid), v in self.saved.items():
            out.setdefault(str(sid), {})[str(iid)] = v
        for sid, pf in self.portfolios.items():
            for p in pf.positions():
                out.setdefault(str(sid), {})[str(p.instrument_id)] = [p.qty_raw, p.cost_raw, p.realised_raw,
                                                                       p.fees_raw, p.fills]
        return {"positions": out}

    def unsync(self):
        pass                            # positions outlive a ring run: the gateway keeps them too

    def rows(self, records, positions, venue, table, ring_created_ns):
        r = records
        fill = (r["last_qty"] > 0) & np.isin(r["status"], self.FILLED) & ((r["flags"] & ReportFlag.RESTATED) == 0)
        out = []
        for k in np.flatnonzero(fill).tolist():
            iid, sid = int(r["instrument_id"][k]), int(r["strategy_id"][k])
            inst = table.get(iid) if table is not None else None
            if inst is None:
                continue
            try:
                pos = self._portfolio(sid, inst).on_fill(inst, int(r["side"][k]), int(r["last_price"][k]),
                                                         int(r["last_qty"][k]), int(r["fee"][k]))
            except ValueError as exc:   # an inverse contract: its PnL is not in quote currency
                log.warning("position of strategy %d not kept: %s", sid, exc)
                continue
            ts = int(r["ts_pub"][k]) or int(r["ts_exchange"][k])
            pnl = pos.pnl_precision
            out.append((venue, sid, iid, _utc(ts), ts, int(positions[k]), ring_created_ns,
                        _dec(pos.qty_raw, pos.size_precision), _dec(pos.cost_raw, pnl), _dec(pos.realised_raw, pnl),
                        _dec(pos.fees_raw, pnl), pos.fills))
        return {"position_snapshots": out}


def _utc(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(microsecond=(ns // 1000) % 1_000_000)


# -- the loop ---------------------------------------------------------------------------------

def _instruments(conn, venue, table):
    with conn.transaction():
        for inst in table:
            conn.execute(
                "INSERT INTO instruments (venue, instrument_id, symbol, market, base, quote, price_precision, "
                "size_precision, tick_size, step_size, multiplier) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (venue, instrument_id) DO NOTHING",
                (venue, inst.instrument_id, inst.symbol, inst.market_type.name.lower(), inst.base, inst.quote,
                 inst.price_precision, inst.size_precision, _dec(inst.tick_size, inst.price_precision),
                 _dec(inst.step_size, inst.size_precision), inst.multiplier))


def _ensure_days(cur, name, ns_times):
    if ns_times is None or not len(ns_times):
        return
    days = np.unique(np.asarray(ns_times, np.int64) // 86_400_000_000_000)
    for day in days.tolist():
        cur.execute("SELECT ttq_ensure_partitions(%s, %s, 1)", (name, datetime.date(1970, 1, 1)
                                                                 + datetime.timedelta(days=day)))


def _mark(cur, stream, run, end, path, state):
    cur.execute(
        "INSERT INTO ship_watermarks (stream, ring_created_ns, next_position, file, state, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (stream) DO UPDATE SET ring_created_ns = "
        "excluded.ring_created_ns, next_position = excluded.next_position, file = excluded.file, "
        "state = excluded.state, updated_at = now()",
        (stream, run, end, path, None if state is None else json.dumps(state)))


class _Crash(RuntimeError):
    pass


def _watermark(conn, stream):
    return conn.execute("SELECT ring_created_ns, next_position, state FROM ship_watermarks WHERE stream = %s",
                        (stream,)).fetchone()


STREAMS = ("exec", "positions", "trades", "quotes", "book")


def ship(conn, directory, batch: int = BATCH, fail_after_batches: int | None = None,
         should_stop=None, rings: str | None = None, book_depth: int = BOOK_DEPTH,
         book_interval_ms: int = BOOK_INTERVAL_MS, streams=None, progress=None, more_conns=()) -> dict[str, int]:
    """Load every recorded stream under directory (of the stack `rings`, or all) from its
    watermark; {stream: records loaded}. conn: a psycopg connection in autocommit mode.
    should_stop(): checked between batches. streams: the names to ship (STREAMS; default
    all). more_conns: connections for streams shipped at the same time as conn's (each stream
    on one connection, its own transactions: the server parses each COPY on its own core).
    progress(stream, records, lag ns): after each commit (lag: the newest record in the
    stream's files less the last one loaded), and (stream, 0, 0) when a stream has loaded all
    its files hold.
    fail_after_batches: tests' crash point (raises inside the transaction of that batch, after
    its rows were copied)."""
    loaded: dict[str, int] = {}
    counter = [0]
    jobs = []
    for recorded, kinds in sorted(recorded_rings(str(directory)).items()):
        if rings is not None and recorded != rings:
            continue
        for name in STREAMS:
            kind = "exec" if name in ("exec", "positions") else "ticks"
            if kind not in kinds or (streams is not None and name not in streams):
                continue
            derived = {"positions": PositionStream,
                       "book": lambda s: BookStream(s, book_depth, book_interval_ms)}.get(name)
            jobs.append((f"{recorded}.{name}", name, kinds[kind], recorded, derived))

    def run(c, job):
        stream, name, path, recorded, derived = job
        return stream, _ship_stream(c, stream, name, path, recorded, derived, batch, fail_after_batches,
                                    should_stop, counter, progress)
    if not more_conns:
        for job in jobs:
            stream, n = run(conn, job)
            if n is not None:
                loaded[stream] = n
            if should_stop is not None and should_stop():
                break
        return loaded
    import queue
    import threading
    todo = queue.SimpleQueue()
    for job in jobs:
        todo.put(job)
    errors = []

    def worker(c):
        while not errors:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                stream, n = run(c, job)
            except BaseException as exc:     # the first failure stops the others between batches
                errors.append(exc)
                return
            if n is not None:
                loaded[stream] = n
    threads = [threading.Thread(target=worker, args=(c,), name=f"ship-{k}") for k, c in enumerate(more_conns)]
    for t in threads:
        t.start()
    worker(conn)
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return loaded


def _ship_stream(conn, stream, name, path, recorded, derived, batch, fail_after_batches, should_stop, counter,
                 progress):
    files = [f for f in journal_files(path) if f.count]
    if not files:
        return None
    newest = int(files[-1].records["ts_pub"][-1])
    mark = _watermark(conn, stream)
    state = derived(mark[2] if mark is not None else None) if derived is not None else None
    loaded = 0
    table = None
    for f in files:
        table = f.instruments or table
        if table is not None and f is files[0]:
            _instruments(conn, table.venue, table)
        if mark is not None and (f.ring_created_ns < mark[0]
                                 or (f.ring_created_ns == mark[0] and f.next_position <= mark[1])):
            continue                                    # loaded already
        same_run = mark is not None and f.ring_created_ns == mark[0]
        start = max(mark[1] if same_run else f.first_position, f.first_position)
        if state is not None and (not same_run or start != mark[1]):
            state.unsync()                              # a new ring run, or a gap: what was known is stale
        venue = table.venue if table is not None else recorded
        records = f.records
        for at in range(start, f.next_position, batch):
            if should_stop is not None and should_stop():
                return loaded
            end = min(at + batch, f.next_position)
            chunk = records[at - f.first_position:end - f.first_position]
            positions = np.arange(at, end, dtype=np.int64)
            with conn.transaction(), conn.cursor() as cur:
                if state is None:
                    for b in stream_rows(name, chunk, positions, venue, table, f.ring_created_ns).values():
                        if b.table in TICK_TABLES:
                            _ensure_days(cur, b.table, b.days)
                        b.copy(cur)
                else:
                    for name, rows in state.rows(chunk, positions, venue, table, f.ring_created_ns).items():
                        if name in TICK_TABLES:
                            _ensure_days(cur, name, [row[3] for row in rows])
                        _copy_rows(cur, name, state.NAMES, state.TYPES, rows)
                _mark(cur, stream, f.ring_created_ns, end, f.path, state.state() if state is not None else None)
                counter[0] += 1
                if fail_after_batches is not None and counter[0] > fail_after_batches:
                    raise _Crash(f"test crash in batch {counter[0]} of {stream}")
            mark = (f.ring_created_ns, end, None)
            loaded += end - at
            if progress is not None:
                progress(stream, end - at, max(newest - int(chunk["ts_pub"][-1]), 0))
    if progress is not None:
        progress(stream, 0, 0)                          # caught up with what the files hold
    return loaded


# -- the gateway's order journal --------------------------------------------------------------

# core/gateway/order_journal.py's layout (read here without its lock: the gateway holds it)
_OJ_HEADER = struct.Struct("<8sI32sq12x")
_OJ_ENTRY = struct.Struct("<HHI")
_OJ_ORDER, _OJ_CANCEL, _OJ_REJECT, _OJ_REPORT, _OJ_MARK = 1, 2, 3, 4, 5
ORDER_NAMES = ("venue", "strategy_id", "client_order_id", "ts", "ts_ns", "instrument_id", "action", "side",
               "order_type", "price", "qty", "reduce_only", "target_order_id", "reject_code", "journal_created_ns",
               "journal_offset")


def _order_entries(path, offset_for):
    """(header created ns, venue, [(kind, payload, offset, end)]) of the whole entries from
    offset_for(created ns) (0: the first); a torn or unfinished last entry is left for the
    next look."""
    with open(path, "rb") as f:
        head = f.read(_OJ_HEADER.size)
        if len(head) < _OJ_HEADER.size or head[:8] != b"TTQORDJ1":
            return None, None, []
        _, _, venue, created = _OJ_HEADER.unpack(head)
        at = max(offset_for(created), _OJ_HEADER.size)
        f.seek(at)
        data = f.read()
    out, k = [], 0
    while k + _OJ_ENTRY.size <= len(data):
        kind, size, crc = _OJ_ENTRY.unpack_from(data, k)
        payload = data[k + _OJ_ENTRY.size:k + _OJ_ENTRY.size + size]
        if not entry_size_ok(kind, size) or len(payload) != size \
                or zlib.crc32(payload, zlib.crc32(struct.pack("<HH", kind, size))) != crc:
            break
        end = k + _OJ_ENTRY.size + size
        out.append((kind, payload, at + k, at + end))
        k = end
    return created, venue.rstrip(b"\0").decode(), out


def ship_orders(conn, path, stream: str, batch: int = 20_000, fail_after_batches: int | None = None,
                progress=None) -> int:
    """The gateway's order journal at `path` from its watermark (stream, e.g. binance.orders):
    orders to `orders`; each gateway start (MARK), kill switch change (KILL) and risk reload
    (RISK_RELOAD) to `audit_log`; returns the entries loaded."""
    path = str(path)
    if not os.path.exists(path):
        return 0
    mark = _watermark(conn, stream)
    created, venue, entries = _order_entries(path, lambda created: mark[1] if mark is not None
                                             and mark[0] == created else 0)
    if created is None:
        return 0
    table = None
    loaded = 0
    host = socket.gethostname()
    for i in range(0, len(entries), batch):
        part = entries[i:i + batch]
        orders, codes, offsets, audit = bytearray(), [], [], []
        for kind, payload, at, _ in part:
            if kind in (_OJ_ORDER, _OJ_CANCEL, _OJ_REJECT):
                orders += payload[:ORDER_DTYPE.itemsize]
                codes.append(struct.unpack_from("<H", payload, ORDER_DTYPE.itemsize)[0] if kind == _OJ_REJECT else 0)
                offsets.append(at)
            elif kind == _OJ_MARK:
                ts = struct.unpack("<q", payload)[0]
                audit.append((_utc(ts), "gateway", host, venue, "gateway_start", {"journal": path, "offset": at}))
            elif kind in (KILL, RISK_RELOAD):
                audit.append(_audit_row(kind, payload, host, venue, path, at))
        o = np.frombuffer(bytes(orders), ORDER_DTYPE)
        if table is None:
            table = _table_for(conn, venue)
        pp, sp, _ = _scales(table, o["instrument_id"])
        codes = np.array(codes, np.int32)
        no_price = o["price"] == 0
        tgt = o["target_order_id"]
        cols = [("venue", "text", venue, None), ("strategy_id", "int8", o["strategy_id"].astype(np.int64), None),
                ("client_order_id", "u64", o["client_order_id"], None), ("ts", "ts", o["ts_created"], None),
                ("ts_ns", "int8", o["ts_created"], None), ("instrument_id", "int4", o["instrument_id"], None),
                ("action", "int2", o["action"], None), ("side", "int2", o["side"], None),
                ("order_type", "int2", o["order_type"], None), ("price", ("numeric", 0), (o["price"], pp), no_price),
                ("qty", ("numeric", 0), (o["qty"], sp), None), ("reduce_only", "bool", o["reduce_only"] != 0, None),
                ("target_order_id", "u64", tgt, tgt == 0), ("reject_code", "int4", codes, codes == 0),
                ("journal_created_ns", "int8", np.full(len(o), created, np.int64), None),
                ("journal_offset", "int8", np.array(offsets, np.int64), None)]
        with conn.transaction(), conn.cursor() as cur:
            _copy_fast(cur, "orders", ORDER_NAMES, len(o), [c[1:] for c in cols])
            _copy_rows(cur, "audit_log", ("ts", "who", "host", "venue", "action", "detail"),
                       ("timestamptz", "text", "text", "text", "text", "jsonb"), audit)
            _mark(cur, stream, created, part[-1][3], path, None)
            if fail_after_batches is not None and i // batch + 1 > fail_after_batches:
                raise _Crash(f"test crash in batch {i // batch + 1} of {stream}")
        loaded += len(part)
        if progress is not None:
            progress(stream, len(part), 0 if i + batch >= len(entries) else
                     max(_order_ts(entries[-1]) - _order_ts(part[-1]), 0))
    if progress is not None and not entries:
        progress(stream, 0, 0)
    return loaded


def _audit_row(kind, payload, host, venue, path, at):
    """An audit entry of the order journal as an audit_log row: the kill switch's who is the
    operator who set it (`ttquant kill`), with the reason in detail; a reload's is the gateway."""
    ts = struct.unpack_from("<q", payload)[0]
    detail = json.loads(payload[8:])
    if kind == KILL:
        who = detail.get("who") or "unknown"
        action = "kill_switch_engaged" if detail.get("engaged") else "kill_switch_released"
    else:
        who, action = "gateway", "risk_reload"
    return _utc(ts), who, host, venue, action, {**detail, "journal": path, "offset": at}


def _order_ts(entry):
    """An order journal entry's time: the order's ts_created, a report's ts_pub, a mark's ns."""
    kind, payload = entry[0], entry[1]
    if kind == _OJ_MARK:
        return struct.unpack("<q", payload)[0]
    if kind == _OJ_REPORT:
        return struct.unpack_from("<q", payload, 16)[0]
    return struct.unpack_from("<q", payload, 0)[0]


# -- the strategies' run records -------------------------------------------------------------

RUN_NAMES = ("venue", "strategy", "strategy_id", "class", "config", "code_version", "environment", "started_at",
             "stopped_at", "exit_code", "host", "venues", "started_ns", "stopped_ns", "code", "counts", "record_file")
_RUN_UPSERT = (f"INSERT INTO strategy_runs ({', '.join(RUN_NAMES)}) VALUES ({', '.join(['%s'] * len(RUN_NAMES))}) "
               "ON CONFLICT (strategy, started_at) DO UPDATE SET "
               + ", ".join(f"{n} = excluded.{n}" for n in RUN_NAMES if n not in ("strategy", "started_at")))


def run_row(record: dict, path: str) -> tuple:
    """strategy_runs' columns (RUN_NAMES) of a run record (strategies/runtime.py: RunRecord)."""
    from psycopg.types.json import Jsonb
    env, code = record["environment"], record["code"] or {}
    sha = code.get("source_sha256")
    version = ", ".join(part for part in (f"ttquant {code['ttquant']}" if code.get("ttquant") else "",
                                          f"git {code['git']}" if code.get("git") else "",
                                          f"sha256 {sha[:16]}" if sha else "") if part) or "unknown"
    stopped = record.get("stopped_ns")
    return (",".join(env["venues"]), record["strategy"], int(record["strategy_id"]), record["class"],
            Jsonb(record["config"]), version, Jsonb(env), _utc(int(record["started_ns"])),
            None if stopped is None else _utc(int(stopped)), record.get("exit_code"), env.get("host", ""),
            Jsonb(env["venues"]), int(record["started_ns"]), stopped, Jsonb(code),
            None if record.get("counts") is None else Jsonb(record["counts"]), path)


def ship_runs(conn, directory, stream: str, rings: str | None = None, progress=None) -> int:
    """The run records in `directory` (`<name>.<started_ns>.json`) into strategy_runs, upserted
    on (strategy, started_at): a record rewritten at its run's stop updates the row its start
    made. Exactly once by content: the stream's watermark state holds each file's [size, mtime
    ns, sha256]; a file with the size and mtime it had is not read again, one read again with
    the same sha256 is not shipped again, and the rows commit with the state. Only the runs of
    strategies trading `rings` (None: every run); a file that is not a run record is said once
    and skipped. Returns the rows upserted."""
    directory = str(directory)
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return 0
    mark = _watermark(conn, stream)
    seen = dict(((mark[2] or {}) if mark is not None else {}).get("files", {}))
    changed, rows = {}, []
    for name in names:
        path = os.path.join(directory, name)
        try:
            with open(path, "rb") as f:       # renamed over, never written in place: this is one version
                st = os.fstat(f.fileno())
                old = seen.get(name)
                if old is not None and old[:2] == [st.st_size, st.st_mtime_ns]:
                    continue
                data = f.read()
        except FileNotFoundError:
            continue
        digest = hashlib.sha256(data).hexdigest()
        changed[name] = [st.st_size, st.st_mtime_ns, digest]
        if old is not None and old[2] == digest:
            continue
        try:
            record = json.loads(data)
            if rings is not None and rings not in record["environment"]["venues"].values():
                continue
            rows.append(run_row(record, path))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: not a run record (%s: %s); skipped", path, type(exc).__name__, exc)
    present = set(names)
    if not changed and set(seen) <= present:
        if progress is not None:
            progress(stream, 0, 0)
        return 0
    state = {n: v for n, v in {**seen, **changed}.items() if n in present}      # gone files are forgotten
    with conn.transaction(), conn.cursor() as cur:
        for row in rows:
            cur.execute(_RUN_UPSERT, row)
        _mark(cur, stream, 0, len(state), directory, {"files": state})
    if progress is not None:
        progress(stream, len(rows), 0)
    return len(rows)


class _Scales:
    __slots__ = ("price_precision", "size_precision")

    def __init__(self, pp, sp):
        self.price_precision, self.size_precision = pp, sp


def _table_for(conn, venue) -> dict:
    """{instrument id: its precisions} of the venue as the database has them (recorded from the
    journals' headers by the other streams)."""
    return {iid: _Scales(pp, sp) for iid, pp, sp in conn.execute(
        "SELECT instrument_id, price_precision, size_precision FROM instruments WHERE venue = %s", (venue,))}


# -- partitions -------------------------------------------------------------------------------

def maintain_partitions(conn, keep_days: int, today: datetime.date | None = None, ahead_days: int = 2) -> dict:
    """Day partitions of the tick tables made ahead (today and the next ahead_days - 1), the
    days before today given their B-tree by instrument and time, and those past keep_days
    dropped (0: kept); a no-op on TimescaleDB (its policies do it). Returns {table: (made,
    indexed, dropped)}."""
    today = today or datetime.datetime.now(UTC).date()
    out = {}
    for name in TICK_TABLES:
        made = conn.execute("SELECT ttq_ensure_partitions(%s, %s, %s)", (name, today, ahead_days)).fetchone()[0]
        indexed = conn.execute("SELECT ttq_index_partitions(%s, %s)", (name, today)).fetchone()[0]
        dropped = 0
        if keep_days:
            dropped = conn.execute("SELECT ttq_drop_partitions(%s, %s)", (name, keep_days)).fetchone()[0]
        out[name] = (made, indexed, dropped)
    return out
