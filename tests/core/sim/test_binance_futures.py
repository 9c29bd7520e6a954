"""The simulated venue's USDT-M futures order entry (core/sim/binance_futures.py).

In-process, against a book the test moves and a clock it sets (BinanceFuturesOrders with an injected depth
and clock): every order type's answer as Binance gives it (LIMIT GTC / IOC / FOK, GTX resting and GTX that
would take -5022, a FOK that cannot fill -5021, MARKET, reduce-only that reduces and one that would increase
-2022), modify (PUT /fapi/v1/order) and its refusals, signature / timestamp / filter failures on /fapi with
Binance's codes, ORDER_TRADE_UPDATE for every change (NEW first, TRADE with userTrades' ids) and ACCOUNT_UPDATE
with the position, positionRisk / account / balance agreeing with the fills, and listen keys (POST returns
the live one, PUT extends it, it expires after its TTL with listenKeyExpired, PUT then -1125).

Then through a real venue-sim replaying at speed 4: a listen key's stream (/ws/<listenKey>) gets NEW then
TRADE for a resting order the replayed book fills (trade ids = userTrades), ACCOUNT_UPDATE with the position
positionRisk shows, the record has the futures orders, and the listen_key_expire fault ends the stream with
listenKeyExpired."""
import time
from decimal import Decimal

import pytest

from ttquant.core.sim.binance_auth import ApiKeys
from ttquant.core.sim.binance_futures import BinanceFuturesOrders
from ttquant.core.sim.matching import FillModel
from ttquant.core.venues.binance.signing import HmacSigner, signed_query

import ttq_binance_sim as binance_sim
from ttq_binance_sim import Market, UserStream, exchange_info, fapi
from ttq_testing import new_ed25519_signer, wait_for

KEY, SECRET = "futKey1", "futSecret1"
START = Decimal(100_000)        # the wallet, USDT


# Binance's documented ORDER_TRADE_UPDATE (TRADE) field set, as in ../shared/data/binance/docs_shapes/
# futures_user_data_json_order_update_trade.json (not among the project's data/ copies yet); "AP" and "cr"
# come with trailing stops only
TRADE_SHAPE = ({"e", "T", "E", "o"},
               {"s", "c", "S", "o", "f", "q", "p", "ap", "sp", "x", "X", "i", "l", "z", "L", "N", "n", "T", "t", "b",
                "a", "m", "R", "wt", "ot", "ps", "cp", "pP", "si", "ss", "rp", "V"})


@pytest.fixture(scope="module")
def info():
    return exchange_info("usdm")


@pytest.fixture
def account(info):
    market = Market([["50000.00", "1.000"], ["49999.90", "2.000"]],
                    [["50000.10", "0.500"], ["50000.20", "3.000"]])
    keys = ApiKeys()
    keys.add_hmac(KEY, SECRET)
    orders = BinanceFuturesOrders(keys, lambda: info, market.depth, FillModel(maker_fee_ppm=200, taker_fee_ppm=500),
                                  {"USDT": int(START) * 10**8}, clock=lambda: market.now, listen_key_ttl_s=60)
    events = []
    orders.subscribe(events.append)
    return orders, market, events


def call(orders, method, endpoint, **params):
    answer = orders.execute(method, endpoint, {k: str(v) for k, v in params.items()}, orders.now_ms())
    return answer.status, answer.body


def ok(orders, method, endpoint, **params):
    status, body = call(orders, method, endpoint, **params)
    assert status == 200, body
    return body


def updates(events, kind="ORDER_TRADE_UPDATE"):
    return [e for e in events if e["e"] == kind]


def taker_fee(price, qty, ppm=500):
    """The shared fill model: notional truncated at 8 decimals, then the rate of it rounded up."""
    return Decimal(-(-int(price * qty * 10**8) * ppm // 1_000_000)).scaleb(-8)


def position(orders, symbol="BTCUSDT"):
    (risk,) = ok(orders, "GET", "v2/positionRisk", symbol=symbol)
    return Decimal(risk["positionAmt"]), Decimal(risk["entryPrice"]), risk


def test_a_gtc_limit_rests_and_is_canceled(account):
    orders, market, events = account
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
              quantity="0.100", price="49990.00", newClientOrderId="gtc-1")
    # ACK (the default): the order as the venue took it, in the futures fields
    assert (body["status"], body["clientOrderId"], body["timeInForce"], body["reduceOnly"], body["positionSide"]) \
        == ("NEW", "gtc-1", "GTC", False, "BOTH")
    assert {"avgPrice", "cumQty", "cumQuote", "origType", "priceMatch", "goodTillDate", "updateTime"} <= set(body)
    (new,) = updates(events)
    assert (new["o"]["x"], new["o"]["X"], new["o"]["c"], new["o"]["i"], new["o"]["t"]) == \
        ("NEW", "NEW", "gtc-1", body["orderId"], 0)
    assert updates(events, "ACCOUNT_UPDATE") == []          # nothing traded: no account change
    assert [o["clientOrderId"] for o in ok(orders, "GET", "v1/openOrders", symbol="BTCUSDT")] == ["gtc-1"]
    again = call(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                 quantity="0.100", price="49990.00", newClientOrderId="gtc-1")
    assert again == (400, {"code": -4116, "msg": "ClientOrderId is duplicated."})
    canceled = ok(orders, "DELETE", "v1/order", symbol="BTCUSDT", origClientOrderId="gtc-1")
    assert canceled["status"] == "CANCELED" and canceled["orderId"] == body["orderId"]
    assert (updates(events)[-1]["o"]["x"], updates(events)[-1]["o"]["c"]) == ("CANCELED", "gtc-1")
    assert call(orders, "DELETE", "v1/order", symbol="BTCUSDT", orderId=body["orderId"]) == \
        (400, {"code": -2011, "msg": "Unknown order sent."})
    assert call(orders, "GET", "v1/order", symbol="BTCUSDT", origClientOrderId="never") == \
        (400, {"code": -2013, "msg": "Order does not exist."})
    assert ok(orders, "GET", "v1/order", symbol="BTCUSDT", orderId=body["orderId"])["status"] == "CANCELED"


def test_an_ioc_walks_the_book_expires_the_rest_and_opens_a_long(account):
    orders, market, events = account
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
              quantity="4.000", price="50000.20", newClientOrderId="ioc-1", newOrderRespType="RESULT")
    assert (body["status"], body["executedQty"]) == ("EXPIRED", "3.500")
    quote = Decimal("50000.10") * Decimal("0.5") + Decimal("50000.20") * 3
    assert Decimal(body["cumQuote"]) == quote and Decimal(body["avgPrice"]) == (quote / Decimal("3.5")).quantize(
        Decimal("1e-8"))
    execution = updates(events)
    assert [(e["o"]["x"], e["o"]["X"]) for e in execution] == \
        [("NEW", "NEW"), ("TRADE", "PARTIALLY_FILLED"), ("TRADE", "PARTIALLY_FILLED"), ("EXPIRED", "EXPIRED")]
    trades = ok(orders, "GET", "v1/userTrades", symbol="BTCUSDT")
    assert [e["o"]["t"] for e in execution[1:3]] == [t["id"] for t in trades]
    assert [(t["price"], t["qty"], t["buyer"], t["maker"], t["realizedPnl"]) for t in trades] == \
        [("50000.10", "0.500", True, False, "0.00000000"), ("50000.20", "3.000", True, False, "0.00000000")]
    fees = taker_fee(Decimal("50000.10"), Decimal("0.5")) + taker_fee(Decimal("50000.20"), Decimal(3))
    assert [Decimal(e["o"]["n"]) for e in execution[1:3]] == [Decimal(t["commission"]) for t in trades]
    assert sum(Decimal(t["commission"]) for t in trades) == fees
    outer, inner = TRADE_SHAPE
    assert set(execution[1]) >= outer and set(execution[1]["o"]) >= inner
    (account_update,) = updates(events, "ACCOUNT_UPDATE")[-1:]
    assert events.index(account_update) > events.index(execution[2])
    (pos,) = account_update["a"]["P"]
    amount, entry, risk = position(orders)
    assert (Decimal(pos["pa"]), Decimal(pos["ep"])) == (amount, entry) == \
        (Decimal("3.5"), (quote / Decimal("3.5")).quantize(Decimal("1e-8")))
    assert Decimal(account_update["a"]["B"][0]["wb"]) == START - fees
    balance = ok(orders, "GET", "v2/balance")[0]
    assert Decimal(balance["balance"]) == START - fees
    # marked at the mid of the venue's book (the levels an order took come back with the book's next move)
    mark = (Decimal("50000.00") + Decimal("50000.10")) / 2
    unrealized = (mark - quote / Decimal("3.5")) * Decimal("3.5")
    assert Decimal(risk["markPrice"]) == mark and Decimal(risk["unRealizedProfit"]) == unrealized.quantize(
        Decimal("1e-8"))
    acct = ok(orders, "GET", "v2/account")
    assert Decimal(acct["totalWalletBalance"]) == START - fees
    assert [(p["symbol"], p["positionAmt"]) for p in acct["positions"]] == [("BTCUSDT", risk["positionAmt"])]


def test_a_fok_that_cannot_fill_whole_is_5021_and_no_order(account):
    orders, market, events = account
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
                quantity="3.500", price="49999.90", newClientOrderId="fok-1") == \
        (400, {"code": -5021, "msg": "Due to the order could not be filled immediately, the FOK order has been "
                                     "rejected. The order will not be recorded in the order history"})
    assert events == [] and orders.record()["orders"] == []
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
              quantity="2.500", price="49999.90", newClientOrderId="fok-2", newOrderRespType="RESULT")
    assert (body["status"], body["executedQty"]) == ("FILLED", "2.500")
    assert [e["o"]["x"] for e in updates(events)] == ["NEW", "TRADE", "TRADE"]
    assert position(orders)[0] == Decimal("-2.5")
    assert [o["clientOrderId"] for o in orders.record()["orders"]] == ["fok-2"]


def test_gtx_rests_as_maker_and_a_gtx_that_would_take_is_5022(account):
    orders, market, events = account
    status, body = call(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX",
                        quantity="0.100", price="50000.10", newClientOrderId="gtx-take")
    assert (status, body) == (400, {"code": -5022, "msg": "Due to the order could not be executed as maker, the Post "
                                                          "Only order will be rejected. The order will not be "
                                                          "recorded in the order history"})
    assert events == []
    resting = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTX",
                 quantity="0.100", price="50000.00", newClientOrderId="gtx-rest", newOrderRespType="RESULT")
    assert (resting["status"], resting["timeInForce"]) == ("NEW", "GTX")
    market.now += 1
    market.move([["49999.00", "1.000"]], [["50000.00", "0.300"]])     # the ask comes down to our bid
    orders.turn()
    trade = updates(events)[-1]["o"]
    assert (trade["x"], trade["X"], trade["m"], trade["c"]) == ("TRADE", "FILLED", True, "gtx-rest")
    (mine,) = ok(orders, "GET", "v1/userTrades", symbol="BTCUSDT")
    assert (mine["id"], mine["maker"], Decimal(mine["commission"])) == \
        (trade["t"], True, taker_fee(Decimal(50000), Decimal("0.1"), ppm=200))
    assert [o["clientOrderId"] for o in orders.record()["orders"]] == ["gtx-rest"]


def test_market_orders_and_reduce_only(account):
    orders, market, events = account
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.700",
              newOrderRespType="RESULT")
    assert (body["status"], body["type"], body["price"], body["timeInForce"]) == ("FILLED", "MARKET", "0.00", "GTC")
    entry = (Decimal("50000.10") * Decimal("0.5") + Decimal("50000.20") * Decimal("0.2")) / Decimal("0.7")
    assert position(orders)[:2] == (Decimal("0.7"), entry.quantize(Decimal("1e-8")))
    # reduce-only in the position's own direction, when it would outgrow it, or when flat: -2022
    refused = (400, {"code": -2022, "msg": "ReduceOnly Order is rejected."})
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.100",
                reduceOnly="true") == refused
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.800",
                reduceOnly="true") == refused
    wallet_before = Decimal(ok(orders, "GET", "v2/balance")[0]["balance"])
    reduced = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.300",
                 reduceOnly="true", newOrderRespType="RESULT")
    assert (reduced["status"], reduced["reduceOnly"]) == ("FILLED", True)
    (trade,) = [t for t in ok(orders, "GET", "v1/userTrades", symbol="BTCUSDT") if t["orderId"] == reduced["orderId"]]
    pnl = ((Decimal("50000.00") - entry) * Decimal("0.3")).quantize(Decimal("1e-8"))
    assert Decimal(trade["realizedPnl"]) == pnl and trade["side"] == "SELL"
    assert updates(events)[-1]["o"]["rp"] == trade["realizedPnl"] and updates(events)[-1]["o"]["R"] is True
    wallet = Decimal(ok(orders, "GET", "v2/balance")[0]["balance"])
    assert wallet == wallet_before + pnl - Decimal(trade["commission"])
    amount, entry_now, _ = position(orders)
    assert (amount, entry_now) == (Decimal("0.4"), entry.quantize(Decimal("1e-8")))     # the entry stays
    pos = updates(events, "ACCOUNT_UPDATE")[-1]["a"]["P"][0]
    assert (Decimal(pos["pa"]), Decimal(pos["cr"])) == (Decimal("0.4"), pnl)
    ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.400", reduceOnly="true")
    assert position(orders)[:2] == (0, 0)
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity="0.100",
                reduceOnly="true") == refused


def test_more_than_the_margin_allows_is_2019(account):
    orders, market, events = account
    # 100 000 USDT at 20x: about 40.8 BTC at 49 000
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                quantity="41.000", price="49000.00") == (400, {"code": -2019, "msg": "Margin is insufficient."})
    ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
       quantity="40.000", price="49000.00")
    # what rests holds margin: a second one of the same size no longer fits
    assert call(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                quantity="1.000", price="49000.00")[1]["code"] == -2019


def test_modify_moves_a_resting_order_and_tells_amendment(account):
    orders, market, events = account
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
              quantity="0.100", price="49990.00", newClientOrderId="mod-1")
    modified = ok(orders, "PUT", "v1/order", symbol="BTCUSDT", orderId=body["orderId"], side="BUY",
                  quantity="0.200", price="49995.00")
    assert (modified["orderId"], modified["status"], modified["price"], modified["origQty"]) == \
        (body["orderId"], "NEW", "49995.00", "0.200")
    amendment = updates(events)[-1]["o"]
    assert (amendment["x"], amendment["X"], amendment["p"], amendment["q"], amendment["c"]) == \
        ("AMENDMENT", "NEW", "49995.00", "0.200", "mod-1")
    assert call(orders, "PUT", "v1/order", symbol="BTCUSDT", origClientOrderId="mod-1", side="BUY",
                quantity="0.200", price="49995.00") == (400, {"code": -5027, "msg": "No need to modify the order."})
    # a filter failure leaves the order as it was
    assert call(orders, "PUT", "v1/order", symbol="BTCUSDT", origClientOrderId="mod-1", side="BUY",
                quantity="0.200", price="49995.001") == \
        (400, {"code": -4014, "msg": "Price not increased by tick size."})
    assert ok(orders, "GET", "v1/order", symbol="BTCUSDT", orderId=body["orderId"])["price"] == "49995.00"
    # the book comes to it at its new price: a TRADE of the new quantity
    market.now += 1
    market.move([["49990.00", "1.000"]], [["49995.00", "0.050"], ["50000.00", "1.000"]])
    orders.turn()
    fill = updates(events)[-1]["o"]
    assert (fill["x"], fill["X"], fill["l"], fill["L"]) == ("TRADE", "FILLED", "0.200", "49995.00")
    assert call(orders, "PUT", "v1/order", symbol="BTCUSDT", orderId=body["orderId"], side="BUY",
                quantity="0.300", price="49995.00") == (400, {"code": -2013, "msg": "Order does not exist."})
    assert call(orders, "PUT", "v1/order", symbol="BTCUSDT", orderId=body["orderId"], side="BUY",
                quantity="0.300")[1]["code"] == -1102


def test_a_modify_that_would_make_a_gtx_take_cancels_it(account):
    orders, market, events = account
    body = ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTX",
              quantity="0.100", price="50010.00")
    moved = ok(orders, "PUT", "v1/order", symbol="BTCUSDT", orderId=body["orderId"], side="SELL",
               quantity="0.100", price="50000.00")
    assert moved["status"] == "CANCELED"
    assert [e["o"]["x"] for e in updates(events)] == ["NEW", "CANCELED"]
    assert ok(orders, "GET", "v1/openOrders", symbol="BTCUSDT") == []


def test_cancel_all_open_orders(account):
    orders, market, events = account
    for n in range(2):
        ok(orders, "POST", "v1/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="GTC",
           quantity="0.100", price=f"5010{n}.00", newClientOrderId=f"all-{n}")
    assert ok(orders, "DELETE", "v1/allOpenOrders", symbol="BTCUSDT") == \
        {"code": 200, "msg": "The operation of cancel all open order is done."}
    assert [(e["o"]["c"], e["o"]["x"]) for e in updates(events)][2:] == [("all-0", "CANCELED"), ("all-1", "CANCELED")]


# -- REST: signatures, timestamps and filters on /fapi -------------------------------------------------------
def rest(orders, method, path, params, signer="ours", key=KEY, timestamp=None):
    signer = HmacSigner(SECRET) if signer == "ours" else signer
    query = signed_query(signer, list(params.items()), timestamp or int(orders.now_ms())) if signer else \
        "&".join(f"{k}={v}" for k, v in params.items())
    answer = orders.request(method, path, query, {"X-MBX-APIKEY": key} if key else {}, "")
    return (answer.status, answer.body) if answer is not None else None


@pytest.mark.parametrize("params, failure", [
    ({"quantity": "0.0015", "price": "50000"}, (-4023, "Qty not increased by step size.")),
    ({"quantity": "0.0001", "price": "50000"}, (-4004, "Quantity less than min quantity.")),
    ({"quantity": "0.001", "price": "50000.001"}, (-4014, "Price not increased by tick size.")),
    ({"quantity": "0.010", "price": "4000"}, (-4024, "Limit price can't be lower than 42500.05")),
    ({"quantity": "0.000", "price": "50000"}, (-4003, "Quantity less than or equal to zero.")),
    ({"quantity": "2000", "price": "50000"}, (-4005, "Quantity greater than max quantity.")),
    ({"quantity": "0.001", "price": "4000"}, (-4164, "Order's notional must be no smaller than 5 (unless you "
                                                      "choose reduce only).")),
])
def test_filter_failures_on_fapi_are_binance_s_codes(account, params, failure):
    orders, market, events = account
    status, body = rest(orders, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                           "timeInForce": "GTC", **params})
    assert (status, body) == (400, {"code": failure[0], "msg": failure[1]})
    assert events == []


def test_signature_timestamp_and_key_failures_on_fapi(account):
    orders, market, events = account
    params = {"symbol": "BTCUSDT"}
    assert rest(orders, "GET", "/fapi/v1/openOrders", params) == (200, [])
    assert rest(orders, "GET", "/fapi/v1/openOrders", params, signer=HmacSigner("not the secret")) == \
        (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    assert rest(orders, "GET", "/fapi/v2/account", {}, timestamp=int(orders.now_ms()) - 10_000) == \
        (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    assert rest(orders, "POST", "/fapi/v1/order", {"symbol": "BTCUSDT"}, key="nobody") == \
        (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    assert rest(orders, "GET", "/fapi/v2/positionRisk", {}, key=None) == \
        (401, {"code": -2014, "msg": "API-key format invalid."})
    assert rest(orders, "GET", "/fapi/v1/time", {}, signer=None) == (200, {"serverTime": int(orders.now_ms())})
    assert rest(orders, "GET", "/fapi/v1/depth", {"symbol": "BTCUSDT"}, signer=None) is None    # the venue's own


def test_the_venue_s_gate_and_order_faults_apply_to_fapi_as_to_spot(account, info):
    from ttquant.core.sim.binance_orders import BinanceSpotOrders
    orders, market, events = account
    spot = BinanceSpotOrders(orders.keys, lambda: None, market.depth, gate=orders.gate)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.010",
             "price": "49000.00", "newClientOrderId": "five"}
    spot.fault("order_5xx", {"count": "1", "executed": "1"})
    assert rest(orders, "POST", "/fapi/v1/order", order) == \
        (503, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
    (placed,) = ok(orders, "GET", "v1/openOrders", symbol="BTCUSDT")       # executed all the same
    spot.fault("order_drop", {"count": "1"})
    answer = orders.execute("PUT", "v1/order", {"symbol": "BTCUSDT", "orderId": str(placed["orderId"]), "side": "BUY",
                                                "quantity": "0.020", "price": "49000.00"}, orders.now_ms())
    assert answer.drop and ok(orders, "GET", "v1/order", symbol="BTCUSDT", origClientOrderId="five")["origQty"] \
        == "0.020"
    spot.fault("ban", {"seconds": "5"})
    status, body = rest(orders, "GET", "/fapi/v2/balance", {})
    assert status == 418 and body["code"] == -1003
    assert placed["orderId"] > 4_000_000_000          # never a spot orderId in the venue's record


# -- listen keys ------------------------------------------------------------------------------------------
def test_a_listen_key_lives_its_ttl_from_its_last_keep_alive(account):
    orders, market, events = account
    listen = lambda method: rest(orders, method, "/fapi/v1/listenKey", {}, signer=None)    # noqa: E731
    status, body = listen("POST")
    key = body["listenKey"]
    assert status == 200 and len(key) == 64
    assert listen("POST") == (200, {"listenKey": key})          # the live one, extended
    market.now += 50
    assert listen("PUT") == (200, {"listenKey": key})           # 50 s of 60: extended to 110
    market.now += 50
    orders.turn()
    assert orders.live_listen_key() == key and events == []
    market.now += 11
    orders.turn()
    assert events == [{"e": "listenKeyExpired", "E": str(int(orders.now_ms())), "listenKey": key}]
    assert listen("PUT") == (400, {"code": -1125, "msg": "This listenKey does not exist."})
    status, body = listen("POST")
    assert status == 200 and body["listenKey"] != key
    assert listen("DELETE") == (200, {})
    assert listen("PUT")[1]["code"] == -1125 and len(events) == 1          # closed, not expired: no event
    assert rest(orders, "POST", "/fapi/v1/listenKey", {}, signer=None, key="nobody")[0] == 401


# -- through the venue ---------------------------------------------------------------------------------------
def test_a_listen_key_stream_tells_a_resting_order_filled_by_the_replayed_book(tmp_path):
    with binance_sim.running_venue(tmp_path, new_ed25519_signer(), "--listen-key-ttl", "4", "--futures-balances",
                                   "USDT=200000", speed="4", to_the_end=False) as venue:
        def synced_book():
            body = venue.get("/fapi/v1/depth?symbol=BTCUSDT&limit=100")
            return body if body.get("bids") and body.get("asks") else None
        book = wait_for(synced_book, timeout=30, interval=0.1, what="a USDT-M book")
        status, body = fapi(venue, "POST", "/fapi/v1/listenKey", signed=False)
        assert status == 200, body
        key = body["listenKey"]
        assert UserStream(venue.port, "not" + key[3:]).status == 400
        stream = UserStream(venue.port, key)
        assert stream.status == 101
        status, placed = fapi(venue, "POST", "/fapi/v1/order", [
            ("symbol", "BTCUSDT"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"), ("quantity", "0.002"),
            ("price", book["bids"][0][0].rstrip("0").rstrip(".")), ("newClientOrderId", "fut-rest")])
        assert status == 200, placed

        kept = [time.monotonic()]

        def filled(events):
            if time.monotonic() - kept[0] > 1:        # the key lives 4 s: kept alive while the order waits
                assert fapi(venue, "PUT", "/fapi/v1/listenKey", signed=False) == (200, {"listenKey": key})
                kept[0] = time.monotonic()
            return any(e["e"] == "ORDER_TRADE_UPDATE" and e["o"]["X"] == "FILLED" for e in events) and \
                any(e["e"] == "ACCOUNT_UPDATE" for e in events)
        events = stream.wait_for_events(filled, timeout=120, what="the order filled by the replayed book")
        assert not stream.closed
        mine = [e["o"] for e in events if e["e"] == "ORDER_TRADE_UPDATE"]
        assert mine[0]["x"] == "NEW" and all(o["x"] == "TRADE" for o in mine[1:]) and len(mine) >= 2
        assert all(o["i"] == placed["orderId"] and o["c"] == "fut-rest" for o in mine)
        status, trades = fapi(venue, "GET", "/fapi/v1/userTrades", [("symbol", "BTCUSDT")])
        assert [o["t"] for o in mine[1:]] == [t["id"] for t in trades]
        assert Decimal(mine[-1]["z"]) == sum(Decimal(t["qty"]) for t in trades) == Decimal("0.002")
        status, risk = fapi(venue, "GET", "/fapi/v2/positionRisk", [("symbol", "BTCUSDT")])
        last = [e for e in events if e["e"] == "ACCOUNT_UPDATE"][-1]["a"]["P"][0]
        assert Decimal(risk[0]["positionAmt"]) == Decimal(last["pa"]) == Decimal("0.002")
        entry = sum(Decimal(t["price"]) * Decimal(t["qty"]) for t in trades) / Decimal("0.002")
        assert Decimal(risk[0]["entryPrice"]) == Decimal(last["ep"]) == entry.quantize(Decimal("1e-8"))
        status, (balance,) = fapi(venue, "GET", "/fapi/v2/balance")
        assert Decimal(balance["balance"]) == 200_000 - sum(Decimal(t["commission"]) for t in trades)
        record = venue.get("/_sim/binance/orders")
        assert [(o["market"], o["clientOrderId"], o["status"]) for o in record["orders"]] == \
            [("usdm", "fut-rest", "FILLED")]
        assert sorted(t["id"] for t in record["trades"] if t["market"] == "usdm") == [t["id"] for t in trades]

        # user_drop closes the stream, not the key: a new connection with it gets the events again
        assert venue.get("/_sim/fault?kind=user_drop")["closed"] >= 1
        stream.wait_for_events(lambda events: stream.closed, timeout=10, what="the stream dropped")
        stream.close()
        stream = UserStream(venue.port, key)
        assert stream.status == 101
        assert venue.get("/_sim/fault?kind=listen_key_expire") == {"ok": "listen_key_expire", "expired": True}
        stream.wait_for_events(lambda events: stream.closed, timeout=10, what="the stream closed")
        assert stream.events[-1] == {"e": "listenKeyExpired", "E": stream.events[-1]["E"], "listenKey": key}
        assert fapi(venue, "PUT", "/fapi/v1/listenKey", signed=False) == \
            (400, {"code": -1125, "msg": "This listenKey does not exist."})
        stream.close()
        # a new key, not kept alive: it expires by itself
        status, body = fapi(venue, "POST", "/fapi/v1/listenKey", signed=False)
        assert status == 200 and body["listenKey"] != key
        stream = UserStream(venue.port, body["listenKey"])
        stream.wait_for_events(lambda events: stream.closed, timeout=30, what="the key's own expiry")
        assert [e["e"] for e in stream.events] == ["listenKeyExpired"]
        stream.close()
