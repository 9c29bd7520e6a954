"""What the gateway does with an order once the intake has checked it, and with what the venue
says of it: the order state machine (oms.py), the order journal, the venue adapter, the exec
reports. One code path for the gateway daemon (orders from rings, the wall clock) and for
backtests (orders from a strategy in the same process, the backtest's clock): a backtest sees
the same rejects, in the same order, as live trading.

Per order (the intake has claimed its client id and, for a new one, run the risk checks):

    NEW      refused -> an exec report REJECTED with the code, journaled; else reserved,
             entered in the OMS, journaled, sent
    CANCEL   the target must be open (4003); never held back by risk
    CANCEL_ALL  every open order of the strategy (one instrument, or all)
    AMEND    the target open, same instrument and side, the new price and size risk-checked;
             the venue's ack with the new values moves the order and its reservation
    SYNC     a (re)started strategy asks what the gateway holds for it: its positions (kept
             per strategy from every fill, journal included) and its open orders
"""
from __future__ import annotations

import logging
import time
from decimal import Decimal

from ttquant.core.portfolio import Portfolio
from ttquant.core.records import ExecReport, Order, OrderAction, OrderStatus, RejectCode, ReportFlag
from ttquant.core.venues.base import VenueReport

__all__ = ["OrderPath", "NoJournal"]

log = logging.getLogger("ttquant.gateway")
S = OrderStatus


class NoJournal:
    """A backtest's journal: nothing to recover from, nothing written."""

    def order(self, order, reserve_price): pass
    def reject(self, order, code): pass
    def cancel(self, order): pass
    def report(self, er): pass
    def close(self): pass


class OrderPath:
    """The gateway's order handling over its parts, which the daemon or a backtest sets with
    init_order_path. exec_reports: what takes the exec reports (push), the exec ring's writer live."""

    def init_order_path(self, table, risk, oms, intake, journal, adapter, exec_reports, clock=time.time_ns):
        self.table, self.risk, self.oms, self.intake = table, risk, oms, intake
        self.journal, self.adapter, self.exec = journal, adapter, exec_reports
        self.now_ns = clock             # CLOCK_REALTIME live (every record's timestamps); a backtest's own
        self.counts = {"orders": 0, "rejects": 0, "sent": 0, "reports": 0, "fills": 0, "reconciled_fills": 0,
                       "lost_before_venue": 0, "orphans_canceled": 0}
        self.rejects_by_code: dict[int, int] = {}
        self.by_strategy: dict[int, list] = {}          # strategy id -> [orders, rejects, fills]
        self.rejects_by: dict[tuple, int] = {}           # (strategy id, reject code) -> count
        self.portfolio = Portfolio(fee_precision=8)
        self.strategy_books: dict[int, object] = {}      # strategy id -> Portfolio, for SYNC
        self._day = None
        self._day_start_pnl = Decimal(0)

    def on_checked(self, ring, order: Order, code: int):
        """An order the intake took: a new one is already risk-checked (and reserved when code is 0)."""
        self.counts["orders"] += 1
        per = self.by_strategy.get(order.strategy_id)
        if per is None:
            per = self.by_strategy[order.strategy_id] = [0, 0, 0]
        per[0] += 1
        if code == RejectCode.BAD_FIELD and order.strategy_id != self.intake.strategy_of(ring.index):
            log.warning("%s carried strategy id %d, not its own %d: refused", ring.name, order.strategy_id,
                        self.intake.strategy_of(ring.index))
            return self._reject(order, code)
        action = order.action
        if action == 1:                                     # OrderAction.NEW
            if code:
                return self._reject(order, code)
            reserve_price = self.risk.reserve_price(order)
            self.oms.add(order, reserve_price)
            self.journal.order(order, reserve_price)
            self._send(order)
        elif action == OrderAction.SYNC:
            if code:
                return self._reject(order, code)
            self.sync_strategy(order)
        elif action in (OrderAction.CANCEL, OrderAction.CANCEL_ALL, OrderAction.AMEND):
            if not code:
                code, targets = self.oms.cancel_target(order)       # open orders of this strategy
            if not code and action == OrderAction.AMEND:
                code = self.risk.check_order(order, self.now_ns())       # the new price and size, checked as new
            if code:
                return self._reject(order, code)
            for st in targets:
                if action == OrderAction.AMEND:
                    st.amend_requested = True
                else:
                    st.cancel_requested = True
            self.journal.cancel(order)
            if not self.adapter.send(order):
                self._reject(order, RejectCode.VENUE_UNAVAILABLE)
        else:
            self._reject(order, code or RejectCode.BAD_FIELD)

    def _send(self, order):
        if self.adapter.send(order):
            self.counts["sent"] += 1
            return
        log.warning("the venue cannot take order %s/%s now: rejected", order.strategy_id, order.client_order_id)
        self._apply(VenueReport(order.strategy_id, order.client_order_id, S.REJECTED,
                                reject_code=RejectCode.VENUE_UNAVAILABLE))

    def _count_reject(self, strategy_id, code):
        self.counts["rejects"] += 1
        code = int(code)
        self.rejects_by_code[code] = self.rejects_by_code.get(code, 0) + 1
        key = (strategy_id, code)
        self.rejects_by[key] = self.rejects_by.get(key, 0) + 1
        per = self.by_strategy.get(strategy_id)
        if per is None:
            per = self.by_strategy[strategy_id] = [0, 0, 0]
        per[1] += 1

    def _reject(self, order, code):
        self._count_reject(order.strategy_id, code)
        self.journal.reject(order, code)
        r = ExecReport(client_order_id=order.client_order_id, strategy_id=order.strategy_id,
                       instrument_id=order.instrument_id, price=order.price, qty=order.qty,
                       status=S.REJECTED, reject_code=code, side=order.side, order_type=order.order_type)
        self._publish(r)

    def _apply(self, rep: VenueReport, publish=True, journal=True):
        er = self.oms.apply(rep)
        if er is None:
            return None
        if er.status == S.REJECTED:
            self._count_reject(er.strategy_id, er.reject_code)
        if er.last_qty:
            self.counts["fills"] += 1
            per = self.by_strategy.get(er.strategy_id)
            if per is None:
                per = self.by_strategy[er.strategy_id] = [0, 0, 0]
            per[2] += 1
            self._on_fill(er)
        # published before it is journaled: a crash between the two re-publishes it after the
        # restart (strategies count a fill once, by its trade id) instead of never publishing it
        if publish:
            self._publish(er)
        if journal:
            self.journal.report(er)
        return er

    def sync_strategy(self, order):
        """The answer to a strategy's SYNC: its positions, its open orders as they stand, then
        SYNCED; nothing of that strategy's comes in between (this thread publishes all of it)."""
        sid, now = order.strategy_id, self.now_ns()
        book = self.strategy_books.get(sid)
        positions = book.positions() if book is not None else []
        for p in positions:
            self._publish(ExecReport(ts_exchange=now, client_order_id=order.client_order_id, strategy_id=sid,
                                     instrument_id=p.instrument_id, status=S.POSITION, qty=p.qty_raw,
                                     cum_qty=p.cost_raw, last_price=p.realised_raw, fee=p.fees_raw,
                                     leaves_qty=p.fills))
        open_orders = self.oms.open_orders(sid)
        for st in open_orders:
            self._publish(ExecReport(ts_exchange=now, client_order_id=st.client_order_id, strategy_id=sid,
                                     venue_order_id=st.venue_order_id, instrument_id=st.instrument_id,
                                     status=st.status, price=st.price, qty=st.qty, cum_qty=st.cum_qty,
                                     leaves_qty=st.leaves_qty, side=st.side, order_type=st.order_type,
                                     flags=ReportFlag.RESTATED))
        self._publish(ExecReport(ts_exchange=now, client_order_id=order.client_order_id, strategy_id=sid,
                                 status=S.SYNCED, qty=len(positions), cum_qty=len(open_orders),
                                 venue_order_id=self.oms.ids.last(sid)))
        self.counts["syncs"] = self.counts.get("syncs", 0) + 1
        log.info("strategy %d asked for its state: %d positions, %d open orders sent", sid, len(positions),
                 len(open_orders))

    def _on_fill(self, er):
        """Realised PnL since the start of the UTC day, for the daily loss limit (5001); and each
        strategy's own positions, for SYNC."""
        inst = self.table.get(er.instrument_id)
        if inst is None or self.portfolio is None:
            return
        book = self.strategy_books.get(er.strategy_id)
        if book is None:
            book = self.strategy_books[er.strategy_id] = Portfolio(fee_precision=8)
        book.on_fill(inst, er.side, er.last_price, er.last_qty, er.fee)
        before = self.portfolio.total_realised(inst.quote)
        self.portfolio.on_fill(inst, er.side, er.last_price, er.last_qty, er.fee)
        day = time.gmtime(self.now_ns() // 1_000_000_000).tm_yday
        if self._day != day:
            self._day, self._day_start_pnl = day, before
        today = self.portfolio.total_realised(inst.quote) - self._day_start_pnl
        self.risk.daily_pnl = int(today.scaleb(8))

    def _publish(self, er):
        er.ts_pub = self.now_ns()
        self.exec.push(er)
