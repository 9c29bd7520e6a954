"""Readers for the recorded exchange captures ($TTQ_SAMPLE_DATA, default the project's data/).

Two formats hold Binance data (data/NOTICE says where each file comes from):
- hftbacktest: gzip text, one `<local_recv_ns> <json>` per line; combined-stream frames
  ({"stream": ..., "data": ...}) and, inline, the REST depth snapshot ({"lastUpdateId": ...}).
- cryptofeed: `<name>.ws.0` starts with the connect line `wss://... <-> <ts>` and then has
  `<ts>: <frame>` lines; `<name>.http.0` has `<url> -> <ts>: <body>` lines (REST replies),
  and may have a `configuration: {...}` line (cryptofeed's own settings, skipped).
Each reader yields CaptureMessage(recv_ns, source, payload): source is "ws" for a stream
frame (payload: the frame bytes as received) or the REST URL (payload: the body bytes).
"""
from __future__ import annotations

import gzip
import os
import pathlib
from collections.abc import Iterator
from typing import NamedTuple

__all__ = ["CaptureMessage", "sample_data_dir", "read_hftbacktest", "read_cryptofeed_ws",
           "read_cryptofeed_http", "read_cryptofeed", "CaptureFormatError"]

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
