"""The Binance adapter (core/venues/binance/adapter.py) with order_entry "rest" against a real `ttquant venue-sim
binance` process (test_adapter_ws.py: the WebSocket API path):
opened from a gateway config as the gateway opens it, orders handed over by send() without waiting for the
venue, the answers read back by poll() as VenueReports, and reconciliation (open_orders, order_status,
fills_since, balances) compared with what the venue itself says over signed REST.

The capture is replayed to its end first, so the book stands still and each test knows what its orders meet.
"""
import contextlib
import json
import logging
import os
import subprocess
import threading
import time
import urllib.request
from decimal import Decimal

import pytest

from ttquant.core.daemon.config import ConfigError, parse_config
from ttquant.core.gateway.config import GatewayConfig
from ttquant.core.instruments import instruments_path
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, RejectCode, Side
from ttquant.core.venues.binance.adapter import BinanceAdapter
from ttquant.core.venues.binance.credentials import load_api_credentials
from ttquant.core.venues.binance.rest import BinanceRest, ResultUnknown
from ttquant.core.venues.binance.signing import HmacSigner, signed_query

from ttq_binance import KEY, SECRET, AdapterRunner, api_keys_file, instrument_table, open_adapter, write_credentials
from ttq_testing import SESSION_PREFIX, Children, wait_for

S = OrderStatus


class Venue:
    def __init__(self, rest_port):
        self.base = f"http://127.0.0.1:{rest_port}"

    def get(self, path, **params):
        query = "&".join(f"{k}={v}" for k, v in params.items())
        with urllib.request.urlopen(f"{self.base}{path}?{query}", timeout=10) as resp:
            return json.loads(resp.read())

    def signed(self, method, path, **params):
        query = signed_query(HmacSigner(SECRET), list(params.items()), int(time.time() * 1000))
        req = urllib.request.Request(f"{self.base}{path}?{query}", method=method, headers={"X-MBX-APIKEY": KEY})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def book(self):
        body = self.get("/api/v3/depth", symbol="BTCUSDT", limit=100)
        return ([(Decimal(p), Decimal(q)) for p, q in body["bids"]],
                [(Decimal(p), Decimal(q)) for p, q in body["asks"]])


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """venue-sim with our key and an account; md's instrument table (from the venue's exchangeInfo) under a
    rings name of this test session; the adapter opened from a gateway config."""
    root = tmp_path_factory.mktemp("binance_adapter")
    keys = api_keys_file(root)
    log = root / "venue.log"
    kids = Children()
    rings = f"{SESSION_PREFIX}bnad"
    table_path = instruments_path(rings)
    adapter = None
    try:
        kids.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--rest-port", "0", "--speed", "0",
                   "--api-keys", keys, "--balances", "USDT=500000,BTC=1", "--maker-fee-bps", "2",
                   "--taker-fee-bps", "5", stdout=log.open("wb"), stderr=subprocess.STDOUT)
        first = wait_for(lambda: log.read_text().partition("\n")[1] and log.read_text().partition("\n")[0],
                         timeout=30, interval=0.05, what="venue-sim's first line")
        assert "REST order entry on 127.0.0.1:" in first, log.read_text()
        venue = Venue(int(first.rsplit("127.0.0.1:", 1)[1]))
        wait_for(lambda: venue.get("/_sim/status")["replay_done"], timeout=60, interval=0.1,
                 what="the capture replayed to its end")
        table = instrument_table(venue, rings)
        runner = AdapterRunner()
        adapter = open_adapter(venue, root, rings, runner, order_entry="rest")
        assert runner.waited == [f"md's instrument table {table_path}", f"Binance REST at {venue.base}"]
        assert adapter.rest.clock.offset_ms is not None and adapter.rest.limits.limits     # exchangeInfo's
        yield venue, table.by_symbol("BTCUSDT"), adapter, root
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        if adapter is not None:
            adapter.close()
        kids.kill_all()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(table_path)


def new_order(inst, strategy, cid, side, price, qty, kind=OrderType.LIMIT):
    return Order(ts_created=time.time_ns(), strategy_id=strategy, client_order_id=cid, instrument_id=inst.instrument_id,
                 action=OrderAction.NEW, side=side, order_type=kind, price=inst.price_to_raw(price),
                 qty=inst.qty_to_raw(qty))


def reports(adapter, until, timeout=10):
    """poll() until `until(reports so far)` holds."""
    got = []

    def done():
        got.extend(adapter.poll())
        return until(got)
    wait_for(done, timeout=timeout, interval=0.005, what=f"reports, so far {got}")
    return got


def venue_balances(venue):
    return {b["asset"]: Decimal(b["free"]) + Decimal(b["locked"])
            for b in venue.signed("GET", "/api/v3/account")["balances"]}


def test_send_hands_the_order_over_and_returns_before_the_venue_answers(stack):
    venue, inst, adapter, _ = stack
    bids, _ = venue.book()
    # the worker cannot reach the venue while the test holds its lock, released 0.5 s later from another
    # thread: a send() that waited for the answer would take that long
    adapter._lock.acquire()
    release = threading.Timer(0.5, adapter._lock.release)
    release.start()
    try:
        t0 = time.perf_counter()
        assert adapter.send(new_order(inst, 3, 1, Side.BUY, bids[0][0] - 200, Decimal("0.01")))
        took = time.perf_counter() - t0
        assert adapter.poll() == [] and adapter.settle(timeout_s=0.05) is False
        assert release.is_alive()           # all of the above happened before the worker could send
    finally:
        release.join()
    assert took < 0.05, took
    (rep,) = reports(adapter, lambda got: got)
    assert (rep.strategy_id, rep.client_order_id, rep.status) == (3, 1, S.ACCEPTED) and rep.venue_order_id > 0
    assert adapter.settle() is True
    adapter.send(Order(ts_created=time.time_ns(), strategy_id=3, action=OrderAction.CANCEL, target_order_id=1))
    assert [r.status for r in reports(adapter, lambda got: got)] == [S.CANCELED]


def test_a_limit_rests_then_is_canceled_and_reconciliation_sees_it_in_between(stack):
    venue, inst, adapter, _ = stack
    bids, _ = venue.book()
    price, qty = bids[0][0] - 100, Decimal("0.01")
    assert adapter.send(new_order(inst, 5, 10, Side.BUY, price, qty))
    (acc,) = reports(adapter, lambda got: got)
    assert (acc.status, acc.price, acc.qty, acc.cum_qty, acc.last_qty) == \
        (S.ACCEPTED, inst.price_to_raw(price), inst.qty_to_raw(qty), 0, 0)
    (on_venue,) = [o for o in venue.signed("GET", "/api/v3/openOrders") if o["clientOrderId"] == "t5-10"]
    assert on_venue["orderId"] == acc.venue_order_id
    (mine,) = [o for o in adapter.open_orders() if (o.strategy_id, o.client_order_id) == (5, 10)]
    assert (mine.venue_order_id, mine.instrument_id, mine.side, mine.price, mine.qty, mine.cum_qty, mine.status) == \
        (acc.venue_order_id, inst.instrument_id, Side.BUY, inst.price_to_raw(price), inst.qty_to_raw(qty), 0,
         S.ACCEPTED)
    assert adapter.order_status(5, 10) == mine
    # a cancel that names no instrument: the adapter knows where it sent the order
    assert adapter.send(Order(ts_created=time.time_ns(), strategy_id=5, action=OrderAction.CANCEL, target_order_id=10))
    (canceled,) = reports(adapter, lambda got: got)
    assert (canceled.status, canceled.venue_order_id, canceled.cum_qty) == (S.CANCELED, acc.venue_order_id, 0)
    assert not [o for o in venue.signed("GET", "/api/v3/openOrders") if o["clientOrderId"] == "t5-10"]
    assert adapter.order_status(5, 10).status == S.CANCELED
    assert adapter.order_status(5, 11) is None           # never sent: the venue does not know it


def test_a_marketable_ioc_fills_with_the_venues_trade_ids_prices_and_fees(stack):
    venue, inst, adapter, root = stack
    _, asks = venue.book()
    (p1, q1), (p2, q2) = asks[0], asks[1]
    start_ns = time.time_ns() - 1_000_000_000
    before = venue_balances(venue)
    assert adapter.send(new_order(inst, 6, 20, Side.BUY, p2, q1 + q2 + Decimal("0.1"), OrderType.IOC))
    got = reports(adapter, lambda got: got and got[-1].status == S.EXPIRED)
    fills, end = got[:-1], got[-1]
    taker_fee = lambda p, q: -(-int(p * q * 10**8) * 500 // 1_000_000)     # noqa: E731  5 bps, rounded up
    assert [(f.status, f.last_price, f.last_qty, f.fee, f.cum_qty) for f in fills] == [
        (S.PARTIALLY_FILLED, inst.price_to_raw(p1), inst.qty_to_raw(q1), taker_fee(p1, q1), inst.qty_to_raw(q1)),
        (S.PARTIALLY_FILLED, inst.price_to_raw(p2), inst.qty_to_raw(q2), taker_fee(p2, q2), inst.qty_to_raw(q1 + q2))]
    trades = venue.signed("GET", "/api/v3/myTrades", symbol="BTCUSDT", orderId=fills[0].venue_order_id)
    assert [f.trade_id for f in fills] == [t["id"] for t in trades] and all(f.trade_id > 0 for f in fills)
    assert end.cum_qty == inst.qty_to_raw(q1 + q2)
    # reconciliation agrees, also for an adapter that did not send the order (it looks the order id up)
    fresh = BinanceAdapter(BinanceRest(venue.base, load_api_credentials(path=root / "binance.toml")), adapter.table)
    try:
        for who in (adapter, fresh):
            ours = [f for f in who.fills_since(start_ns) if (f.strategy_id, f.client_order_id) == (6, 20)]
            assert [(f.trade_id, f.price, f.qty, f.fee, f.side, f.instrument_id) for f in ours] == \
                [(f.trade_id, f.last_price, f.last_qty, f.fee, Side.BUY, inst.instrument_id) for f in fills]
            after = venue_balances(venue)
            assert who.balances() == {a: int(v.scaleb(8)) for a, v in after.items() if v}
        assert after["BTC"] == before["BTC"] + q1 + q2
    finally:
        fresh.close()


def test_a_filter_failure_is_rejected_with_the_mapped_reject_code(stack):
    venue, inst, adapter, _ = stack
    _, asks = venue.book()
    # far above the market: PERCENT_PRICE_BY_SIDE (Binance -1013 "Filter failure: ...")
    assert adapter.send(new_order(inst, 6, 30, Side.SELL, asks[0][0] * 10, Decimal("0.01")))
    assert adapter.send(new_order(inst, 6, 31, Side.BUY, asks[0][0], inst.qty_from_raw(inst.max_qty) * 2))
    got = reports(adapter, lambda got: len(got) == 2)
    assert [(r.client_order_id, r.status, r.reject_code) for r in got] == [
        (30, S.REJECTED, RejectCode.FAT_FINGER), (31, S.REJECTED, RejectCode.BAD_QTY)]


def test_cancel_all_cancels_only_the_strategys_own_orders(stack):
    venue, inst, adapter, _ = stack
    bids, _ = venue.book()
    for sid, cid in ((7, 1), (7, 2), (8, 1)):
        adapter.send(new_order(inst, sid, cid, Side.BUY, bids[0][0] - 150 - cid, Decimal("0.01")))
    reports(adapter, lambda got: len(got) == 3)
    adapter.send(Order(ts_created=time.time_ns(), strategy_id=7, action=OrderAction.CANCEL_ALL))
    got = reports(adapter, lambda got: len(got) == 2)
    assert sorted((r.strategy_id, r.client_order_id, r.status) for r in got) == [(7, 1, S.CANCELED), (7, 2, S.CANCELED)]
    assert [o["clientOrderId"] for o in venue.signed("GET", "/api/v3/openOrders")] == ["t8-1"]
    adapter.send(Order(ts_created=time.time_ns(), strategy_id=8, action=OrderAction.CANCEL_ALL))
    assert [r.status for r in reports(adapter, lambda got: got)] == [S.CANCELED]


def test_an_unknown_result_is_resolved_by_asking_never_by_sending_again(stack, monkeypatch):
    venue, inst, adapter, _ = stack
    bids, _ = venue.book()
    rest, real = adapter.rest, adapter.rest.new_order
    posts = []

    def lost_answer(order, i):            # the order reaches the venue, its answer does not come back
        posts.append(order.client_order_id)
        real(order, i)
        raise ResultUnknown("POST /api/v3/order: no answer (TimeoutError)")

    def never_left(order, i):             # the venue never saw it: asked a few times, then rejected
        posts.append(order.client_order_id)
        raise ResultUnknown("POST /api/v3/order: no answer (TimeoutError)")
    monkeypatch.setattr(rest, "new_order", lost_answer)
    adapter.send(new_order(inst, 9, 1, Side.BUY, bids[0][0] - 120, Decimal("0.01")))
    (rep,) = reports(adapter, lambda got: got)
    assert (rep.status, rep.cum_qty) == (S.ACCEPTED, 0) and rep.venue_order_id > 0
    monkeypatch.setattr(rest, "new_order", never_left)
    monkeypatch.setattr(adapter, "unknown_wait_s", 0.01)
    adapter.send(new_order(inst, 9, 2, Side.BUY, bids[0][0] - 120, Decimal("0.01")))
    (rep,) = reports(adapter, lambda got: got)
    assert (rep.status, rep.reject_code) == (S.REJECTED, RejectCode.VENUE_UNAVAILABLE)
    assert posts == [1, 2] and adapter.counts["unknown_results"] == 2 and adapter.counts["unknown_unresolved"] == 1
    open_ids = [o["clientOrderId"] for o in venue.signed("GET", "/api/v3/openOrders")]
    assert [cid for cid in open_ids if cid.startswith("t9-")] == ["t9-1"]
    adapter.send(Order(ts_created=time.time_ns(), strategy_id=9, action=OrderAction.CANCEL_ALL))
    assert [r.status for r in reports(adapter, lambda got: got)] == [S.CANCELED]


def test_a_rate_limit_back_off_rejects_the_order_without_sending_it(stack):
    venue, inst, adapter, _ = stack
    sent = adapter.rest.requests_sent
    adapter.rest.limits.back_off(30)
    try:
        assert adapter.send(new_order(inst, 4, 1, Side.BUY, Decimal(1000), Decimal("0.01")))
        (rep,) = reports(adapter, lambda got: got)
    finally:
        adapter.rest.limits.backoff_until = 0.0
    assert (rep.status, rep.reject_code) == (S.REJECTED, RejectCode.RATE_LIMIT)
    assert adapter.rest.requests_sent == sent


def test_a_bad_secret_halts_order_entry_said_once(stack, caplog):
    venue, inst, adapter, root = stack
    creds = load_api_credentials(path=write_credentials(root / "wrong.toml", "notTheSecret"))
    bad = BinanceAdapter(BinanceRest(venue.base, creds), adapter.table)
    try:
        with caplog.at_level(logging.WARNING, logger="ttquant.venues.binance"):
            assert bad.send(new_order(inst, 2, 1, Side.BUY, Decimal(1000), Decimal("0.01")))
            (rep,) = reports(bad, lambda got: got)
            assert bad.send(new_order(inst, 2, 2, Side.BUY, Decimal(1000), Decimal("0.01"))) is False
            assert bad.send(new_order(inst, 2, 3, Side.BUY, Decimal(1000), Decimal("0.01"))) is False
        assert (rep.status, rep.reject_code) == (S.REJECTED, RejectCode.VENUE)
        assert "-1022" in bad.halted
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "halted" in errors[0].getMessage()
        assert SECRET not in caplog.text and "notTheSecret" not in caplog.text
    finally:
        bad.close()
    assert adapter.halted is None          # the good key's adapter is untouched


def test_the_gateway_config_checks_the_binance_keys(tmp_path):
    def cfg(**adapter):
        return parse_config({"adapter": {"kind": "binance", **adapter}}, GatewayConfig, str(tmp_path / "g.toml"),
                            instance="binance").adapter
    a = cfg()
    assert (a.environment, a.market, a.credentials, a.recv_window_ms, a.order_entry, a.ws_api_url) == \
        ("live", "spot", "binance", 5000, "ws", "")
    assert cfg(environment="testnet").environment == "testnet"
    assert cfg(environment="custom", rest_url="http://h:1", order_entry="rest").ws_api_url == ""
    assert cfg(environment="custom", rest_url="http://h:1", ws_api_url="ws://h:2/ws-api/v3").order_entry == "ws"
    assert cfg(market="usdm", order_entry="rest", environment="custom", rest_url="http://h:1",
               user_stream_url="ws://h:2/ws").user_stream_url == "ws://h:2/ws"
    assert cfg(market="usdm", order_entry="rest").market == "usdm"      # live: Binance's own stream URL
    assert cfg(market="usdm").order_entry == "ws"                       # live: ws-fapi.binance.com
    for bad, message in (({"environment": "prod"}, "adapter.environment: live, testnet or custom, got 'prod'"),
                         ({"environment": "custom"}, "adapter.rest_url: environment custom needs http"),
                         ({"environment": "custom", "rest_url": "http://h:1"},
                          "adapter.ws_api_url: environment custom with order_entry ws needs ws"),
                         ({"order_entry": "fix"}, "adapter.order_entry: ws or rest, got 'fix'"),
                         ({"market": "coinm"}, "adapter.market: spot or usdm, got 'coinm'"),
                         ({"market": "usdm", "environment": "custom", "rest_url": "http://h:1",
                           "user_stream_url": "ws://h:2/ws"},
                          "adapter.ws_api_url: environment custom with order_entry ws needs ws"),
                         ({"market": "usdm", "order_entry": "rest", "environment": "custom", "rest_url": "http://h:1"},
                          "adapter.user_stream_url: market usdm on environment custom needs"),
                         ({"recv_window_ms": 60001}, "adapter.recv_window_ms: in 1..60000")):
        with pytest.raises(ConfigError, match=message):
            cfg(**bad)


def test_credentials_that_cannot_be_used_stop_the_gateway_as_a_config_error(tmp_path):
    from ttquant.core.daemon.runner import EXIT_CONFIG, ServiceError
    path = tmp_path / "binance.toml"
    write_credentials(path, SECRET)
    os.chmod(path, 0o640)                   # readable by the group: refused before anything is read
    cfg = parse_config({"adapter": {"kind": "binance", "environment": "custom", "rest_url": "http://127.0.0.1:9",
                                    "ws_api_url": "ws://127.0.0.1:9/ws-api/v3", "credentials": "./binance.toml"}},
                       GatewayConfig, str(tmp_path / "gateway.toml"), instance="binance")
    with pytest.raises(ServiceError) as err:
        BinanceAdapter.open(cfg, AdapterRunner())
    assert err.value.code == EXIT_CONFIG
    text = str(err.value)
    assert "adapter.credentials" in text and str(path) in text and SECRET not in text
