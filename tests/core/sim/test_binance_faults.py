"""Rate limits and faults of the simulated venue's Binance spot order entry, through real venue-sim processes:
exchangeInfo says the venue's limits; over the weight a 429 (-1003, Retry-After), then a 418 ban for going
on, on REST and the WebSocket API alike (error.data.retryAfter); over the order count a 429 (-1015); and
each /_sim/fault does what it says: order_drop (placed, no answer), order_delay (placed at once, answered
late), order_5xx (503, placed or not), clock_skew (-1021 for a client that does not re-measure), ban, and
user_drop (every WebSocket API connection closed)."""
import http.client
import json
import socket
import time
import urllib.request

import pytest

from ttquant.core.venues.binance.signing import HmacSigner, sign_ws_params, signed_query

import ttq_binance_sim as binance_sim
from ttq_testing import new_ed25519_signer, wait_for

KEY, SECRET = binance_sim.KEY, binance_sim.SECRET


@pytest.fixture(scope="module")
def signer():
    return new_ed25519_signer()


@pytest.fixture
def venue(tmp_path, signer):
    with binance_sim.running_venue(tmp_path, signer) as v:
        yield v


def fault(venue, query):
    return venue.get(f"/_sim/fault?{query}")


def order(venue, cid, **more):
    params = dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001",
                  price="50000", newClientOrderId=cid)
    params.update(more)
    return params


def recorded(venue):
    return {o["clientOrderId"]: o for o in venue.get("/_sim/binance/orders")["orders"]}


def early_in_window(seconds, room):
    """Wait until the venue's clock is at least `room` seconds before the end of its current window."""
    wait_for(lambda: time.time() % seconds < seconds - room, timeout=seconds, interval=0.1, what="a fresh window")


def test_exchange_info_says_the_venues_limits(tmp_path, signer):
    with binance_sim.running_venue(tmp_path, signer, "--weight-limit", "321", "--orders-10s", "7",
                                   "--orders-1d", "99") as venue:
        limits = venue.get("/api/v3/exchangeInfo")["rateLimits"]
        ours = {(r["rateLimitType"], r["interval"], r["intervalNum"]): r["limit"] for r in limits}
        assert ours[("REQUEST_WEIGHT", "MINUTE", 1)] == 321
        assert ours[("ORDERS", "SECOND", 10)] == 7 and ours[("ORDERS", "DAY", 1)] == 99
        ws = venue.ws()
        weight = ws.call("ping")["rateLimits"][0]
        assert (weight["rateLimitType"], weight["limit"]) == ("REQUEST_WEIGHT", 321)
        ws.close()


def test_too_much_weight_is_429_then_going_on_is_a_418_ban(tmp_path, signer):
    with binance_sim.running_venue(tmp_path, signer, "--weight-limit", "60", "--ban-seconds", "2") as venue:
        early_in_window(60, 15)
        used = int(venue.call("GET", "/api/v3/time")[2]["X-MBX-USED-WEIGHT-1M"])
        for _ in range((60 - used) // 20):                  # account weighs 20: up to the limit
            assert venue.signed("GET", "/api/v3/account")[0] == 200
        status, body, headers = venue.signed("GET", "/api/v3/account")
        assert (status, body) == (429, {"code": -1003, "msg": "Too much request weight used; current limit is 60 "
                                        "request weight per 1 MINUTE. Please use WebSocket Streams for live updates "
                                        "to avoid polling the API."})
        assert 0 < int(headers["Retry-After"]) <= 60
        status, body, headers = venue.call("GET", "/api/v3/time")            # told to back off, and did not
        assert status == 418 and body["code"] == -1003
        assert body["msg"].startswith("Way too much request weight used; IP banned until ")
        until = int(body["msg"].split("until ")[1].split(".")[0])
        assert 0 < int(headers["Retry-After"]) <= 3 and until > time.time() * 1000
        ws = venue.ws()
        banned = ws.call("time")
        assert banned["status"] == 418 and banned["error"]["code"] == -1003
        assert banned["error"]["data"]["retryAfter"] == until and banned["error"]["data"]["serverTime"] < until
        # the depth the venue answers itself is refused too
        assert venue.call("GET", "/api/v3/depth", [("symbol", "BTCUSDT")])[0] == 418
        ws.close()


def test_too_many_new_orders_is_429_1015(tmp_path, signer):
    with binance_sim.running_venue(tmp_path, signer, "--orders-10s", "3") as venue:
        early_in_window(10, 5)
        ws = venue.ws()
        for n in range(3):
            assert ws.signed("order.place", **order(venue, f"n{n}"))["status"] == 200
        refused = ws.signed("order.place", **order(venue, "n3"))
        assert (refused["status"], refused["error"]) == \
            (429, {"code": -1015, "msg": "Too many new orders; current limit is 3 orders per 10 SECOND."})
        counts = {(r["rateLimitType"], r["interval"]): r["count"] for r in refused["rateLimits"]}
        assert counts[("ORDERS", "SECOND")] == 4 and counts[("ORDERS", "DAY")] == 4
        status, body, _ = venue.signed("POST", "/api/v3/order", **order(venue, "n4"))
        assert (status, body["code"]) == (429, -1015)
        assert set(recorded(venue)) == {"n0", "n1", "n2"}
        assert venue.signed("GET", "/api/v3/openOrders", symbol="BTCUSDT")[0] == 200     # queries go on
        ws.close()


def test_order_drop_places_the_order_and_answers_nothing(venue):
    assert fault(venue, "kind=order_drop&count=1") == {"ok": "order_drop", "count": 1}
    query = signed_query(HmacSigner(SECRET), list(order(venue, "dropped-rest").items()), int(time.time() * 1000))
    conn = http.client.HTTPConnection("127.0.0.1", int(venue.base.rsplit(":", 1)[1]), timeout=10)
    conn.request("POST", f"/api/v3/order?{query}", headers={"X-MBX-APIKEY": KEY})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        conn.getresponse()
    conn.close()
    assert recorded(venue)["dropped-rest"]["status"] == "NEW"
    fault(venue, "kind=order_drop&count=1")
    ws = venue.ws()
    ws.request("order.place", sign_ws_params(HmacSigner(SECRET), order(venue, "dropped-ws"), KEY,
                                                         int(time.time() * 1000)))
    with pytest.raises(ConnectionError):
        ws.read()
    ws.close()
    assert recorded(venue)["dropped-ws"]["status"] == "NEW"
    # the fault is spent: the next order is answered
    assert venue.signed("POST", "/api/v3/order", **order(venue, "answered"))[0] == 200


def test_order_delay_places_at_once_and_answers_late(venue):
    fault(venue, "kind=order_delay&seconds=3&count=1")
    ws = venue.ws()
    assert ws.signed("userDataStream.subscribe.signature")["status"] == 200
    sent = time.monotonic()
    rid = ws.request("order.place", sign_ws_params(HmacSigner(SECRET), order(venue, "late"), KEY,
                                                               int(time.time() * 1000)))
    assert wait_for(lambda: "late" in recorded(venue), timeout=5, interval=0.02, what="the order at the venue")
    # its events are not held back: the NEW comes while the answer is still on its way
    ws.wait_events(lambda events: any(e["e"] == "executionReport" and e["c"] == "late" for _, e in events),
                   timeout=2.5, what="the late order's NEW")
    placed_after = time.monotonic() - sent
    assert rid not in ws.answers
    answer = ws.answer(rid)
    answered_after = time.monotonic() - sent
    assert answer["status"] == 200 and answer["result"]["clientOrderId"] == "late"
    assert answered_after >= 3 > placed_after
    # REST too: the answer waits, and so does the connection's next one
    fault(venue, "kind=order_delay&seconds=1&count=1")
    sent = time.monotonic()
    status, body, _ = venue.signed("POST", "/api/v3/order", **order(venue, "late-rest"))
    assert status == 200 and time.monotonic() - sent >= 1
    ws.close()


@pytest.mark.parametrize("executed", [0, 1])
def test_order_5xx_answers_503_placed_or_not(venue, executed):
    fault(venue, f"kind=order_5xx&count=2&executed={executed}")
    status, body, _ = venue.signed("POST", "/api/v3/order", **order(venue, "five-rest"))
    assert (status, body["code"]) == (503, -1001)
    ws = venue.ws()
    answer = ws.signed("order.place", **order(venue, "five-ws"))
    assert (answer["status"], answer["error"]["code"]) == (503, -1001)
    placed = {"five-rest", "five-ws"} & set(recorded(venue))
    assert placed == ({"five-rest", "five-ws"} if executed else set())
    assert ws.signed("order.place", **order(venue, "after"))["status"] == 200
    ws.close()


def test_clock_skew_refuses_a_client_that_does_not_re_measure(venue):
    assert fault(venue, "kind=clock_skew&ms=8000")["ms"] == 8000
    server = venue.call("GET", "/api/v3/time")[1]["serverTime"]
    offset = server - time.time() * 1000
    assert offset > 6000
    status, body, _ = venue.signed("GET", "/api/v3/account")
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    ws = venue.ws()
    assert ws.signed("account.status")["error"]["code"] == -1021
    assert ws.call("time")["result"]["serverTime"] - time.time() * 1000 > 6000
    # a client that re-measured the offset is taken
    assert ws.signed("account.status", timestamp=int(time.time() * 1000 + offset))["status"] == 200
    fault(venue, "kind=clock_skew&ms=-8000")
    ahead = ws.signed("account.status")
    assert ahead["error"] == {"code": -1021, "msg": "Timestamp for this request was 1000ms ahead of the server's time."}
    ws.close()


def test_the_ban_fault_refuses_everything_for_a_while(venue):
    assert fault(venue, "kind=ban&seconds=1")["ok"] == "ban"
    assert venue.call("GET", "/api/v3/time")[0] == 418
    ws = venue.ws()
    assert ws.signed("order.place", **order(venue, "banned"))["status"] == 418
    assert "banned" not in recorded(venue)
    wait_for(lambda: ws.call("ping")["status"] == 200, timeout=5, interval=0.1, what="the ban's end")
    assert venue.signed("GET", "/api/v3/account")[0] == 200
    ws.close()


def test_user_drop_closes_every_websocket_api_connection(venue):
    sessions = [venue.ws() for _ in range(2)]
    for ws in sessions:
        assert ws.signed("userDataStream.subscribe.signature")["status"] == 200
    assert fault(venue, "kind=user_drop") == {"ok": "user_drop", "closed": 2}
    for ws in sessions:
        ws.sock.settimeout(5)
        with pytest.raises((ConnectionError, socket.timeout, OSError)) as closed:
            while True:
                ws.read()
        assert not isinstance(closed.value, TimeoutError)
        ws.close()
    fault(venue, "kind=refuse&seconds=1")       # and the venue may refuse it a while
    with pytest.raises(AssertionError, match="503"):
        venue.ws()
    fresh = wait_for(lambda: _connects(venue), timeout=10, interval=0.2, what="a new connection")
    # a client reconnects, resubscribes and reconciles
    assert fresh.signed("userDataStream.subscribe.signature")["result"] == {"subscriptionId": 0}
    assert fresh.call("ping")["status"] == 200
    fresh.close()


def _connects(venue):
    try:
        return venue.ws()
    except AssertionError:
        return None


def test_the_venues_record_names_every_order_and_trade(venue):
    bids, asks = venue.book()
    taken = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.003",
                     newClientOrderId="mkt")
    resting = venue.ok("POST", "/api/v3/order", **order(venue, "rest"))
    with urllib.request.urlopen(f"http://127.0.0.1:{venue.port}/_sim/binance/orders", timeout=5) as resp:
        on_main_port = json.loads(resp.read())
    assert on_main_port == venue.get("/_sim/binance/orders")
    orders = {o["clientOrderId"]: o for o in on_main_port["orders"]}
    assert (orders["mkt"]["status"], orders["mkt"]["executedQty"]) == ("FILLED", "0.00300000")
    assert (orders["rest"]["status"], orders["rest"]["orderId"]) == ("NEW", resting["orderId"])
    trades = on_main_port["trades"]
    assert [t["id"] for t in trades] == [f["tradeId"] for f in taken["fills"]]
    assert {t["orderId"] for t in trades} == {taken["orderId"]}
