"""The simulated venue's spot user data events (core/sim/binance_orders.py, pushed by core/sim/binance_wsapi.py).

In-process, against a book the test moves (BinanceSpotOrders with an injected depth and clock): an
executionReport for every state change, NEW first, a TRADE per fill with its trade id, EXPIRED for IOC / FOK
leftovers, CANCELED naming the cancel's id and the order's, nothing for a LIMIT_MAKER that would take
(-2010), Binance's field set, and outboundAccountPosition after each change of balances, matching the
account endpoint. Then through a real venue-sim replaying at speed 4: a resting order placed by REST and
one by the WebSocket API are filled as the replayed book moves (the venue's market turn), and the
subscribed connection gets NEW then TRADE(s) whose ids, in order, are myTrades'."""
import json
from decimal import Decimal

import pytest

from ttquant.core.sim.binance_auth import ApiKeys
from ttquant.core.sim.binance_orders import BinanceSpotOrders
from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.sim.matching import FillModel

import ttq_binance_sim as binance_sim
from ttq_binance_sim import Market, exchange_info
from ttq_testing import new_ed25519_signer, wait_for


def _shape(name) -> set:
    return set(json.loads((sample_data_dir() / "binance" / "docs_shapes" /
                           f"spot_user_data_json_execution_report_{name}.json").read_text()))


@pytest.fixture(scope="module")
def info():
    return exchange_info("spot")


@pytest.fixture
def account(info):
    market = Market([["100.00", "1.0"], ["99.99", "2.0"]],
                    [["100.01", "0.5"], ["100.02", "3.0"]])
    orders = BinanceSpotOrders(ApiKeys(), lambda: info, market.depth, FillModel(maker_fee_ppm=200, taker_fee_ppm=500),
                               {"USDT": 10_000 * 10**8, "BTC": 2 * 10**8}, clock=lambda: market.now)
    events = []
    orders.subscribe(events.append)
    return orders, market, events


def reports(events):
    return [e for e in events if e["e"] == "executionReport"]


def balances_of(orders):
    body = orders.execute("GET", "account", {}, orders.now_ms()).body
    return {b["asset"]: (b["free"], b["locked"]) for b in body["balances"]}


def test_a_resting_order_tells_new_then_its_fill_when_the_book_moves(account):
    orders, market, events = account
    answer = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                                  quantity="0.3", price="100.00", newClientOrderId="rest-1"),
                            orders.now_ms())
    assert answer.status == 200 and answer.body["status"] == "NEW"
    (new, position) = events
    assert (new["e"], new["x"], new["X"], new["c"], new["i"], new["t"], new["w"]) == \
        ("executionReport", "NEW", "NEW", "rest-1", answer.body["orderId"], -1, True)
    assert set(new) >= _shape("new") and (new["l"], new["z"], new["n"], new["N"]) == \
        ("0.00000000", "0.00000000", "0", None)
    # the quote the order holds went from free to locked
    assert position["e"] == "outboundAccountPosition" and [b["a"] for b in position["B"]] == ["USDT"]
    assert (position["B"][0]["f"], position["B"][0]["l"]) == balances_of(orders)["USDT"]
    assert position["B"][0]["l"] == "30.00000000"

    market.now += 1
    orders.turn()                   # the book did not move: nothing
    assert len(events) == 2
    market.move([["99.98", "1.0"]], [["100.00", "0.1"], ["100.01", "1.0"]])     # the ask comes down to our bid
    orders.turn()
    trade, position = events[2:]
    assert set(trade) >= _shape("trade")
    (mine,) = orders.execute("GET", "myTrades", {"symbol": "BTCUSDT"}, orders.now_ms()).body
    assert (trade["x"], trade["X"], trade["t"], trade["l"], trade["z"], trade["L"], trade["m"], trade["w"]) == \
        ("TRADE", "FILLED", mine["id"], "0.30000000", "0.30000000", "100.00000000", True, False)
    assert (trade["n"], trade["N"], trade["Z"], trade["Y"]) == (mine["commission"], "USDT", "30.00000000",
                                                                "30.00000000")
    assert trade["T"] == int(market.now * 1000) and trade["O"] == new["O"] < trade["T"]
    now = balances_of(orders)
    assert {b["a"]: (b["f"], b["l"]) for b in position["B"]} == {a: now[a] for a in ("BTC", "USDT")}
    assert now["USDT"][1] == "0.00000000" and Decimal(now["BTC"][0]) == Decimal("2.3")


def test_an_ioc_tells_new_each_fill_and_expired(account):
    orders, market, events = account
    answer = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                                                  quantity="4.0", price="100.02", newClientOrderId="ioc-1"),
                            orders.now_ms())
    body = answer.body
    assert body["status"] == "EXPIRED" and len(body["fills"]) == 2
    execution = reports(events)
    assert [(e["x"], e["X"]) for e in execution] == \
        [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "PARTIALLY_FILLED"), ("EXPIRED", "EXPIRED")]
    trades = execution[1:3]
    assert [e["t"] for e in trades] == [f["tradeId"] for f in body["fills"]]
    assert [e["l"] for e in trades] == [f["qty"] for f in body["fills"]]
    assert [e["n"] for e in trades] == [f["commission"] for f in body["fills"]]
    assert sum(Decimal(e["l"]) for e in trades) == Decimal(trades[-1]["z"]) == Decimal(body["executedQty"])
    assert execution[-1]["z"] == body["executedQty"] and execution[-1]["Z"] == body["cummulativeQuoteQty"]
    assert all(not e["m"] for e in trades) and all(not e["w"] for e in execution)
    assert events[-1]["e"] == "outboundAccountPosition" and events.index(execution[-1]) < len(events) - 1


def test_a_fok_that_cannot_fill_tells_new_and_expired_and_moves_no_balance(account):
    orders, market, events = account
    answer = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
                                                  quantity="1.5", price="100.00", newClientOrderId="fok-1"),
                            orders.now_ms())
    assert answer.body["status"] == "EXPIRED"
    assert [(e["e"], e.get("x")) for e in events] == [("executionReport", "NEW"), ("executionReport", "EXPIRED")]


def test_a_limit_maker_that_would_take_is_no_order_and_tells_nothing(account):
    orders, market, events = account
    answer = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.1",
                                                  price="100.01"), orders.now_ms())
    assert (answer.status, answer.body) == (400, {"code": -2010, "msg": "Order would immediately match and take."})
    assert events == []


def test_a_cancel_names_its_own_id_and_the_order_s(account):
    orders, market, events = account
    placed = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="SELL", type="LIMIT_MAKER", quantity="0.2",
                                                  price="101.00", newClientOrderId="lm-1"), orders.now_ms()).body
    assert events[-1]["e"] == "outboundAccountPosition" and events[-1]["B"][0]["a"] == "BTC"
    canceled = orders.execute("DELETE", "order", dict(symbol="BTCUSDT", orderId=str(placed["orderId"]),
                                                      newClientOrderId="cancel-1"), orders.now_ms()).body
    assert canceled["status"] == "CANCELED"
    cancel = reports(events)[-1]
    assert (cancel["x"], cancel["X"], cancel["c"], cancel["C"], cancel["i"], cancel["o"], cancel["w"]) == \
        ("CANCELED", "CANCELED", "cancel-1", "lm-1", placed["orderId"], "LIMIT_MAKER", False)
    assert events[-1]["e"] == "outboundAccountPosition" and events[-1]["B"] == \
        [{"a": "BTC", "f": "2.00000000", "l": "0.00000000"}]


def test_events_come_in_the_order_the_venue_applied_them(account):
    orders, market, events = account
    for n, price in enumerate(("99.00", "99.50")):
        placed = orders.execute("POST", "order", dict(symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                                                      quantity="0.2", price=price, newClientOrderId=f"b{n}"),
                                orders.now_ms())
        assert placed.status == 200, placed.body
    market.now += 1
    market.move([["98.00", "1.0"]], [["99.40", "5.0"]])        # takes 99.50 only
    orders.turn()
    market.now += 1
    market.move([["98.00", "1.0"]], [["98.90", "5.0"]])        # then 99.00
    orders.turn()
    execution = reports(events)
    assert [(e["c"], e["x"]) for e in execution] == [("b0", "NEW"), ("b1", "NEW"), ("b1", "TRADE"), ("b0", "TRADE")]
    assert execution[2]["t"] < execution[3]["t"] and execution[2]["T"] < execution[3]["T"]
    assert [e["I"] for e in execution] == sorted(e["I"] for e in execution)


# -- through the venue ---------------------------------------------------------------------------------------
def test_resting_orders_of_rest_and_the_websocket_api_fill_as_the_replayed_book_moves(tmp_path):
    signer = new_ed25519_signer()
    with binance_sim.running_venue(tmp_path, signer, speed="4", to_the_end=False) as venue:
        def synced_book():
            bids, asks = venue.book()
            return (bids, asks) if bids and asks else None
        bids, asks = wait_for(synced_book, timeout=30, interval=0.1, what="a book")
        ws = venue.ws()
        assert ws.signed("userDataStream.subscribe.signature")["result"] == {"subscriptionId": 0}
        # at the touch on each side: one fills when the price ticks down, the other when it ticks up
        by_rest = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                           quantity="0.002", price=str(bids[0][0]), newClientOrderId="by-rest")
        by_ws = ws.ok("order.place", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
                      quantity="0.002", price=str(asks[0][0]), newClientOrderId="by-ws")
        assert by_ws["status"] in ("NEW", "FILLED") and by_rest["status"] in ("NEW", "FILLED")

        def filled(events):
            done = {e["c"] for _, e in events if e["e"] == "executionReport" and e["X"] == "FILLED"}
            return {"by-rest", "by-ws"} <= done
        events = [e for sub, e in ws.wait_events(filled, timeout=90, what="both orders filled")]
        assert {sub for sub, _ in ws.events} == {0}
        trades = {t["id"]: t for t in venue.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT")}
        for cid, body in (("by-rest", by_rest), ("by-ws", by_ws)):
            mine = [e for e in events if e["e"] == "executionReport" and e["c"] == cid]
            assert mine[0]["x"] == "NEW" and all(e["x"] == "TRADE" for e in mine[1:]) and len(mine) >= 2
            assert all(e["i"] == body["orderId"] for e in mine)
            assert [Decimal(e["z"]) for e in mine[1:]] == \
                [sum(Decimal(t["l"]) for t in mine[1:k + 1]) for k in range(1, len(mine))]
            assert Decimal(mine[-1]["z"]) == Decimal("0.002") and mine[-1]["X"] == "FILLED"
            assert [trades[e["t"]]["orderId"] for e in mine[1:]] == [body["orderId"]] * (len(mine) - 1)
            assert [e["L"] for e in mine[1:]] == [trades[e["t"]]["price"] for e in mine[1:]]
        # the last outboundAccountPosition says what account.status says (its events came before its answer)
        status = ws.ok("account.status")
        now = {b["asset"]: (b["free"], b["locked"]) for b in status["balances"]}
        last = {}
        for _, e in ws.events:
            if e["e"] == "outboundAccountPosition":
                last.update({b["a"]: (b["f"], b["l"]) for b in e["B"]})
        assert {a: now[a] for a in last} == last and set(last) == {"BTC", "USDT"}
        record = venue.get("/_sim/binance/orders")
        assert {o["clientOrderId"]: o["status"] for o in record["orders"]} == {"by-rest": "FILLED", "by-ws": "FILLED"}
        assert sorted(t["id"] for t in record["trades"]) == sorted(trades)
        ws.close()
