"""Binance's WebSocket APIs: spot (order entry and the user data stream on one persistent connection) and
USDT-M futures (order entry; its user data comes over a listen key, listen_key.py).

One io thread runs its own event loop (uvloop when installed) with one picows client connection to
`wss://ws-api.binance.com:443/ws-api/v3` or `wss://ws-fapi.binance.com/ws-fapi/v1` (testnet, or the simulated
venue's `/ws-api/v3`, `/ws-fapi/v1`). Any thread
hands a request over with `submit` (never blocks) or `call` (blocks for the answer); the io thread
signs it as it leaves, so its `timestamp` is fresh, and matches the answer by request id
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-api, "Request format").

    signing      HMAC keys: every signed request carries apiKey, timestamp and signature (sign_ws_params);
                 Ed25519 keys: `session.logon` once per connection, then timestamp only
    answers      {"id", "status", "result" | "error", "rateLimits"}: the rateLimits feed RateLimits; a refusal
                 raises (call) or is handed to the callback (submit) as the BinanceRest exception REST would
                 give for the same HTTP status and code (errors.classify), so both paths decide alike
    -1021        the server's clock measured again over `time` (USDT-M, which has no `time` method: over REST,
                 `server_time`, off the loop), the request signed and sent once more (the venue refused the
                 first, so it cannot be doubled), as BinanceRest does
    429 / 418    back off / halt in the shared RateLimits (WebSocket `error.data.retryAfter`, epoch ms); while
                 halted or backing off nothing is sent and nothing reconnects
    no answer    the connection dropped, or `timeout_s` passed: ResultUnknown; never sent again
    user data    userDataStream.subscribe.signature (HMAC) or .subscribe (after logon) on every connection once
                 `subscribe_user_data()` was asked; events `{"subscriptionId", "event"}` go to on_event(event)
    reconnect    with exponential backoff (jittered); on_disconnected(reason) when a connection is lost,
                 on_connected() once a new one is logged on and subscribed, so the owner can reconcile the gap
    pings        the venue's pings are answered (picows auto-pong); an idle connection is pinged and dropped
                 when no pong comes (auto-ping), since a dead TCP connection would otherwise look alive

Callbacks (submit's, on_event, on_connected, on_disconnected) run on the io thread: they must not block.
The API key goes in params; the secret stays in the signer. Logs and exceptions name the method, status
and Binance's code and message, never params.

Not here yet: SBE responses, more than one subscription per connection (other accounts), `serverShutdown`
handled by a second connection opened before the first closes (the connection is dropped once idle).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Mapping
from decimal import Decimal

import orjson
from picows import WSMsgType

from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.errors import Action, classify
from ttquant.core.venues.binance.kept_connection import KeptConnection
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.rest import (
    BinanceRestError,
    Halted,
    OrderRejected,
    RateLimited,
    ResultUnknown,
    VenueUnreachable,
)
from ttquant.core.venues.binance.server_time import ClockOffset
from ttquant.core.venues.binance.signing import Ed25519Signer, session_logon_params, sign_ws_params

__all__ = ["FAPI_WS_WEIGHTS", "WS_WEIGHTS", "WsApiClient"]

log = logging.getLogger("ttquant.venues.binance")

# (request weight, orders) per method, as documented for the USDT-M futures WebSocket API (a new order weighs 0 on
# the IP limit, as POST /fapi/v1/order); the session methods as spot's
FAPI_WS_WEIGHTS: dict[str, tuple[int, int]] = {
    "order.place": (0, 1), "order.modify": (1, 1), "order.cancel": (1, 0), "order.status": (1, 0),
    "account.balance": (5, 0), "account.position": (5, 0), "account.status": (5, 0), "session.logon": (2, 0),
    "session.status": (2, 0), "session.logout": (2, 0), "userDataStream.start": (1, 0),
    "userDataStream.ping": (1, 0), "userDataStream.stop": (1, 0),
}
# (request weight, orders) per method, as documented for the spot WebSocket API in 2026
WS_WEIGHTS: dict[str, tuple[int, int]] = {
    "order.place": (1, 1), "order.cancel": (1, 0), "order.cancelReplace": (1, 1), "order.status": (4, 0),
    "openOrders.status": (6, 0), "openOrders.cancelAll": (1, 0), "account.status": (20, 0), "myTrades": (20, 0),
    "time": (1, 0), "ping": (1, 0), "exchangeInfo": (20, 0), "session.logon": (2, 0), "session.status": (2, 0),
    "session.logout": (2, 0), "session.subscriptions": (2, 0), "userDataStream.subscribe": (2, 0),
    "userDataStream.subscribe.signature": (2, 0), "userDataStream.unsubscribe": (2, 0),
}
OPEN_ORDERS_ALL_WEIGHT = 80         # openOrders.status without a symbol
CLOCK_REFRESH_MS = 300_000          # measured again on a (re)connect when older than this
CLOCK_SAMPLES = 3
SHUTDOWN_DRAIN_S = 2.0              # after serverShutdown: answers still awaited this long, then reconnect
_RAISES = {Action.REJECT: OrderRejected, Action.RETRY_AFTER_RESYNC: OrderRejected,
           Action.UNKNOWN_RESULT: ResultUnknown, Action.BACK_OFF: RateLimited, Action.HALT: Halted}

Callback = Callable[[int | None, object, BinanceRestError | None], None]


def _json_value(value):
    # prices and quantities are Decimals: sent as the same text the signature was computed over
    return format(value, "f") if isinstance(value, Decimal) else value


class _Request:
    __slots__ = ("id", "method", "params", "callback", "signed", "timeout_s", "timer", "resynced", "internal")

    def __init__(self, rid, method, params, callback, signed, timeout_s, internal=False):
        self.id, self.method, self.params, self.callback = rid, method, params, callback
        self.signed, self.timeout_s, self.internal = signed, timeout_s, internal
        self.timer = None
        self.resynced = False

    @property
    def client_order_id(self) -> str | None:
        return self.params.get("newClientOrderId") or self.params.get("origClientOrderId")


class WsApiClient(KeptConnection):
    """One persistent WebSocket API connection; module docstring for what it does."""

    def __init__(self, url: str, credentials: ApiCredentials, clock: ClockOffset, limits: RateLimits,
                 recv_window_ms: int | None = 5000, on_event: Callable[[dict], None] | None = None,
                 on_connected: Callable[[], None] | None = None,
                 on_disconnected: Callable[[str], None] | None = None, *, market: str = "spot",
                 request_timeout_s: float = 10.0, backoff_initial_s: float = 0.1, backoff_max_s: float = 5.0,
                 connect_timeout_s: float = 5.0, ping_idle_s: float = 20.0, ping_reply_s: float = 10.0,
                 name: str = "binance-wsapi", server_time: Callable[[], int] | None = None):
        """`server_time`: where the venue's clock is read when its WebSocket API has no `time` method (USDT-M:
        a REST GET /fapi/v1/time on a connection of its own), a blocking call run off the io loop."""
        if not url.startswith(("ws://", "wss://")):
            raise ValueError(f"url must be ws(s)://host[:port]/path, got {url!r}")
        super().__init__(name, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
                         connect_timeout_s=connect_timeout_s, ping_idle_s=ping_idle_s, ping_reply_s=ping_reply_s)
        self.url, self.market = url, market
        self._credentials = credentials
        self.clock, self.limits, self.recv_window_ms = clock, limits, recv_window_ms
        self.on_event, self.on_connected, self.on_disconnected = on_event, on_connected, on_disconnected
        self.request_timeout_s = request_timeout_s
        self._logon = isinstance(credentials.signer, Ed25519Signer)   # session.logon: Ed25519 keys only
        self._ids = itertools.count(1)
        self._pending: dict[int, _Request] = {}
        self._announced = False                 # on_connected said for this connection: on_disconnected is due
        self._session = False                   # this connection is logged on (session.logon)
        self._draining = False                  # serverShutdown: reconnect once the answers are in
        self._user_data = False                 # subscribe_user_data() was asked: every connection subscribes
        self.subscription_id: int | None = None
        self.requests_sent = 0
        self._weights = FAPI_WS_WEIGHTS if market == "usdm" else WS_WEIGHTS
        self._server_time = server_time
        self._server_time_lock = threading.Lock()   # two -1021s at once must not share one REST connection

    def __repr__(self) -> str:
        return f"WsApiClient({self.url}, {self._credentials!r})"

    __str__ = __repr__

    def __reduce__(self):
        raise TypeError("WsApiClient holds API credentials and is not picklable")

    # -- any thread -----------------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Requests sent and not answered yet."""
        return len(self._pending)

    def submit(self, method: str, params: Mapping | None, callback: Callback, signed: bool = True,
               timeout_s: float | None = None) -> int:
        """Hand a request to the io thread; its id. callback(status, body, exc) runs on the io thread once:
        (200, result, None) when answered; (status, error, exc) when refused; (None, None, exc) when not sent
        (VenueUnreachable, RateLimited, Halted) or not answered (ResultUnknown). A client not started or
        closed calls it at once on the caller's thread, with VenueUnreachable."""
        rid = next(self._ids)
        req = _Request(rid, method, dict(params or {}), callback, signed, timeout_s or self.request_timeout_s)
        try:
            self._loop.call_soon_threadsafe(self._send, req)
        except (AttributeError, RuntimeError):     # not started, or closed: nothing was sent
            self._finish(req, None, None, VenueUnreachable(f"{method}: not sent: the WebSocket API client is "
                                                           "not running", client_order_id=req.client_order_id))
        return rid

    def call(self, method: str, params: Mapping | None = None, signed: bool = True, timeout_s: float = 10.0):
        """The answer's `result`, waiting for it; raises the BinanceRest exception a refusal maps to."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("call() on the io thread would wait for itself: use submit()")
        done = threading.Lock()     # held until the answer: the io thread's release wakes us (one futex, no Condition)
        done.acquire()
        out: list = []

        def answered(status, body, exc):
            out.append((body, exc))
            done.release()
        self.submit(method, params, answered, signed, timeout_s)
        if not done.acquire(timeout=timeout_s + 5.0):     # the io thread fails it at timeout_s: a stuck loop
            raise ResultUnknown(f"{method}: no answer within {timeout_s} s; it may have been executed",
                                classify(None, None, self.market))
        body, exc = out[0]
        if exc is not None:
            raise exc
        return body

    def subscribe_user_data(self) -> None:
        """Subscribe to the account's user data stream, now (when connected) and on every reconnect."""
        self._user_data = True
        if self._loop is not None and self.connected:
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._subscribe_logged()))

    # -- the io thread --------------------------------------------------------------------------------
    def _stopped(self):
        self._fail_pending("the client stopped")     # every request waiting fails rather than hangs

    async def _open(self):
        self._session, self._draining, self.subscription_id = False, False, None
        await self._dial(self.url)
        if self.clock.offset_ms is None or self.clock.age_ms() > CLOCK_REFRESH_MS:
            await self._measure_clock()
        if self._logon:
            await self._request("session.logon", {}, signed=True)
            self._session = True
        if self._user_data:
            await self._subscribe_logged()
        self._ready.set()
        self._announced = True
        log.info("%s: connected to %s%s%s", self.name, self.url, ", logged on" if self._session else "",
                 f", user data subscription {self.subscription_id}" if self.subscription_id is not None else "")
        self._callback(self.on_connected)

    def _request(self, method: str, params: dict, signed: bool, timeout_s: float | None = None) -> asyncio.Future:
        """A request of the client's own (clock, logon, subscription), sent before the connection is ready."""
        fut = self._loop.create_future()

        def answered(status, body, exc):
            if not fut.done():
                fut.set_exception(exc) if exc is not None else fut.set_result(body)
        self._send(_Request(next(self._ids), method, params, answered, signed, timeout_s or self.request_timeout_s,
                            internal=True))
        return fut

    async def _measure_clock(self):
        if self._server_time is not None:
            samples = await self._loop.run_in_executor(None, self._server_time_samples)
        else:
            samples = []
            for _ in range(CLOCK_SAMPLES):
                sent = self.clock.now_ms()
                body = await self._request("time", {}, signed=False)
                samples.append((sent, int(body["serverTime"]), self.clock.now_ms()))
        self.clock.take_samples(samples)

    def _server_time_samples(self) -> list[tuple[float, int, float]]:
        with self._server_time_lock:
            return self.clock.measure(self._server_time)

    async def _subscribe(self):
        if self._session:
            body = await self._request("userDataStream.subscribe", {}, signed=False)
        else:
            body = await self._request("userDataStream.subscribe.signature", {}, signed=True)
        self.subscription_id = int(body["subscriptionId"])
        self.counts["subscriptions"] += 1

    async def _subscribe_logged(self):
        """Subscribe; a refusal is said (the connection still takes orders), a lost connection raises."""
        try:
            await self._subscribe()
        except (OrderRejected, RateLimited, Halted) as exc:
            self.counts["subscribe_refused"] += 1
            log.error("%s: the user data stream subscription was refused (%s): fills of resting orders reach "
                      "us only by reconciliation", self.name, exc)

    # -- requests out ---------------------------------------------------------------------------------
    def _send(self, req: _Request):
        what = req.method
        if self._closing or self._transport is None or self._draining or not (req.internal or self._ready.is_set()):
            return self._finish(req, None, None, VenueUnreachable(
                f"{what}: not sent: the WebSocket API is not connected", client_order_id=req.client_order_id))
        weight, orders = self._weights.get(what, (1, 0))
        if what == "openOrders.status" and "symbol" not in req.params:
            weight = OPEN_ORDERS_ALL_WEIGHT
        reason = self.limits.check(weight, orders)
        if reason is not None:
            cls = Halted if self.limits.halted is not None else RateLimited
            return self._finish(req, None, None, cls(f"{what}: not sent: {reason}",
                                                     client_order_id=req.client_order_id))
        params = req.params
        if req.signed:
            if self.clock.offset_ms is None:
                return self._finish(req, None, None, VenueUnreachable(
                    f"{what}: not sent: the server's clock is not measured", client_order_id=req.client_order_id))
            ts = self.clock.timestamp_ms()
            if what == "session.logon":
                params = session_logon_params(self._credentials.signer, self._credentials.api_key, ts,
                                              self.recv_window_ms)
            elif self._session:
                params = dict(params, timestamp=ts)
                if self.recv_window_ms is not None:
                    params["recvWindow"] = self.recv_window_ms
            else:
                params = sign_ws_params(self._credentials.signer, params, self._credentials.api_key, ts,
                                        self.recv_window_ms)
        data = orjson.dumps({"id": req.id, "method": what, "params": {k: _json_value(v) for k, v in params.items()}})
        self._pending[req.id] = req
        req.timer = self._loop.call_later(req.timeout_s, self._expire, req.id)
        self.limits.on_request()
        self.requests_sent += 1
        try:
            self._transport.send(WSMsgType.TEXT, data)
        except Exception as exc:    # a transport closing under us: the frame may or may not have left
            self._pending.pop(req.id, None)
            req.timer.cancel()
            self._finish(req, None, None, ResultUnknown(f"{what}: the send failed ({type(exc).__name__}); it may "
                                                        "have left", classify(None, None, self.market),
                                                        req.client_order_id))

    def _expire(self, rid: int):
        req = self._pending.pop(rid, None)
        if req is None:
            return
        self.counts["timeouts"] += 1
        log.warning("%s: %s: no answer within %.1f s; its result is unknown", self.name, req.method, req.timeout_s)
        self._finish(req, None, None, ResultUnknown(f"{req.method}: no answer within {req.timeout_s} s; it may have "
                                                    "been executed", classify(None, None, self.market),
                                                    req.client_order_id))
        self._drained()

    def _finish(self, req: _Request, status, body, exc):
        try:
            req.callback(status, body, exc)
        except Exception:
            log.exception("%s: the callback of %s failed", self.name, req.method)

    def _fail_pending(self, why: str):
        pending, self._pending = self._pending, {}
        for req in pending.values():
            if req.timer is not None:
                req.timer.cancel()
            self.counts["lost_answers"] += 1
            self._finish(req, None, None, ResultUnknown(f"{req.method}: {why} before its answer; it may have been "
                                                        "executed", classify(None, None, self.market),
                                                        req.client_order_id))

    def _drained(self):
        if self._draining and not self._pending and self._transport is not None:
            self._drop_reason = "the venue is shutting down (serverShutdown)"
            self._transport.disconnect()

    # -- answers and events in ------------------------------------------------------------------------
    def _on_gone(self, transport, gone):
        if transport is self._transport:
            self._transport = None
            self._ready.clear()
            self._session, self.subscription_id = False, None
            if not self._closing:
                self.counts["disconnects"] += 1
            if self._announced:
                self._announced = False
                self._callback(self.on_disconnected, self._drop_reason)
            self._fail_pending(f"the connection dropped ({self._drop_reason})")
        if not gone.done():
            gone.set_result(True)

    def _on_message(self, msg: dict):
        if "event" in msg and "id" not in msg:
            return self._on_event(msg["event"])
        self.limits.on_ws_rate_limits(msg.get("rateLimits"))
        rid = msg.get("id")
        req = self._pending.pop(rid, None) if isinstance(rid, int) else None
        status = msg.get("status")
        if req is None:
            self.counts["unmatched_answers"] += 1
            if isinstance(status, int) and status >= 400:   # e.g. a revoked session (id null, -2015)
                self._decide(status, msg, None)
            else:
                log.info("%s: an answer to no request waiting (id %r): late, after its timeout", self.name, rid)
            return
        req.timer.cancel()
        if isinstance(status, int) and 200 <= status < 300:
            self._finish(req, status, msg.get("result"), None)
        else:
            exc = self._decide(status, msg, req)
            if exc is not None:
                self._finish(req, status, msg.get("error"), exc)
        self._drained()

    def _decide(self, status, msg: dict, req: _Request | None) -> BinanceRestError | None:
        """The exception a refusal maps to (rate limits kept as REST keeps them); None when the request
        was sent again after the clock was measured (-1021)."""
        decision = classify(status if isinstance(status, int) else None, msg, self.market)
        what = req.method if req is not None else "a request"
        if decision.action == Action.RETRY_AFTER_RESYNC and req is not None and req.signed and not req.resynced:
            req.resynced = True
            log.warning("%s: %s: %s (code %s); measuring the server's clock again and sending once more",
                        self.name, what, decision.msg, decision.code)
            self._loop.create_task(self._resend_after_resync(req))
            return None
        wait = decision.retry_after_s
        if wait is None:
            data = msg.get("error", {}).get("data") if isinstance(msg.get("error"), dict) else None
            until = data.get("retryAfter") if isinstance(data, dict) else None
            if isinstance(until, int) and self.clock.offset_ms is not None:
                wait = max(0.0, (until - self.clock.timestamp_ms()) / 1000.0)
        if decision.action == Action.BACK_OFF:
            self.limits.back_off(wait)
        elif decision.action == Action.HALT:
            self.limits.halt(f"{what}: {decision.msg} (code {decision.code}, status {status})", wait)
        return _RAISES[decision.action](f"{what}: status {status}, code {decision.code}: {decision.msg}", decision,
                                        req.client_order_id if req is not None else None)

    async def _resend_after_resync(self, req: _Request):
        try:
            await self._measure_clock()
        except Exception as exc:    # the first was refused: not on the book either way
            return self._finish(req, None, None, OrderRejected(
                f"{req.method}: refused for its timestamp (-1021), and the clock could not be measured "
                f"({type(exc).__name__})", classify(400, {"code": -1021, "msg": ""}, self.market),
                req.client_order_id))
        self._send(req)

    def _on_event(self, event):
        if not isinstance(event, dict):
            self.counts["bad_messages"] += 1
            return
        kind = event.get("e")
        self.counts["events"] += 1
        if kind == "eventStreamTerminated":
            self.subscription_id = None
            if self._user_data and not self._closing and self._ready.is_set():
                log.warning("%s: the user data stream ended (eventStreamTerminated); subscribing again", self.name)
                self._loop.create_task(self._resubscribe())
            return
        if kind == "serverShutdown":
            log.warning("%s: the venue is shutting down this connection; reconnecting once the answers are in",
                        self.name)
            self._draining = True
            self._ready.clear()
            self._drained()
            self._loop.call_later(SHUTDOWN_DRAIN_S, self._force_drain)
            return
        self._callback(self.on_event, event)

    def _force_drain(self):
        if self._draining and self._transport is not None:
            if self._pending:
                log.warning("%s: %d answers still awaited after serverShutdown", self.name, len(self._pending))
            self._drop_reason = "the venue is shutting down (serverShutdown)"
            self._transport.disconnect()

    async def _resubscribe(self):
        """A subscription ended under a live connection: subscribed again, then on_connected, so the owner
        reconciles what the stream may have missed meanwhile."""
        try:
            await self._subscribe()
        except BinanceRestError as exc:
            log.error("%s: subscribing again failed (%s); reconnecting", self.name, exc)
            if self._transport is not None:
                self._drop_reason = "the user data stream could not be subscribed again"
                self._transport.disconnect()
            return
        self._callback(self.on_connected)
