"""The Binance adapter with order_entry "ws" (the default), and WsApiClient, against a real `ttquant venue-sim
binance` process: orders over the WebSocket API (ws://127.0.0.1:<main port>/ws-api/v3), the user data stream
on the same connection, REST reconciliation after a reconnect, and what the venue does wrong on cue
(/_sim/fault: order_drop, user_drop, ban). What the adapter reports is compared with the venue's own record
(/_sim/binance/orders) and its myTrades, so a fill reported twice or an order placed twice shows.

The capture replays at speed 3 and loops, so the book moves and a resting order at the best bid or ask
is soon filled. The 429 and 418 tests come last: after them the venue refuses this test's IP.
"""
import contextlib
import os
import time
from decimal import Decimal

import pytest

from ttquant.core.instruments import instruments_path
from ttquant.core.records import OrderStatus, OrderType, RejectCode, Side
from ttquant.core.venues.binance.adapter import BinanceAdapter
from ttquant.core.venues.binance.credentials import ApiCredentials
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.rest import RateLimited
from ttquant.core.venues.binance.server_time import ClockOffset
from ttquant.core.venues.binance.signing import HmacSigner
from ttquant.core.venues.binance.wsapi import WsApiClient

from ttq_binance import (
    ED_KEY,
    KEY,
    SECRET,
    AdapterReports,
    AdapterRunner,
    SimBinance,
    api_keys_file,
    as_the_oms_applies,
    cancel,
    cancel_resting,
    gateway_config,
    instrument_table,
    new_order,
    open_adapter,
    placed_once_after_a_clock_jump,
    rest_both_sides,
)
from ttq_testing import SESSION_PREFIX, Children, new_ed25519_signer, start_binance_venue, wait_for

ED_SIGNER = new_ed25519_signer()
S = OrderStatus
QTY = Decimal("0.001")
STRICT_WEIGHT = 400                 # strict_venue's request weight a minute


@contextlib.contextmanager
def _running_venue(root, *options):
    log = root / "venue.log"
    kids = Children()
    try:
        yield SimBinance(*start_binance_venue(kids, log, "--speed", "3", "--loop", "--api-keys",
                                              api_keys_file(root, ED_SIGNER), "--balances", "USDT=500000,BTC=5",
                                              *options)), root
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        kids.kill_all()


@pytest.fixture(scope="module")
def venue(tmp_path_factory):
    with _running_venue(tmp_path_factory.mktemp("binance_ws")) as running:
        yield running


@pytest.fixture
def strict_venue(tmp_path):
    """A venue for one test, with a low weight limit, for the tests that make it refuse us (429, 418): no
    other test meets its back-off or ban."""
    with _running_venue(tmp_path, "--weight-limit", str(STRICT_WEIGHT)) as running:
        yield running


@pytest.fixture(scope="module")
def stack(venue):
    venue, root = venue
    rings = f"{SESSION_PREFIX}bnws"
    table_path = instruments_path(rings)
    adapter = None
    try:
        table = instrument_table(venue, rings)
        cfg = gateway_config(venue, root, rings, ws_api_url=venue.ws_url)
        assert cfg.adapter.order_entry == "ws"
        adapter = BinanceAdapter.open(cfg, AdapterRunner())
        assert adapter.ws is not None and adapter.ws.connected and adapter.ws.subscription_id is not None
        yield venue, table.by_symbol("BTCUSDT"), adapter
    finally:
        if adapter is not None:
            adapter.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(table_path)


def test_wsapi_client_round_trips_with_an_hmac_and_an_ed25519_key(venue):
    venue, _ = venue
    bid, _ = venue.top()
    for n, creds in enumerate((ApiCredentials(KEY, HmacSigner(SECRET), "test"),
                               ApiCredentials(ED_KEY, ED_SIGNER, "test"))):
        events = []
        client = WsApiClient(venue.ws_url, creds, ClockOffset(lambda: int(time.time() * 1000)), RateLimits(()),
                             on_event=events.append)
        client.subscribe_user_data()        # HMAC: userDataStream.subscribe.signature; Ed25519: after logon
        client.start()
        try:
            assert client.wait_connected(10) and client.subscription_id is not None
            cid = f"t90-{n}"
            placed = client.call("order.place", {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT",
                                                 "timeInForce": "GTC", "quantity": "0.001", "price": str(bid - 500),
                                                 "newClientOrderId": cid, "newOrderRespType": "FULL"})
            asked = client.call("order.status", {"symbol": "BTCUSDT", "origClientOrderId": cid})
            canceled = client.call("order.cancel", {"symbol": "BTCUSDT", "origClientOrderId": cid})
            assert (placed["status"], asked["orderId"], canceled["status"]) == ("NEW", placed["orderId"], "CANCELED")
            wait_for(lambda ev=events, c=cid: _states(ev, c) == ["NEW", "CANCELED"], timeout=5,
                     what=f"the executionReports of {cid}: {events}")
            assert [o["status"] for o in venue.orders_with(cid)] == ["CANCELED"]
            session = client.call("session.status", signed=False)
            assert session["apiKey"] == (ED_KEY if n else None)       # Ed25519: logged on, not signed per request
            assert "REQUEST_WEIGHT/1M" in client.limits.remaining()    # learnt from the answers' rateLimits
        finally:
            client.close()


def _states(events, cid):
    """The order statuses the executionReports of one client order id said, in order."""
    return [e["X"] for e in events if e.get("e") == "executionReport" and cid in (e.get("c"), e.get("C"))]


def test_orders_go_over_the_websocket_api_and_the_answers_come_back_by_poll(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, _ = venue.top()
    assert adapter.settle()
    rest_before, ws_before = adapter.rest.requests_sent, adapter.ws.requests_sent
    t0 = time.perf_counter()
    assert adapter.send(new_order(inst, 3, 1, Side.BUY, bid - 200, QTY))
    took = time.perf_counter() - t0
    got.until(lambda g: g.status(3, 1) == S.ACCEPTED)
    assert adapter.settle()
    acc = got.of(3, 1)[0]
    assert acc.venue_order_id == venue.orders_with("t3-1")[0]["orderId"] and acc.qty == inst.qty_to_raw(QTY)
    assert adapter.send(cancel(3, 1))
    got.until(lambda g: g.status(3, 1) == S.CANCELED)
    assert adapter.settle()
    assert adapter.rest.requests_sent == rest_before and adapter.ws.requests_sent == ws_before + 2
    assert took < 0.05, took
    assert [o["status"] for o in venue.orders_with("t3-1")] == ["CANCELED"]


def test_a_marketable_ioc_reports_each_fill_once_with_the_venues_trade_ids(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    _, ask = venue.top()
    dups = adapter.counts["duplicate_fills"]
    assert adapter.send(new_order(inst, 6, 20, Side.BUY, ask + 20, Decimal("0.05"), OrderType.IOC))
    got.until(lambda g: g.status(6, 20) in (S.FILLED, S.EXPIRED))
    fills = got.fills(6, 20)
    # the FULL answer and the executionReports both carry every fill: one of each pair was dropped
    wait_for(lambda: adapter.counts["duplicate_fills"] - dups == len(fills), timeout=10, what="both paths in")
    (order,) = venue.orders_with("t6-20")
    trades = [t for t in venue.record()["trades"] if t["orderId"] == order["orderId"]]
    assert fills and [f.trade_id for f in fills] == [t["id"] for t in trades]
    assert [(f.last_price, f.last_qty) for f in fills] == \
        [(inst.price_to_raw(Decimal(t["price"])), inst.qty_to_raw(Decimal(t["qty"]))) for t in trades]
    assert sum(f.last_qty for f in fills) == inst.qty_to_raw(Decimal(order["executedQty"]))
    got.all.extend(adapter.poll())
    assert len(got.fills(6, 20)) == len(trades)


def _trades_of(venue, strategy):
    return venue.trades_of(f"t{strategy}-1", f"t{strategy}-2")


def test_a_resting_order_filled_later_is_reported_from_the_user_stream_once(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    orders = rest_both_sides(venue, inst, adapter, got, 11, QTY)
    got.until(lambda g: g.fills(11, 1) or g.fills(11, 2), timeout=60, what="a fill as the book moves")
    cancel_resting(adapter, got, 11)
    time.sleep(0.3)                         # anything reported twice would have come by now
    got.all.extend(adapter.poll())
    trades = _trades_of(venue, 11)
    fills = got.fills(11, 1) + got.fills(11, 2)
    assert trades and sorted(f.trade_id for f in fills) == sorted(t["id"] for t in trades)
    as_the_oms_applies(orders, got.all, venue, inst)
    assert adapter.user_data.counts["reports"] > 0 and adapter.stream_balances()["BTC"] > 0


def test_without_the_user_stream_a_resting_orders_fill_is_polled_for_not_left_to_reconciliation(venue, stack):
    (_, root), (venue, inst, _) = venue, stack
    adapter = open_adapter(venue, root, f"{SESSION_PREFIX}bnws", order_entry="rest")
    try:
        adapter.fill_poll_s = 0.3
        assert adapter.ws is None
        got = AdapterReports(adapter)
        orders = rest_both_sides(venue, inst, adapter, got, 21, QTY)
        # no cancel, no reconciliation: only the worker's poll can tell of a fill while both rest
        got.until(lambda g: g.fills(21, 1) or g.fills(21, 2), timeout=60, what="a polled fill as the book moves")
        assert adapter.counts["polled_fills"] > 0
        cancel_resting(adapter, got, 21)
        time.sleep(1.0)                     # two more polls: anything reported twice would have come by now
        got.all.extend(adapter.poll())
        trades = _trades_of(venue, 21)
        fills = got.fills(21, 1) + got.fills(21, 2)
        assert trades and sorted(f.trade_id for f in fills) == sorted(t["id"] for t in trades)
        as_the_oms_applies(orders, got.all, venue, inst)
    finally:
        adapter.close()


def test_a_dropped_order_request_is_resolved_by_status_and_never_placed_twice(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, _ = venue.top()
    unknown = adapter.counts["unknown_results"]
    venue.fault("order_drop", count=1)
    assert adapter.send(new_order(inst, 12, 1, Side.BUY, bid - 300, QTY))
    wait_for(lambda: adapter.counts["unknown_results"] == unknown + 1, timeout=10, what="the unknown result")
    got.until(lambda g: g.status(12, 1) == S.ACCEPTED and g.of(12, 1)[-1].venue_order_id)
    assert adapter.settle()
    assert adapter.ws.wait_connected(10)
    (order,) = venue.orders_with("t12-1")          # placed once: the adapter asked, it did not send again
    assert order["status"] == "NEW" and got.of(12, 1)[-1].venue_order_id == order["orderId"]
    adapter.send(cancel(12, 1))
    got.until(lambda g: g.status(12, 1) == S.CANCELED)


def test_a_fill_while_the_user_stream_was_down_is_reported_once_after_the_reconnect(stack):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    gaps, gap_fills = adapter.counts["gap_reconciles"], adapter.counts["gap_fills"]
    orders = rest_both_sides(venue, inst, adapter, got, 13, QTY)
    assert adapter.settle()
    adapter.rest.limits.back_off(12)      # the client waits out a back-off before it reconnects: a gap for sure
    try:
        venue.fault("user_drop")
        wait_for(lambda: not adapter.ws.connected, timeout=5, what="the stream dropped")
        wait_for(lambda: _trades_of(venue, 13), timeout=10, interval=0.05, what="a fill while disconnected")
        assert not adapter.ws.connected
        got.all.extend(adapter.poll())
        assert not got.fills(13, 1) + got.fills(13, 2)      # the stream was down: nobody told the adapter yet
    finally:
        adapter.rest.limits.backoff_until = 0.0
    assert adapter.ws.wait_connected(10)
    wait_for(lambda: adapter.counts["gap_reconciles"] > gaps, timeout=20, what="the gap reconciled")
    got.until(lambda g: g.fills(13, 1) or g.fills(13, 2), what="the missed fill")
    assert adapter.counts["gap_fills"] > gap_fills
    cancel_resting(adapter, got, 13)
    time.sleep(0.3)
    got.all.extend(adapter.poll())
    trades = _trades_of(venue, 13)
    fills = got.fills(13, 1) + got.fills(13, 2)
    assert sorted(f.trade_id for f in fills) == sorted(t["id"] for t in trades)
    as_the_oms_applies(orders, got.all, venue, inst)


def test_a_5xx_that_was_not_executed_is_asked_for_and_reported_rejected_never_resent(stack, monkeypatch):
    venue, inst, adapter = stack
    got = AdapterReports(adapter)
    bid, _ = venue.top()
    monkeypatch.setattr(adapter, "unknown_wait_s", 0.02)
    venue.fault("order_5xx", count=1, executed=0)
    assert adapter.send(new_order(inst, 15, 1, Side.BUY, bid - 300, QTY))
    got.until(lambda g: g.status(15, 1) == S.REJECTED)
    assert got.of(15, 1)[-1].reject_code == RejectCode.VENUE_UNAVAILABLE and not venue.orders_with("t15-1")
    assert adapter.counts["unknown_unresolved"] >= 1 and adapter.ws.connected


def test_a_venue_clock_that_jumps_ahead_is_measured_again_and_the_order_sent_once_more(stack):
    venue, inst, adapter = stack
    placed_once_after_a_clock_jump(venue, adapter, AdapterReports(adapter), inst, 16, venue.top()[0] - 300, QTY)


def test_a_429_on_the_websocket_api_backs_off_and_sends_nothing_meanwhile(strict_venue):
    venue, _ = strict_venue
    client = WsApiClient(venue.ws_url, ApiCredentials(KEY, HmacSigner(SECRET), "test"),
                         ClockOffset(lambda: int(time.time() * 1000)), RateLimits(()))
    client.start()
    try:
        assert client.wait_connected(10)
        server_ms = client.call("time", signed=False)["serverTime"]
        if server_ms % 60_000 > 50_000:    # the venue's minute window must not roll over while it fills up
            time.sleep((60_000 - server_ms % 60_000) / 1000 + 0.2)
        while True:                         # the venue's weight (one counter per IP) to just below its limit
            _, headers = venue.signed_with_headers("GET", "/api/v3/account")
            if int(headers["X-MBX-USED-WEIGHT-1M"]) + 20 > STRICT_WEIGHT:    # one more account.status is over
                break
        with pytest.raises(RateLimited) as err:
            client.call("account.status")      # weight 20: over
        assert err.value.decision.http_status == 429
        assert client.limits.backoff_until - client.limits.clock() > 0 and client.limits.halted is None
        sent = client.requests_sent
        with pytest.raises(RateLimited):
            client.call("account.status")
        assert client.requests_sent == sent
    finally:
        client.close()


def test_a_418_halts_the_adapter(strict_venue, stack):
    (venue, root), (_, inst, _) = strict_venue, stack
    adapter = open_adapter(venue, root, f"{SESSION_PREFIX}bnws", ws_api_url=venue.ws_url)
    try:
        got = AdapterReports(adapter)
        bid = Decimal(30000)                # the venue refuses this IP: no book asked
        venue.fault("ban", seconds=60)
        assert adapter.send(new_order(inst, 14, 1, Side.BUY, bid, QTY))
        got.until(lambda g: g.status(14, 1) == S.REJECTED)
        assert got.of(14, 1)[-1].reject_code == RejectCode.VENUE_UNAVAILABLE
        assert adapter.halted is not None and "418" in adapter.halted
        assert adapter.send(new_order(inst, 14, 2, Side.BUY, bid, QTY)) is False
        assert not venue.orders_with("t14-1")
    finally:
        adapter.close()

