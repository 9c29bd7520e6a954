"""venue-sim's Binance spot order entry over signed REST (core/sim/binance_orders.py), through a real
`ttquant venue-sim binance` process and requests signed by our client's signing code: a LIMIT rests and is
canceled, a marketable IOC and a MARKET fill against the venue's book (FULL answers with fills), a
LIMIT_MAKER that would cross is refused (-2010), a filter failure is -1013, bad signature / stale
timestamp / unknown key are refused as Binance refuses them, openOrders / order / myTrades / account agree
with what happened, and every answer carries weight headers that grow.

The capture is replayed as fast as possible to its end first, so the venue's book stands still and each
test knows the book its orders meet."""
import os
import time
from decimal import Decimal

import pytest

from ttquant.core.venues.binance.signing import HmacSigner

import ttq_binance_sim as binance_sim
from ttq_binance import ED_KEY, KEY, SECRET


def running_venue(root, ed_signer):
    """venue-sim with our keys and an account (1 BTC, fees 2 / 5 bps), its capture replayed to the end (the
    book stands still): ttq_binance_sim.Venue."""
    return binance_sim.running_venue(root, ed_signer, "--maker-fee-bps", "2", "--taker-fee-bps", "5",
                                     balances="USDT=500000,BTC=1")


@pytest.fixture(scope="module")
def venue(tmp_path_factory, ed_signer):
    """One venue for the tests below: the levels an order takes stay taken (the book does not move)."""
    with running_venue(tmp_path_factory.mktemp("venue"), ed_signer) as v:
        yield v


def test_a_limit_that_takes_part_of_the_book_rests_partially_filled(tmp_path, ed_signer):
    with running_venue(tmp_path, ed_signer) as venue:       # a book no other test has taken from
        _, asks = venue.book()
        (p1, q1), (p2, _) = asks[0], asks[1]
        body = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                        quantity=str(q1 + Decimal("0.01")), price=str(p1), newClientOrderId="part-1")
        assert body["status"] == "PARTIALLY_FILLED" and Decimal(body["executedQty"]) == q1
        assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in body["fills"]] == [(p1, q1)]
        (opened,) = venue.ok("GET", "/api/v3/openOrders")
        assert (opened["clientOrderId"], opened["status"], Decimal(opened["executedQty"])) == \
            ("part-1", "PARTIALLY_FILLED", q1)
        assert venue.balance("USDT")[1] == p1 * Decimal("0.01")           # what is left to buy stays locked
        assert venue.balance("BTC") == (1 + q1, 0)
        canceled = venue.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=str(body["orderId"]))
        assert canceled["status"] == "CANCELED" and Decimal(canceled["executedQty"]) == q1
        assert venue.balance("USDT")[1] == 0
        (trade,) = venue.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT", orderId=str(body["orderId"]))
        assert (Decimal(trade["qty"]), trade["isMaker"], trade["isBuyer"]) == (q1, False, True)
        assert p2 > p1


def test_a_limit_order_rests_then_is_canceled(venue):
    bids, asks = venue.book()
    price = str(bids[0][0] - Decimal("100"))            # well below the best bid: it rests
    usdt_before = venue.balance("USDT")
    body = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                    quantity="0.01000", price=price, newClientOrderId="rest-1", newOrderRespType="RESULT")
    assert body["status"] == "NEW" and body["clientOrderId"] == "rest-1" and body["executedQty"] == "0.00000000"
    assert body["price"] == format(Decimal(price).quantize(Decimal("1e-8")), "f") and "fills" not in body
    order_id = body["orderId"]
    opened = venue.ok("GET", "/api/v3/openOrders", symbol="BTCUSDT")
    assert [o["clientOrderId"] for o in opened] == ["rest-1"]
    free, locked = venue.balance("USDT")
    assert locked == Decimal(price) * Decimal("0.01") and free == usdt_before[0] - locked
    again = venue.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC",
                         quantity="0.01000", price=price, newClientOrderId="rest-1")
    assert again[:2] == (400, {"code": -2010, "msg": "Duplicate order sent."})

    canceled = venue.ok("DELETE", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="rest-1")
    assert canceled["status"] == "CANCELED" and canceled["orderId"] == order_id
    assert canceled["origClientOrderId"] == "rest-1"
    assert venue.ok("GET", "/api/v3/order", symbol="BTCUSDT", orderId=str(order_id))["status"] == "CANCELED"
    assert venue.ok("GET", "/api/v3/openOrders", symbol="BTCUSDT") == []
    assert venue.balance("USDT") == usdt_before
    # canceled already, and never sent: Binance's unknown-order bodies
    assert venue.signed("DELETE", "/api/v3/order", symbol="BTCUSDT", orderId=str(order_id))[:2] == \
        (400, {"code": -2011, "msg": "Unknown order sent."})
    assert venue.signed("GET", "/api/v3/order", symbol="BTCUSDT", origClientOrderId="never")[:2] == \
        (400, {"code": -2013, "msg": "Order does not exist."})
    assert venue.signed("DELETE", "/api/v3/openOrders", symbol="BTCUSDT")[:2] == \
        (400, {"code": -2011, "msg": "Unknown order sent."})


def test_a_marketable_ioc_walks_the_book_and_expires_the_rest(venue):
    bids, asks = venue.book()
    (p1, q1), (p2, q2) = asks[0], asks[1]
    # more than the first two levels, limited at the second: it takes both and expires the rest
    qty = q1 + q2 + Decimal("0.1")
    start = int(time.time() * 1000)
    usdt, btc = venue.balance("USDT")[0], venue.balance("BTC")[0]
    body = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="IOC",
                    quantity=str(qty), price=str(p2), newOrderRespType="FULL")
    assert body["status"] == "EXPIRED" and body["timeInForce"] == "IOC"
    assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in body["fills"]] == [(p1, q1), (p2, q2)]
    assert Decimal(body["executedQty"]) == q1 + q2
    quote = p1 * q1 + p2 * q2
    assert Decimal(body["cummulativeQuoteQty"]) == quote.quantize(Decimal("1e-8"))
    fees = sum(Decimal(f["commission"]) for f in body["fills"])
    # the shared fill model: notional truncated at 8 decimals, then 5 bps of it rounded up
    taker_fee = lambda p, q: Decimal(-(-int(p * q * 10**8) * 500 // 1_000_000)).scaleb(-8)   # noqa: E731
    assert fees == taker_fee(p1, q1) + taker_fee(p2, q2)
    assert all(f["commissionAsset"] == "USDT" for f in body["fills"])
    assert venue.balance("BTC")[0] == btc + q1 + q2
    assert venue.balance("USDT")[0] == usdt - quote.quantize(Decimal("1e-8")) - fees

    trades = venue.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT", startTime=str(start))
    assert [(t["orderId"], Decimal(t["price"]), Decimal(t["qty"]), t["isBuyer"], t["isMaker"]) for t in trades] == \
        [(body["orderId"], p1, q1, True, False), (body["orderId"], p2, q2, True, False)]
    assert [t["id"] for t in trades] == [f["tradeId"] for f in body["fills"]]
    assert venue.ok("GET", "/api/v3/myTrades", symbol="BTCUSDT", startTime=str(int(time.time() * 1000) + 1000)) == []
    assert venue.ok("GET", "/api/v3/order", symbol="BTCUSDT", orderId=str(body["orderId"]))["status"] == "EXPIRED"


def test_a_market_sell_fills_at_the_bids(venue):
    bids, _ = venue.book()
    qty = bids[0][1] + Decimal("0.00001")       # the first bid level and a little of the next
    body = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="MARKET", quantity=str(qty))
    assert body["status"] == "FILLED" and body["type"] == "MARKET" and body["price"] == "0.00000000"
    assert [(Decimal(f["price"]), Decimal(f["qty"])) for f in body["fills"]] == \
        [bids[0], (bids[1][0], Decimal("0.00001"))]
    # a FOK that the whole book in its limit cannot fill does nothing
    fok = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="LIMIT", timeInForce="FOK",
                   quantity="0.9", price=str(bids[0][0] + 1000))
    assert fok["status"] == "EXPIRED" and fok["fills"] == [] and fok["executedQty"] == "0.00000000"


def test_a_limit_maker_that_would_cross_is_refused(venue):
    _, asks = venue.book()
    status, body, _ = venue.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER",
                                   quantity="0.001", price=str(asks[0][0]))
    assert (status, body) == (400, {"code": -2010, "msg": "Order would immediately match and take."})
    ok = venue.ok("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT_MAKER", quantity="0.001",
                  price=str(asks[0][0] - Decimal("50")))
    assert set(ok) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}     # ACK by default
    assert venue.ok("GET", "/api/v3/order", symbol="BTCUSDT", orderId=str(ok["orderId"]))["type"] == "LIMIT_MAKER"
    everything = venue.ok("DELETE", "/api/v3/openOrders", symbol="BTCUSDT")
    assert [(o["orderId"], o["status"]) for o in everything] == [(ok["orderId"], "CANCELED")]


@pytest.mark.parametrize("params, failure", [
    ({"quantity": "0.000001", "price": "50000"}, "LOT_SIZE"),
    ({"quantity": "0.001", "price": "50000.001"}, "PRICE_FILTER"),
    ({"quantity": "0.0001", "price": "50000"}, "MIN_NOTIONAL"),
    ({"quantity": "0.001", "price": "400000"}, "PERCENT_PRICE"),      # over 5x the book's mid
])
def test_a_filter_failure_is_1013(venue, params, failure):
    status, body, _ = venue.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                   timeInForce="GTC", **params)
    assert (status, body) == (400, {"code": -1013, "msg": f"Filter failure: {failure}"})


def test_more_than_the_account_holds_is_refused(venue):
    status, body, _ = venue.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="SELL", type="LIMIT",
                                   timeInForce="GTC", quantity="5", price="100000")
    assert (status, body) == (400, {"code": -2010, "msg": "Account has insufficient balance for requested action."})


def test_signing_failures_are_refused_as_binance_does(venue, ed_signer):
    params = [("symbol", "BTCUSDT")]
    status, body, _ = venue.call("GET", "/api/v3/openOrders", params, signer=HmacSigner("not the secret"))
    assert (status, body) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})
    stale = int(time.time() * 1000) - 10_000
    status, body, _ = venue.call("GET", "/api/v3/openOrders", params, signer=HmacSigner(SECRET), timestamp=stale)
    assert (status, body) == (400, {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."})
    status, body, _ = venue.call("GET", "/api/v3/openOrders", params, signer=HmacSigner(SECRET), key="nobody")
    assert (status, body) == (401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
    status, body, _ = venue.call("GET", "/api/v3/account", [], signer=HmacSigner(SECRET), key=None)
    assert (status, body) == (401, {"code": -2014, "msg": "API-key format invalid."})
    # the Ed25519 key of the keys file signs as well
    status, body, _ = venue.call("GET", "/api/v3/openOrders", params, signer=ed_signer, key=ED_KEY)
    assert (status, body) == (200, [])
    status, body, _ = venue.call("GET", "/api/v3/time")
    assert status == 200 and abs(body["serverTime"] - time.time() * 1000) < 5000


def test_weight_headers_are_on_every_answer_and_grow(venue):
    _, _, first = venue.call("GET", "/api/v3/time")
    _, _, second = venue.signed("GET", "/api/v3/account")           # weight 20
    _, _, third = venue.call("GET", "/api/v3/depth", [("symbol", "BTCUSDT"), ("limit", "100")])    # weight 5
    weights = [int(h["X-MBX-USED-WEIGHT-1M"]) for h in (first, second, third)]
    if weights[1] < weights[0]:     # a clock minute began between them: the window starts again
        weights = weights[1:]
    assert weights == sorted(weights) and len(set(weights)) == len(weights), weights
    before = int(third["X-MBX-ORDER-COUNT-10S"])
    _, _, refused = venue.signed("POST", "/api/v3/order", symbol="BTCUSDT", side="BUY", type="LIMIT",
                                 timeInForce="GTC", quantity="0.000001", price="50000")
    assert int(refused["X-MBX-ORDER-COUNT-1D"]) >= 1 and "X-MBX-ORDER-COUNT-10S" in refused
    assert int(refused["X-MBX-ORDER-COUNT-10S"]) in (before + 1, 1)     # 1: a new 10 s window
    _, _, bad = venue.call("GET", "/api/v3/account", [], signer=HmacSigner("wrong"))
    assert "X-MBX-USED-WEIGHT-1M" in bad


def test_a_keys_file_others_can_read_is_refused(tmp_path):
    from ttquant.core.sim.binance_orders import load_api_keys
    keys = tmp_path / "keys"
    keys.write_text(f"{KEY} hmac {SECRET}\n")
    keys.chmod(0o640)
    with pytest.raises(ValueError, match="readable by group or others"):
        load_api_keys(str(keys), {})
    keys.chmod(0o600)
    assert KEY in load_api_keys(str(keys), {})
    assert "envKey" in load_api_keys(None, {"TTQ_SIM_BINANCE_API_KEY": "envKey", "TTQ_SIM_BINANCE_API_SECRET": "s"})
    assert os.stat(keys).st_mode & 0o077 == 0
