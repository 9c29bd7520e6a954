"""The simulated venue's check of a new order against a symbol's exchangeInfo filters, as Binance does.

Spot (https://developers.binance.com/docs/binance-spot-api-docs/filters, .../errors#filter-failures):
every failure is HTTP 400 `{"code": -1013, "msg": "Filter failure: <FILTER>"}`.
- PRICE_FILTER: minPrice <= price <= maxPrice, price on the tick grid; each part disabled when 0.
- PERCENT_PRICE: reference * multiplierDown <= price <= reference * multiplierUp; PERCENT_PRICE_BY_SIDE
  the same with the bid (BUY) or ask (SELL) multipliers. The reference is Binance's average price
  (the reference price, else the volume-weighted average over avgPriceMins, else the last price).
- LOT_SIZE on every order, MARKET_LOT_SIZE on market orders too: minQty <= qty <= maxQty, qty on the step
  grid (a 0 disables a part: every captured spot MARKET_LOT_SIZE has minQty and stepSize 0, leaving a
  market order's minimum and step to LOT_SIZE).
- MIN_NOTIONAL: price * qty >= minNotional; a market order only if applyToMarket, priced at the average.
  NOTIONAL: minNotional <= price * qty <= maxNotional; market orders per applyMinToMarket / applyMaxToMarket.
- MAX_NUM_ORDERS: an account with maxNumOrders orders open on the symbol may not open another.

USDT-M futures (https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code) name the
failed rule in their own codes instead: -4013 / -4002 / -4014 for the price below min, above max, off the
tick; -4003 / -4004 / -4005 / -4023 for the quantity zero, below min, above max, off the step (LOT_SIZE,
and MARKET_LOT_SIZE for market orders, as on spot); -4164 for MIN_NOTIONAL (`notional`, waived for a
reduce-only order); -4016 / -4024 for PERCENT_PRICE against the mark price; -2025 for MAX_NUM_ORDERS.

A grid is counted from its minimum ((price - minPrice) % tickSize == 0), which is Binance's documented
`price % tickSize == 0` whenever minPrice is itself on the grid, as it is in every captured symbol.
All arithmetic is Decimal on the exchangeInfo strings, exact at any precision. Filters are tried in the
symbol's exchangeInfo order, so the first failing one names the error. Filters with nothing to check here
(ICEBERG_PARTS, MAX_NUM_ALGO_ORDERS, MAX_POSITION, TRAILING_DELTA, ...) are kept by name in `unchecked`.
"""
from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

__all__ = ["SymbolFilters", "check_new_order", "FILTER_FAILURE_HTTP_STATUS", "SPOT", "USDM"]

SPOT, USDM = "spot", "usdm"
FILTER_FAILURE_HTTP_STATUS = 400
# order types that carry a price; the others execute at market (spot TAKE_PROFIT is a market order,
# futures TAKE_PROFIT a limit one)
_PRICED = {SPOT: {"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"},
           USDM: {"LIMIT", "STOP", "TAKE_PROFIT"}}
_AT_MARKET = {SPOT: {"MARKET", "STOP_LOSS", "TAKE_PROFIT"},
              USDM: {"MARKET", "STOP_MARKET", "TAKE_PROFIT_MARKET", "TRAILING_STOP_MARKET"}}
_CHECKED = {"PRICE_FILTER", "PERCENT_PRICE", "PERCENT_PRICE_BY_SIDE", "LOT_SIZE", "MARKET_LOT_SIZE",
            "MIN_NOTIONAL", "NOTIONAL", "MAX_NUM_ORDERS"}
# room for any exchangeInfo value times any price without rounding, and for % on a fine grid
_EXACT = decimal.Context(prec=80, traps=[decimal.InvalidOperation, decimal.Inexact, decimal.DivisionByZero])


def _dec(value) -> Decimal:
    return Decimal(str(value))


def _on_grid(value: Decimal, start: Decimal, step: Decimal) -> bool:
    return step == 0 or _EXACT.remainder(_EXACT.subtract(value, start), step) == 0


@dataclass(frozen=True)
class SymbolFilters:
    """One symbol's filters, as Decimals, in exchangeInfo order: `rules` is ((filterType, {field: value}), ...)."""
    symbol: str
    market: str
    rules: tuple[tuple[str, dict], ...]
    unchecked: tuple[str, ...] = ()

    @classmethod
    def from_exchange_info(cls, symbol_doc: dict, market: str) -> SymbolFilters:
        """From one entry of exchangeInfo's `symbols` (spot /api/v3 or USDT-M /fapi/v1)."""
        if market not in (SPOT, USDM):
            raise ValueError(f"market {market!r} is not {SPOT!r} or {USDM!r}")
        rules, unchecked = [], []
        for f in symbol_doc.get("filters", ()):
            kind = f["filterType"]
            if kind not in _CHECKED:
                unchecked.append(kind)
                continue
            fields = {}
            for name, value in f.items():
                if name == "filterType":
                    continue
                if isinstance(value, bool):
                    fields[name] = value
                elif isinstance(value, (str, int)):
                    fields[name] = _dec(value)
            if kind == "MAX_NUM_ORDERS":  # spot says maxNumOrders, futures limit
                fields = {"maxNumOrders": fields.get("maxNumOrders", fields.get("limit"))}
            if kind == "MIN_NOTIONAL" and market == USDM:
                fields["minNotional"] = fields.pop("notional")
            rules.append((kind, fields))
        return cls(symbol_doc["symbol"], market, tuple(rules), tuple(unchecked))

    def rule(self, kind: str) -> dict | None:
        return next((fields for name, fields in self.rules if name == kind), None)


def _spot_failure(kind: str) -> dict:
    return {"code": -1013, "msg": f"Filter failure: {kind}"}


def _error(code: int, msg: str) -> dict:
    return {"code": code, "msg": msg}


def _tick_text(value: Decimal, tick: Decimal, rounding: str) -> str:
    if tick == 0:
        return format(value.normalize(), "f")
    return format(value.quantize(tick.normalize(), rounding=rounding), "f")


def _price_rule(f: dict, price: Decimal, futures: bool) -> dict | None:
    low, high, tick = f.get("minPrice", 0), f.get("maxPrice", 0), f.get("tickSize", 0)
    if futures:
        if price <= 0:
            return _error(-4001, "Price less than 0.")
        if low and price < low:
            return _error(-4013, "Price less than min price.")
        if high and price > high:
            return _error(-4002, "Price greater than max price.")
        if not _on_grid(price, low, tick):
            return _error(-4014, "Price not increased by tick size.")
        return None
    if (low and price < low) or (high and price > high) or not _on_grid(price, low, tick):
        return _spot_failure("PRICE_FILTER")
    return None


def _lot_rule(kind: str, f: dict, qty: Decimal, futures: bool) -> dict | None:
    low, high, step = f.get("minQty", 0), f.get("maxQty", 0), f.get("stepSize", 0)
    if futures:
        if qty <= 0:
            return _error(-4003, "Quantity less than or equal to zero.")
        if low and qty < low:
            return _error(-4004, "Quantity less than min quantity.")
        if high and qty > high:
            return _error(-4005, "Quantity greater than max quantity.")
        if not _on_grid(qty, low, step):
            return _error(-4023, "Qty not increased by step size.")
        return None
    if qty < low or (high and qty > high) or not _on_grid(qty, low, step):
        return _spot_failure(kind)
    return None


def _percent_rule(kind: str, f: dict, side: str, price: Decimal, reference: Decimal, futures: bool,
                  tick: Decimal) -> dict | None:
    if kind == "PERCENT_PRICE_BY_SIDE":
        prefix = "bid" if side == "BUY" else "ask"
        up, down = f[f"{prefix}MultiplierUp"], f[f"{prefix}MultiplierDown"]
    else:
        up, down = f["multiplierUp"], f["multiplierDown"]
    cap, floor = _EXACT.multiply(reference, up), _EXACT.multiply(reference, down)
    if futures:
        # quoted on the tick grid, no final period (ccxt#7898); an on-grid price passes it iff it passes the bound
        if price > cap:
            return _error(-4016, f"Limit price can't be higher than {_tick_text(cap, tick, ROUND_FLOOR)}")
        if price < floor:
            return _error(-4024, f"Limit price can't be lower than {_tick_text(floor, tick, ROUND_CEILING)}")
        return None
    return _spot_failure(kind) if price > cap or price < floor else None


def _notional_rule(kind: str, f: dict, notional: Decimal | None, at_market: bool, futures: bool,
                   reduce_only: bool) -> dict | None:
    if notional is None:
        return None
    low = f.get("minNotional", 0)
    if futures:
        if not reduce_only and notional < low:
            shown = format(low.normalize(), "f")
            return _error(-4164, f"Order's notional must be no smaller than {shown} (unless you choose reduce only).")
        return None
    if kind == "MIN_NOTIONAL":
        applies_min, applies_max, high = not at_market or f.get("applyToMarket", False), False, 0
    else:
        applies_min = not at_market or f.get("applyMinToMarket", False)
        applies_max = not at_market or f.get("applyMaxToMarket", False)
        high = f.get("maxNotional", 0)
    if (applies_min and notional < low) or (applies_max and high and notional > high):
        return _spot_failure(kind)
    return None


def check_new_order(filters: SymbolFilters, side: str, order_type: str, price: Decimal | None, qty: Decimal,
                    reference_price: Decimal | None, open_orders: int | None = None,
                    reduce_only: bool = False) -> dict | None:
    """Binance's error body for a new order that fails a filter (answered with HTTP 400), else None.

    reference_price is what Binance prices a market order and the PERCENT_PRICE band at: on spot the
    symbol's average price (GET /api/v3/avgPrice), on futures the mark price. None (the venue has seen no
    trade yet) skips what needs it. open_orders, the account's open orders on the symbol before this one,
    enables MAX_NUM_ORDERS."""
    market = filters.market
    futures = market == USDM
    if side not in ("BUY", "SELL"):
        raise ValueError(f"side {side!r} is not BUY or SELL")
    if order_type in _PRICED[market]:
        if price is None:
            raise ValueError(f"a {order_type} order needs a price")
        at_market = False
    elif order_type in _AT_MARKET[market]:
        at_market, price = True, None
    else:
        raise ValueError(f"order type {order_type!r} is not one of {market}'s")
    qty = _dec(qty)
    price = None if price is None else _dec(price)
    reference = None if reference_price is None else _dec(reference_price)
    tick = (filters.rule("PRICE_FILTER") or {}).get("tickSize", Decimal(0))
    priced_at = reference if at_market else price
    notional = None if priced_at is None else _EXACT.multiply(priced_at, qty)

    for kind, f in filters.rules:
        failure = None
        if kind == "PRICE_FILTER" and not at_market:
            failure = _price_rule(f, price, futures)
        elif kind in ("PERCENT_PRICE", "PERCENT_PRICE_BY_SIDE") and not at_market and reference is not None:
            failure = _percent_rule(kind, f, side, price, reference, futures, tick)
        elif kind == "LOT_SIZE":
            failure = _lot_rule(kind, f, qty, futures)
        elif kind == "MARKET_LOT_SIZE" and at_market:
            failure = _lot_rule(kind, f, qty, futures)
        elif kind in ("MIN_NOTIONAL", "NOTIONAL"):
            failure = _notional_rule(kind, f, notional, at_market, futures, reduce_only)
        elif kind == "MAX_NUM_ORDERS" and open_orders is not None and f["maxNumOrders"] is not None:
            if open_orders >= f["maxNumOrders"]:
                failure = _error(-2025, "Reach max open order limit.") if futures else _spot_failure(kind)
        if failure is not None:
            return failure
    return None
