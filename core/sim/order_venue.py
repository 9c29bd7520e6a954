"""The simulated venue's order side: a thread that matches the gateway's orders against the
market the md daemon publishes (its tick ring and book board), by the shared fill model.

    /ttq.<rings>.sim_requests   SPSC of Order        gateway (sim adapter) -> venue
    /ttq.<rings>.sim_reports    broadcast ExecReport  venue -> gateway; large, so a restarted
                                                      gateway can read what it missed
It outlives any gateway: orders rest and fill while the gateway is down, as on a real venue.
What it was sent and what it filled is its own record (`state()`), served by venue-sim at
/_sim/orders for reconciliation and tests.
"""
from __future__ import annotations

import logging
import threading
import time

import numpy as np

from ttquant.core.instruments import InstrumentTable, instruments_path
from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind, RecordType
from ttquant.core.rings import BroadcastReader, BroadcastWriter, RingNotFoundError, SpscReader
from ttquant.core.rings.names import book_board, ring_name, tick_ring
from ttquant.core.sim.matching import FillModel, SimAccount, SimMatcher

__all__ = ["SimOrderVenue", "requests_ring", "reports_ring"]

log = logging.getLogger("ttquant.venue_sim.orders")
REPORTS_CAPACITY = 1 << 18


def requests_ring(rings: str) -> str:
    return ring_name(rings, "sim_requests")


def reports_ring(rings: str) -> str:
    return ring_name(rings, "sim_reports")


class SimOrderVenue:
    def __init__(self, rings: str, model: FillModel | None = None, table: InstrumentTable | None = None,
                 balances: dict[str, int] | None = None):
        self.rings = rings
        self.model = model if model is not None else FillModel()
        self.balances = balances            # asset -> amount at account precision: the account fills move
        self.table = table
        self.matcher: SimMatcher | None = None
        self.lock = threading.Lock()       # state() is read from the HTTP thread
        self.stopping = False
        self.thread: threading.Thread | None = None
        self.started = threading.Event()
        self._events = np.zeros(4096, MARKET_EVENT_DTYPE)

    # -- life -----------------------------------------------------------------------------------
    def start(self):
        self.thread = threading.Thread(target=self._run, name="sim-orders", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        if self.thread is not None:
            self.thread.join(timeout=5)

    def _attach(self):
        """Wait for the md daemon's rings (it may start after the venue), then open ours."""
        while not self.stopping:
            try:
                table = self.table or InstrumentTable.load(instruments_path(self.rings))
                ticks = BroadcastReader(tick_ring(self.rings), start="latest")
                break
            except (RingNotFoundError, FileNotFoundError, OSError, ValueError):
                time.sleep(0.1)
        else:
            return None
        board = None
        with self.lock:         # ready before the report ring appears: an adapter may ask at once
            self.matcher = SimMatcher(table, self.model, SimAccount(self.balances) if self.balances else None)
        requests = SpscReader(requests_ring(self.rings), RecordType.ORDER, capacity=4096, create=True)
        reports = BroadcastWriter(reports_ring(self.rings), RecordType.EXEC_REPORT, REPORTS_CAPACITY)
        return ticks, board, requests, reports

    def _run(self):
        rings = self._attach()
        if rings is None:
            return
        ticks, board, requests, reports = rings
        self.started.set()
        log.info("sim venue taking orders on %s", requests_ring(self.rings))
        idle = 0
        last_board = 0.0
        try:
            while not self.stopping:
                busy = False
                now = time.time_ns()
                n = ticks.poll_into(self._events)
                if n:
                    busy = True
                    with self.lock:
                        self._market(self._events[:n], now)
                if time.monotonic() - last_board > 0.05:
                    last_board = time.monotonic()
                    board = board or self._board()
                    if board is not None:
                        with self.lock:
                            self._books(board, now)
                while True:
                    req = requests.poll()
                    if req is None:
                        break
                    busy = True
                    with self.lock:
                        self.matcher.submit(req, time.time_ns())
                with self.lock:
                    out = self.matcher.advance(time.time_ns())
                for r in out:
                    r.ts_pub = time.time_ns()
                    reports.push(r)
                if out:
                    busy = True
                if busy:
                    idle = 0
                else:
                    idle += 1
                    if idle > 200:
                        time.sleep(0.0002 if self.matcher.pending else 0.001)
                if not busy:
                    reports.heartbeat()
        finally:
            ticks.close()
            requests.close()
            reports.close()
            if board is not None:
                board.close()

    def _board(self):
        from ttquant.core.book.book_board import BookBoard
        try:
            return BookBoard(book_board(self.rings))
        except (RingNotFoundError, OSError):
            return None

    def _books(self, board, now):
        wanted = {o.instrument_id for o in self.matcher.resting.values()} | \
                 {req.instrument_id for _, _, req in self.matcher.pending}
        for inst in wanted or board.instruments():
            top = board.read(inst)
            if top is not None and top.synced:         # None: md has not put that book up yet
                self.matcher.on_book(inst, top.bids.tolist(), top.asks.tolist(), now)

    def _market(self, events, now):
        m = self.matcher
        for e in events:
            kind = e["kind"]
            if kind == EventKind.TRADE:
                m.on_trade(int(e["instrument_id"]), int(e["price"]), int(e["qty"]),
                           bool(e["flags"] & EventFlag.BUYER_AGGRESSOR), now)
            elif kind == EventKind.BBO and e["flags"] & EventFlag.FROM_BOOK:
                m.on_quote(int(e["instrument_id"]), int(e["price"]), int(e["qty"]), int(e["ask_price"]),
                           int(e["ask_qty"]), now)

    # -- the venue's own record -------------------------------------------------------------------
    def state(self, since_ns: int = 0) -> dict:
        """Open orders, fills since since_ns, the balances after those fills (one snapshot), every
        request it received, per-order status."""
        with self.lock:
            m = self.matcher
            if m is None:
                return {"ready": False}
            requests = {}
            for entry in m.ledger:
                if entry["action"] == 1:
                    key = f'{entry["strategy_id"]}/{entry["client_order_id"]}'
                    requests[key] = requests.get(key, 0) + 1
            return {
                "ready": True,
                "open": [_order(o) for o in m.resting.values()],
                "orders": {f"{k[0]}/{k[1]}": _order(o) for k, o in m.orders.items()},
                "fills": [f for f in m.fills if f["ts"] >= since_ns],
                "balances": dict(m.account.balances) if m.account is not None else {},
                "new_requests": requests,           # strategy/client id -> times a NEW arrived
                "counts": dict(m.counts),
                "pending": len(m.pending),
                "ledger_size": len(m.ledger),
            }


def _order(o):
    return {"strategy_id": o.strategy_id, "client_order_id": o.client_order_id, "venue_order_id": o.venue_order_id,
            "instrument_id": o.instrument_id, "side": int(o.side), "price": o.price, "qty": o.qty,
            "cum_qty": o.cum_qty, "status": int(o.status)}
