"""`ttquant journal export DIR --format parquet|csv`: journal files as tables for research tools.

One file per recorded ring and instrument (<out>/<kind>.<SYMBOL>.<market>.parquet|csv), so every
price and quantity column is an exact decimal at that instrument's precision (Arrow decimal128:
the raw fixed-point integer with its scale; in CSV the same decimal as text), never a float.
Each field's metadata says what it is and at what scale; the file's metadata carries the
instrument as recorded. Times are UTC nanosecond timestamps; --from/--to select by ts_pub (the
order the rings had). Needs pyarrow (the `research` extra).
"""
from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from ttquant.core.instruments import MARKET_LABELS, MarketType
from ttquant.core.journal.journal_file import between, journal_files
from ttquant.core.journal.replay import recorded_rings
from ttquant.core.records import FUNDING_RATE_PRECISION, EventKind, Liquidity, OrderStatus, OrderType, Side

__all__ = ["export_journal", "ExportError", "FORMATS"]

FORMATS = ("parquet", "csv")
ACCOUNT_PRECISION = 8           # fees at 8 decimals of the quote asset (core/gateway/risk.pxd)


class ExportError(ValueError):
    """An export that cannot be made; says why."""


def _pa():
    try:
        import pyarrow
        import pyarrow.compute
        return pyarrow
    except ImportError:
        raise ExportError("journal export needs pyarrow: pip install 'ttquant[research]' (or pyarrow)") from None


def _decimal(pa, raw: np.ndarray, scale: int, valid: np.ndarray | None, what: str):
    """Exact decimals from raw fixed-point int64s: the 128-bit unscaled values are the raws."""
    raw = np.ascontiguousarray(raw, dtype=np.int64)
    words = np.empty((len(raw), 2), np.int64)
    words[:, 0], words[:, 1] = raw, raw >> 63              # little-endian two's complement
    arr = pa.Array.from_buffers(pa.decimal128(38, scale), len(raw), [None, pa.py_buffer(words)])
    if valid is not None:
        arr = pa.compute.if_else(pa.array(valid), arr, pa.scalar(None, arr.type))
    meta = {"ttquant": f"{what}: an exact decimal at scale {scale} (the recorded raw fixed-point value / 10**{scale})"}
    return arr, meta


def _ints(pa, values, valid=None, kind=None):
    arr = pa.array(values, type=kind) if kind is not None else pa.array(values)
    if valid is not None:
        arr = pa.compute.if_else(pa.array(valid), arr, pa.scalar(None, arr.type))
    return arr


def _times(pa, ns, valid=None):
    arr = pa.array(np.asarray(ns, dtype=np.int64)).cast(pa.timestamp("ns", tz="UTC"))
    if valid is not None:
        arr = pa.compute.if_else(pa.array(valid), arr, pa.scalar(None, arr.type))
    return arr


def _names(enum, values):
    names = {int(v): v.name for v in enum}
    return [names.get(int(v), str(int(v))) for v in values]


def _tick_columns(pa, r, inst):
    p, q = inst.price_precision, inst.size_precision
    kind = r["kind"]
    trade, bbo, book = kind == EventKind.TRADE, kind == EventKind.BBO, kind == EventKind.BOOK_LEVEL
    kline, mark = kind == EventKind.KLINE, kind == EventKind.MARK
    cols = {
        "ts_exchange": (_times(pa, r["ts_exchange"]), {"ttquant": "the venue's time of the event"}),
        "ts_recv": (_times(pa, r["ts_recv"]), {"ttquant": "when md received the first byte of it"}),
        "ts_pub": (_times(pa, r["ts_pub"]), {"ttquant": "when md published it in the tick ring"}),
        "seq": (_ints(pa, r["seq"]), {"ttquant": "trade id, book update id, kline open time (ms)"}),
        "kind": (pa.array(_names(EventKind, kind)), {"ttquant": "EventKind"}),
        "flags": (_ints(pa, r["flags"]), {"ttquant": "EventFlag bits (core/records.pyx)"}),
        "price": _decimal(pa, r["price"], p, None, "trade / best bid / level / close / mark price"),
        "qty": _decimal(pa, r["qty"], q, None, "trade / best bid / level (0 removes it) / volume"),
        "ask_price": _decimal(pa, r["ask_price"], p, bbo, "best ask (BBO only)"),
        "ask_qty": _decimal(pa, r["ask_qty"], q, bbo, "best ask quantity (BBO only)"),
        "first_trade_id": (_ints(pa, r["first_trade_id"], trade), {"ttquant": "trades only"}),
        "last_trade_id": (_ints(pa, r["last_trade_id"], trade), {"ttquant": "trades only"}),
        "first_update_id": (_ints(pa, r["first_update_id"], book), {"ttquant": "book levels only"}),
        "prev_update_id": (_ints(pa, r["prev_update_id"], book), {"ttquant": "book levels only"}),
        "open": _decimal(pa, r["open"], p, kline, "kline open"),
        "high": _decimal(pa, r["high"], p, kline, "kline high"),
        "low": _decimal(pa, r["low"], p, kline, "kline low"),
        "quote_volume": _decimal(pa, r["quote_volume"], p, kline, "kline quote volume"),
        "trade_count": (_ints(pa, r["trade_count"], kline), {"ttquant": "klines only"}),
        "open_time": (_times(pa, r["open_time_ns"], kline), {"ttquant": "klines only"}),
        "close_time": (_times(pa, r["close_time_ns"], kline), {"ttquant": "klines only"}),
        "index_price": _decimal(pa, r["index_price"], p, mark, "index price (marks only)"),
        "funding_rate": _decimal(pa, r["funding_rate"], FUNDING_RATE_PRECISION, mark, "funding rate (marks only)"),
        "next_funding": (_times(pa, r["next_funding_ns"], mark), {"ttquant": "marks only"}),
        "settle_price": _decimal(pa, r["settle_price"], p, mark, "estimated settle price (marks only)"),
    }
    return cols


def _exec_columns(pa, r, inst):
    p, q = inst.price_precision, inst.size_precision
    return {
        "ts_exchange": (_times(pa, r["ts_exchange"]), {"ttquant": "the venue's time of the report"}),
        "ts_pub": (_times(pa, r["ts_pub"]), {"ttquant": "when the gateway published it"}),
        "strategy_id": (_ints(pa, r["strategy_id"]), {}),
        "client_order_id": (_ints(pa, r["client_order_id"]), {}),
        "venue_order_id": (_ints(pa, r["venue_order_id"]), {}),
        "status": (pa.array(_names(OrderStatus, r["status"])), {"ttquant": "OrderStatus"}),
        "side": (pa.array(_names(Side, r["side"])), {}),
        "order_type": (pa.array(_names(OrderType, r["order_type"])), {}),
        "liquidity": (pa.array(_names(Liquidity, r["liquidity"])), {}),
        "reject_code": (_ints(pa, r["reject_code"]), {"ttquant": "RejectCode (0: none)"}),
        "price": _decimal(pa, r["price"], p, None, "the order's price"),
        "qty": _decimal(pa, r["qty"], q, None, "the order's quantity"),
        "last_price": _decimal(pa, r["last_price"], p, None, "this fill's price"),
        "last_qty": _decimal(pa, r["last_qty"], q, None, "this fill's quantity"),
        "cum_qty": _decimal(pa, r["cum_qty"], q, None, "filled so far"),
        "leaves_qty": _decimal(pa, r["leaves_qty"], q, None, "left to fill"),
        "fee": _decimal(pa, r["fee"], ACCOUNT_PRECISION, None, "this fill's fee in the quote asset"),
        "trade_id": (_ints(pa, r["trade_id"]), {"ttquant": "the venue's id of this fill (0: not a fill)"}),
        "flags": (_ints(pa, r["flags"]), {"ttquant": "ReportFlag bits"}),
    }


def export_journal(directory: str, out: str, fmt: str = "parquet", from_ns: int = 0, to_ns: int = 0) -> list[str]:
    """The files written, one per recorded ring and instrument."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: one of {', '.join(FORMATS)}, got {fmt!r}")
    pa = _pa()
    import pyarrow.csv
    import pyarrow.parquet
    if not os.path.isdir(directory):
        raise ExportError(f"{directory}: no such directory")
    recorded = recorded_rings(directory)
    if not recorded:
        raise ExportError(f"{directory}: no journal files here or below")
    os.makedirs(out, exist_ok=True)
    written = []
    for rings, kinds in sorted(recorded.items()):
        for kind, path in sorted(kinds.items()):
            files = [f for f in journal_files(path) if f.count]
            if not files:
                continue
            table = next((f.instruments for f in files if f.instruments is not None), None)
            records = np.concatenate([f.records.view(np.uint8).reshape(-1) for f in files]).view(files[0].dtype)
            records = between(records, records["ts_pub"], from_ns, to_ns)
            for iid in np.unique(records["instrument_id"]):
                inst = table.get(int(iid)) if table is not None else None
                if inst is None:
                    raise ExportError(f"{path}: instrument {iid} is not in the recorded instrument table")
                rows = records[records["instrument_id"] == iid]
                columns = (_tick_columns if kind == "ticks" else _exec_columns)(pa, rows, inst)
                fields = [pa.field(name, arr.type, metadata={k: v for k, v in meta.items()})
                          for name, (arr, meta) in columns.items()]
                label = f"{inst.symbol}.{MARKET_LABELS[MarketType(inst.market_type)]}"
                schema = pa.schema(fields, metadata={
                    "ttquant.rings": rings, "ttquant.kind": kind, "ttquant.journal": os.path.abspath(path),
                    "ttquant.instrument": json.dumps(dataclasses.asdict(inst), default=int)})
                result = pa.Table.from_arrays([arr for arr, _ in columns.values()], schema=schema)
                name = os.path.join(out, f"{kind}.{label}.{fmt}")
                if fmt == "parquet":
                    pyarrow.parquet.write_table(result, name)
                else:
                    pyarrow.csv.write_csv(result, name)
                written.append(name)
    return written
