"""The gateway's Binance adapter (spot): orders over signed REST on a worker thread, reports back by poll().

The gateway's loop must never wait for the venue, so `send` only puts the instruction on a queue; one
worker thread sends it (BinanceRest: signing, the server's clock, rate limits, the error map) and turns
the answer into VenueReports (responses.order_reports) that `poll` hands over. What may go wrong:

    OrderRejected    a REJECTED report with the mapped reject code (a cancel: the order's state is asked)
    RateLimited      a REJECTED report with RejectCode.RATE_LIMIT: nothing was placed
    ResultUnknown    resolved by order_status(client order id), asked again a few times while the venue
                     may not show it yet (-2013); never sent again
    Halted           (418, bad key or signature) this order REJECTED, and every later send() is False, so
                     the gateway rejects it (6002); RateLimits logged the halt once, at ERROR
    VenueUnreachable nothing left: REJECTED with VENUE_UNAVAILABLE

Reconciliation (open_orders, order_status, fills_since, balances) asks the venue over the same
connection, under the same lock as the worker. Client order ids are ours, `t<strategy>-<cid>`
(responses.encode_client_order_id), so a venue order maps back to (strategy, client order id); a trade
names only its orderId, which maps through what this adapter sent or saw, else one lookup by orderId.

Not here yet: the user data stream (fills of a resting order reach the gateway only at reconciliation),
the WebSocket API, USDT-M futures, AMEND (send() says False: the gateway rejects it).
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import threading
import time

from ttquant.core.daemon.runner import EXIT_CONFIG, ServiceError
from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
from ttquant.core.records import OrderAction, OrderStatus, RejectCode
from ttquant.core.venues.base import VenueAdapter, VenueError, VenueFill, VenueOrder, VenueReport
from ttquant.core.venues.binance.credentials import CredentialsError, load_api_credentials
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.responses import (
    ForeignOrder,
    account_balances,
    order_reports,
    parse_client_order_id,
    venue_fill,
    venue_order,
)
from ttquant.core.venues.binance.rest import (
    BinanceRest,
    BinanceRestError,
    Halted,
    OrderRejected,
    RateLimited,
    ResultUnknown,
)

__all__ = ["BinanceAdapter", "REST_URLS"]

log = logging.getLogger("ttquant.venues.binance")

# [adapter] environment -> market -> REST base URL
REST_URLS = {
    "live": {"spot": "https://api.binance.com"},
    "testnet": {"spot": "https://testnet.binance.vision"},
}
_MARKET_TYPES = {"spot": MarketType.SPOT}
CLOCK_REFRESH_S = 300.0         # the server-time offset is measured again this often (drift, not steps)
UNKNOWN_TRIES = 5               # order_status asked this often for an order whose result is unknown ...
UNKNOWN_WAIT_S = 0.2            # ... this far apart (the venue may not show a new order for a moment)
_STOP = object()


class BinanceAdapter(VenueAdapter):
    name = "binance"

    def __init__(self, rest: BinanceRest, table: InstrumentTable, market: str = "spot",
                 clock_refresh_s: float = CLOCK_REFRESH_S, unknown_tries: int = UNKNOWN_TRIES,
                 unknown_wait_s: float = UNKNOWN_WAIT_S):
        self.rest, self.table, self.market = rest, table, market
        self.market_type = _MARKET_TYPES[market]
        self.clock_refresh_s, self.unknown_tries, self.unknown_wait_s = clock_refresh_s, unknown_tries, unknown_wait_s
        self._lock = threading.Lock()                       # one request at a time on rest's connection
        self._queue: queue.Queue = queue.Queue()
        self._reports: collections.deque[VenueReport] = collections.deque()   # worker appends, poll pops
        self._instrument_of: dict[tuple[int, int], int] = {}    # (strategy, cid) -> instrument id
        self._ids_of: dict[tuple[str, int], tuple[int, int]] = {}  # (symbol, orderId) -> (strategy, cid)
        self._balances: dict[str, int] | None = None
        self.counts = collections.Counter()
        self._worker = threading.Thread(target=self._run, name="binance-orders", daemon=True)
        self._worker.start()

    @classmethod
    def open(cls, cfg, runner) -> BinanceAdapter:
        """The venue at [adapter] environment / rest_url with the key in [adapter] credentials; its clock
        measured and its rate limits read from exchangeInfo; the instruments from md's table."""
        a = cfg.adapter
        url = a.rest_url if a.environment == "custom" else REST_URLS[a.environment][a.market]
        try:
            if "/" in a.credentials:    # a path, relative to the config file's directory
                credentials = load_api_credentials(path=os.path.join(os.path.dirname(cfg.path or "."),
                                                                     a.credentials))
            else:                       # a systemd credential: $CREDENTIALS_DIRECTORY/<name>
                credentials = load_api_credentials(a.credentials)
        except CredentialsError as exc:     # names the file and the field, never a value: exit 2
            raise ServiceError(f"{exc} (adapter.credentials in {cfg.path or 'the config'})", EXIT_CONFIG) from None
        path = instruments_path(cfg.ring_name)
        table = runner.wait_for(f"md's instrument table {path}", lambda: _load_table(path))
        rest = BinanceRest(url, credentials, a.market, recv_window=a.recv_window_ms)
        last: list = []

        def attempt():
            try:
                info = rest.exchange_info()
                rest.limits = RateLimits.from_exchange_info(info)
                rest.clock.refresh()
                return True
            except (VenueError, OSError, ValueError, KeyError) as exc:
                last[:] = [exc]
                rest.close()
                return None
        runner.wait_for(f"Binance REST at {url}", attempt, hint=lambda: str(last[0]) if last else "")
        log.info("Binance %s at %s: clock offset %.1f ms (round trip %.1f ms), limits %r", a.market, url,
                 rest.clock.offset_ms, rest.clock.rtt_ms, rest.limits)
        return cls(rest, table, a.market)

    # -- the gateway's loop: never blocks -----------------------------------------------------------
    def send(self, order) -> bool:
        if self.rest.limits.halted is not None or order.action == OrderAction.AMEND:
            return False
        if order.action == OrderAction.NEW:
            self._instrument_of[(order.strategy_id, order.client_order_id)] = order.instrument_id
        self._queue.put(order)
        return True

    def poll(self) -> list:
        out = []
        while self._reports:
            out.append(self._reports.popleft())
        return out

    @property
    def halted(self) -> str | None:
        return self.rest.limits.halted

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self):
        while True:
            try:
                order = self._queue.get(timeout=self.clock_refresh_s)
            except queue.Empty:
                order = None
            try:
                if order is _STOP:
                    return
                if self.rest.clock.age_ms() > self.clock_refresh_s * 1000:
                    self._refresh_clock()
                if order is not None:
                    self._handle(order)
            except Exception:   # a bug must not kill the worker: the order it was on is logged
                log.exception("Binance worker: order %s failed", _label(order))
            finally:
                if order is not None:
                    self._queue.task_done()

    def _refresh_clock(self):
        try:
            with self._lock:
                self.rest.clock.refresh()
        except Exception as exc:    # the next signed request measures it again if it must
            log.warning("Binance server time not measured (%s); the old offset stays", type(exc).__name__)

    def _handle(self, order):
        if order.action == OrderAction.NEW:
            self._new(order)
        elif order.action == OrderAction.CANCEL:
            self._cancel(order.strategy_id, order.target_order_id, order.instrument_id)
        elif order.action == OrderAction.CANCEL_ALL:
            # Binance's DELETE openOrders would take other strategies' orders too: ours one by one
            for o in self.open_orders(order.instrument_id or None):
                if o.strategy_id == order.strategy_id:
                    self._cancel(o.strategy_id, o.client_order_id, o.instrument_id)

    def _new(self, order):
        key = (order.strategy_id, order.client_order_id)
        inst = self.table.get(order.instrument_id)
        if inst is None:
            return self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.UNKNOWN_INSTRUMENT))
        try:
            with self._lock:
                body = self.rest.new_order(order, inst)
        except ResultUnknown as exc:
            self.counts["unknown_results"] += 1
            log.warning("order %s/%s: %s; asking the venue for it", *key, exc)
            return self._resolve(inst, key)
        except (OrderRejected, RateLimited, Halted) as exc:
            decided = exc.decision.reject_code if exc.decision is not None else RejectCode.NONE
            code = RejectCode.RATE_LIMIT if isinstance(exc, RateLimited) else (decided or RejectCode.VENUE)
            log.warning("order %s/%s refused: %s", *key, exc)
            return self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=int(code)))
        except BinanceRestError as exc:         # unreachable: nothing was sent
            log.warning("order %s/%s not sent: %s", *key, exc)
            return self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.VENUE_UNAVAILABLE))
        self._reports_of(body, inst, key)

    def _resolve(self, inst, key):
        """An order whose result is unknown: what the venue has, asked by client order id; never resent."""
        for attempt in range(self.unknown_tries):
            if attempt:
                time.sleep(self.unknown_wait_s)
            try:
                with self._lock:
                    body = self.rest.order_status(inst.symbol, *key)
            except BinanceRestError as exc:
                log.warning("order %s/%s: its status could not be asked (%s)", *key, type(exc).__name__)
                if isinstance(exc, Halted):
                    break
                continue
            if body is not None:
                return self._reports_of(body, inst, key)
        self.counts["unknown_unresolved"] += 1
        log.warning("order %s/%s: the venue does not show it after %d asks; reported rejected (reconciliation "
                    "cancels it if it appears)", *key, self.unknown_tries)
        self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.VENUE_UNAVAILABLE))

    def _cancel(self, strategy_id, client_order_id, instrument_id):
        key = (strategy_id, client_order_id)
        inst = self.table.get(self._instrument_of.get(key, instrument_id))
        if inst is None:
            log.warning("cancel %s/%s: its instrument is not known here", *key)
            return
        try:
            with self._lock:
                body = self.rest.cancel_order(inst.symbol, *key)
        except (RateLimited, Halted) as exc:
            log.warning("cancel %s/%s not sent: %s", *key, exc)
            return
        except BinanceRestError as exc:       # refused (already closed?) or unknown: ask what it is now
            log.warning("cancel %s/%s: %s; asking the venue for the order", *key, exc)
            try:
                with self._lock:
                    body = self.rest.order_status(inst.symbol, *key)
            except BinanceRestError as exc2:
                log.warning("order %s/%s: its status could not be asked (%s)", *key, type(exc2).__name__)
                return
            if body is None:
                return
        self._reports_of(body, inst, key)

    def _reports_of(self, body, inst, key):
        self._ids_of[(inst.symbol, int(body["orderId"]))] = key
        self._instrument_of[key] = inst.instrument_id
        for rep in order_reports(body, inst, key):
            self._report(rep)

    def _report(self, rep: VenueReport):
        self._reports.append(rep)

    def settle(self, timeout_s: float = 10.0) -> bool:
        """Wait until the worker has sent (and had answered) every instruction already handed to send()."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- reconciliation: round trips to the venue ---------------------------------------------------
    def _instruments(self):
        return [i for i in self.table if i.market_type == self.market_type]

    def _inst(self, symbol):
        return self.table.by_symbol(symbol, self.market_type)

    def open_orders(self, instrument_id: int | None = None) -> list[VenueOrder]:
        inst = self.table.get(instrument_id) if instrument_id else None
        with self._lock:
            bodies = self.rest.open_orders(inst.symbol if inst else None)
        out = []
        for body in bodies:
            inst = self._inst(body.get("symbol"))
            if inst is None:
                continue            # a symbol md does not carry: not ours to reconcile
            try:
                o = venue_order(body, inst)
            except ForeignOrder:
                continue
            self._ids_of[(inst.symbol, o.venue_order_id)] = (o.strategy_id, o.client_order_id)
            self._instrument_of[(o.strategy_id, o.client_order_id)] = inst.instrument_id
            out.append(o)
        return out

    def order_status(self, strategy_id: int, client_order_id: int) -> VenueOrder | None:
        key = (strategy_id, client_order_id)
        known = self.table.get(self._instrument_of[key]) if key in self._instrument_of else None
        for inst in [known] if known is not None else self._instruments():
            with self._lock:
                body = self.rest.order_status(inst.symbol, *key)
            if body is not None:
                self._instrument_of[key] = inst.instrument_id
                return venue_order(body, inst, key)
        return None

    def fills_since(self, ts_ns: int) -> list[VenueFill]:
        """Our trades at or after ts_ns on every instrument of the table; balances() is taken right after."""
        fills = []
        for inst in self._instruments():
            with self._lock:
                trades = self.rest.my_trades(inst.symbol, ts_ns // 1_000_000)
            for trade in trades:
                ids = self._ids_of_order(inst, int(trade["orderId"]))
                if ids is not None:
                    fills.append(venue_fill(trade, inst, ids))
        with self._lock:
            self._balances = account_balances(self.rest.account())
        return sorted(fills, key=lambda f: (f.ts_ns, f.trade_id))

    def _ids_of_order(self, inst, order_id: int) -> tuple[int, int] | None:
        key = (inst.symbol, order_id)
        if key not in self._ids_of:
            with self._lock:             # a trade names only the venue's order id
                body = self.rest.order_by_id(inst.symbol, order_id)
            self._ids_of[key] = parse_client_order_id(body.get("clientOrderId")) if body is not None else None
        return self._ids_of[key]

    def balances(self) -> dict[str, int]:
        """As of the last fills_since (else now)."""
        if self._balances is None:
            with self._lock:
                self._balances = account_balances(self.rest.account())
        return dict(self._balances)

    def reachable(self) -> bool:
        try:
            with self._lock:
                self.rest.server_time()
            return True
        except BinanceRestError:
            return False

    def close(self):
        self._queue.put(_STOP)
        self._worker.join(timeout=10)
        self.rest.close()


def _load_table(path):
    try:
        return InstrumentTable.load(path)
    except (OSError, ValueError):
        return None


def _label(order) -> str:
    return f"{order.strategy_id}/{order.client_order_id}" if order is not None else "-"

