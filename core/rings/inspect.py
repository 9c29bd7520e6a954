"""Read-only views of a stack for tools: `ttquant rings ls` / `inspect` / `rm`, metrics.

Nothing here takes a role, a lock or writes to a segment or file: it maps read-only and copies
what it shows. RecordDecoder turns records into what people read (enum names, symbols, decimal
prices, ISO times); file_infos reads the files beside the rings (instrument table, kill switch,
instance locks).
"""
from __future__ import annotations

import os
import time

import numpy as np

from ttquant.core.instruments import Instrument, InstrumentTable, InstrumentTableError, from_raw
from ttquant.core.records import (
    FUNDING_RATE_PRECISION,
    EventFlag,
    EventKind,
    Liquidity,
    OrderAction,
    OrderStatus,
    OrderType,
    RecordType,
    RejectCode,
    ReportFlag,
    Side,
    dtype_for,
)
from ttquant.core.rings.names import SHM_DIR, instruments_file, stack_entries
from ttquant.core.rings.segment import KIND_NAMES, KIND_SPSC, RingError, RingSegment, list_segments

__all__ = ["ring_info", "ring_infos", "last_records", "record_type_name", "RecordDecoder", "load_instruments",
           "rings_of", "iso_ns", "decimal_text", "file_infos", "stack_in_use", "ACCOUNT_PRECISION"]


def record_type_name(record_type: int) -> str:
    try:
        return RecordType(record_type).name.lower()
    except ValueError:
        return f"type{record_type}"


def _info(seg: RingSegment) -> dict:
    h = seg.header_fields()
    status = seg.status()
    info = {
        "name": seg.name,
        "kind": KIND_NAMES[h["ring_kind"]],
        "record": record_type_name(h["record_type"]),
        "record_size": h["record_size"],
        "capacity": h["capacity"],
        "writer_pid": h["writer_pid"],
        "writer_alive": status["writer_alive"],
        "epoch": h["writer_epoch"],
        "write_position": h["write_position"],
        "heartbeat_age_ns": status["heartbeat_age_ns"] if h["heartbeat_ns"] else None,
        "created_ns": h["created_ns"],
        "rejected_full": h["rejected_full"],
        "wakeups": h["wakeups"],
        "sleep_announced": h["sleep_announced"],
        "writer_fences": bool(h["writer_fences"]),
        "header": h,
    }
    if h["ring_kind"] == KIND_SPSC:
        info.update(read_position=h["read_position"], reader_pid=h["reader_pid"],
                    reader_alive=status["reader_alive"],
                    unread=h["write_position"] - h["read_position"])
    return info


def ring_info(name: str) -> dict:
    """Header, liveness and counters of one ring (RingError if it is not a usable ring)."""
    seg = RingSegment.attach(name, read_only=True)
    try:
        return _info(seg)
    finally:
        seg.close()


def ring_infos() -> list[dict]:
    """ring_info of every segment in /dev/shm; unusable ones carry an "error" instead."""
    infos = []
    for name in list_segments():
        try:
            infos.append(ring_info(name))
        except (RingError, OSError) as exc:
            infos.append({"name": name, "error": str(exc)})
    return infos


def last_records(name: str, count: int) -> tuple[dict, np.ndarray]:
    """(ring_info, the last `count` records still in the ring, oldest first, decoded)."""
    seg = RingSegment.attach(name, read_only=True)
    try:
        info = _info(seg)
        try:
            dtype = dtype_for(info["header"]["record_type"])
        except KeyError:
            dtype = np.dtype(f"V{info['record_size']}")
        end = info["write_position"]
        start = max(0, end - count, end - info["capacity"] + 1)
        rows, positions = [], []
        for position in range(start, end):
            raw = seg.read_at(position)
            if raw is not None:         # overwritten while we looked: leave it out
                rows.append(raw)
                positions.append(position)
        records = np.frombuffer(b"".join(rows), dtype=dtype) if rows else np.zeros(0, dtype)
        info["positions"] = positions
        return info, records
    finally:
        seg.close()


# -- records for people ------------------------------------------------------------------

ACCOUNT_PRECISION = 8       # fees at 8 decimals of the quote asset (core/gateway/risk.pxd)


def rings_of(name: str) -> str:
    """The stack a segment belongs to: /ttq.binance.ticks -> binance."""
    return name.lstrip("/").split(".")[1]


def load_instruments(rings: str) -> tuple[InstrumentTable | None, str | None]:
    """(the stack's instrument table, None), or (None, why there is none to use)."""
    try:
        return InstrumentTable.load(instruments_file(rings)), None
    except InstrumentTableError as exc:
        return None, str(exc)


def iso_ns(ns: int) -> str | None:
    """Nanoseconds since the epoch as ISO 8601 UTC with all nine digits; None for 0 (unset)."""
    if not ns:
        return None
    seconds, frac = divmod(int(ns), 1_000_000_000)
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{frac:09d}Z"
    except (OverflowError, OSError, ValueError):
        return None                 # not a time (garbage or a field used for something else)


def decimal_text(raw: int, precision: int) -> str:
    """raw / 10**precision in plain digits, exactly (never 1E-8)."""
    return format(from_raw(int(raw), precision), "f")


def _enum_name(enum_type, value):
    try:
        return enum_type(int(value)).name
    except ValueError:
        return None


def _flag_names(flag_type, value):
    value = int(value)
    names = [f.name for f in flag_type if f.value and value & f.value == f.value]
    rest = value & ~sum(f.value for f in flag_type)
    return names + ([hex(rest)] if rest else [])


class _Fields:
    """What one record shows: `text` pairs for the line, `decoded` additions for --json."""

    def __init__(self, rec, inst: Instrument | None, has_table: bool):
        self.rec, self.inst, self.has_table = rec, inst, has_table
        self.text: list[tuple[str, str]] = []
        self.decoded: dict = {}

    def raw(self, name, label=None):
        self.text.append((label or name, str(self.rec[name].item())))

    def enum(self, name, enum_type, with_code=False):
        value = int(self.rec[name])
        shown = _enum_name(enum_type, value)
        self.decoded[f"{name}_name"] = shown
        self.text.append((name, str(value) if shown is None else f"{shown}({value})" if with_code else shown))

    def flags(self, name, flag_type):
        names = _flag_names(flag_type, self.rec[name])
        self.decoded[f"{name}_names"] = names
        self.text.append((name, "|".join(names) or "-"))

    def instrument(self):
        iid = int(self.rec["instrument_id"])
        if self.inst is None:
            self.text.append(("instrument", f"{iid}(not in the table)" if self.has_table else str(iid)))
            return
        self.decoded.update(symbol=self.inst.symbol, instrument=self.inst.label)
        self.text.append(("instrument", self.inst.label))

    def fixed(self, name, precision, label=None):
        """A price or quantity at `precision` (an int: the instrument's is None without it)."""
        raw = int(self.rec[name])
        if precision is None:
            self.text.append((label or name, str(raw)))
            return
        shown = decimal_text(raw, precision)
        self.decoded[f"{name}_decimal"] = shown
        self.text.append((label or name, shown))

    def price(self, name, label=None):
        self.fixed(name, self.inst.price_precision if self.inst else None, label)

    def qty(self, name, label=None):
        self.fixed(name, self.inst.size_precision if self.inst else None, label)

    def pair(self, label, price, qty):
        """bid=61736.10 x 0.50000: a level's price and quantity in one field."""
        p = self.inst.price_precision if self.inst else None
        q = self.inst.size_precision if self.inst else None
        texts = []
        for name, precision in ((price, p), (qty, q)):
            raw = int(self.rec[name])
            if precision is None:
                texts.append(str(raw))
            else:
                texts.append(decimal_text(raw, precision))
                self.decoded[f"{name}_decimal"] = texts[-1]
        self.text.append((label, " x ".join(texts)))

    def time(self, name, label=None):
        ns = int(self.rec[name])
        shown = iso_ns(ns)
        self.decoded[f"{name}_iso"] = shown
        self.text.append((label or name, shown or ("-" if not ns else str(ns))))

    def line(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.text)


def _event_fields(f: _Fields):
    kind = int(f.rec["kind"])
    f.enum("kind", EventKind)
    f.instrument()
    if kind == EventKind.TRADE:
        f.price("price")
        f.qty("qty")
        f.raw("seq")
        f.raw("first_trade_id")
        f.raw("last_trade_id")
    elif kind == EventKind.BBO:
        f.pair("bid", "price", "qty")
        f.pair("ask", "ask_price", "ask_qty")
        f.raw("seq")
    elif kind == EventKind.BOOK_LEVEL:
        ask = int(f.rec["flags"]) & EventFlag.ASK_SIDE
        f.pair("ask" if ask else "bid", "price", "qty")
        f.raw("seq", "update_id")
        f.raw("first_update_id")
        f.raw("prev_update_id")
    elif kind == EventKind.BOOK_RESET:
        f.raw("seq", "update_id")
        f.raw("first_update_id")
        f.raw("prev_update_id")
    elif kind == EventKind.KLINE:
        for name in ("open", "high", "low"):
            f.price(name)
        f.price("price", "close")
        f.qty("qty", "volume")
        f.price("quote_volume")
        f.raw("trade_count")
        f.time("open_time_ns", "open_time")
        f.time("close_time_ns", "close_time")
    elif kind == EventKind.MARK:
        f.price("price", "mark_price")
        f.price("index_price")
        f.price("settle_price")
        f.fixed("funding_rate", FUNDING_RATE_PRECISION)
        f.time("next_funding_ns", "next_funding")
    else:
        f.raw("price")
        f.raw("qty")
        f.raw("seq")
    f.flags("flags", EventFlag)
    f.time("ts_exchange")
    f.time("ts_recv")
    f.time("ts_pub")
    f.raw("venue_id")


def _order_fields(f: _Fields):
    f.enum("action", OrderAction)
    f.enum("side", Side)
    f.enum("order_type", OrderType)
    f.instrument()
    f.price("price")
    f.qty("qty")
    f.text.append(("reduce_only", "yes" if f.rec["reduce_only"] else "no"))
    f.raw("client_order_id")
    f.raw("target_order_id")
    f.raw("strategy_id")
    f.time("ts_created")


def _report_fields(f: _Fields):
    status = int(f.rec["status"])
    f.enum("status", OrderStatus)
    if status == OrderStatus.SYNCED:             # SYNC's end: counts, not an order (records.pxd)
        f.raw("qty", "positions")
        f.raw("cum_qty", "orders")
        f.raw("venue_order_id", "highest_client_order_id")
    elif status == OrderStatus.POSITION:         # SYNC's answer per instrument: a position
        f.instrument()
        f.qty("qty", "position")
        pnl = max(f.inst.price_precision + f.inst.size_precision, ACCOUNT_PRECISION) if f.inst else None
        f.fixed("cum_qty", pnl, "cost")
        f.fixed("last_price", pnl, "realised")
        f.fixed("fee", pnl, "fees")
        f.raw("leaves_qty", "fills")
    else:
        if int(f.rec["reject_code"]) or status == OrderStatus.REJECTED:
            f.enum("reject_code", RejectCode, with_code=True)
        f.enum("side", Side)
        f.enum("order_type", OrderType)
        f.instrument()
        f.price("price")
        f.qty("qty")
        f.price("last_price")
        f.qty("last_qty")
        f.qty("cum_qty")
        f.qty("leaves_qty")
        f.fixed("fee", ACCOUNT_PRECISION)
        f.enum("liquidity", Liquidity)
        f.raw("trade_id")
    f.flags("flags", ReportFlag)
    f.raw("client_order_id")
    if status != OrderStatus.SYNCED:
        f.raw("venue_order_id")
    f.raw("strategy_id")
    f.time("ts_exchange")
    f.time("ts_recv")
    f.time("ts_pub")


_DECODERS = {RecordType.MARKET_EVENT: _event_fields, RecordType.ORDER: _order_fields,
             RecordType.EXEC_REPORT: _report_fields}


class RecordDecoder:
    """Records of a stack for people: enum and flag names, the instrument's symbol, prices and
    quantities as decimals at its precision, times as ISO UTC. Without an instrument table (or
    for an id it does not have) ids and fixed-point values stay raw integers."""

    def __init__(self, table: InstrumentTable | None):
        self.table = table

    def _fields(self, record_type: int, rec) -> _Fields | None:
        decode = _DECODERS.get(record_type)
        if decode is None or rec.dtype.names is None:
            return None
        inst = self.table.get(int(rec["instrument_id"])) if self.table is not None else None
        f = _Fields(rec, inst, self.table is not None)
        decode(f)
        return f

    def text(self, record_type: int, rec) -> str:
        """One line, `name=value` pairs; a record of an unknown type as hex."""
        f = self._fields(record_type, rec)
        return f.line() if f is not None else rec.tobytes().hex()

    def json(self, record_type: int, rec) -> dict:
        """Every raw field as it is, plus the decoded ones (`<field>_name`, `<field>_decimal` as
        an exact string, `<field>_iso`, `symbol`, `instrument`)."""
        out = {n: rec[n].item() for n in rec.dtype.names or ()}
        f = self._fields(record_type, rec)
        if f is not None:
            out.update(f.decoded)
        return out


# -- the files beside the rings: instrument table, kill switch, instance locks -------------

FILE_KINDS = {"instruments.json": "instruments", "kill_switch.ctl": "kill_switch"}
FILE_EXTENSIONS = (".json", ".ctl", ".lock")     # what list_segments leaves out


def _flock_holders() -> dict[tuple[int, int, int], int]:
    """(device major, minor, inode) -> pid for every flock held on the host, from /proc/locks:
    a passive look, where taking even a shared lock for a moment could make a daemon that starts
    just then believe another instance runs."""
    held = {}
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return held
    for line in lines:
        parts = line.split()
        if len(parts) < 6 or parts[1] != "FLOCK":
            continue                # OFD and POSIX locks (the rings' roles); "->": blocked waiters
        try:
            major, minor, inode = parts[5].split(":")
            held[(int(major, 16), int(minor, 16), int(inode))] = int(parts[4])
        except ValueError:
            continue
    return held


def _command(pid: int, width: int = 80) -> str | None:
    """The process's command line on one line, cut to `width` (None when it is gone or hidden)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            text = " ".join(f.read().decode(errors="replace").replace("\0", " ").split())
    except OSError:
        return None
    return (text if len(text) <= width else text[:width - 3] + "...") or None


def _lock_info(path: str, holders: dict) -> dict:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return {"held": False, "pid": None, "command": None}
    proc_pid = holders.get((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    if proc_pid is None:
        return {"held": False, "pid": None, "command": None}
    try:
        with open(path) as f:
            written = int(f.read(32).strip() or 0)
    except (OSError, ValueError):
        written = 0
    pid = written or proc_pid or None       # the holder writes its own pid (namespaces agree)
    return {"held": True, "pid": pid, "command": _command(pid) if pid else None}


def _kill_switch_info(path: str) -> dict:
    """The control file read as it is: never created, resized or initialised from here."""
    from ttquant.core.gateway.kill_switch import LAYOUT, MAGIC
    with open(path, "rb") as f:
        raw = f.read(LAYOUT.size)
    if len(raw) < LAYOUT.size or raw[:8] != MAGIC:
        return {"error": f"{path}: not a TTQuant control segment"}
    _, engaged, changes, ts_ns, pid, uid, who, reason = LAYOUT.unpack(raw)
    return {"engaged": bool(engaged), "changes": changes, "ts_ns": ts_ns, "pid": pid, "uid": uid,
            "who": who.rstrip(b"\0").decode(errors="replace"),
            "reason": reason.rstrip(b"\0").decode(errors="replace")}


def file_infos(rings: str | None = None) -> list[dict]:
    """The files beside the rings (of one stack, or of all), each {"name", "path", "rings",
    "kind": "instruments" | "kill_switch" | "lock" | "file"} and what it says: an instrument
    table's "count", the kill switch's "engaged" (who, when, why), a lock's "held", "pid",
    "command", "role" and "instance"; "error" when it cannot be read."""
    if rings:
        paths = stack_entries(rings)
    else:
        try:                        # every stack's: the same "ttq." every name starts with (list_segments)
            paths = sorted(os.path.join(SHM_DIR, e) for e in os.listdir(SHM_DIR) if e.startswith("ttq."))
        except FileNotFoundError:
            paths = []
    holders = _flock_holders()
    infos = []
    for path in paths:
        entry = os.path.basename(path)
        if not entry.endswith(FILE_EXTENSIONS):
            continue
        owner, rest = entry.split(".", 2)[1:]
        kind = FILE_KINDS.get(rest, "lock" if rest.endswith(".lock") else "file")
        info = {"name": "/" + entry, "path": path, "rings": owner, "kind": kind}
        try:
            if kind == "instruments":
                table = InstrumentTable.load(path)
                info.update(count=len(table), venue=table.venue)
            elif kind == "kill_switch":
                info.update(_kill_switch_info(path))
            elif kind == "lock":
                role, _, instance = rest[:-len(".lock")].partition(".")
                info.update(role=role, instance=instance or None, **_lock_info(path, holders))
        except FileNotFoundError:
            continue                # removed while we looked
        except (OSError, ValueError) as exc:
            info["error"] = str(exc)
        infos.append(info)
    return infos


def stack_in_use(rings: str) -> list[tuple[str, str]]:
    """(path, why) for each file of a stack that must not go yet: a ring or telemetry segment
    with a live writer or SPSC reader, a held instance lock, an engaged kill switch (removing
    it would release it for the next gateway)."""
    busy = []
    for path in stack_entries(rings):
        entry = os.path.basename(path)
        if entry.endswith(FILE_EXTENSIONS):
            continue
        try:
            seg = RingSegment.attach("/" + entry, read_only=True)
        except (RingError, OSError):
            continue                # not a ring: nothing can be attached to it
        try:
            h = seg.header_fields()
            if seg.writer_alive():
                busy.append((path, f"live writer pid {h['writer_pid']}"))
            elif h["ring_kind"] == KIND_SPSC and seg.reader_alive():
                busy.append((path, f"live reader pid {h['reader_pid']}"))
        finally:
            seg.close()
    for info in file_infos(rings):
        if info.get("held"):
            busy.append((info["path"], f"lock held by pid {info['pid'] or '?'}"
                         + (f" ({info['command']})" if info["command"] else "")))
        elif info.get("engaged"):
            busy.append((info["path"], f"kill switch ENGAGED by {info['who']}; removing it would release it"))
    return busy
