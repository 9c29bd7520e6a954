"""Instrument table: what each instrument id means, and its fixed-point scales (DESIGN.md §3).

Prices and quantities travel as int64 at the instrument's precision:
price_raw = price * 10**price_precision, exactly (Decimal, never float on the way in).
Increments, bounds and min notional are stored raw at the same scales; min notional is
in quote units at price precision. The table is built from the venue's exchangeInfo
(md issue), saved beside the rings as /dev/shm/ttq.<venue>.instruments.json and loaded by
every process that reads those rings.
"""
from __future__ import annotations

import enum
import json
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, fields
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

import numpy as np

from ttquant.core.rings.names import SHM_DIR, instruments_file

__all__ = ["MarketType", "MARKET_LABELS", "Instrument", "InstrumentTable", "InstrumentTableError",
           "INSTRUMENT_DTYPE", "instruments_path", "TABLE_VERSION"]

TABLE_VERSION = 1
MAX_PRECISION = 18          # 10**18 still fits int64 with room for a unit


class MarketType(enum.IntEnum):
    SPOT = 1
    LINEAR_PERPETUAL = 2
    INVERSE_PERPETUAL = 3


# how an instrument is named to people: BTCUSDT.spot, BTCUSDT.perp (logs, STATUS=, the demo)
MARKET_LABELS = {MarketType.SPOT: "spot", MarketType.LINEAR_PERPETUAL: "perp", MarketType.INVERSE_PERPETUAL: "inverse"}


class InstrumentTableError(ValueError):
    """A table file or entry that cannot be used; the message names the file and the key."""


def _decimal(value) -> Decimal:
    if isinstance(value, float):
        value = repr(value)         # shortest repr, so 0.1 is 0.1 and not 0.1000000000000000055
    try:
        d = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{value!r} is not a number") from None
    if not d.is_finite():
        raise ValueError(f"{value!r} is not finite")
    return d


def to_raw(value, precision: int, *, exact: bool = True) -> int:
    """value * 10**precision as an int; exact=True refuses values with more decimals."""
    scaled = _decimal(value).scaleb(precision)
    integral = scaled.to_integral_value(rounding=ROUND_HALF_EVEN)
    if exact and integral != scaled:
        raise ValueError(f"{value} has more than {precision} decimals")
    return int(integral)


def from_raw(raw: int, precision: int) -> Decimal:
    return Decimal(int(raw)).scaleb(-precision)


@dataclass(frozen=True)
class Instrument:
    instrument_id: int
    venue: str
    symbol: str                 # the venue's own symbol, e.g. BTCUSDT
    market_type: MarketType
    base: str
    quote: str
    price_precision: int
    size_precision: int
    tick_size: int              # raw, at price precision
    step_size: int              # raw, at size precision
    min_qty: int                # raw, at size precision
    max_qty: int                # raw, at size precision; 0 = no limit
    min_price: int              # raw, at price precision
    max_price: int              # raw, at price precision; 0 = no limit
    min_notional: int           # raw quote units at price precision; 0 = none
    multiplier: int = 1         # contract multiplier (units of base per contract)

    @property
    def label(self) -> str:
        """BTCUSDT.spot, BTCUSDT.perp: the symbol alone does not say which market."""
        return f"{self.symbol}.{MARKET_LABELS[MarketType(self.market_type)]}"

    def __post_init__(self):
        object.__setattr__(self, "market_type", MarketType(self.market_type))
        for name in ("price_precision", "size_precision"):
            value = getattr(self, name)
            if not 0 <= value <= MAX_PRECISION:
                raise ValueError(f"{self.symbol}: {name} {value} must be in [0, {MAX_PRECISION}]")
        for name in ("tick_size", "step_size", "multiplier"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{self.symbol}: {name} must be positive")
        for name in ("min_qty", "max_qty", "min_price", "max_price", "min_notional"):
            if getattr(self, name) < 0:
                raise ValueError(f"{self.symbol}: {name} must not be negative")
        if not 0 <= self.instrument_id < 2**32:
            raise ValueError(f"{self.symbol}: instrument_id {self.instrument_id} must fit 32 bits")

    def price_to_raw(self, price, *, exact: bool = True) -> int:
        return to_raw(price, self.price_precision, exact=exact)

    def qty_to_raw(self, qty, *, exact: bool = True) -> int:
        return to_raw(qty, self.size_precision, exact=exact)

    def price_from_raw(self, raw: int) -> Decimal:
        return from_raw(raw, self.price_precision)

    def qty_from_raw(self, raw: int) -> Decimal:
        return from_raw(raw, self.size_precision)

    def notional_raw(self, price_raw: int, qty_raw: int) -> int:
        """price * qty * multiplier in quote units at price precision, truncated toward zero."""
        return price_raw * qty_raw * self.multiplier // 10**self.size_precision


INSTRUMENT_DTYPE = np.dtype([
    ("instrument_id", "<u4"), ("market_type", "u1"), ("price_precision", "u1"),
    ("size_precision", "u1"), ("_pad", "u1"), ("tick_size", "<i8"), ("step_size", "<i8"),
    ("min_qty", "<i8"), ("max_qty", "<i8"), ("min_price", "<i8"), ("max_price", "<i8"),
    ("min_notional", "<i8"), ("multiplier", "<i8"), ("symbol", "S32"),
])


def instruments_path(venue: str, directory: str = SHM_DIR) -> str:
    return instruments_file(venue, directory)


class InstrumentTable:
    """All instruments of one venue, by id and by (symbol, market type)."""

    def __init__(self, venue: str, instruments=()):
        self.venue = venue
        self._by_id: dict[int, Instrument] = {}
        self._by_symbol: dict[tuple[str, MarketType], Instrument] = {}
        for inst in instruments:
            self.add(inst)

    def add(self, inst: Instrument) -> Instrument:
        if inst.venue != self.venue:
            raise ValueError(f"{inst.symbol} belongs to {inst.venue}, not {self.venue}")
        if inst.instrument_id in self._by_id:
            raise ValueError(f"instrument id {inst.instrument_id} is already "
                             f"{self._by_id[inst.instrument_id].symbol}")
        key = (inst.symbol, inst.market_type)
        if key in self._by_symbol:
            raise ValueError(f"{inst.symbol} ({inst.market_type.name}) is already id "
                             f"{self._by_symbol[key].instrument_id}")
        self._by_id[inst.instrument_id] = inst
        self._by_symbol[key] = inst
        return inst

    def update(self, inst: Instrument) -> Instrument:
        """Replace an instrument's entry (new filters from the venue); id and symbol stay."""
        old = self._by_id.get(inst.instrument_id)
        if old is None or (old.symbol, old.market_type) != (inst.symbol, inst.market_type):
            raise ValueError(f"instrument id {inst.instrument_id} is not {inst.symbol} "
                             f"({inst.market_type.name}) in this table")
        self._by_id[inst.instrument_id] = inst
        self._by_symbol[(inst.symbol, inst.market_type)] = inst
        return inst

    def get(self, instrument_id: int) -> Instrument | None:
        return self._by_id.get(instrument_id)

    def __getitem__(self, instrument_id: int) -> Instrument:
        try:
            return self._by_id[instrument_id]
        except KeyError:
            raise KeyError(f"no instrument {instrument_id} on {self.venue}") from None

    def by_symbol(self, symbol: str, market_type=MarketType.SPOT) -> Instrument | None:
        return self._by_symbol.get((symbol, MarketType(market_type)))

    def __len__(self):
        return len(self._by_id)

    def __iter__(self):
        return iter(sorted(self._by_id.values(), key=lambda i: i.instrument_id))

    def __eq__(self, other):
        return isinstance(other, InstrumentTable) and self.venue == other.venue and list(self) == list(other)

    def next_id(self) -> int:
        return max(self._by_id, default=0) + 1

    def to_array(self) -> np.ndarray:
        """The table as INSTRUMENT_DTYPE records (for journals and Cython lookups)."""
        arr = np.zeros(len(self), INSTRUMENT_DTYPE)
        for row, inst in zip(arr, self):
            for f in fields(Instrument):
                if f.name in INSTRUMENT_DTYPE.names:
                    row[f.name] = getattr(inst, f.name).encode() if f.name == "symbol" else getattr(inst, f.name)
        return arr

    def to_json(self) -> str:
        return json.dumps({
            "version": TABLE_VERSION,
            "venue": self.venue,
            "instruments": [{**asdict(i), "market_type": i.market_type.name.lower()} for i in self],
        }, indent=1)

    def save(self, path: str | None = None) -> str:
        """Write atomically (temp file + rename), mode 0660; returns the path."""
        path = path or instruments_path(self.venue)
        directory = os.path.dirname(path) or "."
        fd, tmp = tempfile.mkstemp(prefix=".instruments.", dir=directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(self.to_json())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o660)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str) -> InstrumentTable:
        """Read a saved table; InstrumentTableError names the file and the offending key."""
        try:
            with open(path) as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise InstrumentTableError(f"{path}: no instrument table there") from None
        except json.JSONDecodeError as exc:
            raise InstrumentTableError(f"{path}: not JSON ({exc})") from None
        return cls.from_doc(doc, path)

    @classmethod
    def from_json(cls, text: str, path: str) -> InstrumentTable:
        """A table from to_json()'s text (kept inside another file, such as a journal's header)."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InstrumentTableError(f"{path}: not JSON ({exc})") from None
        return cls.from_doc(doc, path)

    @classmethod
    def from_doc(cls, doc, path: str) -> InstrumentTable:
        if not isinstance(doc, dict):
            raise InstrumentTableError(f"{path}: expected an object at the top")
        if doc.get("version") != TABLE_VERSION:
            raise InstrumentTableError(f"{path}: key 'version' is {doc.get('version')!r}, "
                                       f"this build reads {TABLE_VERSION}")
        venue = doc.get("venue")
        if not isinstance(venue, str) or not venue:
            raise InstrumentTableError(f"{path}: key 'venue' must be a non-empty string")
        entries = doc.get("instruments")
        if not isinstance(entries, list):
            raise InstrumentTableError(f"{path}: key 'instruments' must be a list")
        table = cls(venue)
        names = {f.name: f for f in fields(Instrument)}
        for n, entry in enumerate(entries):
            where = f"{path}: instruments[{n}]"
            if not isinstance(entry, dict):
                raise InstrumentTableError(f"{where} must be an object")
            missing = [k for k, f in names.items() if k not in entry and f.default is MISSING]
            if missing:
                raise InstrumentTableError(f"{where}: missing key '{missing[0]}'")
            unknown = sorted(set(entry) - set(names))
            if unknown:
                raise InstrumentTableError(f"{where}: unknown key '{unknown[0]}'")
            values = dict(entry)
            try:
                values["market_type"] = MarketType[str(entry["market_type"]).upper()]
            except KeyError:
                raise InstrumentTableError(f"{where}: key 'market_type' is {entry['market_type']!r}, "
                                           f"expected one of {[m.name.lower() for m in MarketType]}") from None
            for key, value in values.items():
                expected = str if key in ("venue", "symbol", "base", "quote") else int
                if key != "market_type" and (type(value) is not expected):
                    raise InstrumentTableError(f"{where}: key '{key}' must be {expected.__name__}, "
                                               f"got {value!r}")
            try:
                table.add(Instrument(**values))
            except ValueError as exc:
                raise InstrumentTableError(f"{where}: {exc}") from None
        return table
