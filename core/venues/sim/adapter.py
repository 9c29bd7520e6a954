"""The gateway's side of the simulated venue: orders into its request ring, reports out of its
report ring, and its own record over HTTP for reconciliation (as Binance's REST would be)."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastReader, RingNotFoundError, SpscWriter
from ttquant.core.sim.order_venue import reports_ring, requests_ring
from ttquant.core.venues.base import VenueAdapter, VenueError, VenueFill, VenueOrder, VenueReport

__all__ = ["SimVenueAdapter"]


class SimVenueAdapter(VenueAdapter):
    name = "sim"

    def __init__(self, rings: str, http_url: str, connect_timeout_s: float = 30.0):
        self.rings, self.http_url = rings, http_url.rstrip("/")
        deadline = time.monotonic() + connect_timeout_s
        while True:
            try:
                # read from the latest: what came before is reconciled from the venue's record
                self.reports = BroadcastReader(reports_ring(rings), RecordType.EXEC_REPORT, start="latest")
                break
            except RingNotFoundError:
                if time.monotonic() > deadline:
                    raise VenueError(f"the simulated venue's {reports_ring(rings)} did not appear in "
                                     f"{connect_timeout_s:.0f} s (is venue-sim running with --orders?)") from None
                time.sleep(0.05)
        self.requests = SpscWriter(requests_ring(rings), RecordType.ORDER, 4096)
        self._balances = None

    @classmethod
    def open(cls, cfg, runner) -> SimVenueAdapter:
        """The venue at [adapter] http_url, its rings those of the gateway's stack; waits for it."""
        last = []

        def attempt():
            try:
                adapter = cls(cfg.ring_name, cfg.adapter.http_url, connect_timeout_s=0)
            except VenueError as exc:
                last[:] = [exc]
                return None
            if not adapter.reachable():
                last[:] = [f"{cfg.adapter.http_url} does not answer"]
                adapter.close()
                return None
            return adapter
        return runner.wait_for(f"the simulated venue at {cfg.adapter.http_url}", attempt,
                               hint=lambda: str(last[0]) if last else "")

    def send(self, order) -> bool:
        return self.requests.offer(order)

    def poll(self) -> list:
        out = []
        while True:
            r = self.reports.poll()
            if r is None:
                return out
            out.append(VenueReport.from_exec_report(r))

    def _get(self, path, wait_s: float = 10.0):
        """The venue's record; a venue still starting up is asked again for up to wait_s."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.http_url}{path}", timeout=10) as resp:
                    doc = json.loads(resp.read())
                if doc.get("ready"):
                    return doc
                problem = "the simulated venue is not taking orders yet"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problem = f"simulated venue {self.http_url}{path}: {exc}"
            if time.monotonic() > deadline:
                raise VenueError(problem)
            time.sleep(0.05)

    def settle(self, timeout_s: float = 5.0) -> bool:
        """Wait until the venue has taken every request sent (so 'never saw it' is true)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.requests.free == self.requests.capacity and self._get("/_sim/orders")["pending"] == 0:
                return True
            time.sleep(0.01)
        return False

    def open_orders(self):
        return [VenueOrder(**o) for o in self._get("/_sim/orders")["open"]]

    def fills_since(self, ts_ns: int):
        state = self._get(f"/_sim/orders?since={int(ts_ns)}")
        self._balances = state.get("balances", {})      # as of these fills: one snapshot
        return [VenueFill(trade_id=f["trade_id"], strategy_id=f["strategy_id"], client_order_id=f["client_order_id"],
                          instrument_id=f["instrument_id"], side=f["side"], price=f["price"], qty=f["qty"],
                          fee=f["fee"], liquidity=f["liquidity"], ts_ns=f["ts"])
                for f in state["fills"]]

    def order_status(self, strategy_id: int, client_order_id: int):
        o = self._get("/_sim/orders")["orders"].get(f"{strategy_id}/{client_order_id}")
        return VenueOrder(**o) if o else None

    def balances(self):
        """As of the fills the last fills_since returned (else now)."""
        if self._balances is None:
            self._balances = self._get("/_sim/orders").get("balances", {})
        return dict(self._balances)

    def reachable(self) -> bool:
        try:
            self._get("/_sim/orders", wait_s=0)
            return True
        except VenueError:
            return False

    def close(self):
        self.reports.close()
        self.requests.close()
