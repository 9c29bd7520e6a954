"""The simulated Binance venue from outside, for the tests of core/sim: a `ttquant venue-sim binance` process
with our keys (running_venue), its REST order entry (Venue), a blocking WebSocket API client (WsApi), a blocking
client of a futures listen key's stream (UserStream) and a USDT-M REST call (fapi); `timeless` takes out of a
body what differs between two runs of the same requests."""
from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest

from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.binance.signing import HmacSigner, sign_ws_params, signed_query

from ttq_binance import KEY, SECRET, api_keys_file
from ttq_testing import Children, start_binance_venue, wait_for


class WsApi:
    """A blocking WebSocket API client: call() sends a request and returns its answer; user data events
    met on the way are kept in `events` (subscriptionId, event), in arrival order."""

    def __init__(self, port, timeout=10.0, path="/ws-api/v3"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            assert byte, head
            head += byte
        assert head.startswith(b"HTTP/1.1 101"), head
        self.events = []
        self.answers = {}
        self.pings = 0
        self._ids = iter(range(1, 1 << 30))

    def close(self):
        self.sock.close()

    def send_text(self, text: bytes):
        mask, n = os.urandom(4), len(text)
        size = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        self.sock.sendall(bytes([0x81]) + size + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(text)))

    def _exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed by the venue")
            out += chunk
        return out

    def read(self) -> dict:
        """The next text message (a ConnectionError when the venue closed the connection)."""
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(self._exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self._exact(8), "big")
            payload = self._exact(n)
            opcode = first & 0x0F
            if opcode == 0x9:           # the venue's ping: a pong with its payload, as Binance asks
                self.pings += 1
                mask = os.urandom(4)
                self.sock.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask +
                                  bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
                continue
            if opcode == 0x8:
                raise ConnectionError("closed by the venue (close frame)")
            if opcode == 0x1:
                message = json.loads(payload)
                if "subscriptionId" in message and "event" in message:
                    self.events.append((message["subscriptionId"], message["event"]))
                    continue
                return message

    def request(self, method, params=None, rid=None) -> object:
        rid = next(self._ids) if rid is None else rid
        message = {"id": rid, "method": method}
        if params is not None:
            message["params"] = params
        self.send_text(json.dumps(message).encode())
        return rid

    def answer(self, rid) -> dict:
        while rid not in self.answers:
            message = self.read()
            self.answers[message.get("id")] = message
        return self.answers.pop(rid)

    def call(self, method, params=None) -> dict:
        return self.answer(self.request(method, params))

    def signed(self, method, signer=None, key=KEY, timestamp=None, **params) -> dict:
        params = sign_ws_params(signer or HmacSigner(SECRET), params, key, timestamp or int(time.time() * 1000))
        return self.call(method, params)

    def ok(self, method, **params):
        answer = self.signed(method, **params)
        assert answer["status"] == 200, answer
        return answer["result"]

    def wait_events(self, predicate, timeout=30.0, what="user data events"):
        """Read until predicate(events) holds."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        try:
            while not predicate(self.events):
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {what}: {self.events}")
                try:
                    message = self.read()
                    self.answers[message.get("id")] = message
                except TimeoutError:
                    pass
        finally:
            self.sock.settimeout(10.0)
        return self.events


class Venue:
    def __init__(self, port, rest_port):
        self.port = port
        self.base = f"http://127.0.0.1:{rest_port}"

    def call(self, method, path, params=(), signer=None, key=KEY, timestamp=None):
        """(status, body, headers) of a REST request; signed when a signer is given."""
        query = "&".join(f"{k}={v}" for k, v in params)
        if signer is not None:
            query = signed_query(signer, list(params), timestamp or int(time.time() * 1000))
        req = urllib.request.Request(f"{self.base}{path}?{query}", method=method,
                                     headers={"X-MBX-APIKEY": key} if key else {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read()), resp.headers
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read()), err.headers

    def signed(self, method, path, **params):
        return self.call(method, path, list(params.items()), signer=HmacSigner(SECRET))

    def ok(self, method, path, **params):
        status, body, _ = self.signed(method, path, **params)
        assert status == 200, body
        return body

    def get(self, path):
        with urllib.request.urlopen(f"{self.base}{path}", timeout=10) as resp:
            return json.loads(resp.read())

    def book(self):
        body = self.get("/api/v3/depth?symbol=BTCUSDT&limit=100")
        levels = lambda side: [(Decimal(p), Decimal(q)) for p, q in body[side]]     # noqa: E731
        return levels("bids"), levels("asks")

    def balance(self, asset):
        entry = next(b for b in self.ok("GET", "/api/v3/account")["balances"] if b["asset"] == asset)
        return Decimal(entry["free"]), Decimal(entry["locked"])

    def ws(self) -> WsApi:
        return WsApi(self.port)


@contextlib.contextmanager
def running_venue(root, ed_signer, *options, speed="0", to_the_end=True, balances="USDT=500000,BTC=5"):
    """venue-sim with our keys and an account; with to_the_end its capture is replayed to the end first
    (the book stands still)."""
    log = root / "venue.log"
    kids = Children()
    try:
        v = Venue(*start_binance_venue(kids, log, "--speed", speed, "--api-keys", api_keys_file(root, ed_signer),
                                       "--balances", balances, *options))
        if to_the_end:
            wait_for(lambda: v.get("/_sim/status")["replay_done"], timeout=60, interval=0.1,
                     what="the capture replayed to its end")
        yield v
        assert "Traceback" not in log.read_text(), log.read_text()
    finally:
        kids.kill_all()



TIMES = {"transactTime", "workingTime", "time", "updateTime", "clientOrderId"}


def timeless(body):
    """A body without what differs between two runs of the same requests: times, and the random
    clientOrderIds of cancels that did not name one."""
    if isinstance(body, list):
        return [timeless(b) for b in body]
    if isinstance(body, dict):
        return {k: timeless(v) for k, v in body.items()
                if k not in TIMES or (k == "clientOrderId" and not str(v).isalnum())}
    return body


class UserStream(WsApi):
    """A blocking client of /ws/<listenKey>: every message is an event."""

    def __init__(self, port, listen_key, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.sendall((f"GET /ws/{listen_key} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = self.sock.recv(1)
            if not byte:
                break
            head += byte
        self.status = int(head.split(b" ")[1]) if head else 0
        self.events, self.answers, self.pings = [], {}, 0
        self.closed = False

    def wait_for_events(self, predicate, timeout=60.0, what="user data events"):
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while not predicate(self.events):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}: {self.events}")
            try:
                self.events.append(self.read())
            except TimeoutError:
                pass
            except ConnectionError:
                self.closed = True
                break
        return self.events


def fapi(venue, method, path, params=(), signed=True, key=KEY):
    query = signed_query(HmacSigner(SECRET), list(params), int(time.time() * 1000)) if signed else \
        "&".join(f"{k}={v}" for k, v in params)
    req = urllib.request.Request(f"{venue.base}{path}?{query}", method=method, headers={"X-MBX-APIKEY": key})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def exchange_info(market: str) -> bytes:
    """The recorded exchangeInfo body of `market` (spot, usdm), as an order entry in-process serves it."""
    text = (sample_data_dir() / "binance" / f"cryptofeed_{market}_exchangeinfo.0").read_text().splitlines()[0]
    return text.split(": ", 1)[1].encode()


class Market:
    """A book the test moves (depth() is an order entry's depth source), and a clock it sets."""

    def __init__(self, bids, asks):
        self.update_id = 1
        self.bids, self.asks = bids, asks
        self.now = 1_700_000_000.0

    def move(self, bids, asks):
        self.update_id += 1
        self.bids, self.asks = bids, asks

    def depth(self, symbol, limit):
        return {"lastUpdateId": self.update_id, "bids": self.bids, "asks": self.asks}
