"""A venue that takes every order and fills none: the gateway's whole path up to the venue
(validation, risk, state machine, journal, exec reports) without a venue, for dry runs of a
risk configuration and for benchmarks of that path. New orders are ACCEPTED, cancels CANCELED."""
from __future__ import annotations

import itertools

from ttquant.core.records import OrderAction, OrderStatus
from ttquant.core.venues.base import VenueAdapter, VenueReport

__all__ = ["DryRunAdapter"]


class DryRunAdapter(VenueAdapter):
    name = "dry"

    def __init__(self):
        self.open: dict[tuple[int, int], int] = {}
        self.reports: list[VenueReport] = []
        self._ids = itertools.count(1)

    def send(self, order) -> bool:
        key = (order.strategy_id, order.client_order_id)
        if order.action == OrderAction.NEW:
            vid = self.open[key] = next(self._ids)
            self.reports.append(VenueReport(*key, OrderStatus.ACCEPTED, venue_order_id=vid))
        elif order.action == OrderAction.CANCEL:
            target = (order.strategy_id, order.target_order_id)
            if self.open.pop(target, None) is not None:
                self.reports.append(VenueReport(*target, OrderStatus.CANCELED))
        elif order.action == OrderAction.CANCEL_ALL:
            for target in [k for k in self.open if k[0] == order.strategy_id]:
                del self.open[target]
                self.reports.append(VenueReport(*target, OrderStatus.CANCELED))
        return True

    def poll(self):
        out, self.reports = self.reports, []
        return out

    def open_orders(self):
        return []

    def fills_since(self, ts_ns):
        return []

    def order_status(self, strategy_id, client_order_id):
        return None

    def balances(self):
        return {}
