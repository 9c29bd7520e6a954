"""The gateway's telemetry segment (core/telemetry), /ttq.<rings>.telemetry.gateway: what the
order path counted, copied off the trading path (housekeeping, a few times a second), and the
age of each order when the gateway took it, observed as it is taken.

    orders_total / rejects_total{code,reason} / fills_total       by strategy
    sent_total, reports_total, reconciled_fills_total, ...         the gateway's own
    open_orders, kill_switch, strategies, venue_halted              gauges (venue_halted: the adapter stopped
                                                                    order entry, e.g. Binance's 418)
    position_limit_ratio{instrument}                                by strategy ("all": the instrument's limit)
    order_age_seconds                                               ts_created -> taken by the gateway
"""
from __future__ import annotations

import logging

from ttquant.core.records import RejectCode
from ttquant.core.rings import RingError
from ttquant.core.telemetry.telemetry import TelemetryWriter

__all__ = ["GatewayTelemetry"]

log = logging.getLogger("ttquant.gateway")
REJECT_CODES = [c for c in RejectCode if c != RejectCode.NONE]
OWN = ("sent", "reports", "reconciled_fills", "lost_before_venue", "orphans_canceled", "syncs")
PUBLISH_EVERY_NS = 100_000_000


class GatewayTelemetry:
    def __init__(self, rings: str, venue: str, group=None):
        self.writer = TelemetryWriter(rings, "gateway", "gateway", labels={"exchange": venue}, groups=256, group=group)
        self.own = self.writer.counters([f"{k}_total" for k in OWN])
        self.state = self.writer.gauges(["open_orders", "kill_switch", "strategies", "venue_halted"])
        self.order_age = self.writer.histogram("order_age_seconds")
        self.strategies: dict[int, tuple] = {}          # strategy id -> (counts, rejects by code)
        self.ratios: dict[tuple, object] = {}           # (strategy id, instrument id) -> gauge
        self.next_ns = 0
        self.full: set = set()                         # what found the segment full: not published, said once

    def _no_room(self, key, exc):
        if not self.full:
            log.warning("telemetry: %s; some strategies or limits are not published", exc)
        self.full.add(key)

    def _strategy(self, sid: int, names: dict):
        got = self.strategies.get(sid)
        if got is None and sid not in self.full:
            labels = {"strategy": names.get(sid, f"id{sid}")}
            try:
                got = self.strategies[sid] = (
                    self.writer.counters(["orders_total", "fills_total"], labels),
                    self.writer.counters([f"rejects_total{{code={int(c)},reason={c.name.lower()}}}"
                                          for c in REJECT_CODES], labels))
            except RingError as exc:
                self._no_room(sid, exc)
        return got

    def publish(self, path, names, t_ns: int, force=False) -> None:
        """Copy the order path's counts; names(): strategy id -> its name."""
        if t_ns < self.next_ns and not force:
            return
        self.next_ns = t_ns + PUBLISH_EVERY_NS
        names = names()
        counts = path.counts
        self.own[:] = [counts.get(k, 0) for k in OWN]
        self.state[:] = (path.risk.open_order_count, 1 if path.risk.kill_switch else 0, len(names),
                         1 if path.adapter.halted else 0)
        for sid, (orders, _rejects, fills) in path.by_strategy.items():
            got = self._strategy(sid, names)
            if got is not None:
                got[0][:] = (orders, fills)
        for (sid, code), n in path.rejects_by.items():
            got = self._strategy(sid, names)
            if got is None:
                continue
            r = got[1]
            try:
                r[REJECT_CODES.index(RejectCode(code))] = n
            except ValueError:
                log.debug("reject code %d is not a RejectCode: not in telemetry", code)
        for sid, iid, used, limit in path.risk.position_usage():
            g = self.ratios.get((sid, iid))
            if g is None:
                if (sid, iid) in self.full:
                    continue
                inst = path.table.get(iid)
                labels = {"strategy": names.get(sid, f"id{sid}") if sid else "all",
                          "instrument": inst.label if inst is not None else str(iid)}
                try:
                    g = self.ratios[(sid, iid)] = self.writer.gauges(["position_limit_ratio"], labels, scale=4)
                except RingError as exc:
                    self._no_room((sid, iid), exc)
                    continue
            g[0] = used * 10_000 // limit
        self.writer.heartbeat()

    def close(self):
        self.writer.close()
