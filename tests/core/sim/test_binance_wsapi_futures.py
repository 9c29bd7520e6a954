"""venue-sim's Binance USDT-M futures WebSocket API (`/ws-fapi/v1`, core/sim/binance_wsapi.py with USDM_WS_API)
through real `ttquant venue-sim binance` processes: every order type (LIMIT GTC / IOC / FOK, GTX, MARKET,
reduce-only), order.modify / cancel / status and account.* give over the WebSocket API the body REST /fapi gives
(two venues, one sequence each way, the capture replayed to its end so both meet the same book); signature,
timestamp, recvWindow and filter failures are Binance's codes; session.logon (Ed25519 only) lets orders go
unsigned; malformed requests are answered; REST and the WebSocket API share one weight and order counter (429
with retryAfter, then 418); order_drop executes the order and closes the connection unanswered; the listen key
of userDataStream.start is REST's and its /ws/<listenKey> stream tells the orders placed over the WebSocket API.
Every answer carries rateLimits."""
import contextlib
import json
import time
from decimal import Decimal

import pytest

from ttquant.core.venues.binance.signing import HmacSigner, session_logon_params, sign_ws_params

import ttq_binance_sim as binance_sim
from ttq_binance import ED_KEY, KEY, SECRET
from ttq_testing import wait_for


class FapiWs(binance_sim.WsApi):
    """The blocking client on /ws-fapi/v1; every answer it reads must carry rateLimits, the weight first."""

    def __init__(self, port):
        super().__init__(port, path="/ws-fapi/v1")

    def answer(self, rid) -> dict:
        message = super().answer(rid)
        assert message["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT", message
        return message


def _book(venue):
    body = venue.get("/fapi/v1/depth?symbol=BTCUSDT&limit=100")
    levels = lambda side: [(Decimal(p), Decimal(q)) for p, q in body[side]]     # noqa: E731
    return levels("bids"), levels("asks")


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")


@contextlib.contextmanager
def running(root, ed_signer, *options):
    """A venue with the capture replayed to its end and its USDT-M book known."""
    with binance_sim.running_venue(root, ed_signer, *options) as venue:
        wait_for(lambda: all(_book(venue)), timeout=30, interval=0.1, what="a USDT-M book")
        yield venue


@pytest.fixture(scope="module")
def venue(tmp_path_factory, ed_signer):
    with running(tmp_path_factory.mktemp("venue"), ed_signer) as v:
        yield v


def _sequence(book):
    """(method, REST endpoint, params) of one order of every kind, then modify, cancel and queries."""
    b0, bq0 = book[0][0]
    (_, q1), (a2, q2) = book[1][0], book[1][1]
    # the position the orders before the reduce-only ones leave: the IOC takes two levels, the FOK sells one
    held = q1 + q2 - bq0 + Decimal("0.002") - Decimal("0.003")
    assert held, "the book makes no position to reduce"
    reduce, grow = ("SELL", "BUY") if held > 0 else ("BUY", "SELL")
    order = lambda side, kind, qty, cid, **more: dict(symbol="BTCUSDT", side=side, type=kind,  # noqa: E731
                                                      quantity=_text(qty), newClientOrderId=cid, **more)
    return [
        ("order.place", "POST v1/order", order("BUY", "LIMIT", Decimal("0.010"), "gtc-1", timeInForce="GTC",
                                              price=_text(b0 - 100))),
        ("order.place", "POST v1/order", order("BUY", "LIMIT", q1 + q2 + Decimal("0.1"), "ioc-1", timeInForce="IOC",
                                              price=_text(a2))),
        ("order.place", "POST v1/order", order("SELL", "LIMIT", Decimal("4.9"), "fok-1", timeInForce="FOK",
                                              price=_text(b0 + 1000))),                      # cannot fill: -5021
        ("order.place", "POST v1/order", order("SELL", "LIMIT", bq0, "fok-2", timeInForce="FOK", price=_text(b0),
                                              newOrderRespType="RESULT")),
        ("order.place", "POST v1/order", order("BUY", "LIMIT", Decimal("0.010"), "gtx-1", timeInForce="GTX",
                                              price=_text(b0 - 50))),
        ("order.place", "POST v1/order", order("BUY", "LIMIT", Decimal("0.010"), "gtx-2", timeInForce="GTX",
                                              price=_text(a2 + 100))),                     # would take: -5022
        ("order.place", "POST v1/order", order("BUY", "MARKET", Decimal("0.002"), "mkt-1",
                                              newOrderRespType="RESULT")),
        ("order.place", "POST v1/order", order("SELL", "MARKET", Decimal("0.003"), "mkt-2")),
        ("order.place", "POST v1/order", order(reduce, "MARKET", Decimal("0.001"), "ro-1", reduceOnly="true",
                                              newOrderRespType="RESULT")),
        ("order.place", "POST v1/order", order(grow, "MARKET", Decimal("0.001"), "ro-2", reduceOnly="true")),
        ("order.status", "GET v1/order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1")),
        ("order.modify", "PUT v1/order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1", side="BUY",
                                              quantity="0.02", price=_text(b0 - 90))),
        ("order.modify", "PUT v1/order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1", side="BUY",
                                              quantity="0.02", price=_text(b0 - 90))),           # the same: -5027
        ("order.status", "GET v1/order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1")),
        ("order.cancel", "DELETE v1/order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1")),
        ("order.cancel", "DELETE v1/order", dict(symbol="BTCUSDT", origClientOrderId="never")),
        ("order.status", "GET v1/order", dict(symbol="BTCUSDT", origClientOrderId="never")),
        ("account.balance", "GET v2/balance", {}),
        ("v2/account.balance", "GET v2/balance", {}),
        ("account.position", "GET v2/positionRisk", {}),
        ("account.status", "GET v2/account", {}),
    ]


def test_every_order_type_gives_the_rest_body_over_ws_fapi(tmp_path, ed_signer):
    (tmp_path / "rest").mkdir()
    (tmp_path / "ws").mkdir()
    with running(tmp_path / "rest", ed_signer) as rest, running(tmp_path / "ws", ed_signer) as wsv:
        assert _book(rest) == _book(wsv)            # one capture to its end: both meet the same book
        ws = FapiWs(wsv.port)
        over_rest, over_ws = [], []
        for method, endpoint, params in _sequence(_book(rest)):
            http_method, path = endpoint.split()
            status, body, _ = rest.signed(http_method, f"/fapi/{path}", **params)
            over_rest.append((status, binance_sim.timeless(body)))
            answer = ws.signed(method, **params)
            over_ws.append((answer["status"], binance_sim.timeless(answer.get("result", answer.get("error")))))
        assert over_ws == over_rest
        placed = {body.get("clientOrderId"): (status, body) for status, body in over_rest[:10] if status == 200}
        assert [placed[c][1]["status"] for c in ("gtc-1", "gtx-1", "mkt-2")] == ["NEW"] * 3
        assert (placed["ioc-1"][1]["status"], placed["fok-2"][1]["status"]) == ("NEW", "FILLED")
        assert (placed["mkt-1"][1]["status"], placed["ro-1"][1]["status"]) == ("FILLED", "FILLED")
        assert placed["ro-1"][1]["reduceOnly"] is True
        codes = [body["code"] for status, body in over_rest[:10] if status != 200]
        assert codes == [-5021, -5022, -2022]
        status, modified = over_rest[11]
        assert (status, modified["origQty"], Decimal(modified["price"])) == (200, "0.020", _book(rest)[0][0][0] - 90)
        assert over_rest[12] == (400, {"code": -5027, "msg": "No need to modify the order."})
        assert over_rest[13][1]["origQty"] == "0.020" and over_rest[14][1]["status"] == "CANCELED"
        assert over_rest[15:17] == [(400, {"code": -2011, "msg": "Unknown order sent."}),
                                    (400, {"code": -2013, "msg": "Order does not exist."})]
        (position,) = [p for p in over_rest[19][1] if p["symbol"] == "BTCUSDT"]
        assert Decimal(position["positionAmt"]) != 0
        # the v2 methods Binance documents in /fapi/v3's shapes: only what is held, no account flags
        v3 = ws.ok("v2/account.status")
        assert "feeTier" not in v3 and {"totalWalletBalance", "availableBalance", "assets", "positions"} <= set(v3)
        assert [(p["symbol"], p["positionAmt"]) for p in v3["positions"]] == [("BTCUSDT", position["positionAmt"])]
        (risk,) = ws.ok("v2/account.position")
        assert (risk["symbol"], risk["positionAmt"], risk["marginAsset"]) == \
            ("BTCUSDT", position["positionAmt"], "USDT") and "leverage" not in risk
        ws.close()


def test_signing_timing_and_filter_failures_are_binances_codes(venue):
    ws = FapiWs(venue.port)
    order = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                 price=_text(_book(venue)[0][0][0] - 500))
    bad = ws.signed("order.place", signer=HmacSigner("not the secret"), **order)
    assert (bad["status"], bad["error"]) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    stale = ws.signed("order.place", timestamp=int(time.time() * 1000) - 10_000, **order)
    assert (stale["status"], stale["error"]) == \
        (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    ahead = ws.signed("account.balance", timestamp=int(time.time() * 1000) + 5_000)
    assert ahead["error"]["code"] == -1021 and "ahead" in ahead["error"]["msg"]
    # a wider recvWindow lets the same age through; over 60000 it is refused
    old = int(time.time() * 1000) - 10_000
    wide = ws.call("account.balance", sign_ws_params(HmacSigner(SECRET), {}, KEY, old, recv_window_ms=20_000))
    assert wide["status"] == 200 and wide["result"][0]["asset"] == "USDT"
    narrow = ws.call("account.balance", sign_ws_params(HmacSigner(SECRET), {}, KEY, old, recv_window_ms=9_000))
    assert narrow["error"]["code"] == -1021
    over = ws.call("account.balance", {**sign_ws_params(HmacSigner(SECRET), {}, KEY, old), "recvWindow": 70_000})
    assert (over["status"], over["error"]) == (400, {"code": -1131, "msg": "'recvWindow' must be less than 60000."})
    nobody = ws.signed("account.status", key="nobody")
    assert (nobody["status"], nobody["error"]["code"]) == (401, -2015)
    unsigned = ws.call("account.status", {"timestamp": int(time.time() * 1000)})
    assert (unsigned["status"], unsigned["error"]["code"]) == (400, -1102) and "apiKey" in unsigned["error"]["msg"]
    # a filter failure: the code REST /fapi gives, and ORDERS counts on the order request's answer
    small = ws.signed("order.place", **{**order, "quantity": "0.0001"})
    status, body, _ = venue.signed("POST", "/fapi/v1/order", **{**order, "quantity": "0.0001"})
    assert (small["status"], small["error"]) == (status, body) == \
        (400, {"code": -4004, "msg": "Quantity less than min quantity."})
    assert [r["rateLimitType"] for r in small["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS", "ORDERS"]
    assert [r["rateLimitType"] for r in nobody["rateLimits"]] == ["REQUEST_WEIGHT"]
    ws.close()


def test_session_logon_lets_orders_go_unsigned(venue, ed_signer):
    ws = FapiWs(venue.port)
    status = ws.call("session.status")["result"]
    assert status["apiKey"] is None and "userDataStream" not in status      # the futures status has no such field
    hmac_logon = ws.call("session.logon", sign_ws_params(HmacSigner(SECRET), {}, KEY, int(time.time() * 1000)))
    assert (hmac_logon["status"], hmac_logon["error"]["code"]) == (400, -4056)
    logon = ws.call("session.logon", session_logon_params(ed_signer, ED_KEY, int(time.time() * 1000)))
    assert logon["status"] == 200 and logon["result"]["apiKey"] == ED_KEY
    assert logon["result"]["authorizedSince"] >= logon["result"]["connectedSince"]
    placed = ws.call("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                                     "quantity": "0.010", "price": _text(_book(venue)[0][0][0] - 400),
                                     "newClientOrderId": "logon-1", "timestamp": int(time.time() * 1000)})
    assert placed["status"] == 200 and placed["result"]["status"] == "NEW", placed
    no_time = ws.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "logon-1"})
    assert (no_time["status"], no_time["error"]["code"]) == (400, -1102) and "timestamp" in no_time["error"]["msg"]
    canceled = ws.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": "logon-1",
                                        "timestamp": int(time.time() * 1000)})
    assert canceled["result"]["status"] == "CANCELED"
    assert ws.call("session.logout")["result"]["apiKey"] is None
    again = ws.call("account.balance", {"timestamp": int(time.time() * 1000)})
    assert (again["status"], again["error"]["code"]) == (400, -1102)
    ws.close()


def test_malformed_requests_are_answered_and_the_connection_lives_on(venue):
    ws = FapiWs(venue.port)
    ws.send_text(b"{not json")
    broken = ws.read()
    assert (broken["id"], broken["status"], broken["error"]) == \
        (None, 400, {"code": -1135, "msg": "Invalid JSON Request"})
    assert broken["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
    ws.send_text(json.dumps({"method": "session.status"}).encode())
    no_id = ws.read()
    assert (no_id["id"], no_id["status"], no_id["error"]["code"]) == (None, 400, -1102)
    for method in ("order.teleport", "exchangeInfo", "userDataStream.subscribe", "order.cancelReplace"):
        unknown = ws.call(method, {})        # spot's methods are not the futures API's
        assert (unknown["status"], unknown["error"]) == \
            (400, {"code": -1020, "msg": "This operation is not supported."})
    bad_params = ws.call("session.status", [1])
    assert (bad_params["status"], bad_params["error"]["code"]) == (400, -1135)
    assert ws.call("session.status")["status"] == 200
    ws.close()


def test_the_listen_key_of_user_data_stream_start_streams_ws_orders(venue):
    ws = FapiWs(venue.port)
    assert ws.call("userDataStream.start", {})["error"]["code"] == -1102          # USER_STREAM: the apiKey at least
    assert ws.call("userDataStream.start", {"apiKey": "nobody"})["error"]["code"] == -2015
    started = ws.call("userDataStream.start", {"apiKey": KEY})
    key = started["result"]["listenKey"]
    assert started["status"] == 200 and len(key) == 64 and started["rateLimits"][0]["count"] >= 1
    assert binance_sim.fapi(venue, "POST", "/fapi/v1/listenKey", signed=False) == (200, {"listenKey": key})
    stream = binance_sim.UserStream(venue.port, key)
    assert stream.status == 101
    placed = ws.ok("order.place", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                   price=_text(_book(venue)[0][0][0] - 300), newClientOrderId="stream-1")
    events = stream.wait_for_events(lambda events: any(e["e"] == "ORDER_TRADE_UPDATE" for e in events), timeout=10,
                                    what="the NEW of the order placed over /ws-fapi/v1")
    (new,) = [e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE"]
    assert (new["x"], new["X"], new["c"], new["i"]) == ("NEW", "NEW", "stream-1", placed["orderId"])
    ws.ok("order.cancel", symbol="BTCUSDT", orderId=placed["orderId"])
    stream.wait_for_events(lambda events: any(e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["x"] == "CANCELED"
                                              for e in events), timeout=10, what="its CANCELED")
    assert ws.call("userDataStream.ping", {"apiKey": KEY})["result"] == {"listenKey": key}
    assert ws.call("userDataStream.stop", {"apiKey": KEY})["result"] == {}
    stream.wait_for_events(lambda events: stream.closed, timeout=10, what="the stream closed by userDataStream.stop")
    assert ws.call("userDataStream.ping", {"apiKey": KEY})["error"] == \
        {"code": -1125, "msg": "This listenKey does not exist."}
    assert binance_sim.fapi(venue, "PUT", "/fapi/v1/listenKey", signed=False)[0] == 400
    stream.close()
    ws.close()


def test_order_drop_executes_the_order_and_closes_the_connection_unanswered(venue):
    ws = FapiWs(venue.port)
    assert venue.get("/_sim/fault?kind=order_drop&count=1") == {"ok": "order_drop", "count": 1}
    params = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010",
                  price=_text(_book(venue)[0][0][0] - 200), newClientOrderId="dropped-1")
    ws.request("order.place", sign_ws_params(HmacSigner(SECRET), params, KEY, int(time.time() * 1000)))
    with pytest.raises(ConnectionError):
        ws.read()
    ws.close()
    mine = [o for o in venue.get("/_sim/binance/orders")["orders"] if o["clientOrderId"] == "dropped-1"]
    assert [(o["market"], o["status"]) for o in mine] == [("usdm", "NEW")]
    ws = FapiWs(venue.port)         # the next order is answered
    assert ws.ok("order.cancel", symbol="BTCUSDT", origClientOrderId="dropped-1")["status"] == "CANCELED"
    ws.close()


def _fresh_window(seconds, need):
    """With less than `need` seconds left of the venue counters' current `seconds` window, wait for the next,
    so the requests that follow share one window."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.05)


def test_rest_and_ws_fapi_share_one_weight_and_order_counter(tmp_path, ed_signer):
    with running(tmp_path, ed_signer, "--weight-limit", "200", "--orders-10s", "3") as venue:
        ws = FapiWs(venue.port)
        price = _text(_book(venue)[0][0][0] - 600)
        order = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.010", price=price)
        _fresh_window(10, 4)
        for n in range(3):
            assert venue.signed("POST", "/fapi/v1/order", **order, newClientOrderId=f"count-{n}")[0] == 200
        fourth = ws.signed("order.place", **order, newClientOrderId="count-3")
        assert (fourth["status"], fourth["error"]) == \
            (429, {"code": -1015, "msg": "Too many new orders; current limit is 3 orders per 10 SECOND."})
        assert [(r["interval"], r["count"]) for r in fourth["rateLimits"][1:]] == [("SECOND", 4), ("DAY", 4)]
        # the weight: REST uses it up to less than 5 from the limit, the WebSocket API's account.balance (5) is over
        _fresh_window(60, 15)
        while True:
            status, _, headers = venue.signed("GET", "/fapi/v2/balance")
            assert status == 200
            if int(headers["X-MBX-USED-WEIGHT-1M"]) > 200 - 5:
                break
        over = ws.signed("account.balance")
        assert (over["status"], over["error"]["code"]) == (429, -1003)
        assert over["error"]["data"]["retryAfter"] > over["error"]["data"]["serverTime"] > 0
        assert over["rateLimits"][0]["count"] > 200
        # told to back off and did not: REST is banned, and so is the WebSocket API
        assert venue.signed("GET", "/fapi/v2/balance")[0] == 418
        banned = ws.signed("account.balance")
        assert (banned["status"], banned["error"]["code"]) == (418, -1003)
        assert banned["error"]["data"]["retryAfter"] > banned["error"]["data"]["serverTime"]
        ws.close()
