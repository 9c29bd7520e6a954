"""The simulated venue's Binance spot order entry: signed REST `/api/v3` and, through the same handlers,
the WebSocket API (core/sim/binance_wsapi.py), answered in Binance's shapes; the user data events. And what
every market's order entry shares (USDT-M futures: core/sim/binance_futures.py): BinanceOrderEntry (symbols,
matcher, the REST / WebSocket API path, the record) and VenueGate (clock, weight and order counters, ban,
order faults: one for the whole venue, as Binance counts per IP).

    POST   /api/v3/order        LIMIT (GTC / IOC / FOK), MARKET, LIMIT_MAKER; newClientOrderId;
                                newOrderRespType ACK / RESULT / FULL (default FULL for LIMIT and MARKET, else ACK)
    DELETE /api/v3/order        by orderId or origClientOrderId         unknown -> -2011 "Unknown order sent."
    GET    /api/v3/order        by orderId or origClientOrderId         unknown -> -2013 "Order does not exist."
    POST   /api/v3/order/cancelReplace   cancelReplaceMode STOP_ON_FAILURE / ALLOW_FAILURE: 200, or 400 -2022 /
                                409 -2021 with {"cancelResult", "newOrderResult", "cancelResponse", "newOrderResponse"}
    GET    /api/v3/openOrders   [symbol]
    DELETE /api/v3/openOrders   symbol                                  none open -> -2011
    GET    /api/v3/account      balances: free and locked (what open orders hold)
    GET    /api/v3/myTrades     symbol [orderId] [startTime] [endTime] [fromId] [limit]
    GET    /api/v3/time         not signed

REST and the WebSocket API share one path (BinanceOrderEntry, the futures' too): `request` (REST: weight,
signature by check_signed) and the WebSocket API (weight, signature by check_ws_params) both end in
`execute(method, endpoint, params)`, which gives an `Answer` (status, body, and what the transport must do:
drop, delay, Retry-After). Every signed request passes core/sim/binance_auth first (key, timestamp,
recvWindow, signature: -2014 / -2015 at 401, -1102, -1131, -1021, -1022), every new order then
core/sim/binance_filters.check_new_order against the symbol's filters in the exchangeInfo the venue serves at
that moment (a `filter` fault changes them), and the account's free balance (-2010). The order is then matched
by the matcher backtests share (core/sim/matching.SimMatcher, no latency: an answer is the order's state after
matching) against the venue's book as GET /api/v3/depth serves it, and the fills move the account (SimAccount;
fees in the quote asset, at the venue's maker/taker rates). An order that rests is filled when the venue's
book moves across its price: every request first brings the books it touches up to date, and the venue's
market turn (`turn`, every 20 ms while orders rest) does so for every resting order.

User data: every state change of an order, whatever caused it, is an executionReport (Binance's field
set) to each subscriber (`subscribe`), in the order the venue applied them: NEW for every order the venue takes
(first, even for one that fills at once), TRADE per fill (its trade id as myTrades says it, l / L / z /
Z / Y / n / N / m), CANCELED ("c" the cancel's clientOrderId, "C" the order's), EXPIRED (what IOC,
FOK and MARKET leave). A LIMIT_MAKER that would take is -2010 and no order: no event, as on Binance.
After the events of a change, outboundAccountPosition names the assets whose free or locked amount moved.

Weight and limits (RateLimits: venue-sim --weight-limit, --orders-10s, --orders-1d, --ban-seconds): one
counter for the venue (Binance counts per IP), REST and WebSocket API, spot and futures alike, by Binance's
documented weights. Every /api/v3 (and /fapi) answer carries `X-MBX-USED-WEIGHT-1M` and
`X-MBX-ORDER-COUNT-10S` / `-1D` (Binance sends the order counts on order answers only; here they are on every
answer). Over the weight limit: 429 -1003 with Retry-After (to the end of the minute); a request before then:
418 -1003 "IP banned until <ms>" for the ban time; over an order count: 429 -1015. The WebSocket API gives
the same codes with error.data {"serverTime", "retryAfter"}.

Faults (GET /_sim/fault?kind=..., the venue routes them to the VenueGate, so they apply to /fapi too):
order_drop &count (the next order requests, POST / DELETE (and the futures' PUT), are executed and the
connection is closed unanswered), order_delay &seconds&count (answered late, executed at once), order_5xx
&count&executed=0|1 (503 -1001, the order placed or not), clock_skew &ms (the venue's clock runs ahead,
negative behind), ban &seconds (418 to everything). `record` is GET /_sim/binance/orders: every order and
trade the venue holds.

Keys: `--api-keys FILE` (mode 0600 or stricter, else refused), one key a line, `#` comments:
    KEY hmac SECRET
    KEY ed25519 PUBLIC_KEY_PEM_FILE        (relative to the keys file)
or one HMAC key from the environment: TTQ_SIM_BINANCE_API_KEY and TTQ_SIM_BINANCE_API_SECRET. Not on
the command line: a process's arguments are readable by every user of the host.

Where: the venue's main port answers HTTP through its WebSocket server's upgrade hook (picows), which
takes GET requests only, without a body. So order entry has a listener of its own, `RestServer` (HTTP/1.1,
keep-alive, parameters in the query string and/or an x-www-form-urlencoded body, the query string
winning as on Binance), venue-sim's `--rest-port` (0: any free one; the first line it prints names it).
It answers every /api/v3, /fapi and /_sim path, so it is a whole Binance REST base URL (api.binance.com's and
fapi.binance.com's place, the main port being stream.binance.com's); the signed GET endpoints answer on the
main port too.

Not in this slice: quoteOrderQty, STOP/TAKE_PROFIT types, order lists (OCO / OTO),
self-trade prevention, balanceUpdate events, per-account (rather than per-venue) counters, the
UNFILLED_ORDER_COUNT limits, and the -1007 "execution status unknown" timeout.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import secrets
import stat
import string
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import orjson

from ttquant.core.instruments import InstrumentTable, from_raw, to_raw
from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
from ttquant.core.records import Liquidity, Order, OrderAction, OrderStatus, OrderType, Side
from ttquant.core.sim.binance_auth import ApiKeys, check_signed
from ttquant.core.sim.binance_filters import SPOT, SymbolFilters, check_new_order
from ttquant.core.sim.matching import ACCOUNT_PRECISION, FillModel, SimAccount, SimMatcher

__all__ = ["Answer", "BinanceSpotOrders", "RateLimits", "RestServer", "load_api_keys", "KEYS_ENV", "SECRET_ENV",
           "WEIGHTS", "ORDER_FAULTS"]

log = logging.getLogger("ttquant.venue_sim.orders")
KEYS_ENV, SECRET_ENV = "TTQ_SIM_BINANCE_API_KEY", "TTQ_SIM_BINANCE_API_SECRET"
BOOK_LEVELS = 100           # the depth the matcher takes from (Binance's default depth answer)
STRATEGY = 1                # the matcher's strategy id for every REST order (one account)
# request weight of each endpoint (spot REST docs); depth and openOrders depend on their params
WEIGHTS = {("POST", "order"): 1, ("DELETE", "order"): 1, ("GET", "order"): 4, ("DELETE", "openOrders"): 1,
           ("GET", "account"): 20, ("GET", "myTrades"): 20, ("GET", "time"): 1, ("GET", "exchangeInfo"): 20}
_SIGNED = {("POST", "order"), ("DELETE", "order"), ("GET", "order"), ("GET", "openOrders"),
           ("DELETE", "openOrders"), ("GET", "account"), ("GET", "myTrades"), ("POST", "order/cancelReplace")}
_NEW_ORDERS = {("POST", "order"), ("POST", "order/cancelReplace")}      # what the ORDERS limits count
_NUMBER = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
_CLIENT_ID = r"^[\.A-Z\:/a-z0-9_-]{1,36}$"
_ID_CHARS = set(string.ascii_letters + string.digits + ".:/_-")
_QUANTA = tuple(Decimal(1).scaleb(-places) for places in range(32))   # places -> the Decimal quantize() takes
_STATUS = {OrderStatus.NEW: "NEW", OrderStatus.ACCEPTED: "NEW", OrderStatus.PARTIALLY_FILLED: "PARTIALLY_FILLED",
           OrderStatus.FILLED: "FILLED", OrderStatus.CANCELED: "CANCELED", OrderStatus.REJECTED: "REJECTED",
           OrderStatus.EXPIRED: "EXPIRED"}
_DONE = {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
_TYPES = ("LIMIT", "MARKET", "LIMIT_MAKER")
_UNSUPPORTED_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")


class _Refused(Exception):
    """An answer that is an error body: (http status, {"code", "msg"})."""

    def __init__(self, status: int, code: int, msg: str):
        super().__init__(msg)
        self.status, self.body = status, {"code": code, "msg": msg}


def _mandatory(name: str) -> _Refused:
    return _Refused(400, -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def _not_required(name: str) -> _Refused:
    return _Refused(400, -1106, f"Parameter '{name}' sent when not required.")


def _illegal(name: str, legal: str) -> _Refused:
    return _Refused(400, -1100, f"Illegal characters found in parameter '{name}'; legal range is '{legal}'.")


UNKNOWN_ORDER_CANCEL = (400, {"code": -2011, "msg": "Unknown order sent."})
UNKNOWN_ORDER_QUERY = (400, {"code": -2013, "msg": "Order does not exist."})
WOULD_TAKE = (400, {"code": -2010, "msg": "Order would immediately match and take."})
NO_FUNDS = (400, {"code": -2010, "msg": "Account has insufficient balance for requested action."})
DUPLICATE = (400, {"code": -2010, "msg": "Duplicate order sent."})
INTERNAL_ERROR = {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."}
ORDER_FAULTS = ("order_drop", "order_delay", "order_5xx", "clock_skew", "ban")
_EXECUTION = {OrderStatus.CANCELED: "CANCELED", OrderStatus.EXPIRED: "EXPIRED"}


@dataclasses.dataclass(frozen=True)
class RateLimits:
    """The venue's limits (venue-sim --weight-limit, --orders-10s, --orders-1d) and how long a ban lasts."""
    weight_1m: int = 6000
    orders_10s: int = 100
    orders_1d: int = 200_000
    ban_s: float = 120.0

    def exchange_info(self) -> list[dict]:
        """exchangeInfo's "rateLimits" for these limits."""
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.weight_1m},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.orders_10s},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": self.orders_1d}]


@dataclasses.dataclass
class Answer:
    """One answer of the shared REST / WebSocket API path: the HTTP status and the JSON body (a dict or a
    list), plus what a transport must do besides sending it."""
    status: int
    body: object
    retry_after_ms: int | None = None   # 429 / 418: when the client may send again (venue clock, ms epoch)
    server_ms: int = 0
    drop: bool = False                  # order_drop fault: close the connection, send nothing
    delay_s: float = 0.0                # order_delay fault: send it this much later
    order: bool = False                 # a new order request: its answer carries the ORDERS counts

    def payload(self) -> bytes:
        return orjson.dumps(self.body)


def load_api_keys(path: str | None = None, environ: Mapping[str, str] = os.environ) -> ApiKeys:
    """The venue's keys from a keys file (see the module doc) and/or the environment pair."""
    keys = ApiKeys()
    if path:
        file = Path(path)
        mode = file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ValueError(f"{path}: readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
        for n, line in enumerate(file.read_text().splitlines(), 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 3 or words[1] not in ("hmac", "ed25519"):
                raise ValueError(f"{path}:{n}: not 'KEY hmac SECRET' or 'KEY ed25519 PEM_FILE'")
            try:
                if words[1] == "hmac":
                    keys.add_hmac(words[0], words[2])
                else:
                    keys.add_ed25519(words[0], (file.parent / words[2]).read_bytes())
            except (ValueError, OSError) as exc:      # never the line itself: it holds a secret
                raise ValueError(f"{path}:{n}: {exc}") from None
    if environ.get(KEYS_ENV) or environ.get(SECRET_ENV):
        if not (environ.get(KEYS_ENV) and environ.get(SECRET_ENV)):
            raise ValueError(f"{KEYS_ENV} and {SECRET_ENV} go together")
        keys.add_hmac(environ[KEYS_ENV], environ[SECRET_ENV])
    return keys


@dataclasses.dataclass
class _OrderInfo:
    """What Binance says of an order that the matcher does not keep."""
    order_id: int
    symbol: str
    client_id: str
    side: str
    type: str
    tif: str
    price: Decimal
    qty: Decimal
    time_ms: int
    update_ms: int
    instrument_id: int


@dataclasses.dataclass
class _Symbol:
    source: bytes           # the exchangeInfo body the filters came from (a filter fault replaces it)
    filters: SymbolFilters
    doc: dict
    instrument_id: int
    book_id: int = -1       # the venue book's lastUpdateId last given to the matcher


class VenueGate:
    """What every order entry of the venue shares, whatever the market: its clock (a clock_skew fault
    moves it), the request weight and order counters (one counter for the venue, as Binance counts per
    IP), the ban, and the order faults (order_drop, order_delay, order_5xx, clock_skew, ban)."""

    def __init__(self, limits: RateLimits | None = None, clock: Callable[[], float] = time.time):
        self.limits = limits or RateLimits()
        self.clock = clock
        self.skew_ms = 0.0                      # clock_skew fault: the venue's clock runs this much ahead
        self.faults = {"order_drop": 0, "order_delay": 0, "order_5xx": 0}
        self._delay_s = 0.0
        self._5xx_executed = False
        self._banned_until = 0.0                # ms, venue clock: every request is 418 until then
        self._backoff_until = 0.0               # ms: a 429 was answered; a request before this is banned
        self._weight = (0, 0)                   # (minute, weight used in it)
        self._orders_10s = (0, 0)
        self._orders_1d = (0, 0)

    def now_ms(self) -> float:
        """The venue's clock (a clock_skew fault moves it)."""
        return self.clock() * 1000 + self.skew_ms

    def count_order(self, now_ms: float) -> Answer | None:
        """Count a new order (or an amendment); the 429 -1015 answer when it is one too many."""
        self._orders_10s = self._bump(self._orders_10s, int(now_ms) // 10_000, 1)
        self._orders_1d = self._bump(self._orders_1d, int(now_ms) // 86_400_000, 1)
        for (_, count), limit, what in ((self._orders_10s, self.limits.orders_10s, "10 SECOND"),
                                        (self._orders_1d, self.limits.orders_1d, "1 DAY")):
            if count > limit:
                return Answer(429, {"code": -1015, "msg": f"Too many new orders; current limit is {limit} "
                                                          f"orders per {what}."}, order=True)
        return None

    def apply_fault(self, fault: str | None, answer: Answer) -> Answer:
        """What an order fault taken before the request was executed makes of its answer."""
        if fault == "order_5xx":
            return Answer(503, dict(INTERNAL_ERROR), order=answer.order)       # placed all the same
        if fault == "order_drop":
            answer.drop = True
        elif fault == "order_delay":
            answer.delay_s = self._delay_s
        return answer

    def refuses_5xx(self, fault: str | None) -> bool:
        """order_5xx with executed=0: answered 503 before anything is done."""
        return fault == "order_5xx" and not self._5xx_executed

    def take_fault(self) -> str | None:
        for kind in ("order_drop", "order_5xx", "order_delay"):
            if self.faults[kind] > 0:
                self.faults[kind] -= 1
                return kind
        return None

    def fault(self, kind: str, query: Mapping[str, str]) -> dict:
        """An order-entry fault (GET /_sim/fault?kind=...), see the module doc; what it set."""
        now_ms = self.now_ms()
        if kind in ("order_drop", "order_5xx", "order_delay"):
            self.faults[kind] = int(query.get("count", "1"))
            if kind == "order_delay":
                self._delay_s = float(query.get("seconds", "1"))
            if kind == "order_5xx":
                self._5xx_executed = query.get("executed", "0") == "1"
            return {"ok": kind, "count": self.faults[kind]}
        if kind == "clock_skew":
            self.skew_ms = float(query.get("ms", "0"))
            return {"ok": kind, "ms": self.skew_ms}
        if kind == "ban":
            self._banned_until = now_ms + float(query.get("seconds", str(self.limits.ban_s))) * 1000
            return {"ok": kind, "until": int(self._banned_until)}
        raise ValueError(kind)

    def admit(self, weight: int, now_ms: float) -> Answer | None:
        """Count a request's weight; the 418 / 429 answer when the venue refuses it (None: go on)."""
        if now_ms < self._banned_until:
            return self._banned(now_ms)
        self._weight = self._bump(self._weight, int(now_ms) // 60_000, weight)
        if self._weight[1] <= self.limits.weight_1m:
            return None
        if now_ms < self._backoff_until:        # told to back off and did not: banned
            self._banned_until = now_ms + self.limits.ban_s * 1000
            return self._banned(now_ms)
        self._backoff_until = (int(now_ms) // 60_000 + 1) * 60_000
        return Answer(429, {"code": -1003, "msg": f"Too much request weight used; current limit is "
                                                  f"{self.limits.weight_1m} request weight per 1 MINUTE. Please use "
                                                  "WebSocket Streams for live updates to avoid polling the API."},
                      retry_after_ms=int(self._backoff_until), server_ms=int(now_ms))

    def _banned(self, now_ms: float) -> Answer:
        until = int(self._banned_until)
        return Answer(418, {"code": -1003, "msg": f"Way too much request weight used; IP banned until {until}. "
                                                  "Please use WebSocket Streams for live updates to avoid bans."},
                      retry_after_ms=until, server_ms=int(now_ms))

    def rate_headers(self, answer: Answer | None = None) -> dict[str, str]:
        now_ms = int(self.now_ms())
        used = lambda counter, window: counter[1] if counter[0] == now_ms // window else 0     # noqa: E731
        headers = {"X-MBX-USED-WEIGHT-1M": str(used(self._weight, 60_000)),
                   "X-MBX-ORDER-COUNT-10S": str(used(self._orders_10s, 10_000)),
                   "X-MBX-ORDER-COUNT-1D": str(used(self._orders_1d, 86_400_000))}
        if answer is not None and answer.retry_after_ms is not None:
            headers["Retry-After"] = str(max(1, math.ceil((answer.retry_after_ms - now_ms) / 1000)))
        return headers

    def rate_limits(self, orders: bool) -> list[dict]:
        """A WebSocket API answer's "rateLimits": the weight, and the order counts on order requests."""
        now_ms = int(self.now_ms())
        used = lambda counter, window: counter[1] if counter[0] == now_ms // window else 0     # noqa: E731
        out = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                "limit": self.limits.weight_1m, "count": used(self._weight, 60_000)}]
        if orders:
            out += [{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                     "limit": self.limits.orders_10s, "count": used(self._orders_10s, 10_000)},
                    {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1,
                     "limit": self.limits.orders_1d, "count": used(self._orders_1d, 86_400_000)}]
        return out

    @staticmethod
    def _bump(counter, window, amount):
        return (window, (counter[1] if counter[0] == window else 0) + amount)


class BinanceOrderEntry:
    """One account's order entry for one market of the simulated venue (spot: BinanceSpotOrders here, USDT-M
    futures: core/sim/binance_futures.BinanceFuturesOrders): the symbols of the exchangeInfo it serves, the
    matcher against the venue's book, the shared REST / WebSocket API path (`request`, `execute`) through
    the venue's VenueGate, and the user data events to its subscribers (`subscribe`). A subclass names its market, REST
    prefix, weights and endpoints (`_<method>_<endpoint>` handlers), and turns matcher reports into events."""
    MARKET = SPOT
    PREFIX = "/api/v3/"                         # REST paths it answers; the endpoint is what follows
    WEIGHTS: dict = {}
    SIGNED: frozenset = frozenset()
    NEW_ORDERS: frozenset = frozenset()         # what the ORDERS limits count
    FAULTED = ("POST", "DELETE")                # the methods order faults apply to

    def __init__(self, keys: ApiKeys, exchange_info: Callable[[], bytes | None],
                 depth: Callable[[str, int], dict | None], model: FillModel | None = None, account=None,
                 clock: Callable[[], float] = time.time, limits: RateLimits | None = None,
                 gate: VenueGate | None = None):
        self.keys = keys
        self.exchange_info = exchange_info      # the exchangeInfo body the venue serves now
        self.depth = depth                      # (symbol, limit) -> the depth document the venue serves now
        fees = model or FillModel()
        self.model = dataclasses.replace(fees, latency_ns=0, latency_jitter_ns=0, queue_position=False)
        self.gate = gate or VenueGate(limits, clock)
        self.table = InstrumentTable("binance")
        self.account = account
        self.matcher = SimMatcher(self.table, self.model, self.account)
        self.symbols: dict[str, _Symbol] = {}
        self.orders: dict[int, _OrderInfo] = {}
        self.by_client_id: dict[tuple[str, str], int] = {}      # (symbol, clientOrderId) -> latest orderId
        # (callback, whether it has anyone to tell now) of each subscriber to the user data events
        self._subscribers: list[tuple[Callable[[dict], None], Callable[[], bool]]] = []
        self._next_id = 0
        self._info_cache: tuple[bytes, dict] | None = None

    # -- what the gate holds for every market ------------------------------------------------------------
    @property
    def limits(self) -> RateLimits:
        return self.gate.limits

    def now_ms(self) -> float:
        """The venue's clock (a clock_skew fault moves it)."""
        return self.gate.now_ms()

    def admit(self, weight: int, now_ms: float) -> Answer | None:
        return self.gate.admit(weight, now_ms)

    def fault(self, kind: str, query: Mapping[str, str]) -> dict:
        return self.gate.fault(kind, query)

    def rate_headers(self, answer: Answer | None = None) -> dict[str, str]:
        return self.gate.rate_headers(answer)

    def rate_limits(self, orders: bool) -> list[dict]:
        return self.gate.rate_limits(orders)

    def weight(self, method, endpoint, params) -> int:
        """A REST request's weight (Binance's documented weights; the WebSocket API's are the same)."""
        return self.WEIGHTS.get((method, endpoint), 1)

    # -- entry ------------------------------------------------------------------------------------
    def request(self, method: str, path: str, query: str, headers: Mapping[str, str],
                body: str = "") -> Answer | None:
        """The answer to a REST request under PREFIX, or None for an endpoint the venue answers itself
        (exchangeInfo, depth: their weight is counted, and refused when over, here all the same)."""
        now_ms = self.now_ms()
        endpoint = path[len(self.PREFIX):]
        params = dict(parse_qsl(body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))         # the query string wins
        refused = self.admit(self.weight(method, endpoint, params), now_ms)
        if refused is not None:
            return refused
        answer = self._unsigned(method, endpoint, params, headers, now_ms)
        if answer is not None or (method, endpoint) not in self.SIGNED:
            return answer
        refusal = check_signed(self.keys, method, query, body, headers, now_ms)
        if refusal is not None:
            return Answer(refusal[0], refusal[1], order=(method, endpoint) in self.NEW_ORDERS)
        return self.execute(method, endpoint, params, now_ms)

    def _unsigned(self, method, endpoint, params, headers, now_ms) -> Answer | None:
        """An endpoint that needs no signature (the server's time), or None."""
        if endpoint.rpartition("/")[2] == "time" and method == "GET":
            return Answer(200, {"serverTime": int(now_ms)})
        return None

    def execute(self, method: str, endpoint: str, params: Mapping[str, str], now_ms: float) -> Answer:
        """A signed request that passed its checks, REST or WebSocket API alike: (method, endpoint) of the
        REST API, params as strings. Counts new orders (-1015 over a limit) and applies the order faults."""
        is_order = (method, endpoint) in self.NEW_ORDERS
        if is_order:
            refused = self.gate.count_order(now_ms)
            if refused is not None:
                return refused
        fault = self.gate.take_fault() if method in self.FAULTED else None
        if self.gate.refuses_5xx(fault):
            return Answer(503, dict(INTERNAL_ERROR), order=is_order)
        try:
            handler = getattr(self, f"_{method.lower()}_{endpoint.rpartition('/')[2]}")
            status, body = handler(params, int(now_ms))
        except _Refused as refused:
            status, body = refused.status, refused.body
        return self.gate.apply_fault(fault, Answer(status, body, order=is_order))

    def turn(self):
        """The market turn: while orders rest, bring their books up to date (they fill as the book moves)."""
        if self.matcher.resting:
            self._refresh_all(int(self.now_ms()))

    def record(self) -> dict:
        """The venue's own record (GET /_sim/binance/orders): every order and every trade."""
        orders = []
        for info in self.orders.values():
            o = self.matcher.orders.get((STRATEGY, info.order_id))
            if o is None or o.status == OrderStatus.REJECTED:
                continue
            inst = self.table[info.instrument_id]
            orders.append({"market": self.MARKET, "symbol": info.symbol, "orderId": info.order_id,
                           "clientOrderId": info.client_id,
                           "side": info.side, "type": info.type, "timeInForce": info.tif,
                           "price": self._price(inst, info.price), "origQty": self._qty(inst, info.qty),
                           "status": _STATUS[o.status],
                           "executedQty": self._qty(inst, from_raw(o.cum_qty, inst.size_precision))})
        trades = []
        for f in self.matcher.fills:
            info = self.orders.get(f["client_order_id"])
            if info is None:
                continue
            inst = self.table[info.instrument_id]
            trades.append({"market": self.MARKET, "id": f["trade_id"], "orderId": info.order_id, "symbol": info.symbol,
                           "price": self._price(inst, from_raw(f["price"], inst.price_precision)),
                           "qty": self._qty(inst, from_raw(f["qty"], inst.size_precision)),
                           "isMaker": f["liquidity"] == Liquidity.MAKER, "time": f["ts"] // 1_000_000})
        return {"orders": orders, "trades": trades}

    # -- user data events -----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[dict], None], listening: Callable[[], bool] = lambda: True):
        """callback(event) for every user data event from now on; `listening()` says whether the subscriber
        has anyone to tell now: while no subscriber has, the venue builds no event (an order's answer waits
        for nothing it would throw away)."""
        self._subscribers.append((callback, listening))

    def heard(self) -> bool:
        """Whether a user data event built now would reach anyone."""
        return any(listening() for _, listening in self._subscribers)

    def _tell(self, build: Callable[..., dict], *args, **kwargs):
        """Publish the event `build(*args, **kwargs)` makes, building it only when someone listens."""
        if self.heard():
            self._publish(build(*args, **kwargs))

    def _publish(self, event: dict):
        for subscriber, _ in list(self._subscribers):
            try:
                subscriber(event)
            except Exception:       # one subscriber's bug must not stop the venue or the others
                log.exception("user data subscriber")

    def _on_report(self, info: _OrderInfo, report, now_ms: int):
        """The user data event(s) of one matcher report (the market's own shapes)."""
        raise NotImplementedError

    def _after_reports(self, now_ms: int, reports: list):
        """After the events of a change: what the account tells (its balances, positions)."""

    @staticmethod
    def _trade_bounds(params) -> dict[str, int]:
        """myTrades' / userTrades' orderId, startTime, endTime, fromId, limit as given (each an integer)."""
        bounds = {}
        for name in ("orderId", "startTime", "endTime", "fromId", "limit"):
            value = params.get(name)
            if value:
                if not value.isdigit():
                    raise _mandatory(name)
                bounds[name] = int(value)
        return bounds

    def _trades(self, params, now_ms):
        """myTrades / userTrades: (the instrument, the limit, and for each of the account's trades on the
        params' symbol within their bounds: its index in the matcher's fills, the fill, its order, time, price
        and qty)."""
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        inst = self.table[sym.instrument_id]
        bounds = self._trade_bounds(params)

        def trades():
            for index, f in enumerate(self.matcher.fills):
                info = self.orders.get(f["client_order_id"])
                if info is None or info.symbol != sym.filters.symbol:
                    continue
                at_ms = f["ts"] // 1_000_000
                if ("orderId" in bounds and info.order_id != bounds["orderId"]) \
                        or at_ms < bounds.get("startTime", 0) or at_ms > bounds.get("endTime", at_ms) \
                        or f["trade_id"] < bounds.get("fromId", 0):
                    continue
                yield (index, f, info, at_ms, from_raw(f["price"], inst.price_precision),
                       from_raw(f["qty"], inst.size_precision))
        return inst, min(bounds.get("limit", 500), 1000), trades()

    # -- symbols and the book ------------------------------------------------------------------------
    def _symbol(self, params, required=True) -> _Symbol | None:
        name = params.get("symbol", "")
        if not name:
            if required:
                raise _mandatory("symbol")
            return None
        body = self.exchange_info()
        known = self.symbols.get(name)
        if known is not None and known.source is body:
            return known
        if body is None:
            raise _Refused(400, -1121, "Invalid symbol.")
        if self._info_cache is None or self._info_cache[0] is not body:
            doc = orjson.loads(body)
            self._info_cache = (body, {s.get("symbol"): s for s in doc.get("symbols", ())})
        entry = self._info_cache[1].get(name)
        if entry is None:
            raise _Refused(400, -1121, "Invalid symbol.")
        instruments, skipped = instruments_from_exchange_info({"symbols": [entry]}, self.MARKET)
        if not instruments:
            raise _Refused(400, -1121, "Invalid symbol.")
        (inst,) = merge_instruments(self.table, instruments)
        sym = _Symbol(body, SymbolFilters.from_exchange_info(entry, self.MARKET), entry, inst.instrument_id,
                      known.book_id if known else -1)
        self.symbols[name] = sym
        return sym

    def _refresh(self, sym: _Symbol, now_ms: int):
        """Give the matcher the venue's book when it has moved; resting orders it crosses fill."""
        doc = self.depth(sym.filters.symbol, BOOK_LEVELS)
        if doc is None or doc.get("lastUpdateId") == sym.book_id:
            return
        sym.book_id = doc.get("lastUpdateId")
        inst = self.table[sym.instrument_id]
        levels = lambda side: [(to_raw(p, inst.price_precision, exact=False),           # noqa: E731
                                to_raw(q, inst.size_precision, exact=False)) for p, q in doc.get(side, ())]
        self.matcher.on_book(sym.instrument_id, levels("bids"), levels("asks"), now_ms * 1_000_000)
        self._settle(now_ms)

    def _refresh_all(self, now_ms: int, only: _Symbol | None = None):
        wanted = [only] if only is not None else [self.symbols[name] for name in
                                                  {self.orders[o.client_order_id].symbol
                                                   for o in self.matcher.resting.values()}]
        for sym in wanted:
            self._refresh(sym, now_ms)

    def _settle(self, now_ms: int):
        """What the matcher did by now: the orders' update times, then the user data events, in order."""
        reports = self.matcher.advance(now_ms * 1_000_000)
        for report in reports:
            info = self.orders.get(report.client_order_id)
            if info is not None:
                info.update_ms = report.ts_exchange // 1_000_000
                self._on_report(info, report, now_ms)
        if reports:
            self._after_reports(now_ms, reports)

    def _reference(self, sym: _Symbol) -> Decimal | None:
        """The price MIN_NOTIONAL prices a market order at and PERCENT_PRICE bands around: Binance
        uses its average price; here the mid of the venue's book (else the last trade seen)."""
        m = self.matcher.market(sym.instrument_id)
        inst = self.table[sym.instrument_id]
        if m.bid and m.ask:
            return from_raw(m.bid + m.ask, inst.price_precision) / 2
        return from_raw(m.last, inst.price_precision) if m.last else None

    def _number(self, params, name) -> Decimal | None:
        text = params.get(name)
        if text is None or text == "":
            return None
        whole, dot, frac = text.partition(".")
        if not (whole.isdigit() and whole.isascii() and len(whole) <= 20
                and (not dot or (frac.isdigit() and frac.isascii() and len(frac) <= 20))):
            raise _illegal(name, _NUMBER)
        return Decimal(text)

    @staticmethod
    def _new_client_id() -> str:
        alphabet = string.ascii_letters + string.digits
        return "".join(secrets.choice(alphabet) for _ in range(22))

    def _matcher_order(self, order_id):
        return self.matcher.orders[(STRATEGY, order_id)]

    def _find(self, params, unknown) -> _OrderInfo:
        sym = self._symbol(params)
        order_id, client_id = params.get("orderId"), params.get("origClientOrderId")
        if not order_id and not client_id:
            raise _Refused(400, -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                       "empty/null!")
        if order_id:
            if not order_id.isdigit():
                raise _mandatory("orderId")
            info = self.orders.get(int(order_id))
            if info is not None and client_id and info.client_id != client_id:
                info = None
        else:
            info = self.orders.get(self.by_client_id.get((sym.filters.symbol, client_id), 0))
        if info is None or info.symbol != sym.filters.symbol:
            raise _Refused(unknown[0], unknown[1]["code"], unknown[1]["msg"])
        return info

    @staticmethod
    def _price(inst, value: Decimal) -> str:
        return format(value.quantize(_QUANTA[inst.price_precision]), "f")

    @staticmethod
    def _qty(inst, value: Decimal) -> str:
        return format(value.quantize(_QUANTA[inst.size_precision]), "f")

    def _next_client_seq(self) -> int:
        # a cancel request needs an id of its own in the matcher's ledger; orderIds and these never meet
        self._next_id += 1
        return self._next_id

    @staticmethod
    def _handled(handler, params, now_ms):
        try:
            return handler(params, now_ms)
        except _Refused as refused:
            return refused.status, refused.body


class BinanceSpotOrders(BinanceOrderEntry):
    """One spot account on the simulated venue, taking orders by signed REST and the WebSocket API
    (core/sim/binance_wsapi.py), both through `execute`; its user data events go to its subscribers."""
    MARKET = SPOT
    PREFIX = "/api/v3/"
    WEIGHTS = WEIGHTS
    SIGNED = frozenset(_SIGNED)
    NEW_ORDERS = frozenset(_NEW_ORDERS)

    def __init__(self, keys: ApiKeys, exchange_info: Callable[[], bytes | None],
                 depth: Callable[[str, int], dict | None], model: FillModel | None = None,
                 balances: dict[str, int] | None = None, clock: Callable[[], float] = time.time,
                 limits: RateLimits | None = None, gate: VenueGate | None = None):
        super().__init__(keys, exchange_info, depth, model, SimAccount(balances), clock, limits, gate)
        self._announced: set[int] = set()       # orders whose NEW executionReport went out
        self._cum_quote: dict[int, Decimal] = {}
        self._cancel_ids: dict[int, str] = {}   # orderId -> the clientOrderId of the cancel that ends it
        self._rested: set[int] = set()          # orders that went on the book
        self._positions = self._balances_now()  # asset -> (free, locked) last told in outboundAccountPosition
        self._event_seq = 0

    def weight(self, method, endpoint, params) -> int:
        """A REST request's weight (Binance's documented weights; the WebSocket API's are the same)."""
        weight = WEIGHTS.get((method, endpoint), 1)
        if endpoint == "depth":
            limit = int(params.get("limit") or 100) if (params.get("limit") or "100").isdigit() else 100
            weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
        elif endpoint == "openOrders" and method == "GET":
            weight = 6 if params.get("symbol") else 80
        elif endpoint == "myTrades" and params.get("orderId"):
            weight = 5
        return weight

    def _after_reports(self, now_ms: int, reports: list):
        self._publish_positions(now_ms)

    # -- user data events -----------------------------------------------------------------------------
    def _balances_now(self) -> dict[str, tuple[int, int]]:
        locked = self._locked()
        return {a: (self.account.balances.get(a, 0) - locked.get(a, 0), locked.get(a, 0))
                for a in set(self.account.balances) | set(locked)}

    def _publish_positions(self, now_ms: int):
        """outboundAccountPosition with the assets whose free or locked amount changed."""
        current = self._balances_now()
        changed = sorted(a for a, v in current.items() if self._positions.get(a) != v)
        self._positions = current
        if changed:
            self._tell(self._account_position, current, changed, now_ms)

    @staticmethod
    def _account_position(current, changed, now_ms) -> dict:
        text = lambda raw: format(from_raw(raw, ACCOUNT_PRECISION), "f")      # noqa: E731
        return {"e": "outboundAccountPosition", "E": now_ms, "u": now_ms,
                "B": [{"a": a, "f": text(current[a][0]), "l": text(current[a][1])} for a in changed]}

    def _on_report(self, info: _OrderInfo, report, now_ms: int):
        """The executionReport(s) of one matcher report: NEW first for every order the venue accepted,
        then TRADE per fill, CANCELED, EXPIRED. A LIMIT_MAKER that would take is no order: nothing."""
        status = report.status
        if status == OrderStatus.REJECTED:
            return
        order_id = info.order_id
        if (STRATEGY, order_id) in self.matcher.resting:
            self._rested.add(order_id)
        if order_id not in self._announced:
            self._announced.add(order_id)
            self._tell(self._execution_report, info, "NEW", "NEW", 0, Decimal(0), now_ms, now_ms)
        if status == OrderStatus.ACCEPTED:
            return
        at_ms = report.ts_exchange // 1_000_000
        if report.trade_id and report.last_qty:
            inst = self.table[info.instrument_id]
            price = from_raw(report.last_price, inst.price_precision)
            qty = from_raw(report.last_qty, inst.size_precision)
            self._cum_quote[order_id] = self._cum_quote.get(order_id, Decimal(0)) + price * qty
            self._tell(self._execution_report, info, "TRADE", _STATUS[status], report.cum_qty,
                       self._cum_quote[order_id], now_ms, at_ms,
                       trade=(report.trade_id, price, qty, report.fee, report.liquidity == Liquidity.MAKER))
        elif status in _EXECUTION:
            self._tell(self._execution_report, info, _EXECUTION[status], _STATUS[status], report.cum_qty,
                       self._cum_quote.get(order_id, Decimal(0)), now_ms, at_ms)

    def _execution_report(self, info, execution, status, cum_raw, cum_quote, now_ms, at_ms, trade=None) -> dict:
        inst = self.table[info.instrument_id]
        zero_q, zero_p = self._qty(inst, Decimal(0)), self._price(inst, Decimal(0))
        trade_id, price, qty, fee, maker = trade or (-1, Decimal(0), Decimal(0), 0, False)
        canceled = execution == "CANCELED"
        resting = info.order_id in self._rested             # it went on the book (W says since when)
        self._event_seq += 1
        event = {"e": "executionReport", "E": now_ms, "s": info.symbol,
                 "c": self._cancel_ids.get(info.order_id, info.client_id) if canceled else info.client_id,
                 "S": info.side, "o": info.type, "f": info.tif, "q": self._qty(inst, info.qty),
                 "p": self._price(inst, info.price), "P": zero_p, "F": zero_q, "g": -1,
                 "C": info.client_id if canceled else "", "x": execution, "X": status, "r": "NONE",
                 "i": info.order_id, "l": self._qty(inst, qty),
                 "z": self._qty(inst, from_raw(cum_raw, inst.size_precision)), "L": self._price(inst, price),
                 "n": format(from_raw(fee, ACCOUNT_PRECISION), "f") if trade else "0",
                 "N": inst.quote if trade else None, "T": at_ms, "t": trade_id, "I": self._event_seq,
                 "w": resting and status in ("NEW", "PARTIALLY_FILLED"), "m": maker, "M": trade is not None,
                 "O": info.time_ms, "Z": self._price(inst, cum_quote), "Y": self._price(inst, price * qty),
                 "Q": zero_p}
        if resting:
            event["W"] = info.time_ms
        event["V"] = "NONE"
        return event

    # -- new orders -----------------------------------------------------------------------------------
    def _post_order(self, params, now_ms):
        sym = self._symbol(params)
        side = params.get("side", "")
        kind = params.get("type", "")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise _Refused(400, -1117, "Invalid side.")
        if not kind:
            raise _mandatory("type")
        if kind not in _TYPES:
            if kind in _UNSUPPORTED_TYPES:
                raise _Refused(400, -1013, f"venue-sim takes no {kind} orders yet.")
            raise _Refused(400, -1116, "Invalid orderType.")
        if "quoteOrderQty" in params:
            raise _Refused(400, -1013, "venue-sim takes no quoteOrderQty orders yet.")
        qty = self._number(params, "quantity")
        if qty is None:
            if kind == "MARKET":
                raise _Refused(400, -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were "
                                           "empty/null!")
            raise _mandatory("quantity")
        price = self._number(params, "price")
        tif = params.get("timeInForce")
        if kind == "LIMIT":
            if price is None:
                raise _mandatory("price")
            if not tif:
                raise _mandatory("timeInForce")
            if tif not in ("GTC", "IOC", "FOK"):
                raise _Refused(400, -1115, "Invalid timeInForce.")
        elif kind == "LIMIT_MAKER":
            if price is None:
                raise _mandatory("price")
            if tif:
                raise _not_required("timeInForce")
        else:
            if price is not None:
                raise _not_required("price")
            if tif:
                raise _not_required("timeInForce")
        resp_type = params.get("newOrderRespType") or ("FULL" if kind in ("LIMIT", "MARKET") else "ACK")
        if resp_type not in ("ACK", "RESULT", "FULL"):
            raise _illegal("newOrderRespType", "ACK, RESULT, FULL")
        client_id = params.get("newClientOrderId") or self._new_client_id()
        if not (len(client_id) <= 36 and set(client_id) <= _ID_CHARS):
            raise _illegal("newClientOrderId", _CLIENT_ID)

        self._refresh(sym, now_ms)
        open_here = [o for o in self.matcher.resting.values() if o.instrument_id == sym.instrument_id]
        failure = check_new_order(sym.filters, side, kind, price, qty, self._reference(sym), len(open_here))
        if failure is not None:
            return 400, failure
        previous = self.by_client_id.get((sym.filters.symbol, client_id))
        if previous is not None and self._matcher_order(previous).status not in _DONE:
            return DUPLICATE
        inst = self.table[sym.instrument_id]
        price_raw = inst.price_to_raw(price) if price is not None else 0
        qty_raw = inst.qty_to_raw(qty)
        if not self._funded(inst, side, price_raw, qty_raw):
            return NO_FUNDS

        self._next_id += 1
        order_id = self._next_id
        order_type = {"MARKET": OrderType.MARKET, "LIMIT_MAKER": OrderType.POST_ONLY}.get(
            kind, {"GTC": OrderType.LIMIT, "IOC": OrderType.IOC, "FOK": OrderType.FOK}.get(tif))
        info = _OrderInfo(order_id, sym.filters.symbol, client_id, side, kind, tif or "GTC", price or Decimal(0),
                          qty, now_ms, now_ms, sym.instrument_id)
        self.orders[order_id] = info
        fills_before = len(self.matcher.fills)
        self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=order_id, instrument_id=sym.instrument_id,
                                  action=OrderAction.NEW, side=Side.BUY if side == "BUY" else Side.SELL,
                                  order_type=order_type, price=price_raw, qty=qty_raw), now_ms * 1_000_000)
        self._settle(now_ms)
        o = self._matcher_order(order_id)
        if o.status == OrderStatus.REJECTED:            # a LIMIT_MAKER that would cross: no order at all
            del self.orders[order_id]
            return WOULD_TAKE
        self.by_client_id[(info.symbol, client_id)] = order_id
        body = {"symbol": info.symbol, "orderId": order_id, "orderListId": -1, "clientOrderId": client_id,
                "transactTime": now_ms}
        if resp_type == "ACK":
            return 200, body
        body.update(self._state(info, with_time=False))
        body["workingTime"] = now_ms
        body["selfTradePreventionMode"] = "NONE"
        if resp_type == "FULL":
            body["fills"] = [self._fill_doc(f, inst) for f in self.matcher.fills[fills_before:]
                             if f["client_order_id"] == order_id]
        return 200, body

    def _funded(self, inst, side, price_raw, qty_raw) -> bool:
        """Whether the account's free balance covers the order: the quote at its price (a market buy:
        at the book it would walk), the base for a sell."""
        free = self._free()
        if side == "SELL":
            return qty_raw * 10**ACCOUNT_PRECISION // 10**inst.size_precision <= free.get(inst.base, 0)
        if price_raw:
            cost = self._notional(inst, price_raw, qty_raw)
        else:
            cost, left = 0, qty_raw
            for p, q in self.matcher.market(inst.instrument_id).asks:
                take = min(q, left)
                cost, left = cost + self._notional(inst, p, take), left - take
                if not left:
                    break
        return cost <= free.get(inst.quote, 0)

    @staticmethod
    def _notional(inst, price_raw, qty_raw) -> int:
        """price * qty in the quote asset at account precision, rounded up (what an order locks)."""
        return -(-price_raw * qty_raw * 10**ACCOUNT_PRECISION // 10**(inst.price_precision + inst.size_precision))

    def _locked(self) -> dict[str, int]:
        locked: dict[str, int] = {}
        for o in self.matcher.resting.values():
            inst = self.table[o.instrument_id]
            if o.side == Side.BUY:
                asset, amount = inst.quote, self._notional(inst, o.price, o.leaves)
            else:
                asset, amount = inst.base, o.leaves * 10**ACCOUNT_PRECISION // 10**inst.size_precision
            locked[asset] = locked.get(asset, 0) + amount
        return locked

    def _free(self) -> dict[str, int]:
        locked = self._locked()
        return {a: v - locked.get(a, 0) for a, v in self.account.balances.items()}

    # -- orders' state --------------------------------------------------------------------------------
    def _state(self, info: _OrderInfo, with_time=True) -> dict:
        inst = self.table[info.instrument_id]
        o = self._matcher_order(info.order_id)
        quote = self._cum_quote.get(info.order_id, Decimal(0))     # the fills' price * qty, summed as they came
        doc = {"symbol": info.symbol, "orderId": info.order_id, "orderListId": -1, "clientOrderId": info.client_id,
               "price": self._price(inst, info.price), "origQty": self._qty(inst, info.qty),
               "executedQty": self._qty(inst, from_raw(o.cum_qty, inst.size_precision)),
               "origQuoteOrderQty": self._price(inst, Decimal(0)),
               "cummulativeQuoteQty": self._price(inst, Decimal(quote)),
               "status": _STATUS[o.status], "timeInForce": info.tif, "type": info.type, "side": info.side}
        if with_time:
            doc.update({"stopPrice": self._price(inst, Decimal(0)), "icebergQty": self._qty(inst, Decimal(0)),
                        "time": info.time_ms, "updateTime": info.update_ms, "isWorking": True,
                        "workingTime": info.time_ms, "origQuoteOrderQty": self._price(inst, Decimal(0)),
                        "selfTradePreventionMode": "NONE"})
        return doc

    def _fill_doc(self, f, inst) -> dict:
        return {"price": self._price(inst, from_raw(f["price"], inst.price_precision)),
                "qty": self._qty(inst, from_raw(f["qty"], inst.size_precision)),
                "commission": format(from_raw(f["fee"], ACCOUNT_PRECISION), "f"), "commissionAsset": inst.quote,
                "tradeId": f["trade_id"]}

    # -- endpoints ------------------------------------------------------------------------------------
    def _delete_order(self, params, now_ms):
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        info = self._find(params, UNKNOWN_ORDER_CANCEL)
        if (STRATEGY, info.order_id) not in self.matcher.resting:
            return UNKNOWN_ORDER_CANCEL
        return 200, self._cancel_doc(info, params, now_ms)

    def _cancel_doc(self, info, params, now_ms):
        client_id = params.get("newClientOrderId") or self._new_client_id()
        o = self._matcher_order(info.order_id)
        self._cancel_ids[info.order_id] = client_id         # the CANCELED executionReport's "c"
        self.matcher.submit(Order(strategy_id=STRATEGY, client_order_id=self._next_client_seq(),
                                  target_order_id=info.order_id, instrument_id=info.instrument_id,
                                  action=OrderAction.CANCEL, side=o.side, order_type=o.order_type),
                            now_ms * 1_000_000)
        self._settle(now_ms)
        state = self._state(info, with_time=False)
        return {"symbol": info.symbol, "origClientOrderId": info.client_id, "orderId": info.order_id,
                "orderListId": -1, "clientOrderId": client_id, "transactTime": now_ms,
                **{k: state[k] for k in ("price", "origQty", "executedQty", "origQuoteOrderQty",
                                         "cummulativeQuoteQty", "status", "timeInForce", "type", "side")},
                "selfTradePreventionMode": "NONE"}

    def _post_cancelReplace(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        """Cancel an order, then place one (cancelReplaceMode STOP_ON_FAILURE: not if the cancel failed)."""
        self._symbol(params)
        mode = params.get("cancelReplaceMode")
        if not mode:
            raise _mandatory("cancelReplaceMode")
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise _Refused(400, -1130, "Data sent for parameter 'cancelReplaceMode' is not valid.")
        if not params.get("cancelOrderId") and not params.get("cancelOrigClientOrderId"):
            raise _Refused(400, -1102, "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both "
                                       "were empty/null!")
        cancel = {"symbol": params["symbol"], "orderId": params.get("cancelOrderId", ""),
                  "origClientOrderId": params.get("cancelOrigClientOrderId", ""),
                  "newClientOrderId": params.get("cancelNewClientOrderId", "")}
        cancel_status, cancel_body = self._handled(self._delete_order, cancel, now_ms)
        data = {"cancelResult": "SUCCESS" if cancel_status == 200 else "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": cancel_body, "newOrderResponse": None}
        if cancel_status != 200 and mode == "STOP_ON_FAILURE":
            return 400, {"code": -2022, "msg": "Order cancel-replace failed.", "data": data}
        new = {k: v for k, v in params.items() if not k.startswith("cancel")}
        new_status, data["newOrderResponse"] = self._handled(self._post_order, new, now_ms)
        data["newOrderResult"] = "SUCCESS" if new_status == 200 else "FAILURE"
        if cancel_status == new_status == 200:
            return 200, data
        if 200 in (cancel_status, new_status):
            return 409, {"code": -2021, "msg": "Order cancel-replace partially failed.", "data": data}
        return 400, {"code": -2022, "msg": "Order cancel-replace failed.", "data": data}

    def _get_order(self, params, now_ms):
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        return 200, self._state(self._find(params, UNKNOWN_ORDER_QUERY))

    def _get_openOrders(self, params, now_ms):  # noqa: N802 (Binance's endpoint name)
        sym = self._symbol(params, required=False)
        self._refresh_all(now_ms, sym)
        open_ids = sorted(o.client_order_id for o in self.matcher.resting.values()
                          if sym is None or o.instrument_id == sym.instrument_id)
        return 200, [self._state(self.orders[i]) for i in open_ids]

    def _delete_openOrders(self, params, now_ms):  # noqa: N802
        sym = self._symbol(params)
        self._refresh(sym, now_ms)
        open_ids = sorted(o.client_order_id for o in self.matcher.resting.values()
                          if o.instrument_id == sym.instrument_id)
        if not open_ids:
            return UNKNOWN_ORDER_CANCEL
        return 200, [self._cancel_doc(self.orders[i], {}, now_ms) for i in open_ids]

    def _get_account(self, params, now_ms):
        self._refresh_all(now_ms)
        locked, m = self._locked(), self.model
        assets = sorted(set(self.account.balances) | set(locked))
        text = lambda raw: format(from_raw(raw, ACCOUNT_PRECISION), "f")      # noqa: E731
        rate = lambda ppm: format(Decimal(ppm).scaleb(-6).quantize(Decimal("1e-8")), "f")    # noqa: E731
        return 200, {
            "makerCommission": m.maker_fee_ppm // 100, "takerCommission": m.taker_fee_ppm // 100,
            "buyerCommission": 0, "sellerCommission": 0,
            "commissionRates": {"maker": rate(m.maker_fee_ppm), "taker": rate(m.taker_fee_ppm),
                                "buyer": rate(0), "seller": rate(0)},
            "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
            "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now_ms,
            "accountType": "SPOT",
            "balances": [{"asset": a, "free": text(self.account.balances.get(a, 0) - locked.get(a, 0)),
                          "locked": text(locked.get(a, 0))} for a in assets],
            "permissions": ["SPOT"], "uid": 1}

    def _get_myTrades(self, params, now_ms):  # noqa: N802
        inst, limit, trades = self._trades(params, now_ms)
        out = []
        for _, f, info, at_ms, price, qty in trades:
            out.append({"symbol": info.symbol, "id": f["trade_id"], "orderId": info.order_id, "orderListId": -1,
                        "price": self._price(inst, price), "qty": self._qty(inst, qty),
                        "quoteQty": self._price(inst, price * qty),
                        "commission": format(from_raw(f["fee"], ACCOUNT_PRECISION), "f"),
                        "commissionAsset": inst.quote, "time": at_ms, "isBuyer": info.side == "BUY",
                        "isMaker": f["liquidity"] == Liquidity.MAKER, "isBestMatch": True})
        return 200, out[:limit]


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
            409: "Conflict",
            413: "Payload Too Large", 418: "I'm a teapot", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
MAX_REQUEST = 64 << 10


class RestServer(asyncio.Protocol):
    """HTTP/1.1 on a port of its own for the order entries' paths (/api/v3, /fapi: all methods) and /_sim,
    keep-alive, one request at a time per connection. `fallback(path, query)` answers what the order entries
    do not (exchangeInfo, depth, /_sim/...), as the venue's main port does."""

    def __init__(self, orders: BinanceOrderEntry | list[BinanceOrderEntry],
                 fallback: Callable[[str, dict], tuple[int, bytes]]):
        self.entries = list(orders) if isinstance(orders, (list, tuple)) else [orders]
        self.fallback = fallback
        self.buffer = bytearray()
        self.transport = None
        self._held = False          # an answer is being delayed (order_delay): later requests wait for it

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while not self._held:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_REQUEST:
                    self._send(413, b'{"code":-1,"msg":"request too large"}', {}, close=True)
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            try:
                method, target, _version = head[0].split(" ")
                headers = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().title()] = value.strip()
                length = int(headers.get("Content-Length") or 0)
            except ValueError:
                self._send(400, b'{"code":-1,"msg":"malformed HTTP request"}', {}, close=True)
                return
            if end + 4 + length > len(self.buffer):
                return                  # the body is still on its way
            body = bytes(self.buffer[end + 4:end + 4 + length]).decode("latin-1")
            del self.buffer[:end + 4 + length]
            self._answer(method, target, headers, body)
            if self.transport is None or self.transport.is_closing():
                return

    def _answer(self, method, target, headers, body):
        path, _, query = target.partition("?")
        close = headers.get("Connection", "").lower() == "close"
        extra = {}
        entry = next((e for e in self.entries if path.startswith(e.PREFIX)), None)
        if entry is not None:
            try:
                answer = entry.request(method, path, query, headers, body)
            except Exception:       # a bug of ours: Binance's -1000 and the traceback in the log, not a hang
                log.exception("%s %s", method, path)
                answer = Answer(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
            if answer is not None:
                extra = entry.rate_headers(answer)
                if answer.drop:             # order_drop: executed, and the connection closes unanswered
                    self.transport.close()
                    return
                if answer.delay_s > 0:      # order_delay: the answer (and this connection's next ones) wait
                    self._held = True
                    asyncio.get_running_loop().call_later(answer.delay_s, self._send_held, answer, extra, close)
                    return
                self._send(answer.status, answer.payload(), extra, close=close)
                return
            extra = entry.rate_headers()
        if method != "GET":
            status, payload = 405, b'{"code":-1,"msg":"unknown path or method"}'
        else:
            status, payload = self.fallback(path, dict(parse_qsl(query)))
        self._send(status, payload, extra, close=close)

    def _send_held(self, answer, extra, close):
        self._held = False
        if self.transport is None or self.transport.is_closing():
            return
        self._send(answer.status, answer.payload(), extra, close=close)
        if self.buffer:
            self.data_received(b"")

    def _send(self, status, body, extra, close=False):
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in extra.items())]
        if close:
            head.append("Connection: close")
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.transport.close()
