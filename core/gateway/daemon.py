"""`ttquant gateway VENUE`: every strategy's orders in, checked, journaled, sent.

One thread does the trading path, in this order per loop: the order rings, read in turn
from C with the tick ring's reference prices between rounds (order_intake.pyx: no strategy
can starve another), the venue's reports; every few milliseconds the housekeeping (new order
rings, kill switch, journal fsync, heartbeats, systemd watchdog). Per order:

    NEW      client id new for the strategy (4001) -> risk checks (risk.pyx) -> reserved, all
             in C before Python sees it; then journaled, sent; refused -> an exec report
             REJECTED with the code, journaled
    CANCEL   the target must be open (4003); never held back by risk
    CANCEL_ALL  every open order of the strategy (one instrument, or all)
    AMEND    the target open, same instrument and side, the new price and size risk-checked;
             the venue's ack with the new values moves the order and its reservation
    SYNC     a (re)started strategy asks what the gateway holds for it: its positions (kept
             per strategy from every fill, journal included) and its open orders, answered on
             the exec ring as records.pxd says, so a strategy restarted by systemd resumes

On start it waits (saying so) for md's instrument table and tick ring and for the venue,
takes its journal's lock, replays the journal, asks the venue for open orders and fills,
applies what it missed, rejects (6002) what never reached the venue, and only then takes
orders: nothing is sent twice, no fill is lost. SIGHUP reloads the risk file (a bad file is
refused, the old limits stay); SIGTERM flushes the journal and exits 0. The service runner
(core/daemon/) does logging, signals, notify, the lock and the hybrid wait.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from decimal import Decimal

import numpy as np

from ttquant.core.daemon.hybrid_wait import HybridWait
from ttquant.core.daemon.runner import EXIT_CONFIG, Daemon, ServiceError
from ttquant.core.gateway.config import GatewayConfig
from ttquant.core.gateway.gateway_telemetry import GatewayTelemetry
from ttquant.core.gateway.kill_switch import KillSwitch
from ttquant.core.gateway.oms import OrderBookKeeper
from ttquant.core.gateway.order_intake import OrderIntake
from ttquant.core.gateway.order_journal import CANCEL, KILL, ORDER, REJECT, REPORT, JournalError, OrderJournal
from ttquant.core.gateway.order_path import OrderPath
from ttquant.core.gateway.risk import RiskEngine
from ttquant.core.gateway.risk_config import RiskConfigError, load_risk_limits
from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.records import Order, OrderAction, OrderStatus, RecordType, RejectCode
from ttquant.core.rings import BroadcastReader, BroadcastWriter, RingNotFoundError, SpscReader
from ttquant.core.rings.names import SHM_DIR, exec_ring, instance_lock_file, order_ring_prefix, tick_ring
from ttquant.core.venues.base import VenueReport
from ttquant.core.venues.registry import adapter_class

__all__ = ["Gateway"]

now_ns = time.time_ns           # CLOCK_REALTIME, as every record's timestamps

log = logging.getLogger("ttquant.gateway")
S = OrderStatus
# housekeeping is due this often; done once the loop has been idle QUIET_NS, or when HOUSEKEEPING_LATE_NS overdue
HOUSEKEEPING_NS = 5_000_000
QUIET_NS = 100_000
HOUSEKEEPING_LATE_NS = 20_000_000
RECONCILE_SKEW_NS = 60_000_000_000    # the venue's clock against ours, at worst
POLL_ROUNDS = 512               # rounds over the order rings in C per pass of the Python loop (~10 µs)


class _OrderRing:
    """One strategy's order ring and its index in the intake (which knows its strategy id)."""
    __slots__ = ("name", "owner", "reader", "index")

    def __init__(self, name, owner, reader, index):
        self.name, self.owner, self.reader, self.index = name, owner, reader, index


class Gateway(OrderPath, Daemon):
    role = "gateway"
    schema = GatewayConfig

    def __init__(self, cfg: GatewayConfig, runner, adapter=None):
        super().__init__(cfg, runner)
        self.adapter = adapter
        self.notify = runner.notify
        self.journal = self.exec = self.kill = self.ticks = None
        self.rings: list[_OrderRing] = []
        self.known_rings: set[str] = set()
        self.rr = 0
        self.stopping = False
        self.kill_changes = 0
        self._next_house = 0
        self._busy_ns = 0
        self._next_discover = 0
        self._shm_mtime = 0
        self._retry_discover = False
        self._next_full_discover = 0
        self.counts, self.rejects_by_code = {}, {}      # OrderPath's, once started
        self.telemetry = self.order_age = None
        self.last_kill_entry = None                     # the journal's last KILL entry (its detail)
        self.portfolio = None

    def locks(self):
        return [(instance_lock_file(self.cfg.ring_name, "gateway"), f"gateway of rings {self.cfg.ring_name!r}")]

    # -- setup ------------------------------------------------------------------------------------
    def start(self):
        cfg, runner = self.cfg, self.runner
        path = instruments_path(cfg.ring_name)
        md_hint = f"is ttquant-md@{cfg.venue} running? its rings are {cfg.ring_name!r}"
        self.table = runner.wait_for(f"md's instrument table {path}", lambda: self._load_table(path), hint=md_hint)
        self.limits = load_risk_limits(cfg.risk_file, self.table)
        self.risk = RiskEngine(self.limits, self.table)
        self.oms = OrderBookKeeper(self.risk)
        try:
            self.journal = OrderJournal(cfg.journal_path, cfg.venue, cfg.journal.fsync, cfg.journal.fsync_interval_ms)
        except JournalError as exc:
            raise ServiceError(f"{exc} (journal.path in {cfg.path})", EXIT_CONFIG) from None
        except OSError as exc:
            raise ServiceError(f"{cfg.journal_path}: {exc.strerror} (journal.path in {cfg.path})",
                               EXIT_CONFIG) from None
        self.exec = BroadcastWriter(exec_ring(cfg.ring_name), RecordType.EXEC_REPORT, cfg.rings.exec_capacity,
                                    group=cfg.shm_group)
        self.kill = KillSwitch(cfg.ring_name)
        self.kill_changes = self.kill.changes
        self.risk.kill_switch = self.kill.engaged
        self.ticks = runner.wait_for(f"md's tick ring {tick_ring(cfg.ring_name)}", self._attach_ticks, hint=md_hint)
        self.intake = OrderIntake(self.risk, self.oms.ids, self.ticks)
        if self.adapter is None:
            self.adapter = adapter_class(cfg.adapter.kind).open(cfg, runner)
        self.limits = self._within_venue_rate(self.limits)
        self.risk.apply_limits(self.limits)
        self.init_order_path(self.table, self.risk, self.oms, self.intake, self.journal, self.adapter, self.exec)
        self.telemetry = GatewayTelemetry(cfg.ring_name, cfg.venue, cfg.shm_group)
        self.order_age = self.telemetry.order_age
        self.take_venue_balances(report=False)     # the assets first: replayed orders reserve against them
        replayed = self.replay_journal()
        self.reconcile()
        self.journal.mark()
        self.journal_kill_switch_at_start()
        self.discover()
        log.info("gateway %s ready: %d orders from the journal (%d open), %d order rings, kill switch %s",
                 cfg.venue, replayed, len(self.oms.open_orders()), len(self.rings),
                 "ENGAGED" if self.risk.kill_switch else "off")

    @staticmethod
    def _load_table(path):
        try:
            return InstrumentTable.load(path)
        except (FileNotFoundError, ValueError):
            return None

    def _attach_ticks(self):
        try:
            return BroadcastReader(tick_ring(self.cfg.ring_name), start="latest")
        except RingNotFoundError:
            return None

    def replay_journal(self) -> int:
        n = 0
        for kind, item in self.journal.entries():
            if kind == ORDER:
                order, reserve_price = item
                self.oms.take_id(order.strategy_id, order.client_order_id)
                self.oms.add(order, reserve_price)
                self.risk.restore(order, reserve_price)
                n += 1
            elif kind in (REJECT, CANCEL):
                order = item[0] if kind == REJECT else item
                self.oms.take_id(order.strategy_id, order.client_order_id)
            elif kind == REPORT:
                self._apply(VenueReport.from_exec_report(item), publish=False, journal=False)
            elif kind == KILL:
                self.last_kill_entry = item[1]
        return n

    def journal_kill_switch_at_start(self):
        """A kill switch engaged or released while no gateway ran: into the audit trail now, as
        first seen, so audit_log never misses a change the gateway acted on."""
        state = self.kill.read()
        last = self.last_kill_entry
        if last is None and not state.engaged:
            return                      # never engaged, as far as this journal knows
        if last is not None and last.get("engaged") == state.engaged and last.get("set_ns") == state.ts_ns:
            return
        self.journal.kill({"engaged": state.engaged, "who": state.who, "pid": state.pid, "uid": state.uid,
                           "reason": state.reason, "set_ns": state.ts_ns, "changes": state.changes,
                           "missed": 0, "open_orders": len(self.oms.open_orders()), "seen_at_start": True})

    def reconcile(self):
        """What the venue did while we were away: fills applied, balances taken, lost orders
        rejected, orphans canceled."""
        self.adapter.settle()
        # a fill we missed belongs to an order the journal has open (a closed order's fills were
        # journaled before its end): ask from the oldest one's creation, less a clock-skew margin
        open_since = min((st.ts_created for st in self.oms.open_orders()), default=now_ns())
        for f in self.adapter.fills_since(max(open_since - RECONCILE_SKEW_NS, 0)):
            if self.oms.get(f.strategy_id, f.client_order_id) is None:
                continue
            rep = VenueReport(strategy_id=f.strategy_id, client_order_id=f.client_order_id,
                              status=S.PARTIALLY_FILLED, last_price=f.price, last_qty=f.qty, fee=f.fee,
                              liquidity=f.liquidity, trade_id=f.trade_id, ts_exchange=f.ts_ns)
            if self._apply(rep) is not None:
                self.counts["reconciled_fills"] += 1
        self.take_venue_balances()
        venue_open = {(o.strategy_id, o.client_order_id): o for o in self.adapter.open_orders()}
        for st in self.oms.open_orders():
            vo = venue_open.get(st.key) or self.adapter.order_status(st.strategy_id, st.client_order_id)
            if vo is None:
                self.counts["lost_before_venue"] += 1
                log.warning("order %s/%s never reached the venue: rejected, not resent", *st.key)
                self._apply(VenueReport(st.strategy_id, st.client_order_id, S.REJECTED,
                                        reject_code=RejectCode.VENUE_UNAVAILABLE))
            elif S(vo.status) != st.status:
                self._apply(VenueReport(st.strategy_id, st.client_order_id, S(vo.status),
                                        venue_order_id=vo.venue_order_id, cum_qty=vo.cum_qty))
        for key, vo in venue_open.items():
            if self.oms.get(*key) is None:
                self.counts["orphans_canceled"] += 1
                log.warning("order %s/%s is open on the venue but unknown here: canceling it", *key)
                self.adapter.send(Order(ts_created=now_ns(), strategy_id=key[0], target_order_id=key[1],
                                        instrument_id=vo.instrument_id, action=OrderAction.CANCEL))

    def take_venue_balances(self, report=True):
        """The venue's balances (as of the fills just applied) become the shadow balances funds
        are checked against; a venue that keeps none leaves risk.toml's."""
        venue = self.adapter.balances()
        if not venue:
            return
        had = self.risk.state()["balances"] if report else {}
        for asset, amount in sorted(venue.items()):
            self.risk.set_balance(asset, amount)
        if not report:
            return
        log.info("balances from the venue: %s", ", ".join(
            f"{a} {Decimal(v).scaleb(-8)}"
            + (f" (had {Decimal(had[a]).scaleb(-8)})" if a in had and had[a] != v else "")
            for a, v in sorted(venue.items())))
        self.counts["balances_taken"] = len(venue)

    def discover(self):
        """Order rings of strategies started since the last look. The trading thread does this:
        /dev/shm is listed only when it changed (its mtime, coarse: recent changes are looked
        at again) or a ring could not be taken yet, and every few seconds regardless."""
        now = time.time_ns()
        try:
            mtime = os.stat(SHM_DIR).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._shm_mtime and not self._retry_discover and now - mtime > 1_000_000_000 \
                and now < self._next_full_discover:
            return
        self._shm_mtime, self._retry_discover = mtime, False
        self._next_full_discover = now + 5_000_000_000
        prefix = order_ring_prefix(self.cfg.ring_name)
        for entry in os.listdir(SHM_DIR):
            name = "/" + entry
            if not entry.startswith(prefix) or name in self.known_rings:
                continue
            owner = entry[len(prefix):]
            try:
                reader = SpscReader(name, RecordType.ORDER, wait="sleep" if self._no_spin() else None)
            except Exception as exc:        # a ring being created, or another reader's: try later
                log.debug("order ring %s not taken yet: %s", name, exc)
                self._retry_discover = True
                continue
            self.known_rings.add(name)
            index = self.intake.add_ring(reader, self.cfg.strategies.get(owner, 0))
            self.rings.append(_OrderRing(name, owner, reader, index))
            log.info("order ring %s (strategy %s) picked up", name, owner)

    # -- the loop ---------------------------------------------------------------------------------
    def step(self, rounds: int = POLL_ROUNDS) -> bool:
        """One pass of the trading path; True when there was something to do."""
        busy = False
        got = self.intake.next_order(rounds)
        if got is not None:
            busy = True
            self.order_age.observe(max(0, time.time_ns() - got[1].ts_created))
            self.on_checked(self.rings[got[0]], got[1], got[2])
        for rep in self.adapter.poll():
            busy = True
            self.counts["reports"] += 1
            self._apply(rep)
        t = time.monotonic_ns()
        if busy:
            self._busy_ns = t
        # off the order path: once the loop has been quiet a moment, unless it is long overdue
        elif t >= self._next_house and (t - self._busy_ns >= QUIET_NS or t >= self._next_house + HOUSEKEEPING_LATE_NS):
            self._next_house = t + HOUSEKEEPING_NS
            self.housekeeping(t)
        return busy

    def strategy_names(self) -> dict[int, str]:
        """strategy id -> its order ring's owner (an id is known once the ring's first order came)."""
        return {self.intake.strategy_of(r.index): r.owner for r in self.rings}

    def on_order(self, ring: _OrderRing, order: Order):
        """An order the loop read itself (a futex wait): claimed and checked, then handled."""
        self.order_age.observe(max(0, time.time_ns() - order.ts_created))
        self.on_checked(ring, order, self.intake.take(ring.index, order))

    # -- housekeeping -----------------------------------------------------------------------------
    def housekeeping(self, t_ns):
        if self.kill.changes != self.kill_changes:
            self._kill_switch_changed()
        self.journal.sync_if_due()
        self.telemetry.publish(self, self.strategy_names, t_ns)
        if t_ns >= self._next_discover:
            self._next_discover = t_ns + int(self.cfg.loop.discover_interval_s * 1e9)
            self.discover()
            self.exec.heartbeat()
            for ring in self.rings:
                ring.reader.heartbeat()
        if self.runner.take_reload():
            self.reload_risk()

    def _kill_switch_changed(self):
        state = self.kill.read()
        missed = max((state.changes - self.kill_changes) % 2**32 - 1, 0)     # switched more than once between looks
        self.kill_changes = state.changes
        self.risk.kill_switch = state.engaged
        # the audit trail (audit_log, by the shipper): who, why, when it was set and when seen here
        self.journal.kill({"engaged": state.engaged, "who": state.who, "pid": state.pid, "uid": state.uid,
                           "reason": state.reason, "set_ns": state.ts_ns, "changes": state.changes,
                           "missed": missed, "open_orders": len(self.oms.open_orders())})
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.ts_ns / 1e9))
        if state.engaged:
            log.error("KILL SWITCH ENGAGED by %s (pid %d) at %s: %s; canceling %d open orders", state.who,
                      state.pid, when, state.reason or "no reason given", len(self.oms.open_orders()))
            for sid in sorted({o.strategy_id for o in self.oms.open_orders()}):
                self.adapter.send(Order(ts_created=now_ns(), strategy_id=sid, action=OrderAction.CANCEL_ALL))
        else:
            log.warning("kill switch released by %s (pid %d) at %s: %s", state.who, state.pid, when,
                        state.reason or "no reason given")

    def reload(self):
        self.reload_risk()

    def reload_risk(self):
        try:
            limits = load_risk_limits(self.cfg.risk_file, self.table)
        except RiskConfigError as exc:
            log.error("risk reload refused, the old limits stay: %s", exc)
            self._journal_reload(False, str(exc))
            return False
        limits = self._within_venue_rate(limits)
        self.risk.apply_limits(limits)
        self.limits = limits
        log.info("risk limits reloaded from %s", self.cfg.risk_file)
        self._journal_reload(True, None)
        return True

    def _within_venue_rate(self, limits):
        """The risk file's order rate, no more than the venue's own limits let this account send (the adapter's
        order_rate: Binance's exchangeInfo), so the gateway refuses (RATE_LIMIT) before the venue would 429."""
        venue = self.adapter.order_rate() if self.adapter is not None else None
        if venue is None:
            return limits
        rate, burst = venue
        if limits.orders_per_s and limits.orders_per_s <= rate:
            return limits
        capped = dataclasses.replace(limits, orders_per_s=rate,
                                     burst=min(limits.burst, burst) if limits.burst else max(burst, 1.0))
        log.info("order rate %s/s (burst %s) from the risk file is over what the venue allows: %.2f/s, burst %.0f",
                 limits.orders_per_s or "unlimited", limits.burst or "-", capped.orders_per_s, capped.burst)
        return capped

    def _journal_reload(self, accepted, error):
        """The reload into the order journal (the shipper's audit_log), with the file's sha256 as read now."""
        import hashlib
        try:
            with open(self.cfg.risk_file, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            digest = None
        self.journal.risk_reload({"file": str(self.cfg.risk_file), "accepted": accepted, "error": error,
                                  "sha256": digest})

    def status(self):
        return self.status_text()

    def status_text(self):
        open_orders = self.risk.open_order_count           # kept by the risk engine: no scan of the OMS
        return (f"{len(self.rings)} strategies, {self.counts['orders']} orders, {open_orders} open, "
                f"{self.counts['fills']} fills, {self.counts['rejects']} rejects, kill switch "
                f"{'ENGAGED' if self.risk.kill_switch else 'off'}")

    def close(self):
        log.info("gateway stopping: %s; rejects by code %s", self.status_text() if self.counts else "not started",
                 self.rejects_by_code)
        if self.telemetry is not None:
            self.telemetry.publish(self, self.strategy_names, 0, force=True)     # the last counts stay readable
        for part in (self.journal, self.ticks, self.exec, self.kill, self.adapter, self.telemetry):
            if part is not None:
                part.close()
        for ring in self.rings:
            ring.reader.close()
        trace_path = os.environ.get("TTQ_GATEWAY_TRACE")
        if trace_path and getattr(self, "intake", None) is not None:
            np.save(trace_path, self.intake.trace)

    # -- run as a daemon ----------------------------------------------------------------------------
    def serve(self) -> int:
        cfg = self.cfg
        if os.environ.get("TTQ_GATEWAY_TRACE"):
            self.intake.start_trace()   # (strategy, client id, created, taken, checked) per new order
        self.notify.ready(self.status_text())
        wait = HybridWait(cfg.loop.wait, 0 if self._no_spin() else cfg.loop.spin_polls, POLL_ROUNDS)
        self.runner.loop(self.step, wait, futex_wait=self._futex_wait, gc=cfg.loop.gc)
        return 0

    def _no_spin(self) -> bool:
        """An adapter with threads of its own (Binance's io threads) needs the GIL a spinning loop holds: the
        loop then sleeps on the ring's futex at once (an order still wakes it at once). Spinning, the io
        thread got the GIL only at the loop's next blocking call: order round trips of 100-200 ms."""
        return bool(getattr(self.adapter, "threaded", False))

    def _futex_wait(self):
        """With one strategy, asleep on its ring's futex: its next order wakes us at once (the
        timeout keeps venue reports and housekeeping going); else short sleeps."""
        return self._wait_one_ring if len(self.rings) == 1 else None

    def _wait_one_ring(self, timeout_s) -> bool:
        order = self.rings[0].reader.wait(timeout=timeout_s)
        if order is None:
            return False
        self.on_order(self.rings[0], order)
        return True
