"""A spot amend (cancelReplace) of an order that had partly filled, through the adapter's own bookkeeping, with
the venue's answers and user data events written out (the venue-sim's book cannot be made to fill an order
partly on cue; test_adapter_amend.py runs the whole round trip against it): the new order is sent for the new
total less what filled, and what the venue then says of it (a fresh order, its own quantities) reaches the OMS
as one order: the amend confirmed at the new total, the old order's cancel not reported, the new order's events
that overtook the answer held until it was read, its fills on top of the old one's.
"""
import pytest

from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, Side
from ttquant.core.venues.base import VenueOrder, VenueReport
from ttquant.core.venues.binance.adapter import BinanceAdapter
from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.rest import BinanceRest
from ttquant.core.venues.binance.signing import HmacSigner

S = OrderStatus
BTC = Instrument(instrument_id=1, venue="binance", symbol="BTCUSDT", market_type=MarketType.SPOT, base="BTC",
                 quote="USDT", price_precision=2, size_precision=3, tick_size=1, step_size=1, min_qty=1, max_qty=0,
                 min_price=1, max_price=0, min_notional=0)
KEY = (7, 5)


@pytest.fixture
def adapter():
    table = InstrumentTable("binance")
    table.add(BTC)
    # nothing here reaches the venue: the answers are handed to the adapter as its clients would hand them
    rest = BinanceRest("http://127.0.0.1:9", ApiCredentials("k", HmacSigner("s"), "test"))
    a = BinanceAdapter(rest, table)
    yield a
    a.close()


def event(order_id, x, status, q, p, z, l="0.000", t=-1, c="t7-5", C=""):    # noqa: E741 (Binance's field name)
    return {"e": "executionReport", "E": 1, "s": "BTCUSDT", "c": c, "C": C, "S": "BUY", "o": "LIMIT", "f": "GTC",
            "q": q, "p": p, "x": x, "X": status, "r": "NONE", "i": order_id, "l": l, "z": z, "L": p, "n": "0",
            "N": "USDT", "T": 2, "t": t, "m": True}


def test_an_amend_of_a_partly_filled_order_reaches_the_oms_as_one_order(adapter):
    first = [VenueReport(*KEY, S.ACCEPTED, venue_order_id=100, price=3000000, qty=3, cum_qty=0),
             VenueReport(*KEY, S.PARTIALLY_FILLED, venue_order_id=100, last_price=3000000, last_qty=1, cum_qty=1,
                         trade_id=900, price=3000000, qty=3)]
    for rep in first:
        adapter._report(rep)
    order = Order(strategy_id=7, client_order_id=5, instrument_id=1, action=OrderAction.NEW, side=Side.BUY,
                  order_type=OrderType.LIMIT, price=3000000, qty=3)
    oms = OrderBookKeeper()
    oms.add(order, order.price)
    for rep in adapter.poll():
        oms.apply(rep)
    assert oms.get(*KEY).cum_qty == 1

    amend = Order(strategy_id=7, client_order_id=6, target_order_id=5, instrument_id=1, action=OrderAction.AMEND,
                  side=Side.BUY, price=3000100, qty=5)
    key, params, old_id, filled = adapter._amend_request(amend, BTC)
    sent = dict(params)
    assert (old_id, filled, sent["cancelOrderId"], sent["newClientOrderId"], str(sent["quantity"])) == \
        (100, 1, 100, "t7-5", "0.004")        # the new total (0.005) less what filled (0.001)
    adapter._begin_amend(key, old_id)
    # the venue's events come first: the old order canceled (not ours to report), the new one taken
    adapter._on_event(event(100, "CANCELED", "CANCELED", "0.003", "30000.00", "0.001", c="x1", C="t7-5"))
    adapter._on_event(event(101, "NEW", "NEW", "0.004", "30001.00", "0.000"))
    assert adapter.poll() == []                 # held until the answer says which order is ours now
    answer = {"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
              "cancelResponse": {"symbol": "BTCUSDT", "origClientOrderId": "t7-5", "orderId": 100,
                                 "clientOrderId": "x1", "price": "30000.00", "origQty": "0.003",
                                 "executedQty": "0.001", "status": "CANCELED", "type": "LIMIT", "side": "BUY"},
              "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 101, "clientOrderId": "t7-5",
                                   "transactTime": 3, "price": "30001.00", "origQty": "0.004",
                                   "executedQty": "0.000", "status": "NEW", "type": "LIMIT", "side": "BUY",
                                   "fills": []}}
    adapter._on_amend_answer(BTC, key, old_id, filled, answer, None, on_worker=True)
    # the new order fills whole: 0.004 of its own, 0.005 of ours
    adapter._on_event(event(101, "TRADE", "FILLED", "0.004", "30001.00", "0.004", l="0.004", t=901))
    reports = adapter.poll()
    assert all(r.status != S.CANCELED for r in reports) and adapter.counts["replaced_reports"] == 1
    assert reports[0].status == S.ACCEPTED and (reports[0].price, reports[0].qty, reports[0].cum_qty) == \
        (3000100, 5, 1)                          # the amend, confirmed at the new total
    for rep in reports:
        oms.apply(rep)
    st = oms.get(*KEY)
    assert (st.status, st.price, st.qty, st.cum_qty, st.venue_order_id) == (S.FILLED, 3000100, 5, 5, 101)
    assert oms.counts["overfills"] == 0 and oms.counts["illegal_transitions"] == 0
    # reconciliation (open_orders, order_status) sees the venue's new order at the same totals
    at_venue = VenueOrder(strategy_id=7, client_order_id=5, venue_order_id=101, instrument_id=1, side=Side.BUY,
                          price=3000100, qty=4, cum_qty=4, status=S.FILLED)
    assert (adapter._rebased(at_venue).qty, adapter._rebased(at_venue).cum_qty) == (5, 5)


def test_a_refused_amend_lets_the_old_orders_own_cancel_through(adapter):
    adapter._report(VenueReport(*KEY, S.ACCEPTED, venue_order_id=100, price=3000000, qty=3, cum_qty=0))
    adapter.poll()
    adapter._begin_amend(KEY, 100)
    adapter._end_amend(KEY, 100, replaced=False)      # refused (STOP_ON_FAILURE): the order is as it was
    adapter._on_event(event(100, "CANCELED", "CANCELED", "0.003", "30000.00", "0.000", c="x2", C="t7-5"))
    (rep,) = adapter.poll()
    assert (rep.status, rep.venue_order_id) == (S.CANCELED, 100)


def test_an_amend_the_venue_refuses_reaches_the_oms_as_refused_and_the_order_stays(adapter):
    from ttquant.core.records import RejectCode
    from ttquant.core.venues.binance.errors import classify
    from ttquant.core.venues.binance.rest import OrderRejected
    oms = OrderBookKeeper()
    oms.add(Order(strategy_id=7, client_order_id=5, instrument_id=1, action=OrderAction.NEW, side=Side.BUY,
                  order_type=OrderType.LIMIT, price=3000000, qty=3), 3000000)
    adapter._report(VenueReport(*KEY, S.ACCEPTED, venue_order_id=100, price=3000000, qty=3, cum_qty=0))
    adapter._begin_amend(KEY, 100)
    oms.get(*KEY).amend_requested = True
    # Binance's answer to a cancelReplace whose new order the filters refused: -2021, its data in the body
    body = {"code": -2021, "msg": "Order cancel-replace partially failed.",
            "data": {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                     "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": None}}
    refused = OrderRejected("cancelReplace refused", classify(409, body, "spot"))
    adapter._on_amend_answer(BTC, KEY, 100, 0, None, refused, on_worker=False)
    reports = adapter.poll()
    out = [er for er in map(oms.apply, reports) if er is not None]
    assert [(er.status, er.price, er.qty) for er in out] == [(S.ACCEPTED, 3000000, 3), (S.ACCEPTED, 3000000, 3)]
    assert out[-1].reject_code not in (0, RejectCode.NONE) and oms.get(*KEY).amend_requested is False
    assert oms.counts["amends_refused"] == 1
