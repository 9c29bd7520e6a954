"""Reconciliation asks the venue for fills since the oldest order the journal has open (less the
clock-skew margin): a closed order's fills were journaled before it closed."""
from ttquant.core.gateway.daemon import RECONCILE_SKEW_NS, Gateway
from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, Side
from ttquant.core.venues.base import VenueOrder
from ttquant.core.venues.dry import DryRunAdapter


class Venue(DryRunAdapter):
    def __init__(self, open_orders):
        super().__init__()
        self.asked, self._open = [], open_orders

    def fills_since(self, ts_ns):
        self.asked.append(ts_ns)
        return []

    def open_orders(self):
        return self._open


def gateway(orders, venue_open):
    gw = Gateway.__new__(Gateway)
    gw.oms, gw.adapter = OrderBookKeeper(), Venue(venue_open)
    gw.counts = {"reconciled_fills": 0, "lost_before_venue": 0, "orphans_canceled": 0}
    for cid, created in orders:
        st = gw.oms.add(Order(ts_created=created, client_order_id=cid, strategy_id=3, instrument_id=1,
                              action=OrderAction.NEW, side=Side.BUY, order_type=OrderType.LIMIT, price=100, qty=1), 100)
        st.status = OrderStatus.ACCEPTED
    return gw


def test_fills_are_asked_from_the_oldest_open_order():
    t = 1_800_000_000_000_000_000
    venue_open = [VenueOrder(3, cid, cid, 1, Side.BUY, 100, 1, 0, OrderStatus.ACCEPTED) for cid in (1, 2)]
    gw = gateway([(1, t + 5_000), (2, t)], venue_open)
    gw.reconcile()
    assert gw.adapter.asked == [t - RECONCILE_SKEW_NS]
    assert gw.counts["lost_before_venue"] == 0 and gw.counts["orphans_canceled"] == 0


def test_with_nothing_open_only_the_latest_are_asked():
    gw = gateway([], [])
    gw.reconcile()
    (since,) = gw.adapter.asked
    assert since > 1_700_000_000_000_000_000      # now less the margin, not the venue's whole history
