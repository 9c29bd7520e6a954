"""The gateway as a real process between the simulated venue (replaying the BTCUSDT capture,
taking orders) and order rings: every reject code reaches the exec ring, a bad risk file on
SIGHUP is refused and the old limits stay, the kill switch, duplicate ids never sent twice,
SIGTERM exits 0."""
import re
import signal
import subprocess
import sys
import time

import pytest

from ttquant.core.records import OrderAction, RejectCode, Side
from ttquant.core.records import OrderStatus as S

from ttq_stack import TradingStack
from ttq_testing import wait_for

RISK = """max_order_age_ms = 2000
fat_finger_pct = 5
max_notional = 50000
max_open_orders = 4
[rate_limit]
orders_per_s = 1000
burst = 1000
[balances]
USDT = 30000
BTC = 0.05
[instruments.spot.BTCUSDT]
max_position = 0.2
"""


@pytest.fixture
def stack(children, venue, tmp_path):
    s = TradingStack(children, venue, tmp_path, risk=RISK)
    s.wait_ready()
    yield s
    s.close()


def test_orders_flow_and_every_reject_code_reaches_the_exec_ring(stack):
    bid, ask = stack.touch()
    inst = stack.spot
    tick = inst.tick_size
    below = bid - 100 * tick                          # rests: the book is above it
    o = stack.order(price=below)
    assert stack.report_for(o.client_order_id, S.ACCEPTED).venue_order_id > 0
    cases = {
        RejectCode.ORDER_TOO_OLD: dict(price=below, ts_created=1),
        RejectCode.UNKNOWN_INSTRUMENT: dict(price=below, instrument_id=999),
        RejectCode.BAD_PRICE: dict(price=below + tick // 2 if tick > 1 else -1),
        RejectCode.BAD_QTY: dict(price=below, qty="0.0000001"),
        RejectCode.FAT_FINGER: dict(price=bid * 9 // 10 // tick * tick),
        RejectCode.MAX_NOTIONAL: dict(price=below, qty="0.9"),
        RejectCode.POSITION_LIMIT: dict(price=below, qty="0.25"),
        RejectCode.INSUFFICIENT_FUNDS: dict(side=Side.SELL, price=ask + 100 * tick, qty="0.06"),
        RejectCode.BAD_FIELD: dict(price=below, side=7),
    }
    for code, fields in cases.items():
        r = stack.order(**fields)
        rep = stack.report_for(r.client_order_id, S.REJECTED)
        assert rep.reject_code == code, (code, rep.reject_code)
    stack.order(price=below, client_order_id=o.client_order_id)
    assert stack.report_for(o.client_order_id, S.REJECTED).reject_code == RejectCode.DUPLICATE_ORDER_ID
    assert stack.cancel(123).client_order_id and \
        stack.report_for(stack._cid, S.REJECTED).reject_code == RejectCode.UNKNOWN_ORDER
    for _ in range(3):
        stack.report_for(stack.order(price=below).client_order_id, S.ACCEPTED)
    r = stack.order(price=below)                        # the fifth open order
    assert stack.report_for(r.client_order_id, S.REJECTED).reject_code == RejectCode.MAX_OPEN_ORDERS
    stack.cancel(o.client_order_id)
    assert stack.report_for(o.client_order_id, S.CANCELED).leaves_qty == 0
    # the venue saw each accepted order once, the duplicate never
    state = stack.venue_state()
    assert state["new_requests"][f"11/{o.client_order_id}"] == 1 and state["counts"]["duplicates"] == 0
    assert stack.stop_gateway() == 0
    log = stack.gateway_log()
    assert "rejects by code" in log and "3003" in log


def test_rate_limit_and_kill_switch(children, venue, tmp_path):
    s = TradingStack(children, venue, tmp_path, risk=RISK.replace("orders_per_s = 1000\nburst = 1000",
                                                                  "orders_per_s = 2\nburst = 3"))
    try:
        s.wait_ready()
        bid, _ = s.touch()
        # 3 % under the bid (fat finger allows 5 %): 100 ticks ($1) was close enough for the
        # replayed market to fill an order before the kill switch could cancel it
        price = bid * 97 // 100 // s.spot.tick_size * s.spot.tick_size
        sent = [s.order(price=price) for _ in range(5)]
        codes = [s.report_for(o.client_order_id).reject_code for o in sent]
        assert codes[:3] == [0, 0, 0] and RejectCode.RATE_LIMIT in codes[3:], codes
        for o in sent[:3]:
            s.report_for(o.client_order_id, S.ACCEPTED)
        cli = [sys.executable, "-m", "ttquant.core.cli", "kill", venue, "--reason", "test"]
        out = subprocess.run(cli, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "ENGAGED" in out.stdout
        for o in sent[:3]:                               # open orders are canceled
            s.report_for(o.client_order_id, S.CANCELED)
        time.sleep(1.0)                                  # a token back
        r = s.order(price=price)
        assert s.report_for(r.client_order_id, S.REJECTED).reject_code == RejectCode.KILL_SWITCH
        out = subprocess.run(cli[:-2] + ["--release"], capture_output=True, text=True, timeout=30)
        assert "released" in out.stdout
        wait_for(lambda: "kill switch released" in s.gateway_log(), timeout=10, what="the release logged")
        time.sleep(0.6)
        r = s.order(price=price)
        s.report_for(r.client_order_id, S.ACCEPTED)
        log = s.gateway_log()
        assert re.search(r"KILL SWITCH ENGAGED by \S+@\S+ \(pid \d+\) at \S+: test", log), log[-2000:]
    finally:
        s.close()


def test_a_bad_risk_file_on_sighup_is_refused_and_the_old_limits_stay(stack):
    bid, _ = stack.touch()
    price = bid - 100 * stack.spot.tick_size
    stack.risk_path.write_text(RISK + "\n[instruments.spot.NOPE]\nmax_position = 1\n")
    stack.gateway.send_signal(signal.SIGHUP)
    wait_for(lambda: "risk reload refused" in stack.gateway_log(), timeout=10, what="the refusal")
    assert "instruments.spot.NOPE" in stack.gateway_log()
    r = stack.order(price=price, qty="0.15")             # under the old 0.2 limit: still accepted
    stack.report_for(r.client_order_id, S.ACCEPTED)
    stack.risk_path.write_text(RISK.replace("max_position = 0.2", "max_position = 0.1"))
    stack.gateway.send_signal(signal.SIGHUP)
    wait_for(lambda: "risk limits reloaded" in stack.gateway_log(), timeout=10, what="the reload")
    r = stack.order(price=price, qty="0.001")            # 0.15 open + 0.001 > 0.1
    assert stack.report_for(r.client_order_id, S.REJECTED).reject_code == RejectCode.POSITION_LIMIT


def test_a_new_strategy_ring_is_picked_up_and_bound_to_its_strategy(stack):
    bid, _ = stack.touch()
    price = bid - 100 * stack.spot.tick_size
    a = stack.order(price=price, owner="alpha", sid=21)
    stack.report_for(a.client_order_id, S.ACCEPTED)
    b = stack.order(price=price, owner="alpha", sid=22)          # another strategy's id on alpha's ring
    assert stack.report_for(b.client_order_id, S.REJECTED).reject_code == RejectCode.BAD_FIELD
    c = stack.order(price=price, owner="beta", sid=22)
    stack.report_for(c.client_order_id, S.ACCEPTED)


def test_an_amend_moves_a_resting_order_on_the_venue(stack):
    bid, _ = stack.touch()
    tick = stack.spot.tick_size
    o = stack.order(price=bid - 200 * tick, qty="0.004")
    stack.report_for(o.client_order_id, S.ACCEPTED)
    stack.order(price=bid - 150 * tick, qty="0.002", action=OrderAction.AMEND, target_order_id=o.client_order_id)
    def moved():
        for r in stack.drain():
            if r.client_order_id == o.client_order_id and r.price == bid - 150 * tick:
                return r
    r = wait_for(moved, timeout=20, what="the amend taken")
    assert r.qty == stack.spot.qty_to_raw("0.002") and r.status == S.ACCEPTED and r.leaves_qty == r.qty
    venue = stack.venue_state()["orders"][f"11/{o.client_order_id}"]
    assert venue["price"] == bid - 150 * tick and venue["qty"] == r.qty
    bad = stack.order(price=bid - 150 * tick, qty="0.002", action=OrderAction.AMEND, target_order_id=42)
    assert stack.report_for(bad.client_order_id, S.REJECTED).reject_code == RejectCode.UNKNOWN_ORDER
    far = stack.order(price=bid // 2 // tick * tick, qty="0.002", action=OrderAction.AMEND,
                      target_order_id=o.client_order_id)
    assert stack.report_for(far.client_order_id, S.REJECTED).reject_code == RejectCode.FAT_FINGER
