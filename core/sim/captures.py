"""Readers for the recorded exchange captures ($TTQ_SAMPLE_DATA, default the project's data/).

Two formats hold Binance data (data/NOTICE says where each file comes from):
- hftbacktest: gzip text, one `<local_recv_ns> <json>` per line; combined-stream frames
  ({"stream": ..., "data": ...}) and, inline, the REST depth snapshot ({"lastUpdateId": ...}).
- cryptofeed: `<name>.ws.0` starts with the connect line `wss://... <-> <ts>` and then has
  `<ts>: <frame>` lines; `<name>.http.0` has `<url> -> <ts>: <body>` lines (REST replies),
  and may have a `configuration: {...}` line (cryptofeed's own settings, skipped).
Each reader yields CaptureMessage(recv_ns, source, payload): source is "ws" for a stream
frame (payload: the frame bytes as received) or the REST URL (payload: the body bytes).

capture_kind() tells which format a file holds from its first line, whatever its name, and
CaptureLines reads any of them line by line, gzip or plain (core/sim/binance_replay.py uses both
to replay any capture given by path).
"""
from __future__ import annotations

import gzip
import os
import pathlib
import re
import zlib
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["CaptureMessage", "sample_data_dir", "read_hftbacktest", "read_cryptofeed_ws",
           "read_cryptofeed_http", "read_cryptofeed", "CaptureFormatError", "CaptureLines", "capture_kind",
           "open_capture", "FRAMES", "CRYPTOFEED_WS", "REST_REPLIES", "JSON_DOCUMENT"]

_REPO = pathlib.Path(__file__).resolve().parents[2]


class CaptureFormatError(ValueError):
    """A capture line that fits neither format; names the file and the line."""


class CaptureMessage(NamedTuple):
    recv_ns: int
    source: str             # "ws", or the REST URL the body answered
    payload: bytes


def sample_data_dir() -> pathlib.Path:
    """$TTQ_SAMPLE_DATA, else the data/ folder of the project checkout (it ships with the repo,
    not in the wheel: an installed package without a checkout needs TTQ_SAMPLE_DATA)."""
    env = os.environ.get("TTQ_SAMPLE_DATA")
    return pathlib.Path(env) if env else _REPO / "data"


GZIP_MAGIC = b"\x1f\x8b"
FRAMES, CRYPTOFEED_WS, REST_REPLIES, JSON_DOCUMENT = "frames", "cryptofeed-ws", "rest-replies", "json-document"
# the first non-empty line of each format; the order matters only in that none overlaps
_FIRST_LINE = [
    (re.compile(rb"\d{1,20} [{\[]"), FRAMES),                              # <recv_ns> <json>
    (re.compile(rb"wss?://\S+ <-> \d"), CRYPTOFEED_WS),                     # its connect line
    (re.compile(rb"\d{1,12}(\.\d*)?: [{\[]"), CRYPTOFEED_WS),              # <ts>: <frame>
    (re.compile(rb"(\S+ -> \d{1,12}(\.\d*)?: |configuration: )"), REST_REPLIES),   # <url> -> <ts>: <body>
    (re.compile(rb"\s*[{\[]"), JSON_DOCUMENT),                              # e.g. a saved exchangeInfo
]


def open_capture(path):
    """A capture file opened for binary reading, gunzipped when it starts with gzip's magic
    bytes, whatever its name says."""
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def _shown(line: bytes) -> str:
    """The start of a line as a quoted Python bytes literal would show it, cut at 40 bytes."""
    text = repr(line.rstrip(b"\r\n")[:40])[1:]
    return text[:-1] + ("..." if len(line.rstrip(b"\r\n")) > 40 else "") + text[-1]


def capture_kind(path) -> str:
    """FRAMES, CRYPTOFEED_WS, REST_REPLIES or JSON_DOCUMENT, from the file's first non-empty line;
    a file that is none of them is refused naming that line."""
    lineno, head = 0, b""
    try:
        with open_capture(path) as f:
            while not head.strip():
                head = f.readline(4096)         # the start of a line is enough to tell
                lineno += 1
                if not head:
                    raise CaptureFormatError(f"{path}: empty, not a capture")
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise CaptureFormatError(f"{path}: a gzip file that cannot be read ({exc})") from None
    for pattern, kind in _FIRST_LINE:
        if pattern.match(head):
            return kind
    raise CaptureFormatError(f"{path}:{lineno}: not a capture: {_shown(head)} is neither '<recv_ns> <json>', "
                             "a cryptofeed '<ts>: <frame>' or '<url> -> <ts>: <body>' line, nor a JSON document")


class CaptureLines:
    """The lines of a capture file as (line number, bytes with their line end), gzip or plain.
    A gzip stream cut off mid-write (a recorder killed) ends the lines early and sets cut_off
    instead of raising; a last line without its line end was cut off too (the caller decides)."""

    def __init__(self, path):
        self.path = path
        self.cut_off = False
        self.lines = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        with open_capture(self.path) as f:
            try:
                for line in f:
                    self.lines += 1
                    yield self.lines, line
            except EOFError:
                self.cut_off = True
            except (gzip.BadGzipFile, zlib.error) as exc:
                raise CaptureFormatError(f"{self.path}:{self.lines + 1}: the gzip stream breaks ({exc})") from None


def _ts_ns(text: str, path, lineno) -> int:
    try:
        if "." in text:
            whole, frac = text.split(".", 1)
            return int(whole) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        return int(text) * 1_000_000_000
    except ValueError:
        raise CaptureFormatError(f"{path}:{lineno}: bad timestamp {text[:40]!r}") from None


def read_hftbacktest(path) -> Iterator[CaptureMessage]:
    """`<recv_ns> <json>` lines; REST snapshots are told apart by their lastUpdateId key."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line:
                continue
            ts, sep, payload = line.partition(b" ")
            if not sep or not ts.isdigit():
                raise CaptureFormatError(f"{path}:{lineno}: not '<recv_ns> <json>'")
            source = "rest:depth" if payload.startswith(b'{"lastUpdateId"') else "ws"
            yield CaptureMessage(int(ts), source, payload)


def read_cryptofeed_ws(path) -> Iterator[CaptureMessage]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line or (lineno == 1 and b" <-> " in line):
                continue        # the connect line: which streams were subscribed
            ts, sep, payload = line.partition(b": ")
            if not sep:
                raise CaptureFormatError(f"{path}:{lineno}: not '<ts>: <frame>'")
            yield CaptureMessage(_ts_ns(ts.decode(), path, lineno), "ws", payload)


def read_cryptofeed_http(path) -> Iterator[CaptureMessage]:
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip(b"\r\n")
            if not line or line.startswith(b"configuration: "):
                continue        # cryptofeed's record of its own feed configuration
            url, sep, rest = line.partition(b" -> ")
            ts, sep2, body = rest.partition(b": ")
            if not sep or not sep2:
                raise CaptureFormatError(f"{path}:{lineno}: not '<url> -> <ts>: <body>'")
            yield CaptureMessage(_ts_ns(ts.decode(), path, lineno), url.decode(), body)


def read_cryptofeed(ws_path, http_path=None) -> list[CaptureMessage]:
    """Stream frames and REST replies of one cryptofeed capture, merged in receive order."""
    merged = list(read_cryptofeed_ws(ws_path))
    if http_path is not None:
        merged += list(read_cryptofeed_http(http_path))
    merged.sort(key=lambda m: m.recv_ns)        # stable: equal stamps keep file order
    return merged
