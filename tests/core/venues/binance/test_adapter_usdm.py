"""The Binance adapter on USDT-M futures ([adapter] market = "usdm") against a real `ttquant venue-sim binance`
process, each test with both order entries: the futures WebSocket API (order_entry "ws": ws-fapi, /ws-fapi/v1)
and signed REST on /fapi/v1 ("rest"); user data over a listen key (listen_key.ListenKeyStream on
ws://127.0.0.1:<main port>/ws/<listenKey>), the gap reconciled after the key expires, and AMEND as a modify
(order.modify, PUT /fapi/v1/order). What the adapter reports is compared with the venue's own record
(/_sim/binance/orders) and fed to the gateway's OMS, so a fill reported twice, a fill lost or an order placed twice
shows.

The capture replays at speed 3 and loops, so the book moves and an order resting at the best bid or ask is
soon filled.
"""
import contextlib
import os
import time
import urllib.error
import urllib.request
from decimal import ROUND_CEILING, Decimal

import pytest

from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.instruments import MarketType, instruments_path
from ttquant.core.records import OrderStatus, OrderType, RejectCode, Side
from ttquant.core.venues.binance.listen_key import ListenKeyStream
from ttquant.core.venues.binance.signing import HmacSigner

from ttq_binance import (
    KEY,
    SECRET,
    AdapterReports,
    SimBinance,
    amend,
    api_keys_file,
    as_the_oms_applies,
    cancel,
    cancel_resting,
    instrument_table,
    new_order,
    open_adapter,
    placed_once_after_a_clock_jump,
    rest_both_sides,
)
from ttq_testing import SESSION_PREFIX, Children, start_binance_venue, wait_for

S = OrderStatus


@pytest.fixture(scope="module", params=["ws", "rest"])
def venue(tmp_path_factory, request):
    """A venue of its own for each order entry, so the venue's record holds one adapter's orders."""
    root = tmp_path_factory.mktemp(f"binance_usdm_{request.param}")
    log = root / "venue.log"
    kids = Children()
    try:
        venue = SimBinance(*start_binance_venue(kids, log, "--speed", "3", "--loop", "--api-keys", api_keys_file(root),
                                                "--balances", "USDT=500000,BTC=5"), market="usdm")
        wait_for(venue.futures_ready, timeout=30, interval=0.1, what="the venue's /fapi/v1/order")
        yield venue, root, request.param
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        kids.kill_all()


@pytest.fixture(scope="module")
def stack(venue):
    venue, root, order_entry = venue
    rings = f"{SESSION_PREFIX}bnfu{order_entry}"
    table_path = instruments_path(rings)
    adapter = None
    try:
        table = instrument_table(venue, rings, "usdm")
        adapter = open_adapter(venue, root, rings, market="usdm", order_entry=order_entry, ws_api_url=venue.ws_url,
                               user_stream_url=venue.stream_url)
        assert isinstance(adapter.stream, ListenKeyStream) and adapter.stream.connected
        assert (adapter.ws is not None and adapter.ws.connected) == (order_entry == "ws")
        yield venue, table.by_symbol("BTCUSDT", MarketType.LINEAR_PERPETUAL), adapter
    finally:
        if adapter is not None:
            adapter.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(table_path)


def lot(price, notional=Decimal(150)):
    """The smallest quantity over the venue's minimum notional at this price (0.001 BTC steps)."""
    return (notional / price).quantize(Decimal("0.001"), rounding=ROUND_CEILING)


def assert_fills_are_the_venues(got, venue, inst, strategy, cids):
    trades = venue.trades_of(*(f"t{strategy}-{c}" for c in cids))
    fills = [f for c in cids for f in got.fills(strategy, c)]
    assert sorted(f.trade_id for f in fills) == sorted(t["id"] for t in trades)
    by_id = {t["id"]: t for t in trades}
    for f in fills:
        t = by_id[f.trade_id]
        assert (f.last_price, f.last_qty) == (inst.price_to_raw(Decimal(t["price"])),
                                              inst.qty_to_raw(Decimal(t["qty"])))
    return trades


def test_every_futures_order_type_ends_as_the_venue_says(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, ask = venue.top()
    qty = lot(ask)
    orders = {
        1: new_order(inst, 40, 1, Side.BUY, bid - 500, qty),                        # LIMIT GTC, rests
        2: new_order(inst, 40, 2, Side.BUY, ask + 50, qty, OrderType.IOC),          # takes
        3: new_order(inst, 40, 3, Side.BUY, ask + 50, qty, OrderType.FOK),          # takes whole
        4: new_order(inst, 40, 4, Side.BUY, None, qty, OrderType.MARKET),
        5: new_order(inst, 40, 5, Side.BUY, ask + 50, qty, OrderType.POST_ONLY),    # GTX that would take
        6: new_order(inst, 40, 6, Side.SELL, ask + 500, qty, OrderType.POST_ONLY),  # GTX, rests
    }
    for cid in sorted(orders):
        assert adapter.send(orders[cid])
    got.until(lambda g: all(g.status(40, c) is not None for c in orders) and
              all(g.status(40, c) == S.FILLED for c in (2, 3, 4)), what="every order answered, the takers filled")
    assert got.status(40, 1) == S.ACCEPTED and got.status(40, 6) == S.ACCEPTED
    assert got.status(40, 5) == S.REJECTED and got.of(40, 5)[-1].reject_code == RejectCode.BAD_PRICE    # -5022
    assert not venue.orders_with("t40-5")           # Binance: not recorded in the order history
    # reduce-only: long 3 lots now; a buy would grow it (-2022), a sell takes it down
    orders[7] = new_order(inst, 40, 7, Side.BUY, None, qty, OrderType.MARKET, reduce_only=1)
    orders[8] = new_order(inst, 40, 8, Side.SELL, None, qty, OrderType.MARKET, reduce_only=1)
    assert adapter.send(orders[7]) and adapter.send(orders[8])
    got.until(lambda g: g.status(40, 7) == S.REJECTED and g.status(40, 8) == S.FILLED, what="reduce-only")
    assert got.of(40, 7)[-1].reject_code == RejectCode.REDUCE_ONLY and not venue.orders_with("t40-7")
    for cid in (1, 6):
        assert adapter.send(cancel(40, cid))
    got.until(lambda g: g.status(40, 1) == g.status(40, 6) == S.CANCELED, what="the resting ones canceled")
    time.sleep(0.3)                         # anything reported twice would have come by now
    got.all.extend(adapter.poll())
    assert_fills_are_the_venues(got, venue, inst, 40, [2, 3, 4, 8])
    oms = as_the_oms_applies([orders[c] for c in (1, 2, 3, 4, 6, 8)], got.all, venue, inst)
    assert [oms.get(40, c).status for c in (1, 2, 3, 4, 6, 8)] == [S.CANCELED, S.FILLED, S.FILLED, S.FILLED,
                                                                  S.CANCELED, S.FILLED]
    wait_for(lambda: adapter.stream_positions().get(inst.instrument_id) == 2 * inst.qty_to_raw(qty), timeout=5,
             what=f"the stream's position: {adapter.stream_positions()}")
    assert adapter.positions()[inst.instrument_id] == 2 * inst.qty_to_raw(qty)       # positionRisk agrees
    assert adapter.stream_balances()["USDT"] > 0 and adapter.balances()["USDT"] > 0
    if adapter.ws is not None:              # every order, cancel and answer over ws-fapi, none the REST way
        assert adapter.counts["ws_orders"] == 8 and adapter.counts["ws_fallbacks"] == 0
        assert adapter.ws.requests_sent >= 10 and adapter.rest.requests_sent < 20


def test_a_resting_order_filled_by_the_book_comes_through_the_listen_key_stream_once(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    streamed, polled = adapter.user_data.counts["reports"], adapter.counts["polled_fills"]
    orders = rest_both_sides(venue, inst, adapter, got, 41, lot(venue.top()[1]))
    got.until(lambda g: g.fills(41, 1) or g.fills(41, 2), timeout=60, what="a fill as the book moves")
    cancel_resting(adapter, got, 41)
    time.sleep(0.3)
    got.all.extend(adapter.poll())
    trades = assert_fills_are_the_venues(got, venue, inst, 41, [1, 2])
    assert trades and adapter.counts["polled_fills"] == polled        # the stream said it, not the poll
    assert adapter.user_data.counts["reports"] > streamed and adapter.stream.connected
    as_the_oms_applies(orders, got.all, venue, inst)


def test_an_expired_listen_key_is_made_again_and_a_fill_in_the_gap_reported_once(stack, monkeypatch):
    venue, inst, adapter = stack
    monkeypatch.setattr(adapter, "fill_poll_s", 60.0)     # the reconnect's reconciliation, not the poll, finds it
    got = AdapterReports(adapter)
    stream = adapter.stream
    gaps, gap_fills = adapter.counts["gap_reconciles"], adapter.counts["gap_fills"]
    made, expired = stream.counts["keys_created"], stream.counts["keys_expired"]
    orders = rest_both_sides(venue, inst, adapter, got, 42, lot(venue.top()[1]))
    assert adapter.settle()
    adapter.rest.limits.back_off(15)      # nothing reconnects (nor polls) during a back-off: a gap for sure
    try:
        venue.fault("listen_key_expire")
        wait_for(lambda: not stream.connected, timeout=5, what="the stream ended with its key")
        wait_for(lambda: venue.trades_of("t42-1", "t42-2"), timeout=12, interval=0.05, what="a fill in the gap")
        assert not stream.connected
        got.all.extend(adapter.poll())
        assert not got.fills(42, 1) + got.fills(42, 2)      # nobody told the adapter yet
    finally:
        adapter.rest.limits.backoff_until = 0.0
    assert stream.wait_connected(10)
    assert stream.counts["keys_expired"] == expired + 1 and stream.counts["keys_created"] > made
    wait_for(lambda: adapter.counts["gap_reconciles"] > gaps, timeout=20, what="the gap reconciled")
    got.until(lambda g: g.fills(42, 1) or g.fills(42, 2), what="the missed fill")
    assert adapter.counts["gap_fills"] > gap_fills
    cancel_resting(adapter, got, 42)
    time.sleep(0.3)
    got.all.extend(adapter.poll())
    assert_fills_are_the_venues(got, venue, inst, 42, [1, 2])
    as_the_oms_applies(orders, got.all, venue, inst)


def test_a_futures_amend_is_a_modify_confirmed_with_the_new_price_and_quantity(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, ask = venue.top()
    qty = lot(ask)
    order = new_order(inst, 43, 1, Side.BUY, bid - 600, qty)
    assert adapter.send(order)
    got.until(lambda g: g.status(43, 1) == S.ACCEPTED)
    (before,) = venue.orders_with("t43-1")
    new_price, new_qty = bid - 550, qty * 2
    assert adapter.send(amend(inst, 43, 1, Side.BUY, new_price, new_qty))
    want = (inst.price_to_raw(new_price), inst.qty_to_raw(new_qty))
    got.until(lambda g: any((r.price, r.qty) == want and r.status == S.ACCEPTED for r in g.of(43, 1)),
              what="the amend confirmed")
    at_venue = venue.signed("GET", "/fapi/v1/order", symbol="BTCUSDT", origClientOrderId="t43-1")
    assert (Decimal(at_venue["price"]), Decimal(at_venue["origQty"])) == (new_price, new_qty)
    assert at_venue["orderId"] == before["orderId"] and at_venue["status"] == "NEW"      # the same order, modified
    oms = OrderBookKeeper()
    oms.add(order, order.price)
    for rep in got.all:
        oms.apply(rep)
    st = oms.get(43, 1)
    assert (st.price, st.qty, st.status) == (*want, S.ACCEPTED)
    assert adapter.send(cancel(43, 1))
    got.until(lambda g: g.status(43, 1) == S.CANCELED)
    assert adapter.counts["ws_amends"] == (adapter.ws is not None)       # order.modify over ws-fapi


def test_the_listen_key_is_kept_alive_and_made_again_when_its_stream_is_closed(venue):
    venue, _, _ = venue
    from ttquant.core.venues.binance.credentials import ApiCredentials
    from ttquant.core.venues.binance.rest import BinanceRest
    events, ups, downs = [], [], []
    rest = BinanceRest(venue.base, ApiCredentials(KEY, HmacSigner(SECRET), "test"), "usdm")
    stream = ListenKeyStream(rest, venue.stream_url, events.append, lambda: ups.append(1), downs.append,
                             keep_alive_s=0.2)
    stream.start()
    try:
        assert stream.wait_connected(10)
        wait_for(lambda: stream.counts["keep_alives"] >= 2, timeout=10, what=f"keep-alives: {stream.counts}")
        assert KEY not in repr(stream) and stream._key not in repr(stream)      # the key is not said whole
        req = urllib.request.Request(f"{venue.base}/fapi/v1/listenKey", method="DELETE",
                                     headers={"X-MBX-APIKEY": KEY})
        urllib.request.urlopen(req, timeout=10).read()       # the venue ends the key: its stream is closed
        wait_for(lambda: downs and len(ups) == 2 and stream.connected, timeout=15,
                 what=f"made again and reconnected: {stream.counts}, {downs}")
        # the close frame, or a keep-alive refused with -1125 just before it, ended the first stream
        assert stream.counts["keys_created"] == 2 and ("closed by the venue" in downs[0] or "-1125" in downs[0])
    finally:
        stream.close()
    assert not stream.connected


def test_reconciliation_asks_the_futures_endpoints(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    since_ns = time.time_ns() - 60 * 10**9
    bid, ask = venue.top()
    qty = lot(ask)
    assert adapter.send(new_order(inst, 44, 1, Side.BUY, bid - 700, qty))
    assert adapter.send(new_order(inst, 44, 2, Side.BUY, ask + 50, qty, OrderType.IOC))
    got.until(lambda g: g.status(44, 1) == S.ACCEPTED and g.status(44, 2) == S.FILLED, what="one rests, one fills")
    assert adapter.settle()
    open_now = [(o.strategy_id, o.client_order_id, o.qty) for o in adapter.open_orders() if o.strategy_id == 44]
    assert open_now == [(44, 1, inst.qty_to_raw(qty))]
    asked = adapter.order_status(44, 2)
    assert (asked.status, asked.cum_qty, asked.instrument_id) == (S.FILLED, inst.qty_to_raw(qty), inst.instrument_id)
    assert adapter.order_status(44, 99) is None
    fills = [f for f in adapter.fills_since(since_ns) if f.strategy_id == 44]
    assert sorted(f.trade_id for f in fills) == sorted(t["id"] for t in venue.trades_of("t44-2"))
    account = venue.signed("GET", "/fapi/v2/account")
    (usdt,) = [a for a in account["assets"] if a["asset"] == "USDT"]
    assert adapter.balances()["USDT"] == int(Decimal(usdt["walletBalance"]).scaleb(8))
    assert adapter.send(cancel(44, 1))
    got.until(lambda g: g.status(44, 1) == S.CANCELED)


def test_a_dropped_futures_order_is_resolved_by_status_and_never_placed_twice(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, ask = venue.top()
    unknown = adapter.counts["unknown_results"]
    venue.fault("order_drop", count=1)          # placed, and the connection (or REST's) closed unanswered
    assert adapter.send(new_order(inst, 45, 1, Side.BUY, bid - 800, lot(ask)))
    wait_for(lambda: adapter.counts["unknown_results"] == unknown + 1, timeout=10, what="the unknown result")
    got.until(lambda g: g.status(45, 1) == S.ACCEPTED and g.of(45, 1)[-1].venue_order_id)
    assert adapter.settle()
    (order,) = venue.orders_with("t45-1")          # placed once: the adapter asked, it did not send again
    assert order["status"] == "NEW" and got.of(45, 1)[-1].venue_order_id == order["orderId"]
    if adapter.ws is not None:
        assert adapter.ws.wait_connected(10)        # back, and orders go its way again
    assert adapter.send(cancel(45, 1))
    got.until(lambda g: g.status(45, 1) == S.CANCELED)


def test_a_futures_venue_clock_that_jumps_ahead_is_measured_again_and_the_order_sent_once_more(stack):
    """ws-fapi has no `time` method: the WebSocket API client measures the venue's clock over REST."""
    venue, inst, adapter = stack
    bid, ask = venue.top()
    placed_once_after_a_clock_jump(venue, adapter, AdapterReports(adapter), inst, 46, bid - 800, lot(ask))
    assert adapter.counts["ws_fallbacks"] == 0      # over ws: the WebSocket API sent it again, not REST
