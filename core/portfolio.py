"""Positions and PnL per instrument, exact to the last raw unit (DESIGN.md §3, §6).

Average-cost method (not FIFO): buying into a long (or selling into a short) adds to the
cost basis; reducing releases cost at the average, so the average is unchanged by a reduce;
a fill through zero closes the whole position at the average and opens the rest at the
fill price.

Units, all plain ints inside:
- qty_raw: signed base quantity at the instrument's size precision (long > 0).
- fee_raw (in): quote currency at `fee_precision` decimals. By default that is the
  instrument's price precision, the scale of Instrument.notional_raw and min_notional;
  a venue reporting fees with more decimals gets `Portfolio(fee_precision=8)`. Positive is
  paid, negative a rebate. Fees charged in another asset must be converted by the caller.
- cost, realised, fees and unrealised: quote currency at `pnl_precision` =
  max(price_precision + size_precision, fee_precision) decimals, where
  price_raw * qty_raw * multiplier is exact.

One rounding only: a partial reduce releases cost * closed / open, rounded half-even to one
unit at pnl_precision; the remainder stays in the open position's cost basis. So
realised + unrealised always equals the exact cash flow plus the position at the mark, and a
position taken back to flat has exactly realised == cash flow - fees.

Linear instruments only (spot, USDT-M perpetuals: pnl = qty * multiplier * (exit - entry));
inverse contracts settle in the base currency and are refused with ValueError (see
`_check_linear`). Decimal and Fraction appear only in what the API hands out.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from ttquant.core.instruments import MAX_PRECISION, Instrument, MarketType
from ttquant.core.records import Side

__all__ = ["Portfolio", "Position", "LINEAR_MARKETS"]

LINEAR_MARKETS = frozenset({MarketType.SPOT, MarketType.LINEAR_PERPETUAL})

# An instrument is named by the Instrument itself, (venue, instrument_id), or a bare id when
# only one venue in the portfolio has it (ids are per venue: a cross-venue strategy has two 1s).
InstrumentRef = Instrument | tuple[str, int] | int


def _dec(raw: int, precision: int) -> Decimal:
    """raw * 10**-precision, exact whatever the decimal context's precision."""
    return Decimal((1 if raw < 0 else 0, tuple(int(d) for d in str(abs(raw))), -precision))


def _div_half_even(num: int, den: int) -> int:
    """num / den rounded half to even (den > 0), in ints."""
    q, r = divmod(num, den)
    twice = 2 * r
    if twice > den or (twice == den and q % 2):
        q += 1
    return q


def _check_linear(inst: Instrument) -> None:
    # The hook for inverse contracts: their PnL is qty * multiplier * (1/entry - 1/exit) in
    # base currency, a different cost basis (sum of qty / price); add it here when needed.
    if inst.market_type not in LINEAR_MARKETS:
        raise ValueError(f"{inst.symbol}: {inst.market_type.name.lower()} contracts settle PnL in "
                         f"the base currency; Portfolio handles linear instruments only")


@dataclass(frozen=True)
class Position:
    """One instrument's position at a moment; the *_raw ints are the exact values."""
    venue: str
    instrument_id: int
    symbol: str
    quote: str
    qty_raw: int                    # signed, at size_precision
    cost_raw: int                   # signed cost basis of the open qty, at pnl_precision
    realised_raw: int               # net of fees, at pnl_precision
    fees_raw: int                   # paid (positive) or rebated (negative), at pnl_precision
    unrealised_raw: int | None      # at the mark asked for; None when no mark was given
    price_precision: int
    size_precision: int
    pnl_precision: int
    multiplier: int
    fills: int

    @property
    def flat(self) -> bool:
        return self.qty_raw == 0

    @property
    def qty(self) -> Decimal:
        return _dec(self.qty_raw, self.size_precision)

    @property
    def avg_price_raw(self) -> Fraction | None:
        """Average entry price at price precision, exact; None when flat."""
        if self.qty_raw == 0:
            return None
        shift = 10 ** (self.pnl_precision - self.price_precision - self.size_precision)
        return Fraction(self.cost_raw, self.qty_raw * self.multiplier * shift)

    @property
    def avg_price(self) -> Fraction | None:
        """Average entry price in quote per base unit, exact (a Fraction: 32/3 has no decimal)."""
        raw = self.avg_price_raw
        return None if raw is None else raw / 10 ** self.price_precision

    @property
    def realised(self) -> Decimal:
        return _dec(self.realised_raw, self.pnl_precision)

    @property
    def gross_realised(self) -> Decimal:
        """Realised PnL before fees."""
        return _dec(self.realised_raw + self.fees_raw, self.pnl_precision)

    @property
    def fees(self) -> Decimal:
        return _dec(self.fees_raw, self.pnl_precision)

    @property
    def unrealised(self) -> Decimal | None:
        return None if self.unrealised_raw is None else _dec(self.unrealised_raw, self.pnl_precision)


class _Book:
    """Mutable state of one instrument; every amount an int at pnl_precision."""
    __slots__ = ("inst", "pnl_precision", "notional_shift", "fee_shift",
                 "qty", "cost", "realised", "fees", "fills")

    def __init__(self, inst: Instrument, fee_precision: int):
        self.inst = inst
        self.pnl_precision = max(inst.price_precision + inst.size_precision, fee_precision)
        # price_raw * qty_raw * multiplier is at price+size precision: scale it up to pnl
        self.notional_shift = inst.multiplier * 10 ** (self.pnl_precision - inst.price_precision
                                                      - inst.size_precision)
        self.fee_shift = 10 ** (self.pnl_precision - fee_precision)
        self.qty = 0
        self.cost = 0
        self.realised = 0
        self.fees = 0
        self.fills = 0

    def fill(self, signed_qty: int, price_raw: int, fee_raw: int) -> None:
        open_qty = self.qty
        value = price_raw * self.notional_shift             # one unit of qty_raw at this price
        if open_qty == 0 or (open_qty > 0) == (signed_qty > 0):
            self.cost += signed_qty * value
            self.qty = open_qty + signed_qty
        else:
            closed = min(abs(signed_qty), abs(open_qty))
            if closed == abs(open_qty):
                released = self.cost                        # all of it: no rounding
            else:
                released = _div_half_even(self.cost * closed, abs(open_qty))
            sign = 1 if open_qty > 0 else -1
            self.realised += sign * closed * value - released
            self.cost -= released
            self.qty = open_qty + signed_qty
            if abs(signed_qty) > closed:                    # through zero: the rest opens here
                self.cost = self.qty * value
        fee = fee_raw * self.fee_shift
        self.fees += fee
        self.realised -= fee
        self.fills += 1

    def unrealised(self, mark_raw: int) -> int:
        return self.qty * mark_raw * self.notional_shift - self.cost

    def snapshot(self, mark_raw: int | None) -> Position:
        inst = self.inst
        return Position(
            venue=inst.venue, instrument_id=inst.instrument_id, symbol=inst.symbol, quote=inst.quote,
            qty_raw=self.qty, cost_raw=self.cost, realised_raw=self.realised, fees_raw=self.fees,
            unrealised_raw=None if mark_raw is None else self.unrealised(mark_raw),
            price_precision=inst.price_precision, size_precision=inst.size_precision,
            pnl_precision=self.pnl_precision, multiplier=inst.multiplier, fills=self.fills,
        )


def _int(name: str, value) -> int:
    """An exact integer (numpy ints welcome); floats are refused, never rounded."""
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int (raw fixed point), got {value!r}") from None


class Portfolio:
    """One strategy's positions and PnL, per instrument, by the average-cost method.

    Fed with fills (on_fill / on_exec_report); asked for exact Position snapshots, exact
    Decimal totals, or floats for decisions. Totals add only instruments with the same quote
    currency: pass `quote=` when the portfolio holds more than one.
    """

    def __init__(self, fee_precision: int | None = None):
        if fee_precision is not None and not 0 <= fee_precision <= MAX_PRECISION:
            raise ValueError(f"fee_precision {fee_precision} must be in [0, {MAX_PRECISION}]")
        self.fee_precision = fee_precision
        self._books: dict[tuple[str, int], _Book] = {}

    # -- fills -------------------------------------------------------------------------------

    def on_fill(self, instrument: Instrument, side, price_raw, qty_raw, fee_raw=0) -> Position:
        """Apply one fill (price at price precision, qty > 0 at size precision, fee as documented
        above); returns the position after it."""
        side = Side(side)
        price_raw = _int("price_raw", price_raw)
        qty_raw = _int("qty_raw", qty_raw)
        fee_raw = _int("fee_raw", fee_raw)
        if price_raw <= 0:
            raise ValueError(f"{instrument.symbol}: fill price_raw must be positive, got {price_raw}")
        if qty_raw <= 0:
            raise ValueError(f"{instrument.symbol}: fill qty_raw must be positive, got {qty_raw}")
        book = self._book_for_fill(instrument)
        book.fill(qty_raw if side == Side.BUY else -qty_raw, price_raw, fee_raw)
        return book.snapshot(None)

    def on_exec_report(self, instrument: Instrument, report) -> Position | None:
        """Apply an ExecReport's last fill (last_price, last_qty, fee, side); None when it
        carries no fill (an ack, a cancel, a reject)."""
        if report.instrument_id != instrument.instrument_id:
            raise ValueError(f"report is for instrument {report.instrument_id}, "
                             f"not {instrument.symbol} ({instrument.instrument_id})")
        if report.last_qty == 0:
            return None
        return self.on_fill(instrument, report.side, report.last_price, report.last_qty, report.fee)

    def restore(self, instrument: Instrument, qty_raw: int, cost_raw: int, realised_raw: int, fees_raw: int,
                fills: int) -> Position:
        """Take a position as another portfolio of the same fee precision had it (the gateway's
        answer to a restarted strategy's SYNC): every amount exact, as `snapshot` gave it."""
        book = self._book_for_fill(instrument)
        book.qty, book.cost, book.realised, book.fees, book.fills = (
            _int("qty_raw", qty_raw), _int("cost_raw", cost_raw), _int("realised_raw", realised_raw),
            _int("fees_raw", fees_raw), _int("fills", fills))
        return book.snapshot(None)

    def _book_for_fill(self, inst: Instrument) -> _Book:
        _check_linear(inst)
        key = (inst.venue, inst.instrument_id)
        book = self._books.get(key)
        if book is None:
            fee_precision = inst.price_precision if self.fee_precision is None else self.fee_precision
            book = self._books[key] = _Book(inst, fee_precision)
            return book
        old = book.inst
        scales = ("symbol", "market_type", "quote", "price_precision", "size_precision", "multiplier")
        changed = [name for name in scales if getattr(old, name) != getattr(inst, name)]
        if changed:
            # raw amounts already booked are at the old scales: mixing them would be silently wrong
            raise ValueError(f"{old.symbol} on {old.venue} (id {old.instrument_id}) changed "
                             f"{', '.join(changed)}; start a new Portfolio")
        book.inst = inst                    # new filters (min notional, bounds) are harmless
        return book

    # -- exact views -------------------------------------------------------------------------

    def position(self, instrument: InstrumentRef, mark_raw=None) -> Position:
        """The instrument's position; with mark_raw (at price precision) its unrealised PnL."""
        book = self._find(instrument)
        if book is None:
            return self._empty(instrument).snapshot(None if mark_raw is None else _int("mark_raw", mark_raw))
        return book.snapshot(None if mark_raw is None else _int("mark_raw", mark_raw))

    def positions(self, marks: Mapping | None = None) -> list[Position]:
        """Every instrument ever filled, flat ones included; marks as for equity()."""
        return [b.snapshot(None if marks is None else self._mark(b, marks, required=False))
                for b in self._books.values()]

    def total_realised(self, quote: str | None = None) -> Decimal:
        """Realised PnL net of fees over all instruments in one quote currency."""
        books = self._select(quote)
        return self._sum(books, [b.realised for b in books])

    def total_fees(self, quote: str | None = None) -> Decimal:
        books = self._select(quote)
        return self._sum(books, [b.fees for b in books])

    def total_unrealised(self, marks: Mapping, quote: str | None = None) -> Decimal:
        books = self._select(quote)
        return self._sum(books, [b.unrealised(self._mark(b, marks)) if b.qty else 0 for b in books])

    def equity(self, marks: Mapping, quote: str | None = None) -> Decimal:
        """Total PnL: realised net of fees plus unrealised at the marks (add starting capital
        yourself). marks: mark price_raw by instrument id, or by (venue, id) across venues;
        every open position needs one."""
        books = self._select(quote)
        return self._sum(books, [b.realised + (b.unrealised(self._mark(b, marks)) if b.qty else 0)
                                 for b in books])

    # -- floats for decisions ----------------------------------------------------------------

    def position_qty(self, instrument: InstrumentRef) -> float:
        book = self._find(instrument)
        return 0.0 if book is None else book.qty / 10 ** book.inst.size_precision

    def avg_price(self, instrument: InstrumentRef) -> float:
        """Average entry price; NaN when flat."""
        avg = self.position(instrument).avg_price
        return float("nan") if avg is None else float(avg)

    def realised_pnl(self, instrument: InstrumentRef | None = None) -> float:
        """Realised PnL net of fees, in quote currency: one instrument's, or the total."""
        if instrument is None:
            return float(self.total_realised())
        book = self._find(instrument)
        return 0.0 if book is None else book.realised / 10 ** book.pnl_precision

    def unrealised_pnl(self, instrument: InstrumentRef, mark_raw) -> float:
        book = self._find(instrument)
        if book is None:
            return 0.0
        return book.unrealised(_int("mark_raw", mark_raw)) / 10 ** book.pnl_precision

    # -- lookups -----------------------------------------------------------------------------

    def _find(self, ref: InstrumentRef) -> _Book | None:
        if isinstance(ref, Instrument):
            return self._books.get((ref.venue, ref.instrument_id))
        if isinstance(ref, tuple):
            return self._books.get(ref)
        ident = _int("instrument id", ref)
        found = [b for (venue, i), b in self._books.items() if i == ident]
        if len(found) > 1:
            raise ValueError(f"instrument id {ident} is held on {', '.join(b.inst.venue for b in found)}; "
                             f"name it by (venue, id) or by its Instrument")
        return found[0] if found else None

    def _empty(self, ref: InstrumentRef) -> _Book:
        if not isinstance(ref, Instrument):
            raise KeyError(f"no fills for instrument {ref!r}; pass the Instrument to see a flat position")
        _check_linear(ref)
        fee_precision = ref.price_precision if self.fee_precision is None else self.fee_precision
        return _Book(ref, fee_precision)

    def _mark(self, book: _Book, marks: Mapping, required: bool = True):
        inst = book.inst
        key = (inst.venue, inst.instrument_id)
        if key in marks:
            return _int("mark", marks[key])
        if inst.instrument_id in marks:
            if sum(1 for (_, i) in self._books if i == inst.instrument_id) > 1:
                raise ValueError(f"mark for id {inst.instrument_id} is ambiguous across venues; "
                                 f"key marks by (venue, id)")
            return _int("mark", marks[inst.instrument_id])
        if required:
            raise KeyError(f"no mark for {inst.symbol} on {inst.venue} (id {inst.instrument_id}), "
                           f"which has an open position")
        return None

    def _select(self, quote: str | None) -> list[_Book]:
        if quote is None:
            quotes = {b.inst.quote for b in self._books.values()}
            if len(quotes) > 1:
                raise ValueError(f"positions in {', '.join(sorted(quotes))}: totals need quote=")
            return list(self._books.values())
        return [b for b in self._books.values() if b.inst.quote == quote]

    @staticmethod
    def _sum(books: Iterable[_Book], amounts: list[int]) -> Decimal:
        books = list(books)
        precision = max((b.pnl_precision for b in books), default=0)
        total = sum(a * 10 ** (precision - b.pnl_precision) for b, a in zip(books, amounts))
        return _dec(total, precision)
