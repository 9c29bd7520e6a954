"""AMEND on Binance spot against a real `ttquant venue-sim binance` process: order.cancelReplace on the WebSocket
API (order_entry "ws") and POST /api/v3/order/cancelReplace over REST (order_entry "rest"). Binance cancels the
order and places a new one with a new orderId; the adapter gives it our client order id again, so what it
reports still names our (strategy, cid): the amend confirmed by an ACCEPTED with the new price and quantity,
the replaced order's cancel never reported as ours, and the gateway's OMS left with one open order at its new
price and quantity, as the venue has it.
"""
import contextlib
import os
import time
from decimal import Decimal

import pytest

from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.instruments import instruments_path
from ttquant.core.records import OrderStatus, OrderType, Side

from ttq_binance import (
    SimBinance,
    amend,
    api_keys_file,
    cancel,
    instrument_table,
    new_order,
    open_adapter,
)
from ttq_testing import SESSION_PREFIX, Children, start_binance_venue, wait_for

S = OrderStatus
QTY = Decimal("0.002")


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """venue-sim, and two adapters on it: order_entry "ws" and "rest"."""
    root = tmp_path_factory.mktemp("binance_amend")
    keys = api_keys_file(root)
    log = root / "venue.log"
    kids = Children()
    rings = f"{SESSION_PREFIX}bnam"
    table_path = instruments_path(rings)
    opened = {}
    try:
        venue = SimBinance(*start_binance_venue(kids, log, "--speed", "3", "--loop", "--api-keys", keys, "--balances",
                                           "USDT=500000,BTC=5"))
        table = instrument_table(venue, rings)
        for entry in ("ws", "rest"):
            opened[entry] = open_adapter(venue, root, rings, ws_api_url=venue.ws_url, order_entry=entry)
        assert opened["ws"].ws.connected and opened["rest"].ws is None
        yield venue, table.by_symbol("BTCUSDT"), opened
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        for adapter in opened.values():
            adapter.close()
        kids.kill_all()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(table_path)


def poll_until(adapter, got, key, done, what, timeout=20):
    """poll() until done(this order's reports so far); both adapters trade one account, so the "ws" one's
    user data stream also tells of the "rest" one's orders: only `key`'s are kept."""
    def check():
        got.extend(r for r in adapter.poll() if (r.strategy_id, r.client_order_id) == key)
        return done(got)
    wait_for(check, timeout=timeout, interval=0.005, what=f"{what}; so far {got}")


@pytest.mark.parametrize("entry, strategy, kind", [("ws", 51, OrderType.LIMIT), ("rest", 52, OrderType.LIMIT),
                                                   ("ws", 53, OrderType.POST_ONLY)])
def test_a_spot_amend_replaces_the_order_and_reports_it_as_ours_at_its_new_price_and_quantity(adapters, entry,
                                                                                            strategy, kind):
    venue, inst, opened = adapters
    adapter = opened[entry]
    got = []
    bid, _ = venue.top()
    order = new_order(inst, strategy, 1, Side.BUY, bid - 300, QTY, kind=kind)
    assert adapter.send(order)
    key = (strategy, 1)
    poll_until(adapter, got, key, lambda g: any(r.status == S.ACCEPTED for r in g), "accepted")
    assert adapter.settle()
    (old,) = venue.orders_with(f"t{strategy}-1")
    ws_before = adapter.ws.requests_sent if adapter.ws is not None else 0
    new_price, new_qty = bid - 250, QTY * 2
    want = (inst.price_to_raw(new_price), inst.qty_to_raw(new_qty))
    assert adapter.send(amend(inst, strategy, 1, Side.BUY, new_price, new_qty))
    poll_until(adapter, got, key, lambda g: any((r.status, r.price, r.qty) == (S.ACCEPTED, *want) for r in g),
               "the amend confirmed")
    assert adapter.settle()
    time.sleep(0.3)                         # the replaced order's events have come by now
    poll_until(adapter, got, key, lambda g: True, "the rest")
    old_now, new = sorted(venue.orders_with(f"t{strategy}-1"), key=lambda o: o["orderId"])
    assert old_now["orderId"] == old["orderId"] and old_now["status"] == "CANCELED"
    assert new["status"] == "NEW" and new["orderId"] != old["orderId"]
    confirmed = next(r for r in got if (r.price, r.qty) == want)
    assert confirmed.venue_order_id == new["orderId"]
    assert all(r.status != S.CANCELED for r in got)          # the replaced order's cancel is not ours to report
    if entry == "ws":                       # over the WebSocket API; the replaced order's cancel event dropped
        assert adapter.ws.requests_sent > ws_before and adapter.counts["replaced_reports"] >= 1
    oms = OrderBookKeeper()
    oms.add(order, order.price)
    for rep in got:
        oms.apply(rep)
    st = oms.get(strategy, 1)
    assert (st.status, st.price, st.qty, st.venue_order_id) == (S.ACCEPTED, *want, new["orderId"])
    assert adapter.send(cancel(strategy, 1))
    poll_until(adapter, got, key, lambda g: g[-1].status == S.CANCELED, "canceled")
    assert [o["status"] for o in venue.orders_with(f"t{strategy}-1")] == ["CANCELED", "CANCELED"]
    assert oms.apply(got[-1]).status == S.CANCELED
