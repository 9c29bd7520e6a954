"""One WebSocket connection kept open on an io thread of its own: what the WebSocket API client (wsapi.py)
and the futures listen key stream (listen_key.py) share.

The io thread runs its own event loop (uvloop when installed) and, until close(), opens the connection
again whenever it is lost, with exponential backoff (jittered) that starts over once a connection stayed
up UP_FOR_BACKOFF_RESET_S; nothing is tried while the account's RateLimits say halted or back off. A
subclass says how to open (`_open`: `_dial` the URL, then whatever must happen before the connection is
ready), what to do while it is up (`_while_up`), and what a frame means (`_on_frame`); `_on_gone` is
called when the connection ends, with the future `_dial` made. Callbacks to the owner go through
`_callback`, so an owner's bug is logged and never takes the connection down.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import random
import threading
import time

import orjson
from picows import WSListener, WSMsgType, ws_connect

__all__ = ["KeptConnection", "UP_FOR_BACKOFF_RESET_S"]

log = logging.getLogger("ttquant.venues.binance")
UP_FOR_BACKOFF_RESET_S = 10.0       # a connection that stayed up this long starts the backoff again


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:             # pragma: no cover - uvloop is in the project's requirements
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class KeptConnection:
    """The io thread and the reconnect loop; subclasses give `limits` (RateLimits), `_open` and `_on_frame`."""

    def __init__(self, name: str, *, backoff_initial_s: float, backoff_max_s: float, connect_timeout_s: float,
                 ping_idle_s: float, ping_reply_s: float):
        self.name = name
        self.backoff_initial_s, self.backoff_max_s = backoff_initial_s, backoff_max_s
        self.connect_timeout_s, self.ping_idle_s, self.ping_reply_s = connect_timeout_s, ping_idle_s, ping_reply_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._transport = None
        self._gone: asyncio.Future | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()         # up (and whatever _open does): the owner may use it
        self._closing = False
        self._drop_reason = ""
        self.counts = collections.Counter()     # connects, connect_failures, disconnects, ...

    # -- any thread -----------------------------------------------------------------------------------
    def start(self):
        """Start the io thread; it connects (and keeps reconnecting) until close()."""
        if self._thread is None:
            self._loop = _new_loop()
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    def close(self, timeout_s: float = 5.0) -> None:
        self._closing = True
        self._ready.clear()
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._shutdown)
            except RuntimeError:
                pass
            self._thread.join(timeout_s)

    # -- the io thread --------------------------------------------------------------------------------
    def _run(self):
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception:   # a bug: said; the owner sees the connection down
            log.exception("%s: the io loop failed", self.name)
        finally:
            self._ready.clear()
            self._stopped()
            self._loop.close()

    def _stopped(self):
        """The io loop has ended (close() or a bug): nothing may stay waiting on it."""

    def _shutdown(self):
        if self._wake is not None:
            self._wake.set()
        if self._transport is not None:
            self._drop_reason = "closed by us"
            self._transport.send_close()
            self._transport.disconnect()

    async def _pause(self, seconds: float):
        """Sleep, cut short by close()."""
        if self._closing:
            return
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except TimeoutError:
            pass

    def _blocked_for(self) -> float:
        """Seconds to wait before connecting: a halt (checked again each second) or a back-off."""
        if self.limits.halted is not None:
            return 1.0
        return max(0.0, self.limits.backoff_until - self.limits.clock())

    def _where(self) -> str:
        return self.url

    async def _serve(self):
        self._wake = asyncio.Event()
        backoff = self.backoff_initial_s
        while not self._closing:
            blocked = self._blocked_for()
            if blocked > 0:
                await self._pause(min(blocked, 1.0))
                continue
            try:
                await self._open()
            except Exception as exc:        # refused, unreachable, a handshake timeout, a refused logon
                self.counts["connect_failures"] += 1
                if self._transport is not None:
                    self._transport.disconnect()
                    await asyncio.wait([self._gone], timeout=1.0)
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning("%s: %s: not connected (%s: %s); next try in %.2f s", self.name, self._where(),
                            type(exc).__name__, exc, delay)
                await self._pause(delay)
                backoff = min(backoff * 2, self.backoff_max_s)
                continue
            up_since = time.monotonic()
            await self._while_up()
            if time.monotonic() - up_since >= UP_FOR_BACKOFF_RESET_S:
                backoff = self.backoff_initial_s
            if not self._closing:
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning("%s: lost (%s); reconnecting in %.2f s", self.name, self._drop_reason, delay)
                await self._pause(delay)
                backoff = min(backoff * 2, self.backoff_max_s)
        if self._transport is not None:
            self._transport.disconnect()

    async def _open(self):
        """Dial (`_dial`) and make the connection ready; raise when it cannot be."""
        raise NotImplementedError

    async def _while_up(self):
        await self._gone

    async def _dial(self, url: str):
        """The WebSocket connection to `url` (pings answered, an idle one pinged and dropped without a pong)."""
        conn = self
        gone = self._gone = self._loop.create_future()

        class Listener(WSListener):
            def on_ws_frame(self, transport, frame):
                conn._on_frame(transport, frame)

            def on_ws_disconnected(self, transport):
                conn._on_gone(transport, gone)

        transport, _ = await asyncio.wait_for(
            ws_connect(Listener, url, websocket_handshake_timeout=self.connect_timeout_s,
                       enable_auto_ping=True, auto_ping_idle_timeout=self.ping_idle_s,
                       auto_ping_reply_timeout=self.ping_reply_s, enable_auto_pong=True,
                       logger_name="ttquant.venues.binance.picows"),
            self.connect_timeout_s * 2)
        self._transport = transport
        self._drop_reason = "the connection closed"
        self.counts["connects"] += 1
        return transport

    def _callback(self, fn, *args):
        if fn is None:
            return
        try:
            fn(*args)
        except Exception:   # the owner's bug must not take the connection down
            log.exception("%s: callback %s failed", self.name, getattr(fn, "__name__", fn))

    def _on_frame(self, transport, frame):
        kind = frame.msg_type
        if kind == WSMsgType.TEXT:
            self._on_text(frame.get_payload_as_bytes())
        elif kind == WSMsgType.CLOSE:
            if self._drop_reason == "the connection closed":     # a reason of our own (a drop) stays
                self._drop_reason = f"closed by the venue (code {frame.get_close_code()})"
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.BINARY:
            self.counts["binary_frames"] += 1     # SBE: never asked for

    def _on_text(self, data: bytes):
        try:
            msg = orjson.loads(data)          # Binance sends prices and quantities as strings: no float is read
        except ValueError:
            self.counts["bad_messages"] += 1
            log.warning("%s: a message that is not JSON (%d bytes) ignored", self.name, len(data))
            return
        if not isinstance(msg, dict):
            self.counts["bad_messages"] += 1
            return
        self._on_message(msg)

    def _on_message(self, msg: dict):
        """One JSON object from the venue."""
        raise NotImplementedError

    def _on_gone(self, transport, gone):
        raise NotImplementedError
