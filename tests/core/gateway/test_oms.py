"""The order state machine: every transition of the table, legal or not; venue reports out of
order; fills counted once; duplicate client order ids; cancel targets. The risk engine's
positions and reservations follow every path exactly."""
import itertools

import pytest

from ttquant.core.gateway.oms import LEGAL, ORDER_STATES, TERMINAL, OrderBookKeeper
from ttquant.core.records import Order, OrderAction, OrderType, RejectCode, Side
from ttquant.core.records import OrderStatus as S
from ttquant.core.venues.base import VenueReport

SID = 3


class RiskSpy:
    """Records what the OMS tells the risk engine, and keeps the sums a real one would."""

    def __init__(self):
        self.calls = []
        self.position = 0
        self.open_qty = 0
        self.open_orders = 0

    def reserve(self, qty):
        self.open_qty += qty
        self.open_orders += 1

    def on_fill(self, sid, inst, side, price, qty, reserve_price, fee, done, reserved=True):
        self.calls.append(("fill", qty, done, reserved))
        self.position += qty if side == Side.BUY else -qty
        if reserved:
            self.open_qty -= qty
        if done:
            self.open_orders -= 1

    def release(self, sid, inst, side, leaves, reserve_price):
        self.calls.append(("release", leaves))
        self.open_qty -= leaves
        self.open_orders -= 1


def new_order(oms, cid=1, qty=10, risk=None):
    o = Order(ts_created=1, client_order_id=cid, strategy_id=SID, instrument_id=1, action=OrderAction.NEW,
              side=Side.BUY, order_type=OrderType.LIMIT, price=100, qty=qty)
    assert oms.take_id(SID, cid) == 0
    if risk is not None:
        risk.reserve(qty)
    return oms.add(o, 100)


def rep(status, cid=1, **kw):
    return VenueReport(strategy_id=SID, client_order_id=cid, status=status, **kw)


@pytest.mark.parametrize("old,new", list(itertools.product(ORDER_STATES, ORDER_STATES)))
def test_every_transition_of_the_table(old, new):
    oms = OrderBookKeeper()
    st = new_order(oms)
    st.status = old
    st.cum_qty = {S.PARTIALLY_FILLED: 4, S.FILLED: 10}.get(old, 0)
    out = oms.apply(rep(new))
    if new in LEGAL[old] and new != old:
        assert out is not None and out.status == new and st.status == new
    else:
        assert out is None and st.status == old          # ignored, never raised
        counted = oms.counts["illegal_transitions"] + oms.counts["stale_reports"]
        assert counted == 1
        # an illegal one is a contradiction between terminal states or a terminal rejection;
        # the rest were overtaken by a later report
        if old in TERMINAL and new in TERMINAL and new != old:
            assert oms.counts["illegal_transitions"] == 1


@pytest.mark.parametrize("status", [S.POSITION, S.SYNCED])
def test_a_report_that_is_not_about_an_order_changes_nothing(status):
    oms = OrderBookKeeper()
    st = new_order(oms)
    assert oms.apply(rep(status)) is None and st.status == S.NEW and oms.counts["illegal_transitions"] == 1


def test_the_table_itself():
    assert all(not LEGAL[t] for t in TERMINAL)
    assert S.REJECTED in LEGAL[S.NEW] and all(S.REJECTED not in LEGAL[s] for s in ORDER_STATES if s != S.NEW)
    assert S.NEW not in set().union(*LEGAL.values())


def test_fills_out_of_order_and_twice_are_applied_once():
    risk = RiskSpy()
    oms = OrderBookKeeper(risk)
    st = new_order(oms, risk=risk)
    # the fill overtakes the ack
    out = oms.apply(rep(S.PARTIALLY_FILLED, last_qty=4, last_price=99, cum_qty=4, trade_id=11))
    assert out.status == S.PARTIALLY_FILLED and out.last_qty == 4 and out.leaves_qty == 6
    assert oms.apply(rep(S.ACCEPTED, venue_order_id=555)) is None and st.venue_order_id == 555
    # the same fill again (by trade id), and a stale cumulative report
    assert oms.apply(rep(S.PARTIALLY_FILLED, last_qty=4, last_price=99, cum_qty=4, trade_id=11)) is None
    assert oms.counts["duplicate_fills"] == 1
    # the cancel arrives before the last fill that preceded it on the venue
    out = oms.apply(rep(S.CANCELED))
    assert out.status == S.CANCELED and out.leaves_qty == 0
    out = oms.apply(rep(S.PARTIALLY_FILLED, last_qty=2, last_price=98, cum_qty=6, trade_id=12))
    assert out is not None and out.last_qty == 2 and st.cum_qty == 6 and st.status == S.CANCELED
    assert risk.position == 6
    assert risk.calls == [("fill", 4, False, True), ("release", 6), ("fill", 2, False, False)]
    assert risk.open_qty == 0 and risk.open_orders == 0


def test_a_fill_that_completes_the_order_and_an_overfill():
    risk = RiskSpy()
    oms = OrderBookKeeper(risk)
    new_order(oms, risk=risk)
    oms.apply(rep(S.ACCEPTED))
    out = oms.apply(rep(S.FILLED, last_qty=10, last_price=100, cum_qty=10, trade_id=1))
    assert out.status == S.FILLED and out.leaves_qty == 0
    assert risk.open_orders == 0 and risk.open_qty == 0 and risk.position == 10
    assert oms.apply(rep(S.CANCELED)) is None and oms.counts["illegal_transitions"] == 1
    assert oms.apply(rep(S.PARTIALLY_FILLED, last_qty=1, last_price=100, trade_id=2)) is None
    assert oms.counts["overfills"] == 1 and risk.position == 10         # nothing beyond the order
    st2 = new_order(oms, cid=2, qty=5, risk=risk)
    out = oms.apply(rep(S.FILLED, cid=2, last_qty=7, last_price=100, trade_id=3))
    assert out.status == S.FILLED and st2.cum_qty == 5 and oms.counts["overfills"] == 2 and risk.position == 15


def test_a_rejected_order_takes_no_fill():
    oms = OrderBookKeeper()
    new_order(oms)
    assert oms.apply(rep(S.REJECTED, reject_code=RejectCode.VENUE)).reject_code == RejectCode.VENUE
    assert oms.apply(rep(S.FILLED, last_qty=10, last_price=1, trade_id=1)) is None
    assert oms.counts["illegal_transitions"] == 1


def test_client_order_ids_are_unique_and_increasing_per_strategy():
    oms = OrderBookKeeper()
    new_order(oms, cid=5)
    assert oms.take_id(SID, 5) == RejectCode.DUPLICATE_ORDER_ID
    assert oms.take_id(SID, 4) == RejectCode.DUPLICATE_ORDER_ID     # below the last: never sent
    assert oms.take_id(SID + 1, 5) == 0                              # another strategy's ids are its own
    assert oms.take_id(SID, 6) == 0
    assert oms.duplicate_ids == 2


def test_cancel_targets():
    oms = OrderBookKeeper()
    new_order(oms, cid=1)
    new_order(oms, cid=2)
    cancel = Order(client_order_id=3, target_order_id=2, strategy_id=SID, action=OrderAction.CANCEL)
    code, targets = oms.cancel_target(cancel)
    assert code == 0 and [t.client_order_id for t in targets] == [2]
    cancel.target_order_id = 9
    assert oms.cancel_target(cancel)[0] == RejectCode.UNKNOWN_ORDER
    oms.apply(rep(S.REJECTED, cid=1))
    code, targets = oms.cancel_target(Order(client_order_id=4, strategy_id=SID, action=OrderAction.CANCEL_ALL))
    assert code == 0 and [t.client_order_id for t in targets] == [2]
    assert oms.apply(rep(S.ACCEPTED, cid=77)) is None and oms.counts["unknown_reports"] == 1


def test_an_amend_ack_moves_the_order_and_its_reservation():
    calls = []

    class Risk(RiskSpy):
        def amend(self, *args):
            calls.append(args)
    risk = Risk()
    oms = OrderBookKeeper(risk)
    st = new_order(oms, qty=10, risk=risk)
    oms.apply(rep(S.ACCEPTED, price=100, qty=10))               # the plain ack: nothing moves
    oms.apply(rep(S.PARTIALLY_FILLED, last_qty=4, last_price=100, cum_qty=4, trade_id=1))
    out = oms.apply(rep(S.ACCEPTED, price=95, qty=8))           # the venue took price 95, size 8
    assert (st.price, st.qty, st.status, st.reserve_price) == (95, 8, S.PARTIALLY_FILLED, 95)
    assert out.price == 95 and out.qty == 8 and out.leaves_qty == 4
    assert calls == [(SID, 1, Side.BUY, 6, 100, 4, 95)]
    amend = Order(client_order_id=9, target_order_id=1, strategy_id=SID, instrument_id=1, side=Side.SELL,
                  action=OrderAction.AMEND, qty=8)
    assert oms.cancel_target(amend)[0] == RejectCode.BAD_FIELD  # an amend cannot turn a buy into a sell
    amend.side, amend.qty = Side.BUY, 3
    assert oms.cancel_target(amend)[0] == RejectCode.BAD_FIELD  # nor go below what has filled


def test_an_amend_the_venue_refused_is_said_once_and_leaves_the_order_as_it_was():
    oms = OrderBookKeeper()
    st = new_order(oms, qty=10)
    oms.apply(rep(S.ACCEPTED, price=100, qty=10))
    oms.apply(rep(S.PARTIALLY_FILLED, last_qty=4, last_price=100, cum_qty=4, trade_id=1))
    st.amend_requested = True                                   # the gateway sent an amend of it
    out = oms.apply(rep(S.ACCEPTED, reject_code=RejectCode.BAD_PRICE))
    assert (out.status, out.reject_code, out.price, out.qty, out.cum_qty) == (S.PARTIALLY_FILLED, RejectCode.BAD_PRICE,
                                                                          100, 10, 4)
    assert (st.status, st.price, st.qty, st.amend_requested) == (S.PARTIALLY_FILLED, 100, 10, False)
    assert oms.counts["amends_refused"] == 1
    # with no amend asked, a report like it changes nothing (said before, or not ours to say)
    assert oms.apply(rep(S.ACCEPTED, reject_code=RejectCode.BAD_PRICE)) is None
