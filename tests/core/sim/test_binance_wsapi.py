"""venue-sim's Binance spot WebSocket API (core/sim/binance_wsapi.py) through real `ttquant venue-sim binance`
processes: every order type gives over the WebSocket API the body REST gives (two venues, one sequence each
way, the capture replayed to its end so both meet the same book), signature / timestamp / key / filter
failures are Binance's codes, session.logon (Ed25519 only) lets requests go unsigned, malformed requests
are answered and the connection lives on, and the answers carry rateLimits (ORDERS on order requests only).

The blocking client (WsApi; `path` /ws-fapi/v1 for the futures one) and running_venue are tests/ttq_binance_sim.py's,
shared with the other tests of the venue."""
import json
import time
from decimal import Decimal

import pytest

from ttquant.core.venues.binance.signing import HmacSigner, session_logon_params, sign_ws_params

from ttq_binance import ED_KEY, KEY, SECRET
from ttq_binance_sim import running_venue, timeless


@pytest.fixture(scope="module")
def venue(tmp_path_factory, ed_signer):
    with running_venue(tmp_path_factory.mktemp("venue"), ed_signer) as v:
        yield v


def _sequence(book):
    """(method, REST endpoint, params) of one order of every kind and the queries after them."""
    bids, asks = book
    (a1, q1), (a2, q2) = asks[0], asks[1]
    return [
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                           quantity="0.01", price=str(bids[0][0] - 100), newClientOrderId="gtc-1")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                           quantity=str(q1 + q2 + Decimal("0.1")), price=str(a2),
                                           newClientOrderId="ioc-1")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
                                           quantity="4.9", price=str(bids[0][0] + 1000), newClientOrderId="fok-1")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
                                           quantity=str(bids[0][1]), price=str(bids[0][0]), newClientOrderId="fok-2",
                                           newOrderRespType="RESULT")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002",
                                           newClientOrderId="mkt-1")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.003",
                                           newClientOrderId="mkt-2", newOrderRespType="ACK")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="SELL", type="LIMIT_MAKER", quantity="0.001",
                                           price=str(a1 + 50), newClientOrderId="lm-1")),
        ("order.place", "POST order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.001",
                                           price=str(a1 + 50), newClientOrderId="lm-2")),      # would take: -2010
        ("order.status", "GET order", dict(symbol="BTCUSDT", origClientOrderId="gtc-1")),
        ("openOrders.status", "GET openOrders", dict(symbol="BTCUSDT")),
        ("order.cancelReplace", "POST order/cancelReplace", dict(
            symbol="BTCUSDT", cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId="gtc-1",
            cancelNewClientOrderId="cr-1", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.02",
            price=str(bids[0][0] - 90), newClientOrderId="gtc-2")),
        ("order.cancelReplace", "POST order/cancelReplace", dict(
            symbol="BTCUSDT", cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId="gtc-1",
            side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.02", price=str(bids[0][0] - 90),
            newClientOrderId="gtc-3")),                                 # gtc-1 is gone: -2022, nothing placed
        ("order.cancelReplace", "POST order/cancelReplace", dict(
            symbol="BTCUSDT", cancelReplaceMode="ALLOW_FAILURE", cancelOrderId="999", side="SELL",
            type="LIMIT_MAKER", quantity="0.001", price=str(a1 + 60), newClientOrderId="lm-3")),     # -2021, placed
        ("order.cancel", "DELETE order", dict(symbol="BTCUSDT", origClientOrderId="gtc-2", newClientOrderId="c-1")),
        ("openOrders.cancelAll", "DELETE openOrders", dict(symbol="BTCUSDT")),
        ("order.status", "GET order", dict(symbol="BTCUSDT", origClientOrderId="lm-1")),
        ("account.status", "GET account", {}),
        ("myTrades", "GET myTrades", dict(symbol="BTCUSDT")),
        ("order.cancel", "DELETE order", dict(symbol="BTCUSDT", origClientOrderId="never")),
    ]




def test_every_order_type_gives_the_rest_body_over_the_websocket_api(tmp_path, ed_signer):
    (tmp_path / "rest").mkdir()
    (tmp_path / "ws").mkdir()
    with running_venue(tmp_path / "rest", ed_signer) as rest, running_venue(tmp_path / "ws", ed_signer) as wsv:
        assert rest.book() == wsv.book()           # one capture to its end: both meet the same book
        ws = wsv.ws()
        over_rest, over_ws = [], []
        for method, endpoint, params in _sequence(rest.book()):
            http_method, path = endpoint.split()
            status, body, _ = rest.signed(http_method, f"/api/v3/{path}", **params)
            over_rest.append((status, timeless(body)))
            answer = ws.signed(method, **params)
            over_ws.append((answer["status"], timeless(answer.get("result", answer.get("error")))))
        assert over_ws == over_rest
        statuses = {body["clientOrderId"]: body.get("status") for _, body in over_rest[:7]}
        assert [s for s, _ in over_rest[:8]] == [200] * 7 + [400]
        assert over_rest[7][1] == {"code": -2010, "msg": "Order would immediately match and take."}
        assert statuses["gtc-1"] == "NEW" and statuses["ioc-1"] == "EXPIRED" and statuses["fok-1"] == "EXPIRED"
        assert statuses["fok-2"] == "FILLED" and statuses["mkt-1"] == "FILLED"
        assert over_rest[-1] == (400, {"code": -2011, "msg": "Unknown order sent."})
        replaced, failed, half = over_rest[10:13]
        assert replaced[0] == 200 and (replaced[1]["cancelResult"], replaced[1]["newOrderResult"]) == \
            ("SUCCESS", "SUCCESS")
        assert (replaced[1]["cancelResponse"]["status"], replaced[1]["newOrderResponse"]["status"]) == \
            ("CANCELED", "NEW")
        assert (failed[0], failed[1]["code"], failed[1]["data"]["newOrderResult"]) == (400, -2022, "NOT_ATTEMPTED")
        assert failed[1]["data"]["cancelResponse"] == {"code": -2011, "msg": "Unknown order sent."}
        assert (half[0], half[1]["code"], half[1]["data"]["cancelResult"], half[1]["data"]["newOrderResult"]) == \
            (409, -2021, "FAILURE", "SUCCESS")
        ws.close()


def test_signing_and_filter_failures_are_binances_codes(venue, ed_signer):
    ws = venue.ws()
    order = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="50000")
    bad = ws.signed("order.place", signer=HmacSigner("not the secret"), **order)
    assert (bad["status"], bad["error"]) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    stale = ws.signed("order.place", timestamp=int(time.time() * 1000) - 10_000, **order)
    assert (stale["status"], stale["error"]) == \
        (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    ahead = ws.signed("order.place", timestamp=int(time.time() * 1000) + 5_000, **order)
    assert ahead["error"]["code"] == -1021 and "ahead" in ahead["error"]["msg"]
    nobody = ws.signed("account.status", key="nobody")
    assert (nobody["status"], nobody["error"]["code"]) == (401, -2015)
    unsigned = ws.call("account.status", {"timestamp": int(time.time() * 1000)})
    assert (unsigned["status"], unsigned["error"]["code"]) == (400, -1102) and "apiKey" in unsigned["error"]["msg"]
    lot = ws.signed("order.place", **{**order, "quantity": "0.000001"})
    assert (lot["status"], lot["error"]) == (400, {"code": -1013, "msg": "Filter failure: LOT_SIZE"})
    # every answer, refused or not, says the weight; ORDERS only on order requests
    assert [r["rateLimitType"] for r in lot["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS", "ORDERS"]
    assert [r["rateLimitType"] for r in nobody["rateLimits"]] == ["REQUEST_WEIGHT"]
    ws.close()


def test_session_logon_lets_requests_go_unsigned(venue, ed_signer):
    ws = venue.ws()
    status = ws.call("session.status")["result"]
    assert status["apiKey"] is None and status["userDataStream"] is False
    hmac_logon = ws.call("session.logon", sign_ws_params(HmacSigner(SECRET), {}, KEY, int(time.time() * 1000)))
    assert hmac_logon["status"] == 400 and hmac_logon["error"]["code"] == -4056
    logon = ws.call("session.logon", session_logon_params(ed_signer, ED_KEY, int(time.time() * 1000)))
    assert logon["status"] == 200 and logon["result"]["apiKey"] == ED_KEY
    assert logon["result"]["authorizedSince"] >= logon["result"]["connectedSince"]
    account = ws.call("account.status", {"timestamp": int(time.time() * 1000)})
    assert account["status"] == 200 and {b["asset"] for b in account["result"]["balances"]} >= {"BTC", "USDT"}
    assert ws.call("userDataStream.subscribe")["result"] == {"subscriptionId": 0}
    assert ws.call("session.subscriptions")["result"] == [{"subscriptionId": 0}]
    assert ws.call("userDataStream.subscribe")["error"]["code"] == -2035        # one per connection
    out = ws.call("session.logout")["result"]
    assert out["apiKey"] is None and out["userDataStream"] is False
    assert ws.events[-1] == (0, {"e": "eventStreamTerminated", "E": ws.events[-1][1]["E"]})
    again = ws.call("account.status", {"timestamp": int(time.time() * 1000)})
    assert again["status"] == 400 and again["error"]["code"] == -1102
    assert ws.call("userDataStream.subscribe")["status"] == 401
    # the signature way needs no logon; unsubscribe by id
    sub = ws.signed("userDataStream.subscribe.signature")
    assert sub["status"] == 200 and sub["result"] == {"subscriptionId": 1}
    assert ws.call("userDataStream.unsubscribe", {"subscriptionId": 7})["error"]["code"] == -2036
    assert ws.call("userDataStream.unsubscribe", {"subscriptionId": 1})["result"] == {}
    assert ws.call("session.subscriptions")["result"] == []
    ws.close()


def test_malformed_requests_are_answered_and_the_connection_lives_on(venue):
    ws = venue.ws()
    ws.send_text(b"{not json")
    broken = ws.read()
    assert (broken["id"], broken["status"], broken["error"]) == \
        (None, 400, {"code": -1135, "msg": "Invalid JSON Request"})
    ws.send_text(b"[1, 2]")
    listed = ws.read()
    assert (listed["id"], listed["status"], listed["error"]["code"]) == (None, 400, -1135)
    ws.send_text(json.dumps({"method": "ping"}).encode())
    no_id = ws.read()
    assert (no_id["id"], no_id["status"], no_id["error"]["code"]) == (None, 400, -1102)
    unknown = ws.call("order.teleport", {})
    assert (unknown["status"], unknown["error"]["code"]) == (400, -1020)
    bad_params = ws.call("time", [1])
    assert (bad_params["status"], bad_params["error"]["code"]) == (400, -1135)
    ws.send_text(b"\xff\xfe")
    assert ws.read()["error"]["code"] == -1135
    pong = ws.call("ping")
    assert pong["status"] == 200 and pong["result"] == {} and pong["rateLimits"][0]["count"] >= 1
    info = ws.call("exchangeInfo", {"symbol": "BTCUSDT"})
    assert [s["symbol"] for s in info["result"]["symbols"]] == ["BTCUSDT"] and info["rateLimits"][0]["count"] >= 20
    assert info["result"]["rateLimits"] == venue.get("/api/v3/exchangeInfo")["rateLimits"]
    assert ws.call("exchangeInfo", {"symbol": "NOPE"})["error"] == {"code": -1121, "msg": "Invalid symbol."}
    server_time = ws.call("time")["result"]["serverTime"]
    assert abs(server_time - time.time() * 1000) < 5000
    ws.close()


def test_the_venue_pings_websocket_api_connections(tmp_path, ed_signer):
    with running_venue(tmp_path, ed_signer, "--ping-interval", "0.2") as venue:
        ws = venue.ws()
        ws.wait_events(lambda _: ws.pings >= 2, timeout=10, what="two pings")
        assert venue.get("/_sim/status")["ws_api_sessions"] == 1
        assert ws.call("ping")["status"] == 200         # answered with pongs: still connected
        ws.close()
