"""Binance exchangeInfo (spot /api/v3, USDT-M /fapi/v1) -> instrument table entries.

Precision is the finest of what the venue declares and what its filters need, so every
value Binance sends fits: spot uses baseAssetPrecision / quoteAssetPrecision (8 for most
pairs), futures pricePrecision / quantityPrecision, never less than the tick and step
sizes' own decimals. A venue that later refines a tick size still parses exactly.
"""
from __future__ import annotations

from decimal import Decimal

from ttquant.core.instruments import Instrument, InstrumentTable, MarketType, to_raw

__all__ = ["SPOT", "USDM", "instruments_from_exchange_info", "merge_instruments", "ExchangeInfoError"]

SPOT, USDM = "spot", "usdm"
MARKET_TYPES = {SPOT: MarketType.SPOT, USDM: MarketType.LINEAR_PERPETUAL}
INT64_MAX = 2**63 - 1


class ExchangeInfoError(ValueError):
    """An exchangeInfo document that cannot be used at all (not one symbol entry is readable)."""


def _decimals(text: str) -> int:
    exponent = Decimal(text).normalize().as_tuple().exponent
    return max(0, -exponent)


def _raw_or_unlimited(text, precision):
    if text is None:
        return 0
    raw = to_raw(text, precision, exact=False)
    return raw if 0 <= raw <= INT64_MAX else 0


def _instrument(entry: dict, market: str, instrument_id: int, venue: str) -> Instrument:
    filters = {f["filterType"]: f for f in entry.get("filters", ())}
    price_filter, lot = filters["PRICE_FILTER"], filters["LOT_SIZE"]
    tick, step = price_filter["tickSize"], lot["stepSize"]
    if market == SPOT:
        declared_price = entry.get("quoteAssetPrecision", entry.get("quotePrecision", 0))
        declared_size = entry.get("baseAssetPrecision", 0)
        notional = (filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}).get("minNotional")
    else:
        declared_price = entry.get("pricePrecision", 0)
        declared_size = entry.get("quantityPrecision", 0)
        notional = filters.get("MIN_NOTIONAL", {}).get("notional")
    price_precision = min(18, max(_decimals(tick), int(declared_price)))
    size_precision = min(18, max(_decimals(step), int(declared_size)))
    return Instrument(
        instrument_id=instrument_id, venue=venue, symbol=entry["symbol"],
        market_type=MARKET_TYPES[market], base=entry["baseAsset"], quote=entry["quoteAsset"],
        price_precision=price_precision, size_precision=size_precision,
        tick_size=to_raw(tick, price_precision), step_size=to_raw(step, size_precision),
        min_qty=_raw_or_unlimited(lot.get("minQty"), size_precision),
        max_qty=_raw_or_unlimited(lot.get("maxQty"), size_precision),
        min_price=_raw_or_unlimited(price_filter.get("minPrice"), price_precision),
        max_price=_raw_or_unlimited(price_filter.get("maxPrice"), price_precision),
        min_notional=_raw_or_unlimited(notional, price_precision),
    )


def instruments_from_exchange_info(doc: dict, market: str, venue: str = "binance",
                                   symbols=None) -> tuple[list[Instrument], dict[str, str]]:
    """(instruments with id 0, {symbol: why it was skipped}) for the spot or USDT-M document.

    Futures keep perpetuals only (quarterly contracts have no market type yet); symbols, when
    given, limits the result to those."""
    if market not in MARKET_TYPES:
        raise ValueError(f"market {market!r} is not one of {sorted(MARKET_TYPES)}")
    entries = doc.get("symbols") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ExchangeInfoError(f"{market} exchangeInfo has no 'symbols' list")
    wanted = {s.upper() for s in symbols} if symbols else None
    out, skipped = [], {}
    for entry in entries:
        symbol = entry.get("symbol", "?") if isinstance(entry, dict) else "?"
        if wanted is not None and symbol not in wanted:
            continue
        if market == USDM and entry.get("contractType") != "PERPETUAL":
            skipped[symbol] = f"contract type {entry.get('contractType')}"
            continue
        try:
            out.append(_instrument(entry, market, 0, venue))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            skipped[symbol] = f"{type(exc).__name__}: {exc}"
    if entries and not out and wanted is None:
        raise ExchangeInfoError(f"{market} exchangeInfo: no usable symbol ({len(skipped)} skipped)")
    return out, skipped


def merge_instruments(table: InstrumentTable, instruments) -> list[Instrument]:
    """Put instruments in the table: a (symbol, market) it knows keeps its id, a new one gets the
    next free id, so ids stay stable across restarts. Returns them with their ids."""
    from dataclasses import replace
    result = []
    for inst in instruments:
        known = table.by_symbol(inst.symbol, inst.market_type)
        inst = replace(inst, instrument_id=known.instrument_id if known else table.next_id())
        if known is None:
            table.add(inst)
        elif known != inst:
            table.update(inst)
        result.append(inst)
    return result
