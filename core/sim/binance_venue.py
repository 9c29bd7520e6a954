"""`ttquant venue-sim binance`: Binance's public market-data interface on 127.0.0.1.

One port serves both markets the way the md daemon reaches them, only the bases differ:
  WebSocket  /spot/stream?streams=a/b/c   and  /usdm/stream?streams=a/b/c   (combined frames)
  REST       /api/v3/exchangeInfo, /api/v3/depth?symbol=S&limit=N            (spot)
             /fapi/v1/exchangeInfo, /fapi/v1/depth?symbol=S&limit=N          (USDT-M)
  control    /_sim/status, /_sim/fault?kind=...                              (tests, demo)
Plain HTTP requests are answered by the WebSocket server's upgrade hook (picows) with
Connection: close, so one listener does both.

Frames come from a source (a replayed capture or the synthetic generator) on one timeline
shared by every client, like a live venue: a client that connects late gets what is
published from then on. The venue keeps each market's books from the same frames (caught up
when a snapshot is asked, so replay at full speed pays nothing for books nobody asks for), so a
depth snapshot requested at any moment matches the diffs around it (before the book is known,
the captured snapshot itself is served). Frames are pre-framed and written in large chunks;
a client whose socket stays full is paused, and dropped when its backlog grows past a limit,
as Binance does.

The source: a built-in capture name, any capture file or directory (core/sim/binance_replay.py),
or the synthetic generator. Market time with no frame for longer than max_gap_s is cut to it (the
files of a directory may be days apart). When the timeline ends the venue says so in the log; with
loop it starts again from the beginning, and since the capture's update ids then jump back (spot
md would take every diff as stale and its book would freeze without a word) the venue resets: its
own books start again, and it closes every WebSocket connection (1001, going away) so each client
reconnects and re-syncs its books from a fresh snapshot, as after any disconnect. With wait_clients
the new pass waits for that many clients to be back.

Faults (GET /_sim/fault?kind=K[&seconds=S][&count=N][&symbol=X][&market=M]):
  drop       close every WebSocket connection now
  gap        skip the next depth update of symbol (its ids never arrive)
  malformed  send N frames that are broken JSON, truncated, or oversized
  stall      send nothing for S seconds (connections stay open)
  refuse     refuse new WebSocket connections (streams and the WebSocket API) for S seconds (HTTP 503)
  ping       send a ping on every connection now (and count the pongs)
  filter     change a symbol's exchangeInfo filter (&filter=PRICE_FILTER&field=tickSize&value=0.1)
and of the Binance order entry (core/sim/binance_orders.py; on the REST port too):
  order_drop   &count=N                 the next N order requests are executed, the connection closed unanswered
  order_delay  &seconds=S&count=N       their answers come S seconds late (the orders take effect at once)
  order_5xx    &count=N&executed=0|1    HTTP / WebSocket API status 503 -1001 (executed=1: placed all the same)
  clock_skew   &ms=N                    the order entry's clock runs N ms ahead (negative: behind)
  ban          &seconds=S               every /api/v3, /fapi and WebSocket API request is 418 for S seconds
  user_drop                             close every WebSocket API connection (both markets) and USDT-M user
                                        data stream
and of the USDT-M futures order entry (core/sim/binance_futures.py):
  listen_key_expire                     the live listen key expires now: listenKeyExpired, its streams closed

With --orders RINGS it also takes orders (core/sim/order_venue.py): the gateway's sim
adapter sends them on /ttq.RINGS.sim_requests, reports come back on /ttq.RINGS.sim_reports,
and GET /_sim/orders[?since=NS] is the venue's own record (open orders, fills, requests).

Binance's own spot order entry, signed REST /api/v3 (order, openOrders, account, myTrades, time), is
served too (core/sim/binance_orders.py): matched against the book /api/v3/depth serves, for the keys
of --api-keys FILE or $TTQ_SIM_BINANCE_API_KEY / $TTQ_SIM_BINANCE_API_SECRET (without keys every
signed request is refused as Binance refuses an unknown key), with --balances and the fee options.
picows answers GET only, so POST / DELETE need the venue's second, plain HTTP port (--rest-port, the
first line printed names it: "listening on 127.0.0.1:P ..., REST order entry on 127.0.0.1:R"); it
answers every GET of the main port as well. Every /api/v3 answer carries the weight headers; the spot
exchangeInfo's rateLimits say the venue's limits (--weight-limit, --orders-10s, --orders-1d; over them
429, then a 418 ban of --ban-seconds). The WebSocket API (core/sim/binance_wsapi.py) is at
ws://127.0.0.1:P/ws-api/v3 on the main port: order entry and the user data stream on one connection.
USDT-M futures (core/sim/binance_futures.py) are served the same way when the replay has a USD-M exchangeInfo:
signed REST /fapi/v1/order (POST, PUT to modify, DELETE, GET), /fapi/v1/openOrders, /fapi/v1/allOpenOrders,
/fapi/v2/account, /fapi/v2/balance, /fapi/v2/positionRisk, /fapi/v1/userTrades, /fapi/v1/listenKey (API key
only) on the REST port (signed GETs on the main port too), the USDT-M WebSocket API at ws://127.0.0.1:P/ws-fapi/v1
(order.place / modify / cancel / status, account.*, session.logon, userDataStream.start / ping / stop: the listen
key REST manages), and the user data stream at
ws://127.0.0.1:P/ws/<listenKey> (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, listenKeyExpired); one account, one-way
positions, a USDT wallet of its own (--futures-balances, default the USDT of --balances), --leverage (20),
--listen-key-ttl (3600 s). Both markets share the venue's clock, counters, ban and order faults.
While orders rest the venue turns the market every 20 ms, so they fill as the replayed book moves and
their events go out. GET /_sim/binance/orders is the order entries' own record (orders and trades of both
markets, each with its "market": "spot" or "usdm").
`python -m ttquant.core.sim.binance_venue` takes the same options as `ttquant venue-sim binance`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import signal
import sys
import time
import urllib.parse

import orjson
from picows import (
    WSCloseCode,
    WSListener,
    WSMsgType,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ttquant.core.md.binance.book_sync import FUTURES, BookSync
from ttquant.core.md.binance.book_sync import SPOT as SPOT_RULE
from ttquant.core.md.fixed_point import format_fixed
from ttquant.core.sim.binance_futures import FUTURES_FAULTS
from ttquant.core.sim.binance_futures import fault as futures_fault
from ttquant.core.sim.binance_orders import ORDER_FAULTS

__all__ = ["BinanceVenue", "VenueConfig", "ReplayFeed", "ws_frame", "main"]

log = logging.getLogger("ttquant.venue_sim")
MARKETS = ("spot", "usdm")
VENUE_PRECISION = 8         # the venue's own books hold the strings at 8 decimals, as Binance sends
MAX_BACKLOG = 64 << 20      # bytes queued for one client before it is dropped as too slow
RAW_KEY = "*"               # the stream key of a recorded payload that is no stream's frame: every client gets it
WS_API_PATH = "/ws-api/v3"  # Binance's WebSocket API path (order entry and the user data stream)
WS_FAPI_PATH = "/ws-fapi/v1"    # the USDT-M futures WebSocket API path (ws-fapi.binance.com's): order entry
USER_STREAM_PREFIX = "/ws/"  # USDT-M user data: /ws/<listenKey> (fstream.binance.com's path)
MARKET_TURN_S = 0.02        # how often resting orders are matched against the moving book


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked server-to-client frame (FIN set)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 1 << 16:
        return bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big") + payload


def stream_key(name: str) -> str:
    """btcusdt@depth@100ms -> btcusdt@depth: a client gets a symbol's stream whatever speed it asks."""
    symbol, _, kind = name.lower().partition("@")
    if kind.startswith("depth"):
        kind = "depth"
    elif kind.startswith("markprice"):
        kind = "markprice"
    return f"{symbol}@{kind}"


@dataclasses.dataclass
class FeedFrame:
    at_ns: int              # when, on the source's own clock
    market: str
    key: str                # stream_key of the frame's stream
    payload: bytes
    depth: tuple | None = None      # (symbol, U, u, pu, bids, asks) for depth diffs
    framed: bytes = b""             # the WebSocket frame, built once

    def __post_init__(self):
        if not self.framed:
            self.framed = ws_frame(self.payload)


@dataclasses.dataclass
class ReplayFeed:
    """A capture turned into frames on a timeline, with the snapshots it holds."""
    frames: list[FeedFrame]
    snapshots: dict            # (market, SYMBOL) -> [(at_ns, body bytes)]
    exchange_info: dict        # market -> body bytes
    description: str
    name: str = ""             # what --replay named, for the log
    notes: list = dataclasses.field(default_factory=list)      # what loading found worth saying

    @classmethod
    def named(cls, name: str, data_dir=None, market: str | None = None):
        """'btcusdt', 'cryptofeed-spot', 'cryptofeed-usdm', 'synthetic', or a capture file or
        directory (core/sim/binance_replay.py)."""
        from ttquant.core.sim.binance_replay import load_replay
        feed = load_replay(name, market, data_dir)
        feed.name = feed.name or name
        return feed


@dataclasses.dataclass
class VenueConfig:
    host: str = "127.0.0.1"
    port: int = 8765                    # 0: any free one
    speed: float = 1.0                  # 1 = the capture's own pace; 0 = as fast as possible
    ping_interval_s: float = 20.0       # Binance spot pings every 20 s
    pong_timeout_s: float = 60.0
    chunk_bytes: int = 256 << 10
    wait_clients: int = 0               # hold the timeline until this many WebSocket clients are in
    loop: bool = False                  # at the end, start again (clients re-sync: see the module doc)
    max_gap_s: float = 10.0             # longer stretches of market time with no frame are cut to this


class _Client(WSListener):
    def __init__(self, venue: BinanceVenue, market: str, keys: set[str], path: str):
        self.venue, self.market, self.keys, self.path = venue, market, keys, path
        self.transport = None
        self.backlog = bytearray()
        self.paused = False
        self.last_pong = time.monotonic()

    def on_ws_connected(self, transport):
        self.transport = transport
        self.venue.clients.add(self)
        self.venue.reroute()
        self.venue.stats["connections"] += 1
        self.venue.client_joined(self)

    def on_ws_frame(self, transport, frame):
        if frame.msg_type == WSMsgType.PONG:
            self.last_pong = time.monotonic()
            self.venue.stats["pongs"] += 1
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type == WSMsgType.TEXT:
            self.venue.on_client_request(self, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport):
        self.venue.clients.discard(self)
        self.venue.reroute()

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        self.flush()

    def queue(self, framed: bytes):
        self.backlog += framed

    def flush(self):
        if self.transport is None or self.transport.is_disconnected:
            return
        if self.backlog and not self.paused:
            self.transport.underlying_transport.write(bytes(self.backlog))
            self.backlog.clear()
        elif len(self.backlog) > MAX_BACKLOG:
            log.warning("dropping a client %d bytes behind", len(self.backlog))
            self.venue.stats["slow_clients_dropped"] += 1
            self.transport.disconnect(graceful=False)


class BinanceVenue:
    def __init__(self, feed: ReplayFeed, config: VenueConfig | None = None):
        self.feed = feed
        self.config = config or VenueConfig()
        self.clients: set[_Client] = set()
        self.routes: dict[tuple[str, str], list[_Client]] = {}     # (market, stream key) -> clients
        self.books: dict[tuple[str, str], BookSync] = {}
        # the venue's books are kept lazily: caught up with the diffs sent when a snapshot is asked
        self._depth_frames: dict[tuple[str, str], list[tuple[int, FeedFrame]]] = {}
        for n, f in enumerate(feed.frames):
            if f.depth is not None:
                self._depth_frames.setdefault((f.market, f.depth[0]), []).append((n, f))
        self._depth_applied: dict[tuple[str, str], int] = {}
        self._book_docs: dict[tuple[str, str, int], tuple[int, dict | None]] = {}     # book_doc's, by update id
        self._pending_snapshots = {k: list(v) for k, v in feed.snapshots.items()}
        self._emitted = 0           # frames of the timeline sent so far
        self._pass = 1              # the timeline's pass (more than one with loop)
        self._joined = 0            # WebSocket clients connected in this pass
        self.last_update: dict[tuple[str, str], int] = {}
        self.stats = {"connections": 0, "frames_sent": 0, "pongs": 0, "pings": 0, "refused": 0,
                      "depth_requests": 0, "gaps_injected": 0, "malformed_sent": 0, "drops": 0,
                      "slow_clients_dropped": 0, "replay_position": 0, "replay_done": False,
                      "replay_pass": 1, "gaps_cut": 0}
        self.server = None
        self.port = None
        self._gap_next: set[tuple[str, str]] = set()
        self._stall_until = 0.0
        self._refuse_until = 0.0
        self._tasks = []
        self._clients_in: asyncio.Event | None = None     # made on the loop, in _replay
        self.order_venue = None     # core.sim.order_venue.SimOrderVenue, with --orders
        self.spot_orders = None     # core.sim.binance_orders.BinanceSpotOrders: signed REST order entry
        self.ws_api = None          # core.sim.binance_wsapi.BinanceWsApi: the WebSocket API on WS_API_PATH
        self.ws_fapi = None         # core.sim.binance_wsapi.BinanceWsApi (USDM_WS_API): the one on WS_FAPI_PATH
        self.futures_orders = None  # core.sim.binance_futures.BinanceFuturesOrders: signed REST /fapi
        self.user_streams = None    # core.sim.binance_futures.FuturesUserStreams: /ws/<listenKey>

    def order_entries(self) -> list:
        """The Binance order entries the venue runs (spot, USDT-M futures), each answering its REST prefix."""
        return [e for e in (self.spot_orders, self.futures_orders) if e is not None]

    def ws_apis(self) -> list:
        """The WebSocket APIs the venue runs (spot, USDT-M futures)."""
        return [a for a in (self.ws_api, self.ws_fapi) if a is not None]

    # -- HTTP and WebSocket entry ---------------------------------------------------------------
    def _listener_factory(self, request: WSUpgradeRequest):
        url = urllib.parse.urlsplit(request.path.decode("latin-1"))
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] in MARKETS and parts[1] == "stream":
            if time.monotonic() < self._refuse_until:
                self.stats["refused"] += 1
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(503, b"refusing connections (fault)"), None)
            streams = [s for s in query.get("streams", "").split("/") if s]
            if not streams:
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(400, b"no streams"), None)
            return _Client(self, parts[0], {stream_key(s) for s in streams}, url.path)
        ws_apis = {WS_API_PATH: (self.ws_api, b"spot"), WS_FAPI_PATH: (self.ws_fapi, b"usdm")}
        if url.path.rstrip("/") in ws_apis:
            if time.monotonic() < self._refuse_until:
                self.stats["refused"] += 1
                return WSUpgradeResponseWithListener(
                    WSUpgradeResponse.create_error_response(503, b"refusing connections (fault)"), None)
            api, market = ws_apis[url.path.rstrip("/")]
            if api is None:
                return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(
                    404, b"no order entry (no " + market + b" exchangeInfo)"), None)
            return api.session()
        if url.path.startswith(USER_STREAM_PREFIX) and url.path.count("/") == 2:
            listener = self.user_streams.session(url.path[len(USER_STREAM_PREFIX):]) \
                if self.user_streams is not None else None
            if listener is None:
                return WSUpgradeResponseWithListener(WSUpgradeResponse.create_error_response(
                    400, b'{"code":-1125,"msg":"This listenKey does not exist."}'), None)
            return listener
        headers = {"Content-Type": "application/json"}
        entry = next((e for e in self.order_entries() if url.path.startswith(e.PREFIX)), None)
        status, body = self._order_entry(entry, request, url, headers) if entry is not None else (None, None)
        if status is None:
            status, body = self._http(url.path, query)
        response = (WSUpgradeResponse.create_ok_response(body, headers)
                    if status == 200 else WSUpgradeResponse.create_error_response(status, body, headers))
        return WSUpgradeResponseWithListener(response, None)

    def _order_entry(self, entry, request, url, headers) -> tuple[int | None, bytes | None]:
        """A GET /api/v3 or /fapi on the main port through its order entry: (None, None) for what it leaves
        to _http."""
        method = request.method.decode("latin-1")
        try:
            answer = entry.request(method, url.path, url.query, request.headers)
        except Exception:   # a bug of ours: Binance's -1000 and the traceback in the log
            log.exception("%s %s", method, url.path)
            headers.update(entry.rate_headers())
            return 500, b'{"code":-1000,"msg":"An unknown error occurred while processing the request."}'
        headers.update(entry.rate_headers(answer))
        return (answer.status, answer.payload()) if answer is not None else (None, None)

    def _http(self, path: str, query: dict) -> tuple[int, bytes]:
        prefix, _, endpoint = path.rpartition("/")
        market = {"/api/v3": "spot", "/fapi/v1": "usdm"}.get(prefix)
        if market and endpoint == "exchangeInfo":
            body = self.feed.exchange_info.get(market)
            return (200, body) if body else (404, b'{"code":-1,"msg":"no exchangeInfo for this market"}')
        if market and endpoint == "depth":
            symbol = query.get("symbol", "").upper()
            limit = int(query.get("limit", "100"))
            return self._depth(market, symbol, limit)
        if path == "/_sim/status":
            return 200, orjson.dumps({**self.stats, "clients": len(self.clients),
                                      "ws_api_sessions": sum(len(a.sessions) for a in self.ws_apis()),
                                      "user_streams": len(self.user_streams.sessions) if self.user_streams else 0,
                                      "source": self.feed.description})
        if path == "/_sim/fault":
            return self._fault(query)
        if path == "/_sim/binance/orders":
            if not self.order_entries():
                return 404, b'{"error":"no Binance order entry (no exchangeInfo)"}'
            record = {"orders": [], "trades": []}
            for entry in self.order_entries():
                for name, items in entry.record().items():
                    record[name] += items
            return 200, orjson.dumps(record)
        if path == "/_sim/orders":
            if self.order_venue is None:
                return 404, b'{"error":"this venue takes no orders (start it with --orders RINGS)"}'
            return 200, orjson.dumps(self.order_venue.state(int(query.get("since", "0"))))
        return 404, b'{"code":-1,"msg":"unknown path"}'

    def _catch_up(self, key):
        """Apply to the venue's book every diff of `key` sent so far (and the captured
        snapshots met on the way), as if it had been kept all along."""
        frames = self._depth_frames.get(key, ())
        k = self._depth_applied.get(key, 0)
        book = self.books.get(key)
        while k < len(frames) and frames[k][0] < self._emitted:
            f = frames[k][1]
            if book is None:
                book = self.books[key] = BookSync(0, SPOT_RULE if f.market == "spot" else FUTURES,
                                                  VENUE_PRECISION, VENUE_PRECISION)
            snaps = self._pending_snapshots.get(key)
            if snaps and f.at_ns >= snaps[0][0]:
                at, body = snaps.pop(0)
                doc = orjson.loads(body)
                book.on_snapshot(doc["lastUpdateId"], doc["bids"], doc["asks"])
            book.on_diff(*f.depth[1:])
            k += 1
        self._depth_applied[key] = k

    def _depth(self, market, symbol, limit):
        self.stats["depth_requests"] += 1
        return self._book_body(market, symbol, limit)

    def book_doc(self, market, symbol, limit):
        """The depth document GET depth would serve now, parsed (None for an unknown symbol): the
        book the REST order entry matches against. Kept while the book has not moved: the market
        turn asks for it every few ms."""
        self._catch_up((market, symbol))
        book = self.books.get((market, symbol))
        synced = book is not None and book.synced
        cached = self._book_docs.get((market, symbol, limit))
        if synced and cached is not None and cached[0] == book.update_id:
            return cached[1]
        status, body = self._book_body(market, symbol, limit)
        doc = orjson.loads(body) if status == 200 else None
        if synced:
            self._book_docs[(market, symbol, limit)] = (book.update_id, doc)
        return doc

    def _book_body(self, market, symbol, limit):
        self._catch_up((market, symbol))
        book = self.books.get((market, symbol))
        if book is None or not book.synced:
            # before the venue knows the book (or after a gap in the capture): the next captured
            # snapshot, as the venue would have served it then
            snaps = self._pending_snapshots.get((market, symbol)) or self.feed.snapshots.get((market, symbol), [])[-1:]
            if not snaps:
                return 400, b'{"code":-1121,"msg":"Invalid symbol."}'
            return 200, snaps[0][1]
        bids, asks = book.book.top(limit)
        # the id of the last diff sent: a client connected before it holds it and syncs; one
        # that connected after it finds the next diff does not cover the id and asks again
        text = lambda levels: [[format_fixed(p, VENUE_PRECISION), format_fixed(q, VENUE_PRECISION)]
                               for p, q in levels.tolist()]
        body = {"lastUpdateId": book.update_id, "bids": text(bids), "asks": text(asks)}
        if market == "usdm":
            body["E"] = body["T"] = int(time.time() * 1000)
        return 200, orjson.dumps(body)

    def _fault(self, q):
        kind = q.get("kind")
        seconds = float(q.get("seconds", "1"))
        if kind == "drop":
            for c in list(self.clients):
                c.transport.disconnect(graceful=False)
            self.stats["drops"] += 1
        elif kind == "gap":
            self._gap_next.add((q.get("market", "spot"), q.get("symbol", "BTCUSDT").upper()))
        elif kind == "malformed":
            self._send_malformed(int(q.get("count", "3")))
        elif kind == "stall":
            self._stall_until = time.monotonic() + seconds
        elif kind == "refuse":
            self._refuse_until = time.monotonic() + seconds
        elif kind == "filter":
            return self._set_filter(q)
        elif kind == "ping":
            for c in self.clients:
                c.transport.send_ping(b"sim")
                self.stats["pings"] += 1
        elif kind == "user_drop":
            closed = sum(a.drop_all() for a in self.ws_apis())
            closed += self.user_streams.drop_all() if self.user_streams is not None else 0
            return 200, orjson.dumps({"ok": kind, "closed": closed})
        elif kind in ORDER_FAULTS or kind in FUTURES_FAULTS:
            entries = self.order_entries()
            if kind in FUTURES_FAULTS:
                entries = [self.futures_orders] if self.futures_orders is not None else []
            if not entries:
                return 404, b'{"error":"no Binance order entry for this fault (no exchangeInfo)"}'
            try:
                if kind in FUTURES_FAULTS:
                    return 200, orjson.dumps(futures_fault(self.futures_orders, kind, q))
                return 200, orjson.dumps(entries[0].fault(kind, q))        # one gate for every market
            except ValueError:
                return 400, orjson.dumps({"error": f"bad parameters for {kind}"})
        else:
            return 400, orjson.dumps({"error": f"unknown fault kind {kind!r}"})
        return 200, orjson.dumps({"ok": kind})

    def _set_filter(self, q):
        """A venue that changes a symbol's filters, as Binance does now and then: the
        exchangeInfo served from now on says so (filter=PRICE_FILTER&field=tickSize&value=0.1)."""
        market, symbol = q.get("market", "spot"), q.get("symbol", "BTCUSDT").upper()
        body = self.feed.exchange_info.get(market)
        if body is None:
            return 404, b'{"error":"no exchangeInfo for this market"}'
        doc = orjson.loads(body)
        for entry in doc.get("symbols", ()):
            if entry.get("symbol") == symbol:
                for f in entry.get("filters", ()):
                    if f.get("filterType") == q.get("filter", "PRICE_FILTER") and q.get("field") in f:
                        f[q["field"]] = q["value"]
                        self.feed.exchange_info[market] = orjson.dumps(doc)
                        return 200, orjson.dumps({"ok": "filter", "symbol": symbol, q["field"]: q["value"]})
        return 400, orjson.dumps({"error": f"no such filter field for {symbol}"})

    def _send_malformed(self, count):
        bad = [b'{"stream":"btcusdt@trade","data":{"e":"trade"', b"\xff\xfe not json",
               b'{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT","p":"nan"}}',
               b'{"stream":"x","data":' + b"[" * 10 + b"]" * 10 + b"}",
               b'{"stream":"btcusdt@trade","data":{"pad":"' + b"x" * (2 << 20) + b'"}}']
        for c in self.clients:
            for i in range(count):
                c.queue(ws_frame(bad[i % len(bad)]))
                self.stats["malformed_sent"] += 1
            c.flush()

    def on_client_request(self, client, payload):
        """SUBSCRIBE / UNSUBSCRIBE / LIST_SUBSCRIPTIONS as Binance answers them."""
        try:
            req = orjson.loads(payload)
            method, params, rid = req["method"], req.get("params", []), req["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            client.queue(ws_frame(b'{"error":{"code":2,"msg":"Invalid request"}}'))
            client.flush()
            return
        if method == "SUBSCRIBE":
            client.keys |= {stream_key(p) for p in params}
            self.reroute()
            result = None
        elif method == "UNSUBSCRIBE":
            client.keys -= {stream_key(p) for p in params}
            self.reroute()
            result = None
        elif method == "LIST_SUBSCRIPTIONS":
            result = sorted(client.keys)
        else:
            client.queue(ws_frame(orjson.dumps({"error": {"code": 1, "msg": f"unknown method {method}"}, "id": rid})))
            client.flush()
            return
        client.queue(ws_frame(orjson.dumps({"result": result, "id": rid})))
        client.flush()

    def reroute(self):
        routes = {}
        for c in self.clients:
            routes.setdefault((c.market, RAW_KEY), []).append(c)
            for key in c.keys:
                routes.setdefault((c.market, key), []).append(c)
        self.routes = routes

    def client_joined(self, client=None):
        if client is not None:
            self._joined += 1
        if self._clients_in is not None and self._joined >= self.config.wait_clients:
            self._clients_in.set()

    # -- the timeline ---------------------------------------------------------------------------
    def _timeline(self) -> list[int]:
        """Each frame's time on the replay clock: its receive time, with stretches of more than
        max_gap_s without a frame cut to max_gap_s."""
        frames, max_gap = self.feed.frames, int(self.config.max_gap_s * 1e9)
        out, shift, prev = [], 0, None
        for f in frames:
            if prev is not None and f.at_ns - prev > max_gap > 0:
                shift += f.at_ns - prev - max_gap
                self.stats["gaps_cut"] += 1
            prev = f.at_ns
            out.append(f.at_ns - shift)
        return out

    async def _replay(self):
        cfg = self.config
        frames = self.feed.frames
        at = self._timeline()
        if self.stats["gaps_cut"]:
            log.info("%d stretches of more than %g s of market time without a frame are cut to that (--max-gap)",
                     self.stats["gaps_cut"], self.config.max_gap_s)
        self._clients_in = asyncio.Event()
        said_at = -1.0
        while True:
            self.client_joined()        # clients may already be in; 0 waits for nobody
            await self._clients_in.wait()
            if not frames:
                return
            await self._one_pass(frames, at)
            span = (frames[-1].at_ns - frames[0].at_ns) / 1e9
            ended = (f"replay of {self.feed.name or 'the capture'} ended after {len(frames):,} frames, "
                     f"{span:,.1f} s of market time")
            if not cfg.loop:
                self.stats["replay_done"] = True
                log.info("%s; --loop to repeat", ended)
                return
            if time.monotonic() - said_at >= 1.0:      # a short capture at full speed: not a line a pass
                said_at = time.monotonic()
                log.info("%s; starting again (pass %d): connections closed, clients re-sync their books",
                         ended, self._pass + 1)
            self._start_again()

    async def _one_pass(self, frames, at):
        cfg = self.config
        t0_src = at[0]
        t0 = time.monotonic_ns()
        i = 0
        while i < len(frames):
            if time.monotonic() < self._stall_until:
                await asyncio.sleep(0.01)
                t0 += 10_000_000            # the stall shifts the timeline, it does not burst after
                continue
            if cfg.speed > 0:
                now = time.monotonic_ns()
                batch_end = i
                while batch_end < len(frames) and batch_end - i < 4096 and \
                        t0 + (at[batch_end] - t0_src) / cfg.speed <= now:
                    batch_end += 1
                if batch_end == i:
                    due = t0 + (at[i] - t0_src) / cfg.speed
                    await asyncio.sleep(min(max((due - now) / 1e9, 0), 0.05))
                    continue
            else:
                batch_end = min(i + 4096, len(frames))
            self._emit(frames, i, batch_end)
            i = batch_end
            self.stats["replay_position"] = i
            if cfg.speed <= 0:
                await asyncio.sleep(0)      # let the clients' sockets drain

    def _start_again(self):
        """A new pass from the first frame: the venue's books start again, and every client is
        sent what it is owed, then a close (1001), so it reconnects and re-syncs from a snapshot."""
        for c in list(self.clients):
            if c.transport is None or c.transport.is_disconnected:
                continue
            if c.backlog:
                c.transport.underlying_transport.write(bytes(c.backlog))
                c.backlog.clear()
            c.transport.send_close(WSCloseCode.GOING_AWAY, b"replay starts again")
            c.transport.disconnect()
            self.clients.discard(c)     # nothing more goes its way while it closes
        self.reroute()
        self.books.clear()
        self._book_docs.clear()
        self._depth_applied.clear()
        self._pending_snapshots = {k: list(v) for k, v in self.feed.snapshots.items()}
        self._emitted = 0
        self._gap_next.clear()
        self._pass += 1
        self.stats["replay_pass"] = self._pass
        self.stats["replay_position"] = 0
        self._joined = 0
        self._clients_in.clear()

    def _emit(self, frames, start, end):
        """Queue frames[start:end] to the clients that subscribe to each one's stream."""
        routes, chunk, gap_next = self.routes, self.config.chunk_bytes, self._gap_next
        sent = 0
        for n in range(start, end):
            f = frames[n]
            if gap_next and f.depth is not None and (f.market, f.depth[0]) in gap_next:
                gap_next.discard((f.market, f.depth[0]))
                self.stats["gaps_injected"] += 1
                continue                    # the clients never see these update ids
            targets = routes.get((f.market, f.key))
            if targets:
                for c in targets:
                    c.backlog += f.framed
                    if len(c.backlog) >= chunk:
                        self._emitted = n + 1
                        c.flush()
                sent += len(targets)
        self._emitted = end
        self.stats["frames_sent"] += sent
        for c in list(self.clients):
            c.flush()

    async def _pinger(self):
        while True:
            await asyncio.sleep(self.config.ping_interval_s)
            now = time.monotonic()
            for c in list(self.clients):
                if now - c.last_pong > self.config.pong_timeout_s:
                    log.warning("no pong for %.0f s: closing", now - c.last_pong)
                    c.transport.disconnect(graceful=False)
                else:
                    c.transport.send_ping(b"sim")
                    self.stats["pings"] += 1
            for api in self.ws_apis():
                self.stats["pings"] += api.ping_all(self.config.pong_timeout_s)
            if self.user_streams is not None:
                self.stats["pings"] += self.user_streams.ping_all(self.config.pong_timeout_s)

    async def start(self):
        self.server = await ws_create_server(self._listener_factory, self.config.host, self.config.port,
                                             enable_auto_pong=True, max_frame_size=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]
        self._tasks = [asyncio.ensure_future(self._replay()), asyncio.ensure_future(self._pinger()),
                       asyncio.ensure_future(self._market_turn())]
        return self.port

    async def _market_turn(self):
        """Every MARKET_TURN_S while orders rest: the books move under them, they fill, events go out."""
        while True:
            await asyncio.sleep(MARKET_TURN_S)
            for entry in self.order_entries():
                try:
                    entry.turn()
                except Exception:       # a bug of ours: in the log, and the venue goes on
                    log.exception("market turn")

    async def stop(self):
        for t in self._tasks:
            t.cancel()
        for c in list(self.clients):
            c.transport.disconnect(graceful=False)
        for api in self.ws_apis():
            api.drop_all()
        if self.user_streams is not None:
            self.user_streams.drop_all()
        self.server.close()
        await self.server.wait_closed()


REPLAY_HELP = ("what to replay: btcusdt (the default: the hftbacktest BTCUSDT spot and USD-M captures), "
               "cryptofeed-spot, cryptofeed-usdm, synthetic (a random-walk market), or any capture FILE or DIR: "
               "'<recv_ns> <json>' lines, gzip or plain (hftbacktest's captures, md's raw-frame recordings), a "
               "cryptofeed NAME.ws.N with its NAME.http.N beside it; a DIR replays every capture in it, every market "
               "on one timeline in receive-time order")
MARKET_HELP = ("the market of capture files that cannot tell: a file's frames say spot or USD-M when they hold depth "
               "diffs, bookTickers or trades, else a spot/usdm word in its name (binance-usdm-....frames.gz) does")


def build_parser():
    import argparse
    parser = argparse.ArgumentParser(prog="ttquant venue-sim binance",
                                     description="Binance's public market-data interface on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: any free one, printed)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed; 0 = as fast as possible")
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--replay", default="btcusdt", metavar="NAME|FILE|DIR", help=REPLAY_HELP)
    parser.add_argument("--market", choices=MARKETS, default=None, help=MARKET_HELP)
    parser.add_argument("--loop", action="store_true",
                        help="at the end start again; connections are closed so clients re-sync their books")
    parser.add_argument("--max-gap", type=float, default=10.0, metavar="SECONDS",
                        help="cut market time with no frame longer than this (files days apart); 0: never")
    parser.add_argument("--wait-clients", type=int, default=0,
                        help="start the timeline (and each --loop pass) once this many WebSocket clients are in")
    orders = parser.add_argument_group("order entry (the gateway's sim adapter)")
    orders.add_argument("--orders", metavar="RINGS", default=None,
                        help="take orders, matching them against md's /ttq.RINGS.ticks and .books")
    orders.add_argument("--maker-fee-bps", type=float, default=2.0)
    orders.add_argument("--taker-fee-bps", type=float, default=5.0)
    orders.add_argument("--slippage-bps", type=float, default=0.0)
    orders.add_argument("--latency-ms", type=float, default=1.0, help="request to effect, fixed part")
    orders.add_argument("--latency-jitter-ms", type=float, default=0.5, help="plus up to this much")
    orders.add_argument("--no-queue", action="store_true", help="resting orders fill without queue position")
    orders.add_argument("--balances", metavar="ASSET=AMOUNT,...", default="",
                        help="the account's starting balances (e.g. USDT=100000,BTC=2); fills move them")
    orders.add_argument("--rest-port", type=int, default=0,
                        help="the HTTP port of REST order entry (POST/DELETE /api/v3/...); 0 (default): any free one")
    orders.add_argument("--api-keys", metavar="FILE", default=None,
                        help="API keys of the signed REST order entry (/api/v3/order ...), mode 0600, a line each: "
                             "'KEY hmac SECRET' or 'KEY ed25519 PUBLIC_PEM_FILE'; or one HMAC key from "
                             "$TTQ_SIM_BINANCE_API_KEY and $TTQ_SIM_BINANCE_API_SECRET")
    orders.add_argument("--weight-limit", type=int, default=6000,
                        help="request weight per minute (REST and WebSocket API, one counter); over it 429, then 418")
    orders.add_argument("--orders-10s", type=int, default=100, help="new orders per 10 seconds; over it 429 (-1015)")
    orders.add_argument("--orders-1d", type=int, default=200_000, help="new orders per UTC day; over it 429 (-1015)")
    orders.add_argument("--ban-seconds", type=float, default=120.0,
                        help="how long a client that goes on after a 429 is refused (418)")
    orders.add_argument("--futures-balances", metavar="ASSET=AMOUNT,...", default=None,
                        help="the USDT-M futures wallet (/fapi) at the start (e.g. USDT=100000); default: the USDT "
                             "of --balances, as a wallet of its own")
    orders.add_argument("--listen-key-ttl", type=float, default=3600.0, metavar="SECONDS",
                        help="how long a USDT-M listen key lives after its last POST / PUT (Binance: 3600)")
    orders.add_argument("--leverage", type=int, default=20, help="the USDT-M account's leverage on every symbol")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    balances = _parse_balances(parser, args.balances)
    futures_balances = _parse_balances(parser, args.futures_balances) if args.futures_balances is not None \
        else {a: v for a, v in balances.items() if a == "USDT"}
    if args.listen_key_ttl <= 0 or args.leverage < 1:
        parser.error("--listen-key-ttl takes a positive number of seconds, --leverage a positive integer")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port}: not a TCP port (0 to 65535)")
    from ttquant.core.daemon.notify import configure_logging
    from ttquant.core.sim.captures import CaptureFormatError
    configure_logging()
    logging.getLogger("picows").setLevel(logging.WARNING)     # a line for every HTTP request otherwise
    try:
        feed = ReplayFeed.named(args.replay, market=args.market)
    except (CaptureFormatError, OSError) as exc:       # one line naming the file (and line), no traceback
        print(f"venue-sim binance: {exc}", file=sys.stderr)
        return 2
    model = None
    if args.orders:
        from ttquant.core.sim.matching import FillModel
        model = FillModel(maker_fee_ppm=round(args.maker_fee_bps * 100), taker_fee_ppm=round(args.taker_fee_bps * 100),
                          slippage_ppm=round(args.slippage_bps * 100), latency_ns=round(args.latency_ms * 1e6),
                          latency_jitter_ns=round(args.latency_jitter_ms * 1e6), queue_position=not args.no_queue)
    cfg = VenueConfig(port=args.port, speed=args.speed, ping_interval_s=args.ping_interval,
                      wait_clients=args.wait_clients, loop=args.loop, max_gap_s=args.max_gap)
    from ttquant.core.sim.binance_orders import load_api_keys
    from ttquant.core.sim.matching import FillModel
    try:
        keys = load_api_keys(args.api_keys)
    except (ValueError, OSError) as exc:
        print(f"venue-sim binance: --api-keys: {exc}", file=sys.stderr)
        return 2
    rest_fees = FillModel(maker_fee_ppm=round(args.maker_fee_bps * 100), taker_fee_ppm=round(args.taker_fee_bps * 100))
    from ttquant.core.sim.binance_orders import RateLimits
    if min(args.weight_limit, args.orders_10s, args.orders_1d) < 1 or args.ban_seconds < 0:
        parser.error("--weight-limit, --orders-10s and --orders-1d take a positive count, --ban-seconds 0 or more")
    limits = RateLimits(args.weight_limit, args.orders_10s, args.orders_1d, args.ban_seconds)
    futures = {"balances": futures_balances, "listen_key_ttl_s": args.listen_key_ttl, "leverage": args.leverage}
    return asyncio.run(_serve(cfg, feed, args.orders, model, balances, (keys, rest_fees, args.rest_port, limits),
                              futures))


def _parse_balances(parser, text: str) -> dict[str, int]:
    """'USDT=100000,BTC=2' -> asset -> amount at account precision (8 decimals), exactly."""
    from decimal import Decimal, InvalidOperation
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        asset, _, amount = item.partition("=")
        try:
            value = Decimal(amount).scaleb(8)
        except InvalidOperation:
            value = None
        if not asset.isalnum() or value is None or value != value.to_integral_value() or value < 0:
            parser.error(f"--balances: {item!r} is not ASSET=AMOUNT (at most 8 decimals, not negative)")
        out[asset.upper()] = int(value)
    return out


def _state_rate_limits(feed: ReplayFeed, limits, market: str = "spot") -> None:
    """The market's exchangeInfo says the venue's own limits (its other rateLimits, e.g. RAW_REQUESTS, stay)."""
    doc = orjson.loads(feed.exchange_info[market])
    ours = limits.exchange_info()
    kept = [r for r in doc.get("rateLimits", ()) if r.get("rateLimitType") not in ("REQUEST_WEIGHT", "ORDERS")]
    doc["rateLimits"] = ours + kept
    feed.exchange_info[market] = orjson.dumps(doc)


async def _serve(cfg: VenueConfig, feed: ReplayFeed, orders: str | None = None, model=None,
                 balances: dict | None = None, rest=None, futures: dict | None = None) -> int:
    venue = BinanceVenue(feed, cfg)
    if rest is not None:
        from ttquant.core.sim.binance_orders import VenueGate
        keys, fees, rest_port, limits = rest
        gate = VenueGate(limits)            # one clock, weight counter, ban and fault set for both markets
    if rest is not None and "spot" in feed.exchange_info:
        from ttquant.core.sim.binance_orders import BinanceSpotOrders
        from ttquant.core.sim.binance_wsapi import BinanceWsApi
        _state_rate_limits(feed, limits)
        venue.spot_orders = BinanceSpotOrders(keys, lambda: feed.exchange_info.get("spot"),
                                              lambda symbol, limit: venue.book_doc("spot", symbol, limit),
                                              fees, balances, gate=gate)
        venue.ws_api = BinanceWsApi(venue.spot_orders)
    if rest is not None and "usdm" in feed.exchange_info:
        from ttquant.core.sim.binance_futures import BinanceFuturesOrders, FuturesUserStreams
        from ttquant.core.sim.binance_wsapi import USDM_WS_API, BinanceWsApi
        _state_rate_limits(feed, limits, "usdm")
        futures = futures or {}
        venue.futures_orders = BinanceFuturesOrders(
            keys, lambda: feed.exchange_info.get("usdm"), lambda symbol, limit: venue.book_doc("usdm", symbol, limit),
            fees, futures.get("balances", {a: v for a, v in (balances or {}).items() if a == "USDT"}), gate=gate,
            **{k: v for k, v in futures.items() if k != "balances"})
        venue.user_streams = FuturesUserStreams(venue.futures_orders)
        venue.ws_fapi = BinanceWsApi(venue.futures_orders, USDM_WS_API)
    try:
        port = await venue.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            print(f"venue-sim binance: {cfg.host}:{cfg.port} is in use (another venue-sim? --port 0 takes a free "
                  "one)", file=sys.stderr)
            return 4
        print(f"venue-sim binance: cannot listen on {cfg.host}:{cfg.port} ({exc.strerror or exc})", file=sys.stderr)
        return 2
    rest_server, rest_said = None, ""
    if venue.order_entries():
        from ttquant.core.sim.binance_orders import RestServer
        try:
            rest_server = await asyncio.get_running_loop().create_server(
                lambda: RestServer(venue.order_entries(), venue._http), cfg.host, rest_port)
        except OSError as exc:
            print(f"venue-sim binance: REST order entry cannot listen on {cfg.host}:{rest_port} "
                  f"({exc.strerror or exc})", file=sys.stderr)
            await venue.stop()
            return 4 if exc.errno == errno.EADDRINUSE else 2
        rest_said = f", REST order entry on {cfg.host}:{rest_server.sockets[0].getsockname()[1]}"
    if orders:
        from ttquant.core.sim.order_venue import SimOrderVenue
        venue.order_venue = SimOrderVenue(orders, model, balances=balances)
        venue.order_venue.start()
    print(f"venue-sim binance: listening on 127.0.0.1:{port} ({feed.description}, speed {cfg.speed}"
          f"{', looping' if cfg.loop else ''}){rest_said}", flush=True)
    for note in feed.notes:
        log.info("%s", note)
    from ttquant.core.daemon.notify import Notifier
    notify = Notifier()
    notify.ready(f"listening on 127.0.0.1:{port}, {feed.description}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), notify.watchdog_interval_s)
        except TimeoutError:
            pass
        notify.watchdog()           # the event loop turns: the venue answers
    notify.stopping()
    if rest_server is not None:
        rest_server.close()
    await venue.stop()
    if venue.order_venue is not None:
        venue.order_venue.stop()
    return 0


if __name__ == "__main__":      # the options `ttquant venue-sim binance` does not pass on yet
    sys.exit(main())
