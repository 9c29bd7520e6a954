"""Binance signed REST, spot (`/api/v3`) and USDT-M futures (`/fapi/v1`), on one keep-alive connection.

The transport under the Binance adapter: it builds and signs requests, keeps the rate limits, and
turns every refusal into one exception whose `decision` (errors.classify) says what to do:

    OrderRejected     refused; decision.reject_code is what the strategy hears
    ResultUnknown     sent, and no answer says what happened (timeout, connection dropped, 5XX, -1006,
                      -1007): resolve by order_status(client order id) or the user stream; never resend
    RateLimited       a rate limit (429, -1003, -1015) or a back-off still running: nothing was placed
    Halted            418 ban, bad key or signature, no permission: order entry stays stopped
    VenueUnreachable  the connection could not be opened: nothing was sent

-1021 (our timestamp outside the venue's window) refreshes the ClockOffset and sends the request once
more: the venue refused the first, so the second cannot duplicate it. Nothing else is ever retried
here. Bodies come back parsed with Decimal for every JSON float (responses.py converts them).

The API key goes in `X-MBX-APIKEY`; the secret stays in the signer. Exception messages, logs and repr
name the method, path, HTTP status and Binance's code and message, never a query string, key or secret.
"""
from __future__ import annotations

import http.client
import json
import logging
import select
from collections.abc import Iterable
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from ttquant.core.instruments import Instrument
from ttquant.core.records import OrderType, Side
from ttquant.core.venues.base import VenueError
from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.errors import Action, VenueErrorDecision, classify
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.responses import (
    account_balances,
    encode_client_order_id,
    parse_client_order_id,
)
from ttquant.core.venues.binance.server_time import ClockOffset
from ttquant.core.venues.binance.signing import encode_params, signed_query

__all__ = ["BinanceRest", "BinanceRestError", "Halted", "OrderRejected", "RateLimited", "ResultUnknown",
           "VenueUnreachable", "amend_params", "encode_client_order_id", "order_params", "parse_client_order_id"]

log = logging.getLogger("ttquant.venues.binance")

Market = Literal["spot", "usdm"]

# path and request weight (IP) per call; weights as documented for spot and USDT-M in 2025
_ENDPOINTS: dict[str, dict[str, tuple[str, int]]] = {
    "spot": {
        "order": ("/api/v3/order", 1), "order_status": ("/api/v3/order", 4),
        "cancel_all": ("/api/v3/openOrders", 1), "open_orders": ("/api/v3/openOrders", 6),
        "open_orders_all": ("/api/v3/openOrders", 80), "account": ("/api/v3/account", 20),
        "my_trades": ("/api/v3/myTrades", 20), "time": ("/api/v3/time", 1),
        "exchange_info": ("/api/v3/exchangeInfo", 20), "cancel_replace": ("/api/v3/order/cancelReplace", 1),
    },
    "usdm": {
        "order": ("/fapi/v1/order", 1), "order_status": ("/fapi/v1/order", 1),
        "cancel_all": ("/fapi/v1/allOpenOrders", 1), "open_orders": ("/fapi/v1/openOrders", 1),
        "open_orders_all": ("/fapi/v1/openOrders", 40), "account": ("/fapi/v2/account", 5),
        "my_trades": ("/fapi/v1/userTrades", 5), "time": ("/fapi/v1/time", 1),
        "exchange_info": ("/fapi/v1/exchangeInfo", 1), "modify": ("/fapi/v1/order", 1),
        "listen_key": ("/fapi/v1/listenKey", 1), "position_risk": ("/fapi/v2/positionRisk", 5),
    },
}
TRADES_PAGE = 1000  # the most myTrades / userTrades give in one answer


class BinanceRestError(VenueError):
    """A request Binance refused or did not answer; `decision` says what to do next."""

    def __init__(self, message: str, decision: VenueErrorDecision | None = None, client_order_id: str | None = None):
        super().__init__(message)
        self.decision, self.client_order_id = decision, client_order_id


class OrderRejected(BinanceRestError):
    """Refused: the order is not on the book (decision.reject_code says why)."""


class ResultUnknown(BinanceRestError):
    """Sent, but whether it was executed is unknown: query it by client_order_id, never send it again."""


class RateLimited(BinanceRestError):
    """Not sent or not placed because of a rate limit; wait (RateLimits.backoff_until)."""


class Halted(BinanceRestError):
    """Order entry is stopped (418 ban, bad key, no permission) until an operator resumes it."""


class VenueUnreachable(BinanceRestError):
    """The connection could not be opened: the request was not sent."""


_RAISES = {Action.REJECT: OrderRejected, Action.RETRY_AFTER_RESYNC: OrderRejected,
           Action.UNKNOWN_RESULT: ResultUnknown, Action.BACK_OFF: RateLimited, Action.HALT: Halted}


def order_params(order, inst: Instrument, market: Market) -> list[tuple[str, object]]:
    """POST /order params of a new records.Order on `inst`: LIMIT is GTC; IOC and FOK are LIMIT orders with
    that timeInForce; post-only is LIMIT_MAKER on spot and timeInForce GTX on futures; reduce-only is
    futures only. Prices and quantities as exact decimal strings at the instrument's precision."""
    side = {Side.BUY: "BUY", Side.SELL: "SELL"}.get(order.side)
    if side is None:
        raise ValueError(f"order side {order.side} is not BUY or SELL")
    kind = OrderType(order.order_type)
    params: list[tuple[str, object]] = [("symbol", inst.symbol), ("side", side)]
    if kind == OrderType.MARKET:
        params.append(("type", "MARKET"))
    elif kind == OrderType.POST_ONLY and market == "spot":
        params.append(("type", "LIMIT_MAKER"))
    else:
        tif = {OrderType.LIMIT: "GTC", OrderType.IOC: "IOC", OrderType.FOK: "FOK", OrderType.POST_ONLY: "GTX"}[kind]
        params += [("type", "LIMIT"), ("timeInForce", tif)]
    params.append(("quantity", inst.qty_from_raw(order.qty)))
    if kind != OrderType.MARKET:
        params.append(("price", inst.price_from_raw(order.price)))
    if order.reduce_only:
        if market == "spot":
            raise ValueError("reduce-only exists on futures only")
        params.append(("reduceOnly", "true"))
    params.append(("newClientOrderId", encode_client_order_id(order.strategy_id, order.client_order_id)))
    # spot FULL: the fills taken on arrival, with their trade ids; futures give at most RESULT
    params.append(("newOrderRespType", "FULL" if market == "spot" else "RESULT"))
    return params


def amend_params(order, inst: Instrument, market: Market, order_type: int, filled_qty: int = 0,
                 venue_order_id: int = 0) -> list[tuple[str, object]]:
    """The request that moves a resting order (records.Order AMEND: target_order_id, the new price and total
    quantity) to its new price and quantity.

    usdm: PUT /fapi/v1/order (modify): the same order, quantity the new total (its fills stay with it).
    spot: POST /api/v3/order/cancelReplace, STOP_ON_FAILURE: Binance cancels the order and places a new one with
    a new orderId; the new one takes OUR client order id again (newClientOrderId must be unique among OPEN orders
    only, and the old one is canceled first), so the venue, the user stream and a restart still name (strategy,
    cid). The new order is a fresh one: it is sent for the new total less `filled_qty` (what the old one filled,
    as far as we know), with the original's `order_type`."""
    side = {Side.BUY: "BUY", Side.SELL: "SELL"}.get(order.side)
    if side is None:
        raise ValueError(f"order side {order.side} is not BUY or SELL")
    kind = OrderType(order_type)
    if kind in (OrderType.MARKET, OrderType.IOC, OrderType.FOK):
        raise ValueError(f"a {kind.name} order never rests: nothing to amend")
    cid = encode_client_order_id(order.strategy_id, order.target_order_id)
    target = [("orderId", venue_order_id)] if venue_order_id else [("origClientOrderId", cid)]
    if market == "usdm":
        return [("symbol", inst.symbol), *target, ("side", side), ("quantity", inst.qty_from_raw(order.qty)),
                ("price", inst.price_from_raw(order.price))]
    if order.qty <= filled_qty:
        raise ValueError(f"the new quantity {order.qty} is not above what filled ({filled_qty})")
    params: list[tuple[str, object]] = [("symbol", inst.symbol), ("side", side)]
    if kind == OrderType.POST_ONLY:
        params.append(("type", "LIMIT_MAKER"))
    else:
        params += [("type", "LIMIT"), ("timeInForce", "GTC")]
    params += [("quantity", inst.qty_from_raw(order.qty - filled_qty)), ("price", inst.price_from_raw(order.price)),
               ("cancelReplaceMode", "STOP_ON_FAILURE"),
               ("cancelOrderId" if venue_order_id else "cancelOrigClientOrderId", venue_order_id or cid),
               ("newClientOrderId", cid), ("newOrderRespType", "FULL")]
    return params


class BinanceRest:
    def __init__(self, base_url: str, credentials: ApiCredentials, market: Market = "spot",
                 clock: ClockOffset | None = None, recv_window: int = 5000, timeout_s: float = 5.0,
                 limits: RateLimits | None = None):
        if market not in _ENDPOINTS:
            raise ValueError(f"market must be 'spot' or 'usdm', got {market!r}")
        url = urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
        self.base_url, self.market = base_url.rstrip("/"), market
        self._scheme, self._host, self._port = url.scheme, url.hostname, url.port
        self._prefix = url.path.rstrip("/")
        self._credentials = credentials
        self.recv_window, self.timeout_s = recv_window, timeout_s
        self.clock = clock if clock is not None else ClockOffset(self.server_time)
        self.limits = limits if limits is not None else RateLimits(())
        self._conn: http.client.HTTPConnection | None = None
        self.requests_sent = 0

    def __repr__(self) -> str:
        return f"BinanceRest({self.base_url}, {self.market}, {self._credentials!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("BinanceRest holds API credentials and is not picklable")

    # -- the connection ---------------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        conn = self._conn
        if conn is not None and conn.sock is not None:
            # an idle keep-alive socket that reads as ready holds an EOF (the server closed it) or junk:
            # sending an order into it would make its result unknown for nothing
            try:
                ready = select.select([conn.sock], [], [], 0)[0]
            except (OSError, ValueError):
                ready = True
            if ready:
                self._drop()
                conn = None
        if conn is None:
            cls = http.client.HTTPSConnection if self._scheme == "https" else http.client.HTTPConnection
            conn = self._conn = cls(self._host, self._port, timeout=self.timeout_s)
        if conn.sock is None:
            try:
                conn.connect()
            except OSError as e:
                self._drop()
                raise VenueUnreachable(f"{self.base_url}: cannot connect ({type(e).__name__}: {e.strerror or e}); "
                                       "nothing was sent") from None
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        self._drop()

    # -- one request ------------------------------------------------------------------------------
    def _request(self, method: str, endpoint: str, params: Iterable[tuple[str, object]] = (), *, signed: bool = True,
                 weight: int | None = None, orders: int = 0, client_order_id: str | None = None,
                 keyed: bool = False):
        path, default_weight = _ENDPOINTS[self.market][endpoint]
        what = f"{method} {path}"
        params = list(params)
        reason = self.limits.check(default_weight if weight is None else weight, orders)
        if reason is not None:
            cls = Halted if self.limits.halted is not None else RateLimited
            raise cls(f"{what}: not sent: {reason}", client_order_id=client_order_id)
        for attempt in (0, 1):
            if signed:
                if self.clock.offset_ms is None:
                    try:
                        self.clock.refresh()
                    except Exception as e:
                        raise VenueUnreachable(f"{what}: not sent: the server's clock could not be measured "
                                               f"({type(e).__name__})", client_order_id=client_order_id) from None
                query = signed_query(self._credentials.signer, params, self.clock.timestamp_ms(), self.recv_window)
                headers = {"X-MBX-APIKEY": self._credentials.api_key}
            else:   # keyed: the API key header without a signature (USER_STREAM endpoints)
                query = encode_params(params)
                headers = {"X-MBX-APIKEY": self._credentials.api_key} if keyed else {}
            status, response_headers, body = self._exchange(method, path, query, headers, client_order_id)
            if 200 <= status < 300:
                try:
                    return json.loads(body, parse_float=Decimal)
                except ValueError:
                    raise BinanceRestError(f"{what}: HTTP {status} with a body that is not JSON",
                                           client_order_id=client_order_id) from None
            decision = classify(status, body, self.market, response_headers.get("retry-after"))
            if decision.action == Action.RETRY_AFTER_RESYNC and attempt == 0:
                log.warning("%s: %s (code %s); measuring the server's clock again and sending once more", what,
                            decision.msg, decision.code)
                try:
                    self.clock.refresh()
                except Exception as e:  # the first request was refused: it is not on the book either way
                    raise OrderRejected(f"{what}: {decision.msg} (code {decision.code}), and the clock refresh "
                                        f"failed ({type(e).__name__})", decision, client_order_id) from None
                continue
            if decision.action == Action.BACK_OFF and status != 429:
                self.limits.back_off(decision.retry_after_s)
            elif decision.action == Action.HALT and status != 418:
                self.limits.halt(f"{what}: {decision.msg} (code {decision.code}, HTTP {status})")
            raise _RAISES[decision.action](f"{what}: HTTP {status}, code {decision.code}: {decision.msg}", decision,
                                           client_order_id)
        raise AssertionError("unreachable")  # pragma: no cover

    def _exchange(self, method: str, path: str, query: str, headers: dict, client_order_id: str | None):
        """(status, lowercased headers, body bytes) of one request; ResultUnknown once it may have left."""
        conn = self._connection()
        target = f"{self._prefix}{path}?{query}" if query else f"{self._prefix}{path}"
        self.limits.on_request()
        self.requests_sent += 1
        try:
            conn.request(method, target, headers=headers)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as e:
            self._drop()
            decision = classify(None, None, self.market)
            log.warning("%s %s: no answer (%s); its result is unknown", method, path, type(e).__name__)
            raise ResultUnknown(f"{method} {path}: no answer ({type(e).__name__}); the request may have been "
                                "executed", decision, client_order_id) from None
        response_headers = {k.lower(): v for k, v in response.getheaders()}
        self.limits.on_response(response.status, response.getheaders())
        if response.will_close:
            self._drop()
        return response.status, response_headers, body

    # -- spot /api/v3 and USDT-M /fapi/v1 ------------------------------------------------------------
    def server_time(self) -> int:
        return int(self._request("GET", "time", signed=False)["serverTime"])

    def exchange_info(self) -> dict:
        return self._request("GET", "exchange_info", signed=False)

    def new_order(self, order, inst: Instrument) -> dict:
        """Place a records.Order (action NEW) on `inst`; the venue's answer (responses.order_reports reads it)."""
        params = order_params(order, inst, self.market)
        cid = dict(params)["newClientOrderId"]
        return self._request("POST", "order", params, orders=1, client_order_id=cid)

    def amend_order(self, params: list[tuple[str, object]]) -> dict:
        """Move a resting order (amend_params): futures the modified order; spot cancelReplace's
        {"cancelResult", "newOrderResult", "cancelResponse", "newOrderResponse"}."""
        cid = dict(params).get("newClientOrderId") or dict(params).get("origClientOrderId")
        if self.market == "usdm":
            return self._request("PUT", "modify", params, orders=1, client_order_id=cid)
        return self._request("POST", "cancel_replace", params, orders=1, client_order_id=cid)

    # -- USDT-M user data stream: a listen key (API key only, not signed) --------------------------------
    def create_listen_key(self) -> str:
        """POST /fapi/v1/listenKey: a new key, or the active one (extended)."""
        return str(self._request("POST", "listen_key", signed=False, keyed=True)["listenKey"])

    def keep_alive_listen_key(self) -> None:
        """PUT /fapi/v1/listenKey: the active key lives 60 minutes more; -1125 (OrderRejected) when it is gone."""
        self._request("PUT", "listen_key", signed=False, keyed=True)

    def close_listen_key(self) -> None:
        self._request("DELETE", "listen_key", signed=False, keyed=True)

    def position_risk(self) -> list:
        """GET /fapi/v2/positionRisk: every position of the futures account."""
        return self._request("GET", "position_risk")

    def cancel_order(self, symbol: str, strategy_id: int, client_order_id: int) -> dict:
        cid = encode_client_order_id(strategy_id, client_order_id)
        return self._request("DELETE", "order", [("symbol", symbol), ("origClientOrderId", cid)], client_order_id=cid)

    def cancel_all(self, symbol: str):
        """Every open order on `symbol` (spot: the canceled orders; futures: a code-200 message)."""
        return self._request("DELETE", "cancel_all", [("symbol", symbol)])

    def order_status(self, symbol: str, strategy_id: int, client_order_id: int) -> dict | None:
        """The order as the venue has it, or None when it does not know it (-2013)."""
        cid = encode_client_order_id(strategy_id, client_order_id)
        try:
            return self._request("GET", "order_status", [("symbol", symbol), ("origClientOrderId", cid)],
                                 client_order_id=cid)
        except OrderRejected as e:
            if e.decision is not None and e.decision.code == -2013:
                return None
            raise

    def order_by_id(self, symbol: str, order_id: int) -> dict | None:
        """The order by the venue's order id (a trade names only that), or None when it does not
        know it (-2013)."""
        try:
            return self._request("GET", "order_status", [("symbol", symbol), ("orderId", order_id)])
        except OrderRejected as e:
            if e.decision is not None and e.decision.code == -2013:
                return None
            raise

    def open_orders(self, symbol: str | None = None) -> list:
        if symbol is None:
            return self._request("GET", "open_orders_all")
        return self._request("GET", "open_orders", [("symbol", symbol)])

    def account(self) -> dict:
        params = [("omitZeroBalances", "true")] if self.market == "spot" else []
        return self._request("GET", "account", params)

    def balances(self) -> dict[str, int]:
        """Asset -> amount at account precision (responses.account_balances)."""
        return account_balances(self.account())

    def my_trades(self, symbol: str, start_ms: int) -> list:
        """Every trade of ours on `symbol` at or after start_ms, oldest first, a page of 1000 at a time
        (the first page by startTime, the next ones by fromId: Binance takes one or the other)."""
        trades: list = []
        params: list[tuple[str, object]] = [("symbol", symbol), ("startTime", int(start_ms)), ("limit", TRADES_PAGE)]
        while True:
            page = self._request("GET", "my_trades", params)
            trades += page
            if len(page) < TRADES_PAGE:
                return trades
            params = [("symbol", symbol), ("fromId", int(page[-1]["id"]) + 1), ("limit", TRADES_PAGE)]
