"""Fixtures of the Binance adapter tests: `fake_wsapi`, a scripted stand-in for Binance's spot WebSocket
API (a picows server on its own thread) for the WsApiClient tests that must make the venue misbehave on
cue (drop a connection after a request, answer late, 429, 418, -1021). Signatures are checked by the
simulated venue's own checker (core/sim/binance_auth.check_ws_params), so a request this fake takes the venue takes too.

Script a method's next answers with `fake.script["order.place"] = ["drop", "silent", fn, ...]`:
"drop" closes the connection without an answer, "silent" never answers, a callable `fn(request)` gives
(status, result_or_error, extra) for the answer. Otherwise the fake answers as Binance does.
"""
from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import pytest
from picows import WSListener, WSMsgType, ws_create_server

from ttquant.core.sim.binance_auth import ApiKeys, check_ws_params


class FakeWsApi:
    def __init__(self, keys: ApiKeys):
        self.keys = keys
        self.requests: list[dict] = []          # every request received, in order
        self.script: dict[str, list] = {}
        self.connections: list = []
        self.sessions: dict = {}                # transport -> api key (session.logon)
        self.pongs = 0
        self.weight = 0
        self.ahead_ms = 0                       # the fake venue's clock against ours
        self.order_ids = itertools.count(1000)
        self.orders: dict[str, dict] = {}       # clientOrderId -> order body
        self._subscription_ids = itertools.count(0)
        self.loop = asyncio.new_event_loop()
        self.port = None
        self._thread = threading.Thread(target=self._run, name="fake-wsapi", daemon=True)
        self._started = threading.Event()

    # -- the test's side ----------------------------------------------------------------------------
    def start(self) -> FakeWsApi:
        self._thread.start()
        assert self._started.wait(10), "the fake WebSocket API did not start"
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws-api/v3"

    def methods(self) -> list[str]:
        return [r["method"] for r in list(self.requests)]

    def _on_loop(self, fn, *args):
        if threading.current_thread() is self._thread:     # from a scripted answer: already on the loop
            return fn(*args)
        done = threading.Event()

        def run():
            try:
                fn(*args)
            finally:
                done.set()
        self.loop.call_soon_threadsafe(run)
        assert done.wait(5)

    def push_event(self, event: dict, subscription_id: int = 0):
        data = json.dumps({"subscriptionId": subscription_id, "event": event}).encode()
        self._on_loop(lambda: [t.send(WSMsgType.TEXT, data) for t in self.connections])

    def send_raw(self, data: bytes):
        self._on_loop(lambda: [t.send(WSMsgType.TEXT, data) for t in self.connections])

    def ping_all(self):
        self._on_loop(lambda: [t.send_ping(b"are you there") for t in self.connections])

    def drop_all(self):
        self._on_loop(lambda: [t.disconnect() for t in list(self.connections)])

    def close(self):
        self.drop_all()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    # -- the venue's side ---------------------------------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self.loop)
        fake = self

        class Listener(WSListener):
            def on_ws_connected(self, transport):
                fake.connections.append(transport)

            def on_ws_frame(self, transport, frame):
                if frame.msg_type == WSMsgType.TEXT:
                    fake._on_request(transport, json.loads(frame.get_payload_as_bytes()))
                elif frame.msg_type == WSMsgType.PONG:
                    fake.pongs += 1
                elif frame.msg_type == WSMsgType.CLOSE:
                    transport.send_close(frame.get_close_code())
                    transport.disconnect()

            def on_ws_disconnected(self, transport):
                if transport in fake.connections:
                    fake.connections.remove(transport)
                fake.sessions.pop(transport, None)

        async def serve():
            server = await ws_create_server(lambda request: Listener(), "127.0.0.1", 0, enable_auto_pong=False)
            self.port = server.sockets[0].getsockname()[1]
            self._started.set()
            await asyncio.Event().wait()
        self.loop.create_task(serve())
        self.loop.run_forever()

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.ahead_ms

    def _rate_limits(self, orders: bool):
        limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000,
                   "count": self.weight}]
        if orders:
            limits.append({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100,
                           "count": len(self.orders)})
        return limits

    def _answer(self, transport, rid, status, body, extra=None):
        msg = {"id": rid, "status": status}
        msg["result" if status == 200 else "error"] = body
        msg.update(extra or {})
        transport.send(WSMsgType.TEXT, json.dumps(msg).encode())

    def _on_request(self, transport, req):
        self.requests.append(req)
        self.weight += 1
        method, params, rid = req.get("method"), req.get("params", {}), req.get("id")
        queued = self.script.get(method)
        if queued:
            how = queued.pop(0)
            if how == "drop":
                transport.disconnect()
                return
            if how == "silent":
                return
            status, body, extra = how(req)
            return self._answer(transport, rid, status, body, {"rateLimits": self._rate_limits(False), **extra})
        signed = method not in ("time", "ping", "userDataStream.subscribe", "session.status")
        if signed:
            refusal = check_ws_params(self.keys, params, self.now_ms(), self.sessions.get(transport))
            if refusal is not None:
                return self._answer(transport, rid, refusal[0], refusal[1], {"rateLimits": self._rate_limits(False)})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._answer(transport, rid, 400, {"code": -1020, "msg": "Unsupported operation."})
        status, body = handler(transport, params)
        self._answer(transport, rid, status, body, {"rateLimits": self._rate_limits(method.startswith("order."))})

    def _m_time(self, transport, params):
        return 200, {"serverTime": self.now_ms()}

    def _m_session_logon(self, transport, params):
        self.sessions[transport] = params["apiKey"]
        return 200, {"apiKey": params["apiKey"], "authorizedSince": self.now_ms(), "userDataStream": False}

    def _m_userDataStream_subscribe_signature(self, transport, params):
        return 200, {"subscriptionId": next(self._subscription_ids)}

    def _m_userDataStream_subscribe(self, transport, params):
        if transport not in self.sessions:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        return 200, {"subscriptionId": next(self._subscription_ids)}

    def _m_order_place(self, transport, params):
        cid = params["newClientOrderId"]
        if cid in self.orders:
            return 400, {"code": -2010, "msg": "Duplicate order sent."}
        body = {"symbol": params["symbol"], "orderId": next(self.order_ids), "orderListId": -1, "clientOrderId": cid,
                "transactTime": self.now_ms(), "price": params.get("price", "0"), "origQty": params["quantity"],
                "executedQty": "0", "cummulativeQuoteQty": "0", "status": "NEW",
                "timeInForce": params.get("timeInForce", "GTC"), "type": params["type"], "side": params["side"],
                "workingTime": self.now_ms(), "fills": []}
        self.orders[cid] = body
        return 200, body

    def _m_order_status(self, transport, params):
        body = self.orders.get(params.get("origClientOrderId"))
        if body is None:
            return 400, {"code": -2013, "msg": "Order does not exist."}
        return 200, body

    def _m_order_cancel(self, transport, params):
        body = self.orders.get(params.get("origClientOrderId"))
        if body is None or body["status"] != "NEW":
            return 400, {"code": -2011, "msg": "Unknown order sent."}
        body["status"] = "CANCELED"
        return 200, dict(body, origClientOrderId=body["clientOrderId"], clientOrderId="cancel1")


@pytest.fixture
def fake_wsapi():
    """make(keys) -> a started FakeWsApi; every one made is closed after the test."""
    made = []

    def make(keys: ApiKeys) -> FakeWsApi:
        made.append(FakeWsApi(keys).start())
        return made[-1]
    yield make
    for fake in made:
        fake.close()
