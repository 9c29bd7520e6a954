"""What to do when Binance refuses, or may not have done, an order request (spot and USDT-M futures).

`classify(http_status, body, market)` turns a REST response or a WebSocket API response into one decision:

- REJECT: the order was refused and is not on the book; report `reject_code` to the strategy.
- RETRY_AFTER_RESYNC: refused for our clock (-1021): refresh the ClockOffset, then send it once more.
- UNKNOWN_RESULT: the order may or may not be live (5XX, -1006, -1007, no answer, a 409 partial
  cancel-replace): query it by client order id (or wait for the user stream); never send it again.
- BACK_OFF: a rate limit (429, -1003, -1015): the order was not placed; send nothing for `retry_after_s`.
- HALT: no later request can succeed (418 IP ban, 403 WAF block, bad API key, bad signature, no
  permission, wrong position mode): stop order entry, log `msg`, raise an alert; never retry.

The decision follows the error code when there is one: Binance's codes are universal but a few mean
different things on spot and futures (-2021, -2022, -2026, -1108), so the market is an argument.
Codes -1010/-1013/-2010/-2011/-2038 are containers: their message says which filter or check refused.
The one exception to "the code decides" is a 5XX status, whose execution status is unknown whatever the
body says. Unknown codes: REJECT/VENUE when the venue answered, UNKNOWN_RESULT for 5XX or no answer.

Sources (read 2026-07):
  https://developers.binance.com/docs/binance-spot-api-docs/errors
  https://developers.binance.com/docs/binance-spot-api-docs/rest-api/http-return-codes
  https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits
  https://developers.binance.com/docs/binance-spot-api-docs/web-socket-api/response-format
  https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code
"""
from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ttquant.core.records import RejectCode

__all__ = ["Action", "VenueErrorDecision", "classify", "classify_batch", "parse_retry_after"]

Market = Literal["spot", "usdm"]
R = RejectCode


class Action(enum.Enum):
    REJECT = "reject"
    RETRY_AFTER_RESYNC = "retry_after_resync"
    UNKNOWN_RESULT = "unknown_result"
    BACK_OFF = "back_off"
    HALT = "halt"


@dataclass(frozen=True, slots=True)
class VenueErrorDecision:
    action: Action
    reject_code: RejectCode  # what the strategy hears if the order ends refused; NONE while its fate is unknown
    retry_after_s: float | None = None  # BACK_OFF / HALT: how long Binance asked us to wait, when it said
    code: int | None = None  # Binance's error code, if the body had one
    msg: str = ""  # Binance's message, or ours when there was no body; safe to log (holds no secret)
    http_status: int | None = None


def _reject(code: RejectCode) -> tuple[Action, RejectCode]:
    return Action.REJECT, code


_UNKNOWN = (Action.UNKNOWN_RESULT, R.NONE)
_BACK_OFF = (Action.BACK_OFF, R.RATE_LIMIT)
_HALT = (Action.HALT, R.VENUE)
_RESYNC = (Action.RETRY_AFTER_RESYNC, R.VENUE)  # VENUE if the one retry is refused too
_MSG = None  # a container code: the message decides (see _by_message)

# Codes both markets define the same way.
_COMMON: dict[int, tuple[Action, RejectCode] | None] = {
    -1000: _UNKNOWN,                   # UNKNOWN: an unknown error occurred while processing the request
    -1001: _UNKNOWN,                   # DISCONNECTED: internal error
    -1002: _HALT,                      # UNAUTHORIZED: the key may not do this
    -1003: _BACK_OFF,                  # TOO_MANY_REQUESTS (HALT when the message says "IP banned")
    -1006: _UNKNOWN,                   # UNEXPECTED_RESP: "Execution status unknown."
    -1007: _UNKNOWN,                   # TIMEOUT: "Send status unknown; execution status unknown."
    -1008: (Action.BACK_OFF, R.VENUE_UNAVAILABLE),  # SERVER_BUSY / request throttled: try again later
    -1010: _MSG,                       # ERROR_MSG_RECEIVED from the matching engine
    -1013: _MSG,                       # INVALID_MESSAGE: a filter failure or an order-placement failure
    -1014: _reject(R.BAD_FIELD),       # UNKNOWN_ORDER_COMPOSITION
    -1015: _BACK_OFF,                  # TOO_MANY_ORDERS: the order rate limit
    -1016: _reject(R.VENUE_UNAVAILABLE),  # SERVICE_SHUTTING_DOWN
    -1020: _reject(R.BAD_FIELD),       # UNSUPPORTED_OPERATION
    -1021: _RESYNC,                    # INVALID_TIMESTAMP: outside recvWindow or 1000 ms ahead of the server
    -1022: _HALT,                      # INVALID_SIGNATURE: a wrong secret or a signing bug, not transient
    -1034: _BACK_OFF,                  # TOO_MANY_CONNECTIONS (WebSocket API)
    -1099: _HALT,                      # NOT_FOUND: not found, unauthenticated, or unauthorized
    -1100: _MSG, -1101: _reject(R.BAD_FIELD), -1102: _MSG, -1103: _reject(R.BAD_FIELD),
    -1104: _reject(R.BAD_FIELD), -1105: _MSG, -1106: _MSG, -1111: _MSG, -1130: _MSG, -1128: _MSG,
    -1112: _reject(R.VENUE),           # NO_DEPTH: no orders on the book
    -1114: _reject(R.BAD_FIELD), -1115: _reject(R.BAD_FIELD), -1116: _reject(R.BAD_FIELD),
    -1117: _reject(R.BAD_FIELD), -1118: _reject(R.BAD_FIELD), -1119: _reject(R.BAD_FIELD),
    -1121: _reject(R.UNKNOWN_INSTRUMENT),  # BAD_SYMBOL
    -1122: _reject(R.UNKNOWN_INSTRUMENT),  # INVALID_SYMBOL_STATUS
    -1125: _reject(R.VENUE),           # INVALID_LISTEN_KEY (user stream: re-create it)
    -2010: _MSG,                       # NEW_ORDER_REJECTED
    -2011: _MSG,                       # CANCEL_REJECTED
    -2013: _reject(R.UNKNOWN_ORDER),   # NO_SUCH_ORDER
    -2014: _HALT,                      # BAD_API_KEY_FMT
    -2015: _HALT,                      # REJECTED_MBX_KEY: invalid key, IP, or permissions
}

_SPOT: dict[int, tuple[Action, RejectCode] | None] = {
    -1108: _MSG,                       # PARAM_OVERFLOW: "Parameter '%s' overflowed."
    -1131: _reject(R.BAD_FIELD),       # recvWindow must be less than 60000
    -1134: _reject(R.BAD_FIELD), -1135: _reject(R.BAD_FIELD), -1145: _reject(R.BAD_FIELD),
    -1210: _reject(R.BAD_FIELD), -1211: _reject(R.BAD_FIELD),
    -2021: _UNKNOWN,                   # cancel-replace partially failed (409): one leg happened; query both
    -2022: _MSG,                       # cancel-replace failed, both legs: decided from data.newOrderResponse
    -2026: _reject(R.UNKNOWN_ORDER),   # ORDER_ARCHIVED
    -2038: _MSG,                       # ORDER_AMEND_REJECTED
    -2039: _reject(R.UNKNOWN_ORDER),   # CLIENT_ORDER_ID_INVALID for this order id
}

_USDM: dict[int, tuple[Action, RejectCode] | None] = {
    -1011: _HALT,                      # NON_WHITE_LIST: this IP cannot access this route
    -1108: _reject(R.BAD_FIELD),       # BAD_ASSET
    -1136: _reject(R.BAD_FIELD),       # INVALID_NEW_ORDER_RESP_TYPE
    -2012: _reject(R.VENUE),           # CANCEL_ALL_FAIL
    -2017: _HALT,                      # API_KEYS_LOCKED
    -2018: _reject(R.INSUFFICIENT_FUNDS), -2019: _reject(R.INSUFFICIENT_FUNDS),
    -2020: _reject(R.VENUE),           # UNABLE_TO_FILL
    -2021: _reject(R.BAD_PRICE),       # ORDER_WOULD_IMMEDIATELY_TRIGGER
    -2022: _reject(R.REDUCE_ONLY),     # REDUCE_ONLY_REJECT
    -2023: _reject(R.VENUE),           # USER_IN_LIQUIDATION
    -2024: _reject(R.REDUCE_ONLY),     # POSITION_NOT_SUFFICIENT
    -2025: _reject(R.MAX_OPEN_ORDERS),  # MAX_OPEN_ORDER_EXCEEDED
    -2026: _reject(R.REDUCE_ONLY),     # REDUCE_ONLY_ORDER_TYPE_NOT_SUPPORTED
    -2027: _reject(R.POSITION_LIMIT),  # MAX_LEVERAGE_RATIO
    -2028: _reject(R.INSUFFICIENT_FUNDS),  # MIN_LEVERAGE_RATIO: insufficient margin balance
    -4000: _reject(R.UNKNOWN_ORDER),   # INVALID_ORDER_STATUS
    -4001: _reject(R.BAD_PRICE), -4002: _reject(R.BAD_PRICE), -4006: _reject(R.BAD_PRICE),
    -4007: _reject(R.BAD_PRICE), -4013: _reject(R.BAD_PRICE), -4014: _reject(R.BAD_PRICE),
    -4003: _reject(R.BAD_QTY), -4004: _reject(R.BAD_QTY), -4005: _reject(R.BAD_QTY), -4023: _reject(R.BAD_QTY),
    -4015: _reject(R.BAD_FIELD),       # INVALID_CL_ORD_ID_LEN
    -4016: _reject(R.FAT_FINGER),      # above the mark price multiplier cap (PERCENT_PRICE)
    -4024: _reject(R.FAT_FINGER),      # below the mark price multiplier floor
    -4045: _reject(R.MAX_OPEN_ORDERS),  # MAX_STOP_ORDER_EXCEEDED
    -4050: _reject(R.INSUFFICIENT_FUNDS), -4051: _reject(R.INSUFFICIENT_FUNDS),
    -4056: _HALT, -4057: _HALT,        # INVALID_API_KEY_TYPE, INVALID_RSA_PUBLIC_KEY
    -4060: _reject(R.BAD_FIELD),       # INVALID_POSITION_SIDE
    -4061: _HALT,                      # POSITION_SIDE_NOT_MATCH: the account's position mode is not ours
    -4062: _reject(R.REDUCE_ONLY),     # REDUCE_ONLY_CONFLICT
    -4087: _reject(R.VENUE),           # the user may place reduce-only orders only
    -4088: _HALT,                      # NO_PLACE_ORDER_PERMISSION
    -4109: _HALT,                      # INACTIVE_ACCOUNT
    -4116: _reject(R.DUPLICATE_ORDER_ID),  # DUPLICATED_CLIENT_ORDER_ID
    -4118: _reject(R.REDUCE_ONLY),     # REDUCE_ONLY_MARGIN_CHECK_FAILED
    -4120: _reject(R.BAD_FIELD),       # STOP_ORDER_SWITCH_ALGO
    -4131: _reject(R.FAT_FINGER),      # MARKET_ORDER_REJECT: best price outside PERCENT_PRICE
    -4137: _reject(R.BAD_FIELD), -4138: _reject(R.BAD_FIELD), -4139: _reject(R.BAD_FIELD),
    -4140: _reject(R.VENUE), -4141: _reject(R.VENUE),  # symbol not open for positions / closed
    -4142: _reject(R.BAD_PRICE),       # take profit or stop would trigger immediately
    -4164: _reject(R.BAD_QTY),         # MIN_NOTIONAL
    -4183: _reject(R.BAD_PRICE), -4184: _reject(R.BAD_PRICE), -4210: _reject(R.BAD_PRICE),
    -4211: _reject(R.BAD_PRICE),
    -4192: _HALT, -4402: _HALT,        # cooling-off period; not available in this region
    -4400: _reject(R.VENUE), -4401: _reject(R.VENUE),  # risk rules: reduce-only orders only
    -5021: _reject(R.VENUE),           # FOK_ORDER_REJECT: could not be filled at once
    -5022: _reject(R.BAD_PRICE),       # GTX_ORDER_REJECT: the post-only order would take
    -5024: _reject(R.VENUE), -5025: _reject(R.BAD_FIELD), -5026: _reject(R.VENUE), -5027: _reject(R.VENUE),
    -5028: _RESYNC,                    # ME_RECVWINDOW_REJECT: outside the matching engine's recvWindow
    -5029: _reject(R.BAD_QTY),         # MODIFICATION_MIN_NOTIONAL
    -5037: _reject(R.BAD_FIELD), -5038: _reject(R.BAD_FIELD), -5039: _reject(R.BAD_FIELD),
    -5040: _reject(R.BAD_FIELD), -5041: _reject(R.VENUE), -5043: _reject(R.VENUE),
}

_BY_MARKET = {"spot": {**_COMMON, **_SPOT}, "usdm": {**_COMMON, **_USDM}}

# "Filter failure: <FILTER>" (spot errors.md, "Filter failures")
_FILTERS: dict[str, RejectCode] = {
    "PRICE_FILTER": R.BAD_PRICE,
    "PERCENT_PRICE": R.FAT_FINGER,           # too far from the weighted average price
    "PERCENT_PRICE_BY_SIDE": R.FAT_FINGER,
    "LOT_SIZE": R.BAD_QTY,
    "MARKET_LOT_SIZE": R.BAD_QTY,
    "MIN_NOTIONAL": R.BAD_QTY,
    "NOTIONAL": R.BAD_QTY,                   # min or max notional: the message does not say which
    "ICEBERG_PARTS": R.BAD_QTY,
    "TRAILING_DELTA": R.BAD_PRICE,
    "MAX_POSITION": R.POSITION_LIMIT,
    "MAX_NUM_ORDERS": R.MAX_OPEN_ORDERS,
    "MAX_NUM_ALGO_ORDERS": R.MAX_OPEN_ORDERS,
    "MAX_NUM_ICEBERG_ORDERS": R.MAX_OPEN_ORDERS,
    "MAX_NUM_ORDER_LISTS": R.MAX_OPEN_ORDERS,
    "EXCHANGE_MAX_NUM_ORDERS": R.MAX_OPEN_ORDERS,
    "EXCHANGE_MAX_NUM_ALGO_ORDERS": R.MAX_OPEN_ORDERS,
    "EXCHANGE_MAX_NUM_ICEBERG_ORDERS": R.MAX_OPEN_ORDERS,
    "EXCHANGE_MAX_NUM_ORDER_LISTS": R.MAX_OPEN_ORDERS,
    "MAX_NUM_ORDER_AMENDS": R.VENUE,
}
_FILTER_RE = re.compile(r"Filter failure:\s*([A-Z_]+)")

# Messages of -1010 / -2010 / -2011 / -2038 (spot errors.md, "Failures during order placement"),
# compared lowercased without the final full stop; a prefix match covers "... for this symbol." families.
_MESSAGES: tuple[tuple[str, tuple[Action, RejectCode]], ...] = (
    ("unknown order sent", _reject(R.UNKNOWN_ORDER)),
    ("duplicate order sent", _reject(R.DUPLICATE_ORDER_ID)),
    ("account has insufficient balance", _reject(R.INSUFFICIENT_FUNDS)),
    ("market is closed", _reject(R.VENUE)),
    ("order would immediately match and take", _reject(R.BAD_PRICE)),  # LIMIT_MAKER would cross
    ("order would trigger immediately", _reject(R.BAD_PRICE)),
    ("the relationship of the prices for the orders is not correct", _reject(R.BAD_PRICE)),
    ("price * qty is zero or less", _reject(R.BAD_QTY)),
    ("icebergqty exceeds qty", _reject(R.BAD_QTY)),
    ("order amend (quantity increase) is not supported", _reject(R.BAD_QTY)),
    ("unsupported order combination", _reject(R.BAD_FIELD)),
    ("cancel order is invalid", _reject(R.BAD_FIELD)),
    ("this action is disabled on this account", _HALT),
    ("this account may not place or cancel orders", _HALT),
    ("rest api trading is not enabled", _HALT),
    ("websocket api trading is not enabled", _HALT),
    ("this symbol is not permitted for this account", _reject(R.VENUE)),
    ("this symbol is restricted for this account", _reject(R.VENUE)),
    ("order was not canceled due to cancel restrictions", _reject(R.VENUE)),
    ("order book liquidity is", _reject(R.VENUE)),
    ("the requested action would change no state", _reject(R.VENUE)),
)
_NOT_SUPPORTED_RE = re.compile(r"not supported for this symbol|not support for this symbol|may not use pegged|"
                               r"cannot be used with this order type")
_PARAM_RE = re.compile(r"[Pp]aram(?:eter)? '([A-Za-z]+)'")
_PRICE_PARAMS = {"price", "stopPrice", "trailingDelta", "pegOffsetValue"}
_QTY_PARAMS = {"quantity", "quoteOrderQty", "icebergQty", "newQty"}
_BANNED_RE = re.compile(r"banned until (\d{10,16})")


def parse_retry_after(value: str | bytes | None) -> float | None:
    """Seconds from a Retry-After header; Binance sends whole seconds. None if absent or not a number
    (an HTTP-date would need a clock here, and Binance does not send one)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _by_message(code: int, msg: str, body: Mapping, market: Market) -> tuple[Action, RejectCode]:
    if market == "spot" and code == -2022:
        # both legs of a cancel-replace failed: the new order's refusal is the one the strategy hears
        data = body.get("data") if isinstance(body.get("data"), Mapping) else {}
        for leg in ("newOrderResponse", "cancelResponse"):
            part = data.get(leg)
            if isinstance(part, Mapping) and isinstance(part.get("code"), int):
                return _decide(part["code"], str(part.get("msg", "")), part, market, None)
        return _reject(R.VENUE)
    if (m := _FILTER_RE.search(msg)) is not None:
        return _reject(_FILTERS.get(m.group(1), R.VENUE))
    low = msg.strip().rstrip(".").lower()
    for prefix, decision in _MESSAGES:
        if low.startswith(prefix):
            return decision
    if _NOT_SUPPORTED_RE.search(low):
        return _reject(R.BAD_FIELD)
    if (m := _PARAM_RE.search(msg)) is not None:
        name = m.group(1)
        return _reject(R.BAD_PRICE if name in _PRICE_PARAMS else R.BAD_QTY if name in _QTY_PARAMS else R.BAD_FIELD)
    if -1199 <= code <= -1100:
        return _reject(R.BAD_FIELD)
    if code == -2011:
        return _reject(R.UNKNOWN_ORDER)  # CANCEL_REJECTED without a known message: the order is not open
    return _reject(R.VENUE)


def _decide(code: int, msg: str, body: Mapping, market: Market, status: int | None) -> tuple[Action, RejectCode]:
    table = _BY_MARKET[market]
    if code not in table:
        return _UNKNOWN if status is not None and status >= 500 else _reject(R.VENUE)
    decision = table[code]
    if decision is None:
        return _by_message(code, msg, body, market)
    if code == -1003 and "banned" in msg.lower():
        return (Action.HALT, R.VENUE_UNAVAILABLE)
    return decision


def _ban_seconds(msg: str, data: Mapping | None) -> float | None:
    """Seconds left of a wait given in the body: WebSocket API `data.retryAfter` (epoch ms) against
    `data.serverTime`, or "banned until <ms>" against serverTime. Needs the server's time to be exact."""
    if not isinstance(data, Mapping) or not isinstance(data.get("serverTime"), int):
        return None
    until = data.get("retryAfter")
    if not isinstance(until, int) and (m := _BANNED_RE.search(msg)) is not None:
        until = int(m.group(1))
    if not isinstance(until, int):
        return None
    return max(0.0, (until - data["serverTime"]) / 1000.0)


def _as_mapping(body: Mapping | bytes | str | None) -> Mapping | None:
    if body is None or isinstance(body, Mapping):
        return body
    if isinstance(body, (bytes, bytearray, str)):
        try:
            parsed = json.loads(body)
        except ValueError:
            return None  # an HTML page from a proxy or the WAF: the status decides
        return parsed if isinstance(parsed, Mapping) else None
    raise TypeError(f"body must be a dict, bytes or None, got {type(body).__name__} (a batch: classify_batch)")


def _by_status(status: int | None) -> tuple[Action, RejectCode, str]:
    if status is None:
        return Action.UNKNOWN_RESULT, R.NONE, "no response: the request may have been executed"
    if status == 418:
        return Action.HALT, R.VENUE_UNAVAILABLE, "HTTP 418: IP auto-banned after 429s"
    if status == 429:
        return Action.BACK_OFF, R.RATE_LIMIT, "HTTP 429: request rate limit broken"
    if status == 403:
        return Action.HALT, R.VENUE_UNAVAILABLE, "HTTP 403: blocked by the WAF"
    if status == 409:
        return Action.UNKNOWN_RESULT, R.NONE, "HTTP 409: cancel-replace partially succeeded"
    if status >= 500:
        return Action.UNKNOWN_RESULT, R.NONE, f"HTTP {status}: execution status unknown"
    if status in (401, 451):
        return Action.HALT, R.VENUE, f"HTTP {status}: not authorised / not available from here"
    if status >= 400:
        return Action.REJECT, R.VENUE, f"HTTP {status}"
    raise ValueError(f"HTTP {status} without an error code is not an error response")


def classify(http_status: int | None, body: Mapping | bytes | str | None, market: Market,
             retry_after: str | bytes | None = None) -> VenueErrorDecision:
    """The decision for one refused (or unanswered) request. `body` is the REST body or the whole WebSocket
    API response (its `status` and `error` are used); `retry_after` is the REST Retry-After header."""
    if market not in _BY_MARKET:
        raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")
    parsed = _as_mapping(body)
    if parsed is not None and isinstance(parsed.get("error"), Mapping):  # WebSocket API envelope
        if http_status is None and isinstance(parsed.get("status"), int):
            http_status = parsed["status"]
        parsed = parsed["error"]
    wait = parse_retry_after(retry_after)
    code = parsed.get("code") if parsed is not None else None
    if not isinstance(code, int) or isinstance(code, bool) or code >= 0:
        action, reject_code, msg = _by_status(http_status)
        return VenueErrorDecision(action, reject_code, wait if action in (Action.BACK_OFF, Action.HALT) else None,
                                  None, msg, http_status)
    msg = str(parsed.get("msg", ""))
    if http_status is not None and http_status >= 500:
        # Binance: do NOT treat a 5XX as a failure, whatever the body says
        return VenueErrorDecision(Action.UNKNOWN_RESULT, R.NONE, None, code, msg, http_status)
    if http_status == 418:
        action, reject_code = Action.HALT, R.VENUE_UNAVAILABLE
    elif http_status == 429 and _BY_MARKET[market].get(code, _BACK_OFF) != _BACK_OFF:
        action, reject_code = _BACK_OFF  # a code we would read otherwise, but the status is a rate limit
    else:
        action, reject_code = _decide(code, msg, parsed, market, http_status)
    if action in (Action.BACK_OFF, Action.HALT) and wait is None:
        wait = _ban_seconds(msg, parsed.get("data"))
    return VenueErrorDecision(action, reject_code, wait if action in (Action.BACK_OFF, Action.HALT) else None,
                              code, msg, http_status)


def classify_batch(http_status: int | None, body: list | bytes | str,
                   market: Market) -> list[VenueErrorDecision | None]:
    """One entry per order of a batch answer (POST /fapi/v1/batchOrders): a decision for each element that
    is an error, None for each order Binance accepted."""
    items = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
    if not isinstance(items, list):
        raise TypeError(f"a batch answer is a JSON list, got {type(items).__name__}")
    return [classify(http_status, item, market) if isinstance(item, Mapping) and "code" in item else None
            for item in items]
