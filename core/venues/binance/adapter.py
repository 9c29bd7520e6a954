"""The gateway's Binance adapter (spot and USDT-M futures): orders over the WebSocket API or signed REST,
reports by poll().

The gateway's loop must never wait for the venue, so `send` only hands the instruction over. With
[adapter] order_entry = "ws" (the default) a NEW or CANCEL goes to the WebSocket API client
(wsapi.WsApiClient: its own io thread, one persistent connection, signed as it leaves); with "rest", or
while that connection is down, it goes on a queue that one worker thread sends over signed REST
(BinanceRest). Either way the answer becomes the same VenueReports (responses.order_reports), which
`poll` hands over. What may go wrong, the same on both paths (the WebSocket API refuses with REST's
HTTP statuses and codes):

    OrderRejected    a REJECTED report with the mapped reject code (a cancel: the order's state is asked)
    RateLimited      a REJECTED report with RejectCode.RATE_LIMIT: nothing was placed
    ResultUnknown    resolved by order_status(client order id) on the worker, asked again a few times while
                     the venue may not show it yet (-2013); never sent again
    Halted           (418, bad key or signature) this order REJECTED, and every later send() is False, so
                     the gateway rejects it (6002); RateLimits logged the halt once, at ERROR
    VenueUnreachable nothing left: over REST REJECTED with VENUE_UNAVAILABLE; over the WebSocket API it goes
                     the REST way instead (nothing was sent)

The user data stream (mode "ws") comes on the same connection: executionReport -> VenueReports
(user_stream.py), so a resting order's fills arrive as they happen; outboundAccountPosition ->
`stream_balances()`. A fill carries the venue's trade id on every path (the FULL answer, executionReport,
myTrades), and the adapter hands each (strategy, order, trade id) over once (the OMS dedups again). After
every (re)connect the client subscribes again first, then the worker reconciles the gap over REST: myTrades
since the stream was last live (less a margin) on the instruments of our open and in-flight orders, then
the status of each of those orders; what the stream missed is reported and counted (`gap_fills`).

Reconciliation (open_orders, order_status, fills_since, balances) asks the venue over REST, under the
same lock as the worker. Client order ids are ours, `t<strategy>-<cid>` (responses.encode_client_order_id),
so a venue order maps back to (strategy, client order id); a trade names only its orderId, which maps
through what this adapter sent or saw, else one lookup by orderId.

USDT-M futures ([adapter] market = "usdm") send orders over the futures WebSocket API (ws-fapi: order.place,
order.cancel, order.modify; the venue's clock over REST, as that API has no `time`) or, with order_entry "rest"
and while it is down, over signed REST on /fapi/v1 (GTX for post-only, reduceOnly); either way their user data
comes over a listen key (listen_key.ListenKeyStream: ORDER_TRADE_UPDATE -> VenueReports, ACCOUNT_UPDATE ->
`stream_balances()` / `stream_positions()`), whose (re)connects drive the same gap reconciliation (userTrades,
order status) as spot's. Futures answers (RESULT) never carry fills: the stream, userTrades or the fill poll
bring them.

AMEND (a resting order's new price and total quantity; the VenueReport that confirms it is ACCEPTED with the
new price and qty, which the OMS's _amended applies):
    usdm   order.modify (WebSocket API) or PUT /fapi/v1/order: the same orderId; its answer and the stream's
           AMENDMENT say the new values
    spot   order.cancelReplace (WebSocket API) or POST /api/v3/order/cancelReplace, STOP_ON_FAILURE: Binance
           cancels the order and places a new one with a NEW orderId. The new one takes our client order id
           again (`t<strategy>-<cid>`: Binance wants it unique among open orders only, and the old one is canceled
           first), so every later report, a restart's open orders and order status by client id still name our
           (strategy, cid). The new order is sent for the new total less what the old one filled; the adapter
           adds that back (`_base`) to every later qty / cum_qty of the new orderId, so the OMS sees one order.
           The old orderId's CANCELED (answer or executionReport) is not reported; stream reports of the new
           orderId that overtake the answer are held until it is read. A refused amend (the order filled
           meanwhile, a filter) reports the order as the venue has it: nothing changes in the OMS.
    An amend's result that is unknown is resolved by order status like a new order's.

Not here yet: CANCEL_ALL lists the open orders over REST before canceling ours one by one. Without a live
user data stream (order_entry "rest" on spot, or the stream down) the worker asks for our live orders' fills
every FILL_POLL_S (myTrades since the last poll, then their status): seconds late, where the stream is at
once. An order on an instrument of another market (a perpetual on the spot adapter) is rejected, never sent.
What the spot amend adds back to the new order (`_base`) is kept in memory only: after a restart a spot order
amended while partially filled shows the venue's own quantities (the new order's). Futures: one-way position
mode and the account's own margin mode are assumed (hedge mode's positionSide is not sent).
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import os
import queue
import threading
import time

from ttquant.core.daemon.runner import EXIT_CONFIG, ServiceError
from ttquant.core.instruments import InstrumentTable, MarketType, instruments_path
from ttquant.core.records import Order, OrderAction, OrderStatus, OrderType, RejectCode
from ttquant.core.venues.base import VenueAdapter, VenueError, VenueFill, VenueOrder, VenueReport
from ttquant.core.venues.binance.credentials import CredentialsError, load_api_credentials
from ttquant.core.venues.binance.listen_key import LISTEN_KEY_STREAM_URLS, ListenKeyStream
from ttquant.core.venues.binance.rate_limits import RateLimits
from ttquant.core.venues.binance.responses import (
    ForeignOrder,
    ResponseError,
    _raw,
    account_balances,
    encode_client_order_id,
    order_reports,
    parse_client_order_id,
    venue_fill,
    venue_order,
)
from ttquant.core.venues.binance.responses import order_status as body_status
from ttquant.core.venues.binance.rest import (
    BinanceRest,
    BinanceRestError,
    Halted,
    OrderRejected,
    RateLimited,
    ResultUnknown,
    VenueUnreachable,
    amend_params,
    order_params,
)
from ttquant.core.venues.binance.user_stream import UserDataReader
from ttquant.core.venues.binance.wsapi import WsApiClient

__all__ = ["BinanceAdapter", "REST_URLS", "WS_API_URLS"]

log = logging.getLogger("ttquant.venues.binance")

# [adapter] environment -> market -> REST base URL
REST_URLS = {
    "live": {"spot": "https://api.binance.com", "usdm": "https://fapi.binance.com"},
    "testnet": {"spot": "https://testnet.binance.vision", "usdm": "https://testnet.binancefuture.com"},
}
# [adapter] environment -> market -> WebSocket API URL
WS_API_URLS = {
    "live": {"spot": "wss://ws-api.binance.com:443/ws-api/v3", "usdm": "wss://ws-fapi.binance.com/ws-fapi/v1"},
    "testnet": {"spot": "wss://ws-api.testnet.binance.vision/ws-api/v3",
                "usdm": "wss://testnet.binancefuture.com/ws-fapi/v1"},
}
_MARKET_TYPES = {"spot": MarketType.SPOT, "usdm": MarketType.LINEAR_PERPETUAL}
WS_CONNECT_WAIT_S = 5.0         # open() waits this long for the WebSocket API; REST carries orders meanwhile
GAP_MARGIN_MS = 10_000          # myTrades after a reconnect from this long before the stream was lost
FILLS_REMEMBERED = 100_000      # (strategy, order, trade id) handed over, kept to hand each over once
_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})
CLOCK_REFRESH_S = 300.0         # the server-time offset is measured again this often (drift, not steps)
FILL_POLL_S = 2.0               # without a live user data stream, our live orders' fills are asked this often
UNKNOWN_TRIES = 5               # order_status asked this often for an order whose result is unknown ...
UNKNOWN_WAIT_S = 0.2            # ... this far apart (the venue may not show a new order for a moment)
_STOP = object()


class _Resolve:
    """Worker task: an order whose result is unknown (or a cancel refused): what does the venue have?"""
    __slots__ = ("inst", "key", "unknown")

    def __init__(self, inst, key, unknown):
        self.inst, self.key, self.unknown = inst, key, unknown


class _AmendUnknown:
    """Worker task: a spot cancelReplace whose result is unknown: which order does the venue have now?"""
    __slots__ = ("inst", "key", "old_id", "filled")

    def __init__(self, inst, key, old_id, filled):
        self.inst, self.key, self.old_id, self.filled = inst, key, old_id, filled


class _Gap:
    """Worker task: what the user data stream may have missed since since_ms (venue time)."""
    __slots__ = ("since_ms", "instruments")

    def __init__(self, since_ms, instruments):
        self.since_ms, self.instruments = since_ms, instruments


class BinanceAdapter(VenueAdapter):
    name = "binance"
    threaded = True             # the REST worker and the io threads: the gateway must leave them the GIL

    def __init__(self, rest: BinanceRest, table: InstrumentTable, market: str = "spot",
                 clock_refresh_s: float = CLOCK_REFRESH_S, unknown_tries: int = UNKNOWN_TRIES,
                 unknown_wait_s: float = UNKNOWN_WAIT_S, ws: WsApiClient | None = None,
                 fill_poll_s: float = FILL_POLL_S, stream: ListenKeyStream | None = None):
        """`ws`: the WebSocket API client for order entry (and, spot, the user data stream); `stream`: the listen
        key's user data stream (usdm). Neither started: the adapter sets the callbacks and starts them. Neither
        given: signed REST only, fills polled."""
        self.rest, self.table, self.market = rest, table, market
        self.market_type = _MARKET_TYPES[market]
        self.clock_refresh_s, self.unknown_tries, self.unknown_wait_s = clock_refresh_s, unknown_tries, unknown_wait_s
        self.fill_poll_s = fill_poll_s
        self._lock = threading.Lock()                       # one request at a time on rest's connection
        self._queue: queue.Queue = queue.Queue()
        self._reports: collections.deque[VenueReport] = collections.deque()   # worker appends, poll pops
        self._instrument_of: dict[tuple[int, int], int] = {}    # (strategy, cid) -> instrument id
        self._ids_of: dict[tuple[str, int], tuple[int, int]] = {}  # (symbol, orderId) -> (strategy, cid)
        self._balances: dict[str, int] | None = None
        self.counts = collections.Counter()
        self._live: dict[tuple[int, int], int] = {}     # orders sent and not known to have ended -> instrument
        self._fills_seen: set = set()                   # (strategy, cid, trade id) handed over ...
        self._fills_order: collections.deque = collections.deque()    # ... oldest first, to forget the oldest
        self._report_lock = threading.Lock()
        self._ws_lock = threading.Lock()
        self._ws_in_flight = 0                          # order requests on the WebSocket API not answered yet
        self.user_data = UserDataReader(table, self.market_type)
        self._gap_since_ms: int | None = self._venue_ms()  # the stream is not live yet: from now on it is a gap
        self._gap_instruments: set[int] = set()
        self._ended_unfilled: set[int] = set()      # instruments of orders that ended filled while no stream ran
        # amends: the original order type, what filled, the venue's current orderId (cancelReplace changes it)
        self._order_type_of: dict[tuple[int, int], int] = {}
        self._cum: dict[tuple[int, int], int] = {}
        self._venue_id_of: dict[tuple[int, int], int] = {}
        self._amend_lock = threading.Lock()
        self._amending: dict[tuple[int, int], int] = {}     # spot cancelReplace in flight: key -> old orderId
        self._held: dict[tuple[int, int], list] = {}        # stream reports of the new orderId, held meanwhile
        self._replaced: set[tuple[int, int, int]] = set()   # (strategy, cid, old orderId): its CANCELED not said
        self._base: dict[tuple[int, int, int], int] = {}    # (strategy, cid, new orderId) -> what the old filled
        self.ws = ws
        self.stream = stream if stream is not None else ws     # what carries the user data, if anything
        self._worker = threading.Thread(target=self._run, name="binance-orders", daemon=True)
        self._worker.start()
        if self.stream is not None:
            self.stream.on_event, self.stream.on_connected, self.stream.on_disconnected = \
                self._on_event, self._on_connected, self._on_disconnected
            if self.stream is ws:
                ws.subscribe_user_data()
            self.stream.start()
        if ws is not None and ws is not self.stream:      # order entry only (usdm): a drop sends orders the REST way
            ws.start()

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
        log.info("Binance %s at %s: its clock %+.1f ms from ours (round trip %.1f ms), limits %r", a.market, url,
                 rest.clock.wall_offset_ms(), rest.clock.rtt_ms, rest.limits)
        ws = stream = None
        if a.market == "usdm":      # futures user data comes over a listen key, whichever way orders go
            stream_url = a.user_stream_url if a.environment == "custom" else LISTEN_KEY_STREAM_URLS[a.environment]
            stream = ListenKeyStream(BinanceRest(url, credentials, a.market, clock=rest.clock, limits=rest.limits,
                                                 recv_window=a.recv_window_ms), stream_url)
        if a.order_entry == "ws":
            ws_url = a.ws_api_url if a.environment == "custom" else WS_API_URLS[a.environment][a.market]
            # the futures WebSocket API has no `time`: the clock is read over a REST connection of its own
            server_time = BinanceRest(url, credentials, a.market, clock=rest.clock, limits=rest.limits).server_time \
                if a.market == "usdm" else None
            ws = WsApiClient(ws_url, credentials, rest.clock, rest.limits, recv_window_ms=a.recv_window_ms,
                             market=a.market, server_time=server_time)
        adapter = cls(rest, table, a.market, ws=ws, stream=stream)
        if ws is not None and not ws.wait_connected(WS_CONNECT_WAIT_S):
            log.warning("Binance WebSocket API at %s not connected yet: orders go over REST until it is", ws.url)
        if stream is not None and not stream.wait_connected(WS_CONNECT_WAIT_S):
            log.warning("Binance user data stream at %s not connected yet: fills are polled until it is",
                        stream.stream_url)
        return adapter

    # -- the gateway's loop: never blocks -----------------------------------------------------------
    def send(self, order) -> bool:
        if self.rest.limits.halted is not None:
            return False
        if order.action == OrderAction.NEW:
            key = (order.strategy_id, order.client_order_id)
            inst = self.table.get(order.instrument_id)
            if inst is None or inst.market_type != self.market_type:
                # another market's instrument (a perpetual on the spot adapter): same symbol, other book
                self.counts["other_market"] += inst is not None
                self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.UNKNOWN_INSTRUMENT))
                return True
            self._instrument_of[key] = self._live[key] = order.instrument_id
            self._order_type_of[key] = order.order_type
            if self._gap_since_ms is not None:
                self._gap_instruments.add(order.instrument_id)
            if self.ws is not None and self.ws.connected and self._ws_new(order):
                return True
        elif order.action == OrderAction.CANCEL and self.ws is not None and self.ws.connected:
            key = (order.strategy_id, order.target_order_id)
            inst = self.table.get(self._instrument_of.get(key, order.instrument_id))
            if inst is not None:
                self._ws_cancel(inst, key)
                return True
        elif order.action == OrderAction.AMEND and self.ws is not None and self.ws.connected:
            key = (order.strategy_id, order.target_order_id)
            inst = self.table.get(self._instrument_of.get(key, order.instrument_id))
            if inst is not None and self._ws_amend(order, inst):
                return True
        self._queue.put(order)
        return True

    def poll(self) -> list:
        out = []
        while self._reports:
            out.append(self._reports.popleft())
        return out

    def order_rate(self) -> tuple[float, float] | None:
        """From exchangeInfo's ORDERS and REQUEST_WEIGHT limits (RateLimits.order_rate), kept under its safety share."""
        rate, burst = self.rest.limits.order_rate()
        return None if rate == float("inf") or rate <= 0 else (rate, burst)

    @property
    def halted(self) -> str | None:
        return self.rest.limits.halted

    # -- the worker ---------------------------------------------------------------------------------
    def _run(self):
        polled_ms = None            # venue time of the last fill poll (no live user data stream)
        while True:
            try:
                order = self._queue.get(timeout=min(self.clock_refresh_s, self.fill_poll_s))
            except queue.Empty:
                order = None
            try:
                if order is _STOP:
                    return
                if self.rest.clock.age_ms() > self.clock_refresh_s * 1000:
                    self._refresh_clock()
                if order is not None:
                    self._handle(order)
                polled_ms = self._poll_fills(polled_ms)
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
        if isinstance(order, _Resolve):
            return self._resolve(order.inst, order.key) if order.unknown else self._ask_status(order.inst, order.key)
        if isinstance(order, _Gap):
            return self._reconcile_gap(order)
        if isinstance(order, _AmendUnknown):
            return self._resolve_amend(order.inst, order.key, order.old_id, order.filled)
        if order.action == OrderAction.NEW:
            self._new(order)
        elif order.action == OrderAction.CANCEL:
            self._cancel(order.strategy_id, order.target_order_id, order.instrument_id)
        elif order.action == OrderAction.AMEND:
            self._amend(order)
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
        except ValueError as exc:               # not expressible on Binance (a side, reduce-only on spot)
            log.warning("order %s/%s not sent: %s", *key, exc)
            return self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.BAD_FIELD))
        except BinanceRestError as exc:
            return self._on_new_answer(inst, key, None, exc, on_worker=True)
        self._on_new_answer(inst, key, body, None, on_worker=True)

    def _on_new_answer(self, inst, key, body, exc, on_worker):
        """A new order's answer, from REST (worker) or the WebSocket API (io thread, which must not wait)."""
        if exc is None:
            return self._reports_of(body, inst, key)
        if isinstance(exc, ResultUnknown):
            self.counts["unknown_results"] += 1
            log.warning("order %s/%s: %s; asking the venue for it", *key, exc)
            return self._resolve(inst, key) if on_worker else self._queue.put(_Resolve(inst, key, True))
        if isinstance(exc, (OrderRejected, RateLimited, Halted)):
            decided = exc.decision.reject_code if exc.decision is not None else RejectCode.NONE
            code = RejectCode.RATE_LIMIT if isinstance(exc, RateLimited) else (decided or RejectCode.VENUE)
            log.warning("order %s/%s refused: %s", *key, exc)
            return self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=int(code)))
        log.warning("order %s/%s not sent: %s", *key, exc)     # unreachable: nothing was sent
        self._report(VenueReport(*key, OrderStatus.REJECTED, reject_code=RejectCode.VENUE_UNAVAILABLE))

    # -- AMEND: futures modify, spot cancelReplace (module docstring) --------------------------------------
    def _amend_request(self, order, inst):
        """(key, params, the venue's orderId now, what filled) of an AMEND; None when Binance cannot express it."""
        key = (order.strategy_id, order.target_order_id)
        order_type = self._order_type_of.get(key) or order.order_type or OrderType.LIMIT
        filled, old_id = self._cum.get(key, 0), self._venue_id_of.get(key, 0)
        try:
            params = amend_params(order, inst, self.market, order_type, filled, old_id)
        except ValueError as exc:
            self.counts["amends_not_sent"] += 1
            log.warning("amend of %s/%s not sent: %s", *key, exc)
            return None
        return key, params, old_id, filled

    def _amend(self, order):
        key = (order.strategy_id, order.target_order_id)
        inst = self.table.get(self._instrument_of.get(key, order.instrument_id))
        if inst is None:
            return log.warning("amend %s/%s: its instrument is not known here", *key)
        if self.market == "spot" and key not in self._venue_id_of:
            self._ask_status(inst, key)     # its orderId, so that the replaced order's cancel can be told apart
        if self.ws is not None and self.ws.connected and self._ws_amend(order, inst):
            return
        req = self._amend_request(order, inst)
        if req is None:
            return
        key, params, old_id, filled = req
        self._begin_amend(key, old_id)
        try:
            with self._lock:
                body = self.rest.amend_order(params)
        except BinanceRestError as exc:
            return self._on_amend_answer(inst, key, old_id, filled, None, exc, on_worker=True)
        self._on_amend_answer(inst, key, old_id, filled, body, None, on_worker=True)

    def _ws_amend(self, order, inst) -> bool:
        """order.cancelReplace (spot) or order.modify (usdm) on the WebSocket API; False when the worker must
        take it (spot: the orderId is not known yet)."""
        if self.market == "spot" and (order.strategy_id, order.target_order_id) not in self._venue_id_of:
            return False
        req = self._amend_request(order, inst)
        if req is None:
            return True
        key, params, old_id, filled = req
        self._begin_amend(key, old_id)

        def on_answer(body, exc):
            if isinstance(exc, VenueUnreachable):   # nothing left: the worker sends it over REST
                self._end_amend(key, old_id, replaced=False)
                self.counts["ws_fallbacks"] += 1
                return self._queue.put(order)
            self._on_amend_answer(inst, key, old_id, filled, body, exc, on_worker=False)
        self.counts["ws_amends"] += 1
        self._ws_submit("order.cancelReplace" if self.market == "spot" else "order.modify", dict(params), on_answer)
        return True

    def _begin_amend(self, key, old_id):
        if self.market != "spot":
            return          # futures modify keeps the orderId: nothing to tell apart
        with self._amend_lock:
            self._amending[key] = old_id
            self._held.setdefault(key, [])
            if old_id:
                self._replaced.add((*key, old_id))

    def _end_amend(self, key, old_id, replaced: bool):
        """The amend's answer is read: reports held meanwhile go out; a replace that did not happen lets the old
        orderId's own reports (a cancel of ours) through again."""
        with self._amend_lock:
            self._amending.pop(key, None)
            held = self._held.pop(key, [])
            if not replaced:
                self._replaced.discard((*key, old_id))
        for rep in held:
            self._report(rep)

    def _on_amend_answer(self, inst, key, old_id, filled, body, exc, on_worker):
        if exc is None:
            try:
                if self.market == "spot":
                    self._replaced_by(inst, key, body["cancelResponse"], body["newOrderResponse"])
                else:
                    self._reports_of(body, inst, key)
            except (KeyError, TypeError, ValueError) as bad:
                log.error("amend %s/%s: an answer we cannot read (%s); asking the venue for the order", *key, bad)
                self._end_amend(key, old_id, replaced=False)
                return self._ask_status(inst, key) if on_worker else self._queue.put(_Resolve(inst, key, False))
            self.counts["amends"] += 1
            return self._end_amend(key, old_id, replaced=True)
        if isinstance(exc, ResultUnknown):
            self.counts["unknown_results"] += 1
            log.warning("amend %s/%s: %s; asking the venue for the order", *key, exc)
            if self.market == "usdm":
                return self._ask_status(inst, key) if on_worker else self._queue.put(_Resolve(inst, key, False))
            task = _AmendUnknown(inst, key, old_id, filled)
            return self._resolve_amend(inst, key, old_id, filled) if on_worker else self._queue.put(task)
        self._end_amend(key, old_id, replaced=False)
        self.counts["amends_refused"] += 1
        log.warning("amend %s/%s refused: %s; the order stays as the venue has it", *key, exc)
        decided = exc.decision.reject_code if getattr(exc, "decision", None) is not None else RejectCode.NONE
        code = RejectCode.RATE_LIMIT if isinstance(exc, RateLimited) else (decided or RejectCode.VENUE)
        # a status other than REJECTED with a reject code: the amend refused, the order as it was (base.VenueReport)
        self._report(VenueReport(*key, OrderStatus.ACCEPTED, reject_code=int(code)))
        if not isinstance(exc, (RateLimited, Halted)):     # refused for the order's state: say what it is now
            return self._ask_status(inst, key) if on_worker else self._queue.put(_Resolve(inst, key, False))

    def _replaced_by(self, inst, key, cancel, new):
        """A cancelReplace done: the new orderId is our order from now on, its quantities counted on top of what
        the orders before it filled; the amend confirmed (ACCEPTED with the new price and qty) before its fills."""
        old_id, new_id = int(cancel["orderId"]), int(new["orderId"])
        base = self._base.get((*key, old_id), 0) + _raw(cancel, "executedQty", inst.size_precision)
        self._adopt(inst, key, old_id, new_id, base)
        ts = int(new.get("transactTime") or 0) * 1_000_000
        self._report(VenueReport(*key, OrderStatus.ACCEPTED, venue_order_id=new_id, cum_qty=0, ts_exchange=ts,
                                 price=_raw(new, "price", inst.price_precision),
                                 qty=_raw(new, "origQty", inst.size_precision)))
        self._reports_of(new, inst, key)

    def _adopt(self, inst, key, old_id, new_id, base):
        with self._amend_lock:
            self._replaced.add((*key, old_id))
            if base:
                self._base[(*key, new_id)] = base
        self._venue_id_of[key] = new_id
        self._ids_of[(inst.symbol, new_id)] = key

    def _resolve_amend(self, inst, key, old_id, filled):
        """A cancelReplace whose answer never came: the order by our client id is the new one when it took place
        (Binance answers with the latest order of that id), else the old one as it is now."""
        try:
            body = self._status_after_unknown(inst, key, "amend")
            if body is None:
                return log.warning("amend %s/%s: the venue does not show the order", *key)
            new_id = int(body["orderId"])
            if old_id and new_id != old_id:
                self._adopt(inst, key, old_id, new_id, filled)
                self._report(VenueReport(*key, OrderStatus.ACCEPTED, venue_order_id=new_id, cum_qty=0,
                                         price=_raw(body, "price", inst.price_precision),
                                         qty=_raw(body, "origQty", inst.size_precision)))
                self._end_amend(key, old_id, replaced=True)
                return self._reports_of(body, inst, key)
            self._end_amend(key, old_id, replaced=False)
            return self._reports_of(body, inst, key)
        finally:
            if key in self._amending:
                self._end_amend(key, old_id, replaced=False)

    # -- the WebSocket API: submitted from the gateway's loop, answered on the client's io thread ----
    def _ws_submit(self, method, params, on_answer):
        with self._ws_lock:
            self._ws_in_flight += 1

        def answered(status, body, exc):
            try:
                on_answer(body, exc)
            except Exception:       # a bug must not be lost on the io thread
                log.exception("Binance %s: its answer could not be handled", method)
            finally:
                with self._ws_lock:
                    self._ws_in_flight -= 1
        self.ws.submit(method, params, answered)

    def _ws_new(self, order) -> bool:
        """order.place on the WebSocket API; False when it must go the REST way (which reports the refusal)."""
        key = (order.strategy_id, order.client_order_id)
        inst = self.table.get(order.instrument_id)
        if inst is None:
            return False
        try:
            params = dict(order_params(order, inst, self.market))
        except ValueError:
            return False

        def on_answer(body, exc):
            if isinstance(exc, VenueUnreachable):   # the connection went before it left: REST takes it
                self.counts["ws_fallbacks"] += 1
                return self._queue.put(order)
            self._on_new_answer(inst, key, body, exc, on_worker=False)
        self.counts["ws_orders"] += 1
        self._ws_submit("order.place", params, on_answer)
        return True

    def _ws_cancel(self, inst, key):
        def on_answer(body, exc):
            if exc is None:
                return self._reports_of(body, inst, key)
            if isinstance(exc, VenueUnreachable):
                self.counts["ws_fallbacks"] += 1
                return self._queue.put(Order(ts_created=time.time_ns(), strategy_id=key[0], target_order_id=key[1],
                                             instrument_id=inst.instrument_id, action=OrderAction.CANCEL))
            if isinstance(exc, (RateLimited, Halted)):
                return log.warning("cancel %s/%s not sent: %s", *key, exc)
            log.warning("cancel %s/%s: %s; asking the venue for the order", *key, exc)
            self._queue.put(_Resolve(inst, key, False))
        self._ws_submit("order.cancel", {"symbol": inst.symbol,
                                         "origClientOrderId": encode_client_order_id(*key)}, on_answer)

    def _on_event(self, event):
        symbol = event.get("s") or (event.get("o") or {}).get("s")     # spot executionReport / ORDER_TRADE_UPDATE
        for rep in self.user_data.on_event(event):
            key = (rep.strategy_id, rep.client_order_id)
            inst = self.table.get(self._instrument_of.get(key, 0)) or self._inst(symbol)
            if inst is not None:
                if (*key, rep.venue_order_id) not in self._replaced:
                    self._ids_of[(inst.symbol, rep.venue_order_id)] = key
                self._instrument_of[key] = inst.instrument_id
            with self._amend_lock:
                old_id = self._amending.get(key)
                if old_id is not None and rep.venue_order_id != old_id:
                    self._held[key].append(rep)     # the new order's, ahead of the cancelReplace answer
                    continue
            self._report(rep)

    def _on_disconnected(self, reason):
        if self._gap_since_ms is None:
            self._gap_since_ms = self._venue_ms()
            self._gap_instruments = set(self._live.values())
        self.counts["ws_disconnects"] += 1
        log.warning("Binance user data stream lost (%s): %s", reason, "orders go over REST until the WebSocket API "
                    "is back" if self.stream is self.ws else "fills are polled until it is back")

    def _on_connected(self):
        """Subscribed again: the worker reconciles what the stream may have missed meanwhile."""
        since, self._gap_since_ms = self._gap_since_ms, None
        if since is None:       # a stream that ended under a live connection (eventStreamTerminated)
            since = self._venue_ms()
        instruments, self._gap_instruments = self._gap_instruments | set(self._live.values()), set()
        self._queue.put(_Gap(since, instruments))

    def _venue_ms(self) -> int:
        clock = self.rest.clock
        return clock.timestamp_ms() if clock.offset_ms is not None else int(time.time() * 1000)

    def _poll_fills(self, polled_ms):
        """Without a live user data stream (order_entry "rest", or the WebSocket API down), a resting order's
        fills would reach the gateway only at its end or a restart: ask for our live orders' every fill_poll_s."""
        if self.stream is not None and self.stream.connected:
            return None
        now_ms = self._venue_ms()
        if not self._live and not self._ended_unfilled:
            return now_ms
        if polled_ms is None:
            polled_ms = self._gap_since_ms if self._gap_since_ms is not None else now_ms - self.fill_poll_s * 1000
        if now_ms - polled_ms < self.fill_poll_s * 1000:
            return polled_ms
        self.counts["fill_polls"] += 1
        instruments, self._ended_unfilled = set(self._live.values()) | self._ended_unfilled, set()
        self._reconcile_gap(_Gap(int(polled_ms), instruments), quiet=True)
        return now_ms

    def _reconcile_gap(self, gap: _Gap, quiet: bool = False):
        """myTrades since the gap began on its instruments, then the status of every order still live (quiet:
        a routine poll, which asks only of orders it found new fills for, each status costing weight)."""
        missed = asked = 0
        filled_keys = set()
        start_ms = max(gap.since_ms - GAP_MARGIN_MS, 0)
        for iid in sorted(gap.instruments):
            inst = self.table.get(iid)
            if inst is None:
                continue
            try:
                with self._lock:
                    trades = self.rest.my_trades(inst.symbol, start_ms)
                fills = [(int(t["orderId"]), venue_fill(t, inst, ids)) for t in trades
                         if (ids := self._ids_of_order(inst, int(t["orderId"]))) is not None]
            except BinanceRestError as exc:
                self.counts["gap_errors"] += 1
                log.warning("user data gap on %s: myTrades not asked (%s)", inst.symbol, exc)
                continue
            for order_id, f in fills:
                if quiet and (f.strategy_id, f.client_order_id, f.trade_id) not in self._fills_seen:
                    filled_keys.add((f.strategy_id, f.client_order_id))
                missed += self._report(VenueReport(
                    f.strategy_id, f.client_order_id, OrderStatus.PARTIALLY_FILLED, venue_order_id=order_id,
                    last_price=f.price, last_qty=f.qty, fee=f.fee, liquidity=f.liquidity, ts_exchange=f.ts_ns,
                    trade_id=f.trade_id))
        for key, iid in list(self._live.items()):
            inst = self.table.get(iid)
            if inst is None or (quiet and key not in filled_keys):
                continue
            asked += 1
            try:
                with self._lock:
                    body = self.rest.order_status(inst.symbol, *key)
            except BinanceRestError as exc:
                self.counts["gap_errors"] += 1
                log.warning("user data gap: order %s/%s not asked (%s)", *key, exc)
                continue
            if body is not None:
                self._reports_of(body, inst, key)
        if quiet:                   # a routine poll: only what it found is worth a line
            self.counts["polled_fills"] += missed
            if missed:
                log.info("fill poll: %d fills of live orders, %d orders asked", missed, asked)
            return
        self.counts["gap_reconciles"] += 1
        self.counts["gap_fills"] += missed
        log.log(logging.WARNING if missed else logging.INFO, "user data gap from %d ms reconciled: %d fills the "
                "stream missed, %d orders asked", start_ms, missed, asked)

    def _status_after_unknown(self, inst, key, what: str):
        """The order by our client order id, asked a few times while the venue may not show it yet (-2013);
        None when it never did (or order entry halted)."""
        for attempt in range(self.unknown_tries):
            if attempt:
                time.sleep(self.unknown_wait_s)
            try:
                with self._lock:
                    body = self.rest.order_status(inst.symbol, *key)
            except BinanceRestError as exc:
                log.warning("%s %s/%s: its status could not be asked (%s)", what, *key, type(exc).__name__)
                if isinstance(exc, Halted):
                    return None
                continue
            if body is not None:
                return body
        return None

    def _resolve(self, inst, key):
        """An order whose result is unknown: what the venue has, asked by client order id; never resent."""
        body = self._status_after_unknown(inst, key, "order")
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
        if self.ws is not None and self.ws.connected:
            return self._ws_cancel(inst, key)
        try:
            with self._lock:
                body = self.rest.cancel_order(inst.symbol, *key)
        except (RateLimited, Halted) as exc:
            log.warning("cancel %s/%s not sent: %s", *key, exc)
            return
        except BinanceRestError as exc:       # refused (already closed?) or unknown: ask what it is now
            log.warning("cancel %s/%s: %s; asking the venue for the order", *key, exc)
            return self._ask_status(inst, key)
        self._reports_of(body, inst, key)

    def _ask_status(self, inst, key):
        try:
            with self._lock:
                body = self.rest.order_status(inst.symbol, *key)
        except BinanceRestError as exc:
            log.warning("order %s/%s: its status could not be asked (%s)", *key, type(exc).__name__)
            return
        if body is not None:
            self._reports_of(body, inst, key)

    def _reports_of(self, body, inst, key):
        self._ids_of[(inst.symbol, int(body["orderId"]))] = key
        self._instrument_of[key] = inst.instrument_id
        for rep in order_reports(body, inst, key):
            self._report(rep)
        if body_status(body) in _TERMINAL:     # ended, though the report (FILLED without its trades) may not say
            self._live.pop(key, None)
            if self.market == "usdm" and not (self.stream is not None and self.stream.connected) and \
                    _filled(body, inst):
                self._ended_unfilled.add(inst.instrument_id)   # a futures answer names no trades: the poll asks

    def _report(self, rep: VenueReport) -> bool:
        """Hand a report over; a fill (strategy, order, trade id) only once. True when handed over."""
        key = (rep.strategy_id, rep.client_order_id)
        ident = (*key, rep.venue_order_id)
        replaced = rep.venue_order_id and ident in self._replaced
        if replaced and not rep.last_qty:
            self.counts["replaced_reports"] += 1    # the order a cancelReplace took the place of: not our cancel
            return False
        base = self._base.get(ident) if rep.venue_order_id else None
        if base:
            rep = dataclasses.replace(rep, qty=rep.qty + base if rep.qty else 0,
                                      cum_qty=rep.cum_qty + base if rep.cum_qty >= 0 else -1)
        if rep.last_qty and rep.trade_id:
            fill = (*key, rep.trade_id)
            with self._report_lock:
                if fill in self._fills_seen:
                    self.counts["duplicate_fills"] += 1
                    return False
                self._fills_seen.add(fill)
                self._fills_order.append(fill)
                if len(self._fills_order) > FILLS_REMEMBERED:
                    self._fills_seen.discard(self._fills_order.popleft())
        if rep.venue_order_id and not replaced:
            self._venue_id_of[key] = rep.venue_order_id
        if rep.cum_qty >= 0:
            self._cum[key] = max(self._cum.get(key, 0), rep.cum_qty)
        elif rep.last_qty:
            self._cum[key] = self._cum.get(key, 0) + rep.last_qty
        if rep.status in _TERMINAL:
            self._live.pop(key, None)
        self._reports.append(rep)
        return True

    def stream_balances(self) -> dict[str, int]:
        """The account as the user data stream last said it (outboundAccountPosition), over the balances
        the last reconciliation took: live, but not tied to the fills handed over (balances() is)."""
        return {**(self._balances or {}), **self.user_data.balances}

    def stream_positions(self) -> dict[int, int]:
        """Instrument id -> signed position (raw size units), as the futures stream's ACCOUNT_UPDATE last said."""
        return dict(self.user_data.positions)

    def positions(self) -> dict[int, int]:
        """Instrument id -> signed position (raw size units) of every futures position md carries (positionRisk)."""
        if self.market != "usdm":
            return {}
        with self._lock:
            rows = self.rest.position_risk()
        out = {}
        for row in rows:
            inst = self._inst(row.get("symbol"))
            if inst is not None and row.get("positionSide", "BOTH") == "BOTH":
                out[inst.instrument_id] = _raw(row, "positionAmt", inst.size_precision)
        return out

    def settle(self, timeout_s: float = 10.0) -> bool:
        """Wait until every instruction already handed to send() was sent and answered (or resolved)."""
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks or self._ws_in_flight:
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
                o = self._rebased(venue_order(body, inst))
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
                return self._rebased(venue_order(body, inst, key))
        return None

    def _rebased(self, o: VenueOrder) -> VenueOrder:
        """A spot order that replaced ours (cancelReplace): its quantities on top of what the ones before filled."""
        base = self._base.get((o.strategy_id, o.client_order_id, o.venue_order_id))
        return dataclasses.replace(o, qty=o.qty + base, cum_qty=o.cum_qty + base) if base else o

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
        for client in (self.stream, self.ws if self.ws is not self.stream else None):
            if client is not None:
                client.close()
        self._queue.put(_STOP)
        self._worker.join(timeout=10)
        self.rest.close()


def _load_table(path):
    try:
        return InstrumentTable.load(path)
    except (OSError, ValueError):
        return None


def _filled(body, inst) -> bool:
    try:
        return _raw(body, "executedQty", inst.size_precision) > 0
    except ResponseError:
        return False


def _label(order) -> str:
    if isinstance(order, _Resolve):
        return f"{order.key[0]}/{order.key[1]}"
    return f"{order.strategy_id}/{order.client_order_id}" if order is not None and hasattr(order, "strategy_id") \
        else type(order).__name__

