"""The simulated venue's Binance WebSocket APIs: spot at `ws://127.0.0.1:<main port>/ws-api/v3`, USDT-M futures at
`ws://127.0.0.1:<main port>/ws-fapi/v1`. One implementation (BinanceWsApi, a _Session per connection), given a
method table per market (WsApiMarket: SPOT_WS_API, USDM_WS_API).

A request is a text frame {"id", "method", "params"}; the answer {"id", "status", "result" | "error",
"rateLimits"}, status being the HTTP status REST would give.

Spot: one connection carries order entry and the user data stream, as on Binance since the spot listenKey
went away (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-api). Methods:

    ping, time, exchangeInfo [symbol | symbols]         not signed
    session.logon (Ed25519 keys only), session.status, session.logout
    order.place, order.cancel, order.status             as POST / DELETE / GET /api/v3/order
    order.cancelReplace                                 as POST /api/v3/order/cancelReplace
    openOrders.status, openOrders.cancelAll             as GET / DELETE /api/v3/openOrders
    account.status, myTrades                            as GET /api/v3/account, /api/v3/myTrades
    userDataStream.subscribe.signature                  apiKey, timestamp, signature (any key type)
    userDataStream.subscribe                            after session.logon
    userDataStream.unsubscribe [subscriptionId], session.subscriptions

USDT-M futures (https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-api-general-info):
order entry only; user data comes on the listen key's own stream, /ws/<listenKey> (binance_futures.py). Methods:

    session.logon (Ed25519 keys only), session.status, session.logout   (no "userDataStream" in the status)
    order.place, order.modify, order.cancel, order.status   as POST / PUT / DELETE / GET /fapi/v1/order
    account.balance, v2/account.balance                 as GET /fapi/v2/balance (the doc gives both that shape)
    account.position                                    as GET /fapi/v2/positionRisk
    v2/account.position                                 /fapi/v3/positionRisk's shape: symbols with a position or
                                                        an open order, margins instead of leverage / margin type
    account.status                                      as GET /fapi/v2/account
    v2/account.status                                   /fapi/v3/account's shape, as the doc gives it: no flags or
                                                        fee rates, positions only of symbols held or with orders
    userDataStream.start / ping / stop                  apiKey only (USER_STREAM), or the logon's key: POST / PUT /
                                                        DELETE /fapi/v1/listenKey, the very key REST manages

Trading methods go through the order entry's execute (BinanceSpotOrders, BinanceFuturesOrders), the path REST
takes, so both give the same bodies; signatures are checked by binance_auth.check_ws_params (after
session.logon apiKey and signature may be left out, timestamp may not). Weight and order counts are the
venue's one counter (REST and both WebSocket APIs alike): 429 / 418 come with error.data {"serverTime",
"retryAfter"}; the order faults (order_drop: executed and the connection closed unanswered, order_delay,
order_5xx) apply as on REST. Spot user data events (executionReport, outboundAccountPosition) reach every
subscription as {"subscriptionId": N, "event": {...}}, in the order the venue applied them, whatever path
caused them; those a request of this API caused follow its answer (a late answer, order_delay, comes after
them). A session has at most one subscription (one account); session.logout ends those of
userDataStream.subscribe with eventStreamTerminated. The venue pings every connection as Binance does
(venue-sim --ping-interval) and closes one silent for a minute.

Malformed requests are answered, never a crash: a frame that is not a JSON object -1135 "Invalid JSON
Request" (id null), no id or method -1102, params not an object -1135, an unknown method -1020 (the code
Binance gives there is not documented; this is its UNSUPPORTED_OPERATION). An HMAC key's session.logon is
-4056 on both markets (the futures doc says Ed25519 only, not the code).

Not here yet: the futures market data methods (depth, ticker.price, ticker.book), order lists, SBE,
returnRateLimits=false, the 24 h connection limit, serverShutdown, per-connection message limits, the
handshake's weight, user data subscription filters, the futures 1-minute order count in rateLimits (the
venue counts 10 s and 1 day for both markets), version prefixes other than the futures v2/account.* methods,
and several accounts (every key reaches the one account, so every subscription gets every event).
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from decimal import Decimal

import orjson
from picows import WSListener, WSMsgType

from ttquant.core.sim.binance_auth import check_ws_params, ws_param_text
from ttquant.core.sim.binance_orders import Answer, BinanceOrderEntry

__all__ = ["BinanceWsApi", "WsApiMarket", "SPOT_WS_API", "USDM_WS_API", "WS_API_METHODS", "WS_FAPI_METHODS"]

log = logging.getLogger("ttquant.venue_sim.wsapi")
_AUTH_PARAMS = ("apiKey", "signature")
_ZERO = "0.00000000"


def _error(code: int, msg: str) -> dict:
    return {"code": code, "msg": msg}


def _open_symbols(orders, now_ms) -> set[str]:
    """The symbols with a position or an open order (what Binance's v3 account and positionRisk list)."""
    risk = orders.execute("GET", "v2/positionRisk", {}, now_ms).body
    held = {p["symbol"] for p in risk if Decimal(p["positionAmt"])}
    return held | {o["symbol"] for o in orders.execute("GET", "v1/openOrders", {}, now_ms).body}


def _v3_position_risk(orders, params, now_ms, body) -> list:
    """v2/account.position answers in GET /fapi/v3/positionRisk's shape: only symbols with a position or an
    open order, margins instead of leverage and margin type."""
    wanted = _open_symbols(orders, now_ms)
    out = []
    for p in body:
        if p["symbol"] not in wanted:
            continue
        margin = format((abs(Decimal(p["notional"])) / int(p["leverage"])).quantize(Decimal("1e-8")), "f")
        out.append({"symbol": p["symbol"], "positionSide": p["positionSide"], "positionAmt": p["positionAmt"],
                    "entryPrice": p["entryPrice"], "breakEvenPrice": p["breakEvenPrice"], "markPrice": p["markPrice"],
                    "unRealizedProfit": p["unRealizedProfit"], "liquidationPrice": p["liquidationPrice"],
                    "isolatedMargin": _ZERO, "notional": p["notional"], "marginAsset": "USDT",
                    "isolatedWallet": "0", "initialMargin": margin, "maintMargin": "0",
                    "positionInitialMargin": margin, "openOrderInitialMargin": "0", "adl": 0,
                    "bidNotional": "0", "askNotional": "0", "updateTime": p["updateTime"]})
    return out


def _v3_account(orders, params, now_ms, body) -> dict:
    """v2/account.status answers in GET /fapi/v3/account's shape (Binance's doc of the method): the totals and
    assets of /fapi/v2/account without the account's flags and fee rates, and positions only of symbols with a
    position or an open order, each with its notional."""
    risk = {p["symbol"]: p for p in orders.execute("GET", "v2/positionRisk", {}, now_ms).body}
    wanted = _open_symbols(orders, now_ms)
    out = {k: v for k, v in body.items() if k.startswith("total") or k in ("availableBalance", "maxWithdrawAmount")}
    out["assets"] = body["assets"]
    out["positions"] = [{"symbol": p["symbol"], "positionSide": p["positionSide"], "positionAmt": p["positionAmt"],
                         "unrealizedProfit": p["unrealizedProfit"], "isolatedMargin": _ZERO,
                         "notional": risk[p["symbol"]]["notional"], "isolatedWallet": "0",
                         "initialMargin": p["initialMargin"], "maintMargin": p["maintMargin"],
                         "updateTime": p["updateTime"]} for p in body["positions"] if p["symbol"] in wanted]
    return out


@dataclasses.dataclass(frozen=True)
class WsApiMarket:
    """What one market's WebSocket API answers: its trading methods (-> the REST method and endpoint of the
    order entry's shared handlers, and a reshaping of the REST body where Binance's method answers otherwise),
    the methods the session answers itself, and their weights."""
    name: str
    trading: dict[str, tuple[str, str]]
    session: tuple[str, ...]
    weights: dict[str, int]                 # session methods' weights (default 2)
    subscriptions: bool                     # user data events ride this connection (spot); else a listen key's stream
    reshape: dict[str, Callable] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def methods(self) -> frozenset[str]:
        """Every method it answers (asked on each request: built once)."""
        return frozenset((*self.session, *self.trading))


SPOT_WS_API = WsApiMarket(
    "spot",
    {"order.place": ("POST", "order"), "order.cancel": ("DELETE", "order"), "order.status": ("GET", "order"),
     "order.cancelReplace": ("POST", "order/cancelReplace"),
     "openOrders.status": ("GET", "openOrders"), "openOrders.cancelAll": ("DELETE", "openOrders"),
     "account.status": ("GET", "account"), "myTrades": ("GET", "myTrades")},
    ("ping", "time", "exchangeInfo", "session.logon", "session.status", "session.logout", "userDataStream.subscribe",
     "userDataStream.subscribe.signature", "userDataStream.unsubscribe", "session.subscriptions"),
    {"ping": 1, "time": 1, "exchangeInfo": 20}, subscriptions=True)
USDM_WS_API = WsApiMarket(
    "usdm",
    {"order.place": ("POST", "v1/order"), "order.modify": ("PUT", "v1/order"), "order.cancel": ("DELETE", "v1/order"),
     "order.status": ("GET", "v1/order"),
     "account.balance": ("GET", "v2/balance"), "v2/account.balance": ("GET", "v2/balance"),
     "account.position": ("GET", "v2/positionRisk"), "v2/account.position": ("GET", "v2/positionRisk"),
     "account.status": ("GET", "v2/account"), "v2/account.status": ("GET", "v2/account")},
    ("session.logon", "session.status", "session.logout",
     "userDataStream.start", "userDataStream.ping", "userDataStream.stop"),
    {"userDataStream.start": 1, "userDataStream.ping": 1, "userDataStream.stop": 1}, subscriptions=False,
    reshape={"v2/account.position": _v3_position_risk, "v2/account.status": _v3_account})
WS_API_METHODS = SPOT_WS_API.methods
WS_FAPI_METHODS = USDM_WS_API.methods
_LISTEN_KEY = {"userDataStream.start": "POST", "userDataStream.ping": "PUT", "userDataStream.stop": "DELETE"}


class _Session(WSListener):
    """One WebSocket API connection: its logon, its user data subscription, its answers."""

    def __init__(self, api: BinanceWsApi):
        self.api = api
        self.transport = None
        self.connected_ms = int(api.orders.now_ms())
        self.api_key: str | None = None         # the key of session.logon
        self.authorized_ms: int | None = None
        self.subscriptions: dict[int, bool] = {}    # subscriptionId -> made by userDataStream.subscribe (logon)
        self.next_subscription = 0
        self.last_pong = time.monotonic()       # the venue pings every connection; silent ones are closed

    def on_ws_connected(self, transport):
        self.transport = transport
        self.api.sessions.add(self)

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.TEXT:
            try:
                self.api.handle(self, frame.get_payload_as_bytes())
            except Exception:       # a bug of ours: in the log, and Binance's -1000 to the client
                log.exception("WebSocket API request")
                self.send({"id": None, "status": 500,
                           "error": _error(-1000, "An unknown error occurred while processing the request.")})
        elif frame.msg_type == WSMsgType.PONG:
            self.last_pong = time.monotonic()
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport):
        self.api.sessions.discard(self)
        self.subscriptions.clear()

    def send(self, message: dict):
        if self.transport is not None and not self.transport.is_disconnected:
            self.transport.send(WSMsgType.TEXT, orjson.dumps(message))

    def push(self, event: dict):
        for subscription in self.subscriptions:
            self.send({"subscriptionId": subscription, "event": event})


class BinanceWsApi:
    """One market's WebSocket API (`market`: SPOT_WS_API over a BinanceSpotOrders, USDM_WS_API over a
    BinanceFuturesOrders): a session per connection over the order entry's one account."""

    def __init__(self, orders: BinanceOrderEntry, market: WsApiMarket = SPOT_WS_API):
        self.orders = orders
        self.market = market
        self.sessions: set[_Session] = set()
        self._held: list[dict] | None = None     # events met while a request is handled: they follow its answer
        if market.subscriptions:
            orders.subscribe(self._on_event, lambda: any(s.subscriptions for s in self.sessions))

    def session(self) -> _Session:
        return _Session(self)

    def drop_all(self) -> int:
        """Close every WebSocket API connection now (user_drop fault; subscriptions are lost)."""
        sessions = list(self.sessions)
        for s in sessions:
            s.subscriptions.clear()
            if s.transport is not None:
                s.transport.disconnect(graceful=False)
        self.sessions.clear()
        return len(sessions)

    def _on_event(self, event: dict):
        if self._held is not None:
            self._held.append(event)
            return
        for s in list(self.sessions):
            s.push(event)

    def ping_all(self, timeout_s: float) -> int:
        """Ping every connection (Binance: every 20 s); close those silent for timeout_s. How many pinged."""
        now, pinged = time.monotonic(), 0
        for s in list(self.sessions):
            if s.transport is None or s.transport.is_disconnected:
                continue
            if now - s.last_pong > timeout_s:
                log.warning("WebSocket API: no pong for %.0f s: closing", now - s.last_pong)
                s.transport.disconnect(graceful=False)
            else:
                s.transport.send_ping(b"sim")
                pinged += 1
        return pinged

    # -- requests -------------------------------------------------------------------------------------
    def handle(self, session: _Session, payload: bytes):
        """Answer one request; the user data events it caused go out after the answer (the order
        is on the book, and the answer said so, before its NEW is pushed), late answers excepted."""
        self._held = []
        try:
            self._handle(session, payload)
        finally:
            held, self._held = self._held, None
            for event in held:
                self._on_event(event)

    def _handle(self, session: _Session, payload: bytes):
        try:
            req = orjson.loads(payload)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            return self._reply(session, None, Answer(400, _error(-1135, "Invalid JSON Request")))
        rid = req.get("id")
        if "id" not in req or not (rid is None or isinstance(rid, (int, str))) or isinstance(rid, bool):
            return self._reply(session, None, Answer(400, _error(
                -1102, "Mandatory parameter 'id' was not sent, was empty/null, or malformed.")))
        method = req.get("method")
        if not isinstance(method, str) or not method:
            return self._reply(session, rid, Answer(400, _error(
                -1102, "Mandatory parameter 'method' was not sent, was empty/null, or malformed.")))
        params = req.get("params", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            return self._reply(session, rid, Answer(400, _error(
                -1135, "Invalid 'params' in JSON request; expected an object.")))
        market = self.market
        if method not in market.methods:
            return self._reply(session, rid, Answer(400, _error(-1020, "This operation is not supported.")))
        now_ms = self.orders.now_ms()
        trading = market.trading.get(method)
        if trading is not None:
            http_method, endpoint = trading
            text = {k: ws_param_text(v) for k, v in params.items() if k not in _AUTH_PARAMS}
            weight = self.orders.weight(http_method, endpoint, text)
        else:
            weight = market.weights.get(method, 2)
        refused = self.orders.admit(weight, now_ms)
        if refused is not None:
            return self._reply(session, rid, refused)
        if trading is not None:
            refusal = check_ws_params(self.orders.keys, params, now_ms, session.api_key)
            if refusal is not None:
                return self._reply(session, rid, Answer(refusal[0], refusal[1],
                                                        order=trading in self.orders.NEW_ORDERS))
            answer = self.orders.execute(http_method, endpoint, text, now_ms)
            if answer.status == 200 and method in market.reshape:
                answer.body = market.reshape[method](self.orders, text, int(now_ms), answer.body)
        else:
            answer = getattr(self, "_" + method.replace(".", "_"))(session, params, int(now_ms))
        self._reply(session, rid, answer)

    def _reply(self, session: _Session, rid, answer: Answer):
        if answer.drop:         # order_drop: executed, and the connection closes unanswered
            if session.transport is not None:
                session.transport.disconnect(graceful=False)
            return
        message = {"id": rid, "status": answer.status}
        if answer.status == 200:
            message["result"] = answer.body
        else:
            message["error"] = dict(answer.body)
            if answer.retry_after_ms is not None:
                message["error"]["data"] = {"serverTime": answer.server_ms, "retryAfter": answer.retry_after_ms}
        message["rateLimits"] = self.orders.rate_limits(answer.order)
        if answer.delay_s > 0:
            asyncio.get_running_loop().call_later(answer.delay_s, session.send, message)
        else:
            session.send(message)

    # -- session and user data stream methods -----------------------------------------------------------
    def _status(self, session: _Session, now_ms: int) -> dict:
        status = {"apiKey": session.api_key, "authorizedSince": session.authorized_ms,
                  "connectedSince": session.connected_ms, "returnRateLimits": True, "serverTime": now_ms}
        if self.market.subscriptions:
            status["userDataStream"] = bool(session.subscriptions)
        return status

    def _ping(self, session, params, now_ms):
        return Answer(200, {})

    def _time(self, session, params, now_ms):
        return Answer(200, {"serverTime": now_ms})

    def _exchangeInfo(self, session, params, now_ms):  # noqa: N802 (Binance's method name)
        body = self.orders.exchange_info()
        doc = orjson.loads(body) if body else {"symbols": []}
        wanted = [params["symbol"]] if isinstance(params.get("symbol"), str) else params.get("symbols")
        if wanted is not None:
            if not isinstance(wanted, list) or not all(isinstance(w, str) for w in wanted):
                return Answer(400, _error(-1102, "Mandatory parameter 'symbols' was not sent, was empty/null, or "
                                                 "malformed."))
            by_name = {entry.get("symbol"): entry for entry in doc.get("symbols", ())}
            if any(w not in by_name for w in wanted):
                return Answer(400, _error(-1121, "Invalid symbol."))
            doc["symbols"] = [by_name[w] for w in wanted]
        doc["serverTime"] = now_ms
        return Answer(200, doc)

    def _session_logon(self, session, params, now_ms):
        refusal = check_ws_params(self.orders.keys, params, now_ms)
        if refusal is not None:
            return Answer(*refusal)
        if not self.orders.keys.is_ed25519(params["apiKey"]):
            return Answer(400, _error(-4056, "HMAC_SHA256 API key is not supported."))
        if session.api_key != params["apiKey"]:
            self._end_logon_subscriptions(session, now_ms)
        session.api_key, session.authorized_ms = params["apiKey"], now_ms
        return Answer(200, self._status(session, now_ms))

    def _session_status(self, session, params, now_ms):
        return Answer(200, self._status(session, now_ms))

    def _session_logout(self, session, params, now_ms):
        self._end_logon_subscriptions(session, now_ms)
        session.api_key = session.authorized_ms = None
        return Answer(200, self._status(session, now_ms))

    def _end_logon_subscriptions(self, session, now_ms):
        """Subscriptions made by userDataStream.subscribe end with the logon they rode on."""
        for subscription, by_logon in list(session.subscriptions.items()):
            if by_logon:
                session.send({"subscriptionId": subscription, "event": {"e": "eventStreamTerminated", "E": now_ms}})
                del session.subscriptions[subscription]

    def _subscribe(self, session, by_logon: bool):
        if session.subscriptions:
            return Answer(400, _error(-2035, "User Data Stream subscription already active."))
        subscription = session.next_subscription
        session.next_subscription += 1
        session.subscriptions[subscription] = by_logon
        return Answer(200, {"subscriptionId": subscription})

    def _userDataStream_subscribe(self, session, params, now_ms):  # noqa: N802 (Binance's method name)
        if session.api_key is None:
            return Answer(401, _error(-1002, "You are not authorized to execute this request."))
        return self._subscribe(session, by_logon=True)

    def _userDataStream_subscribe_signature(self, session, params, now_ms):  # noqa: N802
        refusal = check_ws_params(self.orders.keys, params, now_ms)
        if refusal is not None:
            return Answer(*refusal)
        return self._subscribe(session, by_logon=False)

    def _userDataStream_unsubscribe(self, session, params, now_ms):  # noqa: N802
        wanted = params.get("subscriptionId")
        if wanted is None:
            session.subscriptions.clear()
            return Answer(200, {})
        if not isinstance(wanted, int) or wanted not in session.subscriptions:
            return Answer(400, _error(-2036, "User Data Stream subscription not active."))
        del session.subscriptions[wanted]
        return Answer(200, {})

    def _session_subscriptions(self, session, params, now_ms):
        return Answer(200, [{"subscriptionId": s} for s in session.subscriptions])

    # -- USDT-M: the listen key of /fapi/v1/listenKey, streamed on /ws/<listenKey> ---------------------------
    def _listen_key(self, session, params, now_ms, method):
        """userDataStream.start / ping / stop: POST / PUT / DELETE /fapi/v1/listenKey for the request's apiKey
        (USER_STREAM: no signature), or the session's after session.logon."""
        api_key = params.get("apiKey", session.api_key)
        if api_key is None or api_key == "":
            return Answer(400, _error(-1102, "Mandatory parameter 'apiKey' was not sent, was empty/null, or "
                                             "malformed."))
        api_key = api_key if isinstance(api_key, str) else ""      # a number is no key's shape: -2014
        return self.orders.listen_key_request(_LISTEN_KEY[method], api_key, now_ms)

    def _userDataStream_start(self, session, params, now_ms):  # noqa: N802 (Binance's method name)
        return self._listen_key(session, params, now_ms, "userDataStream.start")

    def _userDataStream_ping(self, session, params, now_ms):  # noqa: N802
        return self._listen_key(session, params, now_ms, "userDataStream.ping")

    def _userDataStream_stop(self, session, params, now_ms):  # noqa: N802
        return self._listen_key(session, params, now_ms, "userDataStream.stop")
