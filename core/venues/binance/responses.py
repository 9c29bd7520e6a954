"""Binance REST order bodies -> VenueReport / VenueOrder / VenueFill, exactly, at the instrument's precision.

Bodies read (spot https://developers.binance.com/docs/binance-spot-api-docs/rest-api/trading-endpoints,
USDT-M .../derivatives/usds-margined-futures/trade/rest-api):

- a new order's answer: spot ACK (ids only), RESULT (status, no fills), FULL (with `fills`); futures
  ACK / RESULT (never fills);
- an order as GET /order, DELETE /order, GET /openOrders give it (spot's cancel answer carries our id in
  `origClientOrderId`, its own `clientOrderId` is the cancel's);
- one trade of GET /api/v3/myTrades or GET /fapi/v1/userTrades;
- balances of GET /api/v3/account, GET /fapi/v2/balance or GET /fapi/v2/account.

Numbers are Binance's decimal strings (or ints, or numeric strings where a client normalised them),
read as Decimal and scaled exactly: a price or quantity with more decimals than the instrument's
precision is a ResponseError (the instrument table and the venue disagree), never a rounding. JSON
floats are refused: parse bodies with `json.loads(text, parse_float=Decimal)`.

A report carries a fill only with the venue's trade id (the OMS counts a fill once by it, and the
user stream gives the same ids). A body that says an order filled without saying which trades
(spot RESULT, every futures answer) reports the order ACCEPTED with its `cum_qty`: the fills
themselves come from the user stream or my_trades, so none is counted twice or guessed from an
average price. Terminal states without fills (CANCELED, EXPIRED, REJECTED) are reported as they are.

Fees are in the instrument's quote asset at ACCOUNT_PRECISION (VenueReport.fee), rounded up: a fee
paid in the quote asset converts as is; one paid in the base asset (spot buys) is valued at the
fill's price; one paid in a third asset (BNB) cannot be valued here and is reported as 0 with a
warning (reconciliation of balances then corrects the shadow balance).
"""
from __future__ import annotations

import decimal
import logging
import re
from collections.abc import Mapping
from decimal import ROUND_CEILING, Decimal

from ttquant.core.instruments import Instrument
from ttquant.core.records import Liquidity, OrderStatus, Side
from ttquant.core.venues.base import VenueFill, VenueOrder, VenueReport

__all__ = ["ACCOUNT_PRECISION", "ForeignOrder", "ResponseError", "account_balances", "encode_client_order_id",
           "fee_to_account", "order_reports", "order_status", "parse_client_order_id", "venue_fill",
           "venue_order"]

log = logging.getLogger("ttquant.venues.binance")

ACCOUNT_PRECISION = 8  # money at 8 decimals of its asset: core/gateway/risk.pxd's, the scale of VenueReport.fee
_MS_TO_NS = 1_000_000
_CONTEXT = decimal.Context(prec=60)  # wide enough that commission * price is exact before the final rounding

S = OrderStatus
_STATUS = {
    "NEW": S.ACCEPTED,
    "PENDING_NEW": S.ACCEPTED,          # spot: in an order list, not yet working; the venue has it
    "PARTIALLY_FILLED": S.PARTIALLY_FILLED,
    "FILLED": S.FILLED,
    "CANCELED": S.CANCELED,
    "PENDING_CANCEL": S.ACCEPTED,       # spot: documented as unused; still open until it says otherwise
    "REJECTED": S.REJECTED,
    "EXPIRED": S.EXPIRED,               # IOC / FOK remainder, or a LIMIT_MAKER / GTX that would take
    "EXPIRED_IN_MATCH": S.EXPIRED,      # spot: expired by self-trade prevention
}
_SIDES = {"BUY": Side.BUY, "SELL": Side.SELL}

# newClientOrderId: Binance takes ^[.A-Z:/a-z0-9_-]{1,36}$; ours is t<strategy id>-<client order id>, 32 at most
_CID_RE = re.compile(r"t(0|[1-9][0-9]{0,9})-(0|[1-9][0-9]{0,19})")


class ResponseError(ValueError):
    """A body we cannot read exactly: a missing field, an unknown status, more decimals than the instrument."""


class ForeignOrder(ResponseError):
    """An order whose client order id is not one of ours (placed by hand, or by another program)."""


def encode_client_order_id(strategy_id: int, client_order_id: int) -> str:
    """Our order's `newClientOrderId`: "t<strategy id>-<client order id>", decimal, reversible."""
    if not 0 <= strategy_id < 2**32 or not 0 <= client_order_id < 2**64:
        raise ValueError(f"strategy id {strategy_id} / client order id {client_order_id} out of range")
    return f"t{strategy_id}-{client_order_id}"


def parse_client_order_id(text: object) -> tuple[int, int] | None:
    """(strategy id, client order id) of one of our ids, None for any other id."""
    if not isinstance(text, str) or (m := _CID_RE.fullmatch(text)) is None:
        return None
    strategy_id, client_order_id = int(m.group(1)), int(m.group(2))
    if strategy_id >= 2**32 or client_order_id >= 2**64:
        return None
    return strategy_id, client_order_id


def _field(body: Mapping, key: str):
    try:
        return body[key]
    except (KeyError, TypeError):
        raise ResponseError(f"field {key!r} missing from {_describe(body)}") from None


def _describe(body) -> str:
    if isinstance(body, Mapping):
        return f"a body with {', '.join(sorted(map(str, body))[:12])}"
    return f"a {type(body).__name__}"


def _int(body: Mapping, key: str) -> int:
    value = _field(body, key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ResponseError(f"{key}: an integer expected, got {type(value).__name__}")
    try:
        return int(value)
    except ValueError:
        raise ResponseError(f"{key}: {value!r} is not an integer") from None


def _decimal(value, key: str) -> Decimal:
    if isinstance(value, float):
        raise ResponseError(f"{key}: a JSON float; parse bodies with parse_float=Decimal")
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise ResponseError(f"{key}: a decimal string expected, got {type(value).__name__}")
    try:
        d = Decimal(value)
    except decimal.InvalidOperation:
        raise ResponseError(f"{key}: {value!r} is not a number") from None
    if not d.is_finite():
        raise ResponseError(f"{key}: {value!r} is not finite")
    return d


def _raw(body: Mapping, key: str, precision: int) -> int:
    """body[key] * 10**precision, exactly."""
    d = _decimal(_field(body, key), key)
    scaled = d.scaleb(precision, _CONTEXT)
    if scaled != scaled.to_integral_value():
        raise ResponseError(f"{key} {d} has more than {precision} decimals (the instrument's precision)")
    return int(scaled)


def fee_to_account(amount, asset: str, inst: Instrument, price=None) -> int | None:
    """A commission in the quote asset at ACCOUNT_PRECISION, rounded up; `price` (the fill's, a decimal
    string) values a fee paid in the base asset. None when the fee is in a third asset (BNB)."""
    fee = _decimal(amount, "commission")
    if asset == inst.quote:
        value = fee
    elif asset == inst.base and price is not None:
        value = _CONTEXT.multiply(fee, _decimal(price, "price"))
    elif fee == 0:
        return 0
    else:
        return None
    return int(value.scaleb(ACCOUNT_PRECISION, _CONTEXT).to_integral_value(rounding=ROUND_CEILING))


def _fee(amount, asset, inst: Instrument, price, where: str) -> int:
    fee = fee_to_account(amount, asset, inst, price)
    if fee is None:
        log.warning("%s: a fee of %s %s is not in %s or %s and is reported as 0 (reconciliation corrects the "
                    "balance)", where, amount, asset, inst.quote, inst.base)
        return 0
    return fee


def order_status(body: Mapping) -> OrderStatus:
    status = _field(body, "status")
    try:
        return _STATUS[status]
    except (KeyError, TypeError):
        raise ResponseError(f"order status {status!r} is not one we map") from None


def _ids(body: Mapping, ids: tuple[int, int] | None) -> tuple[int, int]:
    if ids is not None:
        return ids
    text = body.get("origClientOrderId") or body.get("clientOrderId")  # spot cancel: ours is origClientOrderId
    parsed = parse_client_order_id(text)
    if parsed is None:
        raise ForeignOrder(f"client order id {text!r} is not one of ours")
    return parsed


def _side(body: Mapping) -> int:
    side = _field(body, "side")
    if side not in _SIDES:
        raise ResponseError(f"side {side!r}")
    return int(_SIDES[side])


def _ts_ns(body: Mapping) -> int:
    for key in ("transactTime", "updateTime", "time", "workingTime"):
        if body.get(key) not in (None, ""):
            return _int(body, key) * _MS_TO_NS
    return 0


def venue_order(body: Mapping, inst: Instrument, ids: tuple[int, int] | None = None) -> VenueOrder:
    """An order as the venue has it (GET /order, GET /openOrders entries, DELETE /order, a RESULT/FULL
    answer). `ids`: (strategy id, client order id) when known, else read from the client order id."""
    strategy_id, client_order_id = _ids(body, ids)
    return VenueOrder(strategy_id=strategy_id, client_order_id=client_order_id,
                      venue_order_id=_int(body, "orderId"), instrument_id=inst.instrument_id, side=_side(body),
                      price=_raw(body, "price", inst.price_precision), qty=_raw(body, "origQty", inst.size_precision),
                      cum_qty=_raw(body, "executedQty", inst.size_precision), status=int(order_status(body)))


def order_reports(body: Mapping, inst: Instrument, ids: tuple[int, int] | None = None) -> list[VenueReport]:
    """What a new-order, cancel or order-status answer says, as the OMS applies it: one report per fill
    the body names by trade id, then the order's state if that adds something (module docstring)."""
    strategy_id, client_order_id = _ids(body, ids)
    venue_order_id = _int(body, "orderId")
    ts = _ts_ns(body)
    if "status" not in body:  # spot ACK: the venue has the order, nothing more is said
        return [VenueReport(strategy_id, client_order_id, S.ACCEPTED, venue_order_id=venue_order_id, ts_exchange=ts)]
    status = order_status(body)
    price = _raw(body, "price", inst.price_precision)
    qty = _raw(body, "origQty", inst.size_precision)
    executed = _raw(body, "executedQty", inst.size_precision)
    reports: list[VenueReport] = []
    cum = 0
    for n, fill in enumerate(body.get("fills") or ()):
        last_qty = _raw(fill, "qty", inst.size_precision)
        cum += last_qty
        where = f"order {venue_order_id} fill {n}"
        reports.append(VenueReport(
            strategy_id, client_order_id, S.FILLED if qty and cum >= qty else S.PARTIALLY_FILLED,
            venue_order_id=venue_order_id, last_price=_raw(fill, "price", inst.price_precision), last_qty=last_qty,
            cum_qty=cum, fee=_fee(_field(fill, "commission"), fill.get("commissionAsset"), inst, fill.get("price"),
                                  where),
            liquidity=Liquidity.TAKER,  # filled as it arrived: it took liquidity
            ts_exchange=ts, trade_id=_int(fill, "tradeId"), price=price, qty=qty))
    if reports and cum != executed:
        raise ResponseError(f"order {venue_order_id}: fills add up to {cum}, executedQty is {executed} (raw)")
    if status in (S.FILLED, S.PARTIALLY_FILLED):
        if reports:
            return reports  # the last fill says FILLED / PARTIALLY_FILLED by its cumulative quantity
        status = S.ACCEPTED  # filled, but which trades is for the user stream / my_trades to say
    reports.append(VenueReport(strategy_id, client_order_id, status, venue_order_id=venue_order_id,
                               cum_qty=executed, ts_exchange=ts, price=price, qty=qty))
    return reports


def venue_fill(trade: Mapping, inst: Instrument, ids: tuple[int, int]) -> VenueFill:
    """One trade of GET /api/v3/myTrades or /fapi/v1/userTrades; `ids` = (strategy id, client order id)
    of its `orderId` (the trade does not name the client order id)."""
    if "isBuyer" in trade:  # spot
        buyer, maker = trade["isBuyer"], trade.get("isMaker")
    else:  # futures
        buyer = trade["buyer"] if "buyer" in trade else _field(trade, "side") == "BUY"
        maker = trade.get("maker")
    if not isinstance(buyer, bool) or not isinstance(maker, bool):
        raise ResponseError("a trade without a buyer / maker flag")
    trade_id = _int(trade, "id")
    return VenueFill(trade_id=trade_id, strategy_id=ids[0], client_order_id=ids[1], instrument_id=inst.instrument_id,
                     side=int(Side.BUY if buyer else Side.SELL), price=_raw(trade, "price", inst.price_precision),
                     qty=_raw(trade, "qty", inst.size_precision),
                     fee=_fee(_field(trade, "commission"), trade.get("commissionAsset"), inst, trade.get("price"),
                              f"trade {trade_id}"),
                     liquidity=int(Liquidity.MAKER if maker else Liquidity.TAKER),
                     ts_ns=_int(trade, "time") * _MS_TO_NS)


def _amount(value, key: str) -> int:
    d = _decimal(value, key).scaleb(ACCOUNT_PRECISION, _CONTEXT)
    if d != d.to_integral_value():
        raise ResponseError(f"{key} {value} has more than {ACCOUNT_PRECISION} decimals")
    return int(d)


def account_balances(body) -> dict[str, int]:
    """Asset -> amount at ACCOUNT_PRECISION: spot free + locked (GET /api/v3/account), futures wallet
    balance (GET /fapi/v2/balance list, or GET /fapi/v2/account `assets`). Zero balances left out."""
    if isinstance(body, Mapping) and "balances" in body:
        rows = [(b["asset"], _amount(b["free"], "free") + _amount(b["locked"], "locked")) for b in body["balances"]]
    elif isinstance(body, Mapping) and "assets" in body:
        rows = [(a["asset"], _amount(a["walletBalance"], "walletBalance")) for a in body["assets"]]
    elif isinstance(body, list):
        rows = [(a["asset"], _amount(a["balance"], "balance")) for a in body]
    else:
        raise ResponseError(f"not an account or balance body: {_describe(body)}")
    return {asset: amount for asset, amount in rows if amount}
