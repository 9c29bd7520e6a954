"""Binance captures given by path, for `ttquant venue-sim binance --replay FILE|DIR`.

What a file holds is told by its first line (captures.capture_kind), whatever its name:
  frames         `<recv_ns> <json>` lines, gzip or plain: hftbacktest's captures and md's own
                 raw-frame recordings. Combined-stream frames ({"stream", "data"}) and REST depth
                 snapshots inline ({"lastUpdateId", ...}); replies to SUBSCRIBE are skipped.
  cryptofeed     `NAME.ws.N`: the connect line `wss://... <-> <ts>`, then `<ts>: <frame>` lines.
  REST replies   `<url> -> <ts>: <body>` lines (cryptofeed's `NAME.http.N` and exchangeInfo files):
                 depth snapshots by the symbol in their URL, exchangeInfo documents by their path.
  exchangeInfo   a JSON document with a `symbols` list (as `curl .../exchangeInfo` saves it).
A FILE replays with what lies beside it: a `.ws.N` file's `.http.N`, and the files whose name holds
`exchangeinfo`. A DIR replays every file in it (hidden ones, README*, NOTICE*, LICENSE* and *.md
aside: any other file that is not a capture is refused), every market on one timeline in
receive-time order. A line that is not `<recv_ns> <payload>` (or cryptofeed's), or a first line that
is not a frame or snapshot, refuses the replay naming file and line; after that, a payload that is
not a stream frame (a broken frame md received is part of its recording, and what a parser fix is
run over again) is sent as it was received to every client of the file's market, and counted.

One market per frames file. Its frames say which when they can: depth diffs with `pu`, bookTicker
events with `e`, trades with `X`, aggTrades without `M`, markPrice and liquidation events and depth
snapshots with `E` are USD-M, and their spot twins lack those; a cryptofeed connect URL names its host
(fstream: USD-M). Most frames decide: a few of the other kind (a venue's broken frames) are outvoted
and said, more than one in ten refuse the file as a mix. A file of klines alone cannot tell: then a
`spot` or `usdm` word in its name (split at - _ .) decides, then --market. md's own recordings
([record_frames], core/md/frame_tee.py) are `<venue>-<market>-<UTC>.frames.gz` with
`<venue>-<market>-exchangeinfo.json` beside them, so a directory of them replays every market.

Snapshots: an inline one carries no symbol; it goes to the file's symbol whose depth update ids
lie nearest its lastUpdateId. A symbol with diffs but no snapshot anywhere gets an empty one just
before its first diff, so the venue's book holds only the levels the diffs touch (the log says so).

exchangeInfo, for each market replayed: the documents among the inputs (or beside the FILE), then
the sample data's ($TTQ_SAMPLE_DATA/binance); a symbol none of them lists gets an entry inferred
from the capture (tick and step from the most decimals its prices and quantities carry; logged).

Everything is read into memory before the venue listens (about 1 KB a frame).
"""
from __future__ import annotations

import bisect
import pathlib
import re
import urllib.parse

import orjson

from ttquant.core.sim.binance_venue import RAW_KEY, FeedFrame, ReplayFeed, stream_key
from ttquant.core.sim.captures import (
    CRYPTOFEED_WS,
    FRAMES,
    JSON_DOCUMENT,
    REST_REPLIES,
    CaptureFormatError,
    CaptureLines,
    capture_kind,
    open_capture,
    sample_data_dir,
)

__all__ = ["load_replay", "load_files", "BUILT_IN", "MARKETS"]

MARKETS = ("spot", "usdm")
MARKET_WORDS = {"spot": "spot", "usdm": "USD-M"}
BUILT_IN = {    # name -> (files under $TTQ_SAMPLE_DATA/binance, description)
    "btcusdt": (("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz"),
                "replay of the BTCUSDT spot and USDT-M captures (hftbacktest, 2024-08-08)"),
    "cryptofeed-spot": (("cryptofeed_spot.ws.0",), "replay of the cryptofeed spot capture (4 symbols)"),
    "cryptofeed-usdm": (("cryptofeed_usdm.ws.0",), "replay of the cryptofeed usdm capture (4 symbols)"),
}
NOT_CAPTURES = re.compile(r"(readme|notice|licen[cs]e|copying)([._-].*)?|.*\.md", re.IGNORECASE)
QUOTE_ASSETS = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB", "EUR", "TRY", "BRL",
                "JPY", "GBP", "AUD")
USDM_EVENTS = ("markPriceUpdate", "forceOrder", "continuous_kline", "compositeIndex")


def load_replay(what: str, market: str | None = None, data_dir=None) -> ReplayFeed:
    """A built-in name (btcusdt, cryptofeed-spot, cryptofeed-usdm, synthetic), a capture FILE or
    a DIR of them; market: for the files whose frames and name cannot tell."""
    if what == "synthetic":
        from ttquant.core.sim.synthetic import synthetic_feed
        return synthetic_feed(seconds=120)
    if what in BUILT_IN:
        files, description = BUILT_IN[what]
        d = pathlib.Path(data_dir or sample_data_dir()) / "binance"
        feed = load_files([d / name for name in files], market, description, with_siblings=True)
        feed.name = what
        return feed
    path = pathlib.Path(what)
    if path.is_dir():
        inputs = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                        and not NOT_CAPTURES.fullmatch(p.name))
        if not inputs:
            raise CaptureFormatError(f"{what}: no files in it to replay")
        feed = load_files(inputs, market, f"replay of {what}", with_siblings=False)
        markets = " and ".join(sorted({f.market for f in feed.frames}))
        feed.description = f"replay of {what} ({len(inputs)} files, {markets})"
    elif path.is_file():
        feed = load_files([path], market, f"replay of {path.name}", with_siblings=True)
    else:
        raise CaptureFormatError(f"{what}: no such file or directory (nor a built-in name: "
                                 f"{', '.join([*BUILT_IN, 'synthetic'])})")
    feed.name = what
    return feed


def load_files(paths, market: str | None, description: str, with_siblings: bool) -> ReplayFeed:
    """The files (and, with_siblings, what lies beside each: its .http.N, exchangeinfo files) as one feed."""
    paths = [pathlib.Path(p) for p in paths]
    inputs = _Inputs(market)
    for path in paths:
        inputs.add(path)
    if with_siblings:
        for sibling in sorted(_siblings(paths) - set(paths)):
            inputs.add(sibling)
    if not inputs.frames:
        raise CaptureFormatError(f"{', '.join(map(str, paths))}: no stream frames to replay "
                                 "(REST replies or exchangeInfo alone)")
    fallback = _Inputs(None)
    sample = pathlib.Path(sample_data_dir()) / "binance"
    if sample.is_dir():
        for info in sorted(sample.iterdir()):
            if "exchangeinfo" in info.name.lower() and info.is_file():
                try:
                    fallback.add(info)
                except CaptureFormatError as exc:
                    inputs.notes.append(f"sample exchangeInfo left out: {exc}")
    return inputs.feed(description, fallback.infos)


def _siblings(paths) -> set[pathlib.Path]:
    out = set()
    for path in paths:
        if ".ws." in path.name:
            http = path.with_name(path.name.replace(".ws.", ".http."))
            if http.is_file():
                out.add(http)
        out |= {p for p in path.parent.iterdir() if "exchangeinfo" in p.name.lower() and p.is_file()}
    return out


def _market_sign(data: dict) -> tuple[str, str] | None:
    """(market, why) when a stream event's shape tells spot from USD-M, else None."""
    e = data.get("e")
    if e == "depthUpdate":
        return ("usdm", "depth diffs with pu") if "pu" in data else ("spot", "depth diffs without pu")
    if e == "bookTicker":
        return "usdm", "bookTicker events with e"
    if e is None and "u" in data and "B" in data and "A" in data:
        return "spot", "bookTicker events without e"
    if e == "trade":
        return ("usdm", "trades with X") if "X" in data else ("spot", "trades without X")
    if e == "aggTrade":
        return ("spot", "aggTrades with M") if "M" in data else ("usdm", "aggTrades without M")
    if e in USDM_EVENTS:
        return "usdm", f"{e} events"
    return None


def _url_market(url: str) -> str | None:
    """The market a stream or REST URL reaches: Binance's hosts and paths, or venue-sim's /spot, /usdm."""
    parts = urllib.parse.urlsplit(url)
    host, path = parts.hostname or "", parts.path
    first = path.strip("/").split("/")[0]
    if first in MARKETS:
        return first
    if host.startswith(("fstream", "fapi")) or path.startswith("/fapi/"):
        return "usdm"
    if host.startswith(("dstream", "dapi")) or path.startswith("/dapi/"):
        return "coinm"
    if "binance" in host or path.startswith("/api/"):
        return "spot"
    return None


def _name_market(path: pathlib.Path) -> str | None:
    words = set(re.split(r"[-_.\s]+", path.name.lower())) & set(MARKETS)
    return words.pop() if len(words) == 1 else None


class _Row:
    """One stream frame of a file, before the file's market is known."""
    __slots__ = ("at_ns", "key", "payload", "depth", "symbol")

    def __init__(self, at_ns, key, payload, depth, symbol):
        self.at_ns, self.key, self.payload, self.depth, self.symbol = at_ns, key, payload, depth, symbol


class _File:
    """What one frames or cryptofeed file holds: stream frames, inline snapshots, market signs."""

    def __init__(self, path):
        self.path = path
        self.rows: list[_Row] = []
        self.inline: list[tuple[int, int, int, bytes]] = []     # (line, recv_ns, lastUpdateId, body)
        self.signs: dict[str, list] = {}        # market -> [frames that say so, first line, why]
        self.odd: list[tuple[int, str]] = []    # (line, why) of payloads that are not stream frames

    def message(self, lineno: int, recv_ns: int, payload: bytes, complete: bool = True):
        """One line's payload. The first must be a frame or snapshot (ValueError says why not);
        after it, what is not a stream frame is kept as received (a broken frame md got is part of
        its recording, and what a parser fix is run over again)."""
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            doc, why = None, f"not JSON ({exc})"
        else:
            why = 'neither a combined-stream frame {"stream", "data"} nor a depth snapshot'
        if not isinstance(doc, dict):
            return self._odd(lineno, recv_ns, payload, why, complete)
        data, stream = doc.get("data"), doc.get("stream")
        if isinstance(data, dict) and isinstance(stream, str):
            depth = _depth_of(data)
            if data.get("e") == "depthUpdate" and depth is None:
                return self._odd(lineno, recv_ns, payload, "a depthUpdate without s, U, u, b and a", complete,
                                 stream_key(stream))
            symbol = data.get("s")
            self.rows.append(_Row(recv_ns, stream_key(stream), payload, depth,
                                  symbol.upper() if isinstance(symbol, str) else None))
            self._sign(lineno, _market_sign(data))
        elif "lastUpdateId" in doc:
            if not (isinstance(doc["lastUpdateId"], int) and isinstance(doc.get("bids"), list)
                    and isinstance(doc.get("asks"), list)):
                raise ValueError("a depth snapshot without lastUpdateId, bids and asks")
            self.inline.append((lineno, recv_ns, doc["lastUpdateId"], payload))
            self._sign(lineno, ("usdm", "depth snapshots with E") if "E" in doc else
                       ("spot", "depth snapshots without E"))
        elif "id" in doc and ("result" in doc or "error" in doc) or "code" in doc and "msg" in doc:
            return                  # a reply to SUBSCRIBE, or a REST error: nothing a stream sent
        else:
            self._odd(lineno, recv_ns, payload, why, complete)

    def _odd(self, lineno, recv_ns, payload, why, complete, key=RAW_KEY):
        if not complete or not self.rows and not self.inline:
            raise ValueError(why)   # a last line cut off mid-write, or nothing yet says this is a capture
        self.odd.append((lineno, why))
        self.rows.append(_Row(recv_ns, key, payload, None, None))

    def _sign(self, lineno, sign):
        if sign is not None:
            counted = self.signs.setdefault(sign[0], [0, lineno, sign[1]])
            counted[0] += 1


def _depth_of(data: dict) -> tuple | None:
    """(symbol, U, u, pu, bids, asks) of a well-formed depthUpdate, else None."""
    if data.get("e") != "depthUpdate":
        return None
    depth = (data.get("s"), data.get("U"), data.get("u"), data.get("pu", 0), data.get("b"), data.get("a"))
    if isinstance(depth[0], str) and all(type(i) is int for i in depth[1:4]) and isinstance(depth[4], list) \
            and isinstance(depth[5], list):
        return depth
    return None


class _Inputs:
    """The inputs of one replay, gathered file by file, then made one ReplayFeed."""

    def __init__(self, market: str | None):
        self.market = market
        self.frames: list[FeedFrame] = []
        self.snapshots: dict[tuple[str, str], list[tuple[int, bytes]]] = {}
        self.infos: list[tuple[str, dict, str]] = []        # (market, exchangeInfo document, where)
        self.symbols: dict[tuple[str, str], str] = {}       # (market, SYMBOL) -> the file it came from
        self.notes: list[str] = []

    def add(self, path: pathlib.Path):
        kind = capture_kind(path)
        if kind == FRAMES:
            self._frames(path)
        elif kind == CRYPTOFEED_WS:
            self._cryptofeed_ws(path)
        elif kind == REST_REPLIES:
            self._each_line(path, lambda lineno, text, _: self._rest_reply(path, lineno, text))
        elif kind == JSON_DOCUMENT:
            self._json_document(path)

    def _each_line(self, path, handle) -> CaptureLines:
        """handle(lineno, line without its end, whether it had one) for every non-empty line; its
        ValueError refuses the file naming the line, except on a last line cut off mid-write (left
        out, said)."""
        lines = CaptureLines(path)
        for lineno, line in lines:
            text = line.rstrip(b"\r\n")
            if not text:
                continue
            try:
                handle(lineno, text, line.endswith(b"\n"))
            except ValueError as exc:
                if not line.endswith(b"\n"):
                    self.notes.append(f"{path}:{lineno}: its last line is cut off ({exc}): left out")
                    break
                raise CaptureFormatError(f"{path}:{lineno}: {exc}") from None
        if lines.cut_off:
            self.notes.append(f"{path}: the gzip stream ends after line {lines.lines} (cut off while "
                              "being written): replaying what came before")
        return lines

    def _frames(self, path):
        f = _File(path)

        def line(lineno, text, complete):
            ts, sep, payload = text.partition(b" ")
            if not sep or not ts.isdigit():
                raise ValueError("not '<recv_ns> <json>'")
            f.message(lineno, int(ts), payload, complete)
        self._each_line(path, line)
        self._keep(f)

    def _cryptofeed_ws(self, path):
        f = _File(path)

        def line(lineno, text, complete):
            if lineno == 1 and b" <-> " in text:       # the connect line: the URL names the market
                market = _url_market(text.split(b" <-> ")[0].decode("latin-1"))
                if market is not None:
                    f.signs[market] = [1 << 40, 1, "its connect URL"]     # outweighs any frame
                return
            ts, sep, payload = text.partition(b": ")
            if not sep:
                raise ValueError("not '<ts>: <frame>'")
            f.message(lineno, _seconds_ns(ts), payload, complete)
        self._each_line(path, line)
        self._keep(f)

    def _rest_reply(self, path, lineno, text):
        if text.startswith(b"configuration: "):
            return                  # cryptofeed's record of its own settings
        url, sep, rest = text.partition(b" -> ")
        ts, sep2, body = rest.partition(b": ")
        if not sep or not sep2:
            raise ValueError("not '<url> -> <ts>: <body>'")
        recv_ns = _seconds_ns(ts)
        parts = urllib.parse.urlsplit(url.decode("latin-1"))
        market = _url_market(url.decode("latin-1"))
        endpoint = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if market not in MARKETS or endpoint not in ("exchangeInfo", "depth"):
            return                  # another market's or endpoint's reply: nothing the venue serves
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"the reply is not JSON ({exc})") from None
        if endpoint == "exchangeInfo":
            if not isinstance(doc, dict) or not isinstance(doc.get("symbols"), list):
                raise ValueError("an exchangeInfo reply without a symbols list")
            self.infos.append((market, doc, f"{path}:{lineno}"))
            return
        symbol = urllib.parse.parse_qs(parts.query).get("symbol", [""])[0].upper()
        if not symbol or not isinstance(doc, dict) or not isinstance(doc.get("lastUpdateId"), int):
            raise ValueError("a depth reply without its symbol or lastUpdateId")
        self.snapshots.setdefault((market, symbol), []).append((recv_ns, body))

    def _json_document(self, path):
        with open_capture(path) as f:
            raw = f.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise CaptureFormatError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("symbols"), list):
            raise CaptureFormatError(f"{path}:1: a JSON document, but not an exchangeInfo (no symbols list)")
        usdm = any(isinstance(e, dict) and "contractType" in e for e in doc["symbols"])
        self.infos.append(("usdm" if usdm else "spot", doc, str(path)))

    def _market_of(self, f: _File) -> str:
        """The file's market: what most of its frames say (a few odd ones, such as a venue's broken
        frames, are outvoted; a real mix is refused), else a word in its name, else --market."""
        if "coinm" in f.signs:
            raise CaptureFormatError(f"{f.path}: a COIN-M capture (its connect URL): the venue simulates "
                                     "spot and USD-M only")
        if f.signs:
            (market, (n, lineno, why)), *other = sorted(f.signs.items(), key=lambda kv: -kv[1][0])
            if other:
                other_market, (n_other, line_other, why_other) = other[0]
                said = (f"{n_other} {MARKET_WORDS[other_market]} frames (line {line_other}: {why_other}) among "
                        f"{n} {MARKET_WORDS[market]} ones (line {lineno}: {why})")
                if n_other * 10 > n:
                    raise CaptureFormatError(f"{f.path}: {said}: one market per file")
                self.notes.append(f"{f.path}: {said}: replayed as {MARKET_WORDS[market]}")
            if self.market is not None and self.market != market:
                raise CaptureFormatError(f"{f.path}:{lineno}: its frames are {MARKET_WORDS[market]} ({why}), "
                                         f"not --market {self.market}")
            return market
        named = _name_market(f.path)
        if named is not None:
            return named
        if self.market is not None:
            return self.market
        raise CaptureFormatError(f"{f.path}: cannot tell spot from USD-M (no depth, bookTicker or trade frame "
                                 "says): name it with --market spot|usdm, or a spot/usdm word in the file name")

    def _keep(self, f: _File):
        if not f.rows and not f.inline:
            raise CaptureFormatError(f"{f.path}: no frames in it")
        market = self._market_of(f)
        for row in f.rows:
            self.frames.append(FeedFrame(row.at_ns, market, row.key, row.payload, row.depth))
            if row.symbol is not None:
                self.symbols.setdefault((market, row.symbol), str(f.path))
        diffs: dict[str, tuple[list[int], list[int]]] = {}     # symbol -> (recv_ns, u) of its diffs
        for row in f.rows:
            if row.depth is not None:
                times, ids = diffs.setdefault(row.depth[0], ([], []))
                times.append(row.at_ns)
                ids.append(row.depth[2])
        symbols = {row.symbol for row in f.rows if row.symbol}
        for lineno, recv_ns, last_id, body in f.inline:
            if len(diffs) > 1:
                symbol = min(diffs, key=lambda s: _id_distance(diffs[s], recv_ns, last_id))
            elif diffs or len(symbols) == 1:
                symbol = next(iter(diffs or symbols))
            else:
                self.notes.append(f"{f.path}:{lineno}: a depth snapshot left out (no depth diffs say whose)")
                continue
            self.snapshots.setdefault((market, symbol), []).append((recv_ns, body))
        if f.odd:
            self.notes.append(f"{f.path}: {len(f.odd)} lines are not stream frames (the first, line {f.odd[0][0]}: "
                              f"{f.odd[0][1]}): sent as they were received to every {MARKET_WORDS[market]} client")
        span = (f.rows[-1].at_ns - f.rows[0].at_ns) / 1e9 if f.rows else 0.0
        told = f.signs[market][2] if market in f.signs else "by its name or --market"
        self.notes.append(f"{f.path}: {MARKET_WORDS[market]} ({told}), {len(f.rows):,} frames, "
                          f"{len(f.inline)} depth snapshot{'' if len(f.inline) == 1 else 's'}, {span:.0f} s")

    def feed(self, description: str, fallback_infos) -> ReplayFeed:
        self.frames.sort(key=lambda fr: fr.at_ns)       # stable: a file's equal stamps keep their order
        for snaps in self.snapshots.values():
            snaps.sort(key=lambda s: s[0])
        first_diff = {}
        for fr in self.frames:
            if fr.depth is not None:
                first_diff.setdefault((fr.market, fr.depth[0]), fr)
        for (market, symbol), fr in first_diff.items():
            if (market, symbol) not in self.snapshots:
                # spot takes a first diff with U <= id+1 <= u, USD-M one with U <= id <= u
                last_id = fr.depth[1] - 1 if market == "spot" else fr.depth[1]
                body = orjson.dumps({"lastUpdateId": last_id, "bids": [], "asks": []})
                self.snapshots[(market, symbol)] = [(fr.at_ns, body)]
                self.notes.append(f"{MARKET_WORDS[market]} {symbol}: no depth snapshot in the capture: its book "
                                  "starts empty and holds only the levels the diffs touch")
        return ReplayFeed(self.frames, self.snapshots, self._exchange_info(fallback_infos), description,
                          notes=self.notes)

    def _exchange_info(self, fallback_infos) -> dict[str, bytes]:
        out = {}
        for market in sorted({m for m, _ in self.symbols}):
            docs = [(d, w) for m, d, w in [*self.infos, *fallback_infos] if m == market]
            base = dict(docs[0][0]) if docs else {"timezone": "UTC", "symbols": []}
            if docs:
                self.notes.append(f"exchangeInfo of {MARKET_WORDS[market]}: {docs[0][1]}")
            entries = list(base["symbols"])
            listed = {e.get("symbol") for e in entries if isinstance(e, dict)}
            for m, symbol in sorted(self.symbols):
                if m != market or symbol in listed:
                    continue
                found = next(((e, w) for d, w in docs[1:] for e in d["symbols"]
                              if isinstance(e, dict) and e.get("symbol") == symbol), None)
                if found is not None:
                    entries.append(found[0])
                    self.notes.append(f"exchangeInfo of {MARKET_WORDS[market]} {symbol}: {found[1]}")
                else:
                    entry = self._inferred_entry(market, symbol)
                    entries.append(entry)
                    filters = {f["filterType"]: f for f in entry["filters"]}
                    self.notes.append(f"exchangeInfo of {MARKET_WORDS[market]} {symbol}: no document lists it, "
                                      f"inferred from the capture (tick {filters['PRICE_FILTER']['tickSize']}, "
                                      f"step {filters['LOT_SIZE']['stepSize']})")
                listed.add(symbol)
            base["symbols"] = entries
            out[market] = orjson.dumps(base)
        return out

    def _inferred_entry(self, market: str, symbol: str) -> dict:
        """An exchangeInfo entry whose tick and step are the finest the capture's numbers use."""
        price_places = qty_places = 0
        for fr in self.frames:
            if fr.market != market:
                continue
            data = orjson.loads(fr.payload)["data"]
            if not isinstance(data.get("s"), str) or data["s"].upper() != symbol:
                continue
            prices, qtys = _numbers(data)
            price_places = max(price_places, *map(_places, prices), 0)
            qty_places = max(qty_places, *map(_places, qtys), 0)
        tick, step = _unit(price_places), _unit(qty_places)
        quote = next((q for q in QUOTE_ASSETS if symbol.endswith(q) and len(symbol) > len(q)), symbol[-4:])
        entry = {"symbol": symbol, "status": "TRADING", "baseAsset": symbol[:-len(quote)], "quoteAsset": quote,
                 "filters": [{"filterType": "PRICE_FILTER", "tickSize": tick},
                             {"filterType": "LOT_SIZE", "stepSize": step, "minQty": step}]}
        if market == "spot":
            entry.update(baseAssetPrecision=8, quoteAssetPrecision=8)
        else:
            entry.update(contractType="PERPETUAL", pricePrecision=price_places, quantityPrecision=qty_places)
        return entry


def _seconds_ns(text: bytes) -> int:
    """cryptofeed's '1633998512.0633569' (seconds) as ns, exactly."""
    whole, _, frac = text.partition(b".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"bad timestamp {text[:40]!r}")
    return int(whole) * 1_000_000_000 + int(frac.ljust(9, b"0")[:9] or b"0")


def _id_distance(diffs, recv_ns, last_id) -> int:
    """How far a snapshot's lastUpdateId lies from a symbol's diffs received around it."""
    times, ids = diffs
    k = bisect.bisect_left(times, recv_ns)
    return min(abs(ids[j] - last_id) for j in (k - 1, k) if 0 <= j < len(ids))


def _numbers(data: dict) -> tuple[list, list]:
    """The price and quantity strings of one event (mark prices aside: they are not on the tick)."""
    e = data.get("e")
    if e == "depthUpdate":
        levels = [lv for lv in (*data.get("b", ()), *data.get("a", ())) if isinstance(lv, list) and len(lv) >= 2]
        return [lv[0] for lv in levels], [lv[1] for lv in levels]
    if e in ("trade", "aggTrade"):
        return [data.get("p")], [data.get("q")]
    if e in (None, "bookTicker"):
        return [data.get("b"), data.get("a")], [data.get("B"), data.get("A")]
    if e == "kline" and isinstance(data.get("k"), dict):
        k = data["k"]
        return [k.get("o"), k.get("h"), k.get("l"), k.get("c")], [k.get("v")]
    return [], []


def _places(text) -> int:
    if not isinstance(text, str):
        return 0
    return len(text.partition(".")[2].rstrip("0"))


def _unit(places: int) -> str:
    return "1" if places == 0 else "0." + "0" * (places - 1) + "1"
