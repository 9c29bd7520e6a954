"""USDT-M futures user data over a listen key: create it, keep it alive, read its stream, start again when it goes.

Binance's USDT-M futures still deliver user data (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE) over a listen key
(https://developers.binance.com/docs/derivatives/usds-margined-futures/user-data-streams), unlike spot, whose
user data now comes on the WebSocket API (wsapi.py). One io thread runs its own event loop (uvloop when
installed) with one picows client connection to `<stream_url>/<listenKey>` (live wss://fstream.binance.com/ws,
testnet wss://fstream.binancefuture.com/ws, the simulated venue's ws://127.0.0.1:<main port>/ws):

    create       POST /fapi/v1/listenKey (API key header, not signed); with a key already active Binance
                 returns that one and extends it, so a reconnect never loses events to a second key
    keep alive   PUT /fapi/v1/listenKey every `keep_alive_s` (30 min; a key lives 60 min without one)
    start again  on `listenKeyExpired`, a keep-alive refused with -1125 (the key is gone), a dropped or
                 refused connection: the key is created again and the stream reconnected, with exponential
                 backoff (jittered); on_disconnected(reason) when a live stream is lost, on_connected() once
                 a new one is up, so the owner reconciles the gap over REST (the adapter's _reconcile_gap)
    events       every other message (a JSON object) goes to on_event(event) on the io thread

The REST calls run on one worker thread of this stream's own (a BinanceRest of its own: its connection is
never shared with order entry), so the io loop never blocks. Callbacks run on the io thread and must not
block. A listen key reads the account's private data: logs name its first four characters only.

Not here yet: DELETE of the key on close (another process on the same account may be reading the same
key: Binance gives one per account); the live `/private/ws` route (only `/ws/<listenKey>` is spoken);
a second connection opened before Binance's 24-hour disconnect (the gap is reconciled instead).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable

from ttquant.core.venues.binance.kept_connection import KeptConnection
from ttquant.core.venues.binance.rest import BinanceRest, BinanceRestError, Halted, OrderRejected

__all__ = ["KEEP_ALIVE_S", "LISTEN_KEY_STREAM_URLS", "ListenKeyStream"]

log = logging.getLogger("ttquant.venues.binance")

# [adapter] environment -> the listen key stream's base URL (the key is appended as /<listenKey>)
LISTEN_KEY_STREAM_URLS = {
    "live": "wss://fstream.binance.com/ws",
    "testnet": "wss://fstream.binancefuture.com/ws",
}
KEEP_ALIVE_S = 1800.0               # Binance: a key lives 60 min; PUT every 30 min
KEEP_ALIVE_RETRY_S = 60.0           # a keep-alive that could not be sent is tried again this soon
INVALID_LISTEN_KEY = -1125


def _hint(key: str) -> str:
    return f"{key[:4]}…" if key else "(none)"


class ListenKeyStream(KeptConnection):
    """One account's USDT-M user data stream over a listen key; the module docstring says what it does."""

    def __init__(self, rest: BinanceRest, stream_url: str, on_event: Callable[[dict], None] | None = None,
                 on_connected: Callable[[], None] | None = None,
                 on_disconnected: Callable[[str], None] | None = None, *, keep_alive_s: float = KEEP_ALIVE_S,
                 backoff_initial_s: float = 0.1, backoff_max_s: float = 5.0, connect_timeout_s: float = 5.0,
                 ping_idle_s: float = 20.0, ping_reply_s: float = 10.0, name: str = "binance-listen-key"):
        if not stream_url.startswith(("ws://", "wss://")):
            raise ValueError(f"stream_url must be ws(s)://host[:port]/path, got {stream_url!r}")
        super().__init__(name, backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s,
                         connect_timeout_s=connect_timeout_s, ping_idle_s=ping_idle_s, ping_reply_s=ping_reply_s)
        self.rest, self.stream_url = rest, stream_url.rstrip("/")
        self.on_event, self.on_connected, self.on_disconnected = on_event, on_connected, on_disconnected
        self.keep_alive_s = keep_alive_s
        self._rest_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"{name}-rest")
        self._key = ""

    def __repr__(self) -> str:
        return f"ListenKeyStream({self.stream_url}/{_hint(self._key)})"

    __str__ = __repr__

    @property
    def limits(self):
        return self.rest.limits

    def close(self, timeout_s: float = 5.0) -> None:
        super().close(timeout_s)
        self._rest_thread.shutdown(wait=False, cancel_futures=True)
        self.rest.close()

    # -- the io thread --------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.stream_url}/{_hint(self._key)}"

    async def _rest(self, fn):
        return await self._loop.run_in_executor(self._rest_thread, fn)

    async def _open(self):
        self._key = await self._rest(self.rest.create_listen_key)
        self.counts["keys_created"] += 1
        transport = await self._dial(f"{self.stream_url}/{self._key}")
        if self._closing:
            transport.disconnect()
            return
        self._ready.set()
        log.info("%s: user data stream up on %s", self.name, self._where())
        self._callback(self.on_connected)

    async def _while_up(self):
        keeper = self._loop.create_task(self._keep_alive())
        await self._gone
        keeper.cancel()

    async def _keep_alive(self):
        """PUT every keep_alive_s; a key the venue no longer has (-1125) ends this stream, so a new one is made."""
        wait = self.keep_alive_s
        while True:
            await asyncio.sleep(wait)
            try:
                await self._rest(self.rest.keep_alive_listen_key)
                self.counts["keep_alives"] += 1
                wait = self.keep_alive_s
            except OrderRejected as exc:
                if exc.decision is not None and exc.decision.code == INVALID_LISTEN_KEY:
                    self.counts["keys_invalid"] += 1
                    return self._drop(f"the listen key is gone ({INVALID_LISTEN_KEY} on keep-alive)")
                log.warning("%s: keep-alive refused (%s); again in %.0f s", self.name, exc, KEEP_ALIVE_RETRY_S)
                wait = KEEP_ALIVE_RETRY_S
            except (BinanceRestError, OSError) as exc:     # not sent or not answered: the key may still live
                self.counts["keep_alive_failures"] += 1
                if isinstance(exc, Halted):
                    return self._drop(f"order entry halted ({exc})")
                log.warning("%s: keep-alive failed (%s); again in %.0f s", self.name, type(exc).__name__,
                            KEEP_ALIVE_RETRY_S)
                wait = KEEP_ALIVE_RETRY_S

    def _drop(self, reason: str):
        if self._transport is not None:
            self._drop_reason = reason
            self._transport.disconnect()

    def _on_gone(self, transport, gone):
        if transport is self._transport:
            self._transport = None
            was_up = self._ready.is_set()
            self._ready.clear()
            if not self._closing:
                self.counts["disconnects"] += 1
            if was_up:
                self._callback(self.on_disconnected, self._drop_reason)
        if not gone.done():
            gone.set_result(True)

    def _on_message(self, event: dict):
        self.counts["events"] += 1
        if event.get("e") == "listenKeyExpired":
            self.counts["keys_expired"] += 1
            return self._drop("listenKeyExpired")
        self._callback(self.on_event, event)
