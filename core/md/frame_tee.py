"""Every frame md receives, with its receive time, into gzip files of the public captures'
format (`<recv_ns> <json>` lines): `ttquant venue-sim binance --replay DIR` serves them again,
and a parser fix can be run over old data.

The WebSocket thread only appends (recv_ns, bytes) to a deque (no lock it could wait on, no
I/O); a thread of its own writes them out every 50 ms. A queue past `max_queued` frames (the
disk cannot keep up) drops what does not fit and counts it, never slows the feed.

    <dir>/<venue>-<market>-<YYYYmmddTHHMMSSZ>.frames.gz     one per market, a new one every max_file_s
    <dir>/<venue>-<market>-exchangeinfo.json                 the exchangeInfo md started with

REST depth snapshots go in the same file as the market's frames, inline as the public
captures have them ({"lastUpdateId": ...}), at the time md received them.
"""
from __future__ import annotations

import collections
import gzip
import logging
import os
import threading
import time

__all__ = ["FrameTee"]

log = logging.getLogger("ttquant.md")
WRITE_EVERY_S = 0.05


class FrameTee:
    def __init__(self, directory: str, venue: str, market: str, max_file_s: float = 3600.0,
                 max_queued: int = 1_000_000):
        os.makedirs(directory, exist_ok=True)
        self.directory, self.venue, self.market = directory, venue, market
        self.max_file_s, self.max_queued = max_file_s, max_queued
        self.queue: collections.deque = collections.deque()
        self.dropped = 0
        self.written = 0
        self.files = 0
        self._file = None
        self._opened = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"md-tee-{market}", daemon=True)
        self._thread.start()

    def put(self, recv_ns: int, payload: bytes) -> None:
        """From the WebSocket thread: never waits."""
        if len(self.queue) >= self.max_queued:
            self.dropped += 1
            return
        self.queue.append((recv_ns, payload))

    def save_exchange_info(self, body: bytes) -> None:
        path = os.path.join(self.directory, f"{self.venue}-{self.market}-exchangeinfo.json")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)

    def _open(self, now: float):
        if self._file is not None:
            self._file.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        path = os.path.join(self.directory, f"{self.venue}-{self.market}-{stamp}.frames.gz")
        self._file = gzip.open(path, "ab", compresslevel=1)     # cheap: the disk, not the CPU, is the point
        self._opened = now
        self.files += 1
        log.info("%s: raw frames into %s", self.market, path)

    def _drain(self) -> int:
        n = 0
        while self.queue:
            recv_ns, payload = self.queue.popleft()
            now = time.time()
            if self._file is None or now - self._opened >= self.max_file_s:
                self._open(now)
            self._file.write(b"%d %s\n" % (recv_ns, payload.replace(b"\n", b" ")))
            n += 1
        self.written += n
        return n

    def _run(self):
        while not self._stop.wait(WRITE_EVERY_S):
            try:
                if self._drain() and self._file is not None:
                    self._file.flush()
            except OSError as exc:      # a full disk: say it once in a while, keep the feed going
                self.dropped += len(self.queue)
                self.queue.clear()
                log.error("%s: raw frames not written: %s", self.market, exc)
        self._drain()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.dropped:
            log.warning("%s: %d raw frames dropped (the disk did not keep up)", self.market, self.dropped)
