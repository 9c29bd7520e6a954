"""A synthetic Binance-like feed: random-walk microstructure with consistent trades, best
bid/offer and depth diffs, and correct update ids, so the project can demo and test without
any outside data.

Each market/symbol keeps a real book (50 levels a side around a mid on the tick grid). Every
step either trades at the best bid or ask (taking quantity off that level, possibly clearing
it) or moves liquidity (adds, resizes or cancels a level). Every change is one update id; a
bookTicker goes out whenever the top changes, carrying the id of that change; depth diffs
go out every 100 ms of feed time with the final quantity of each level changed since the last
one (spot U/u, futures U/u/pu, exactly as Binance numbers them); every second a 1m kline of
the trades so far (closed at the minute's end) and, for USDT-M, a markPrice update. A REST
snapshot taken at the start is served until the venue's own book takes over.
"""
from __future__ import annotations

import random
from decimal import Decimal

import orjson

__all__ = ["synthetic_feed"]

TICK = Decimal("0.01")
QTY_STEP = Decimal("0.001")
LEVELS = 50
DIFF_EVERY_NS = 100_000_000


def _fmt(value: Decimal, places: str) -> str:
    return str(value.quantize(Decimal(places)))


class _Symbol:
    def __init__(self, symbol, market, rng, mid_ticks):
        self.symbol, self.market, self.rng = symbol, market, rng
        self.stream = symbol.lower()
        self.bids = {mid_ticks - 1 - k: rng.randint(1, 5000) for k in range(LEVELS)}   # ticks -> qty steps
        self.asks = {mid_ticks + 1 + k: rng.randint(1, 5000) for k in range(LEVELS)}
        self.update_id = 1000
        # the first diff starts at the snapshot's own id, as Binance's do (futures need U <= lastUpdateId)
        self.last_diff_u = self.update_id - 1
        self.changed = {}           # (is_ask, price ticks) -> qty steps, since the last diff
        self.trade_id = 1
        self.top = self._top()
        self.kline = None           # [open ms, o, h, l, c, volume steps, quote volume, trades] of the minute
        self.kline_done = None      # the minute just ended, before its closing push

    def _top(self):
        b, a = max(self.bids), min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def snapshot(self) -> bytes:
        text = lambda levels: [[_fmt(p * TICK, "0.01"), _fmt(q * QTY_STEP, "0.001")] for p, q in levels]
        return orjson.dumps({"lastUpdateId": self.update_id,
                             "bids": text(sorted(self.bids.items(), reverse=True)),
                             "asks": text(sorted(self.asks.items()))})

    def _set(self, is_ask, price, qty):
        side = self.asks if is_ask else self.bids
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)
        self.update_id += 1
        self.changed[(is_ask, price)] = qty

    def step(self, at_ns):
        """One market change; returns the frames it produced (trade and/or bookTicker)."""
        rng, out = self.rng, []
        if rng.random() < 0.3:          # a trade takes liquidity at the top
            buy = rng.random() < 0.5
            side = self.asks if buy else self.bids
            price = min(side) if buy else max(side)
            qty = min(side[price], rng.randint(1, 800))
            self._set(buy, price, side[price] - qty)
            if len(side) < 5:           # never let a side run dry: refill behind the top
                far = (max(side) + 1) if buy else (min(side) - 1)
                self._set(buy, far, rng.randint(100, 5000))
            self.trade_id += 1
            self._kline_trade(at_ns, price, qty)
            out.append(self._frame("trade", {"e": "trade", "E": at_ns // 1_000_000, "s": self.symbol,
                                              "t": self.trade_id, "p": _fmt(price * TICK, "0.01"),
                                              "q": _fmt(qty * QTY_STEP, "0.001"), "T": at_ns // 1_000_000,
                                              "m": not buy, **({"X": "MARKET"} if self.market == "usdm" else {})}))
        else:                           # liquidity moves near the top
            is_ask = rng.random() < 0.5
            side = self.asks if is_ask else self.bids
            other = self.bids if is_ask else self.asks
            best = min(side) if is_ask else max(side)
            price = best + (rng.randint(-1, 8) if is_ask else -rng.randint(-1, 8))
            if (is_ask and price <= max(other)) or (not is_ask and price >= min(other)):
                price = best            # never cross the book
            if price in side and rng.random() < 0.3 and len(side) > 5:
                self._set(is_ask, price, 0)
            else:
                self._set(is_ask, price, rng.randint(1, 5000))
        top = self._top()
        if top != self.top:
            self.top = top
            b, bq, a, aq = top
            data = {"u": self.update_id, "s": self.symbol,
                    "b": _fmt(b * TICK, "0.01"), "B": _fmt(bq * QTY_STEP, "0.001"),
                    "a": _fmt(a * TICK, "0.01"), "A": _fmt(aq * QTY_STEP, "0.001")}
            if self.market == "usdm":
                data = {"e": "bookTicker", **data, "T": at_ns // 1_000_000, "E": at_ns // 1_000_000}
            out.append(self._frame("bookTicker", data))
        return out

    def diff(self, at_ns):
        if not self.changed:
            return None
        bids = [[_fmt(p * TICK, "0.01"), _fmt(q * QTY_STEP, "0.001")] for (a, p), q in self.changed.items() if not a]
        asks = [[_fmt(p * TICK, "0.01"), _fmt(q * QTY_STEP, "0.001")] for (a, p), q in self.changed.items() if a]
        data = {"e": "depthUpdate", "E": at_ns // 1_000_000, "s": self.symbol, "U": self.last_diff_u + 1,
                "u": self.update_id, "b": bids, "a": asks}
        if self.market == "usdm":
            data = {**data, "T": at_ns // 1_000_000, "pu": self.last_diff_u}
        self.last_diff_u = self.update_id
        self.changed = {}
        speed = "100ms" if self.market == "spot" else "0ms"
        return self._frame(f"depth@{speed}", data)

    def _kline_trade(self, at_ns, price, qty):
        minute = at_ns // 60_000_000_000 * 60_000
        if self.kline is None or self.kline[0] != minute:
            if self.kline is not None:
                self.kline_done = self.kline        # its closing push goes out next
            self.kline = [minute, price, price, price, price, 0, Decimal(0), 0]
        k = self.kline
        k[2], k[3], k[4] = max(k[2], price), min(k[3], price), price
        k[5] += qty
        k[6] += price * TICK * qty * QTY_STEP
        k[7] += 1

    def kline_updates(self, at_ns):
        """The 1m kline as Binance pushes it every second; the last push of a minute is closed."""
        out = []
        if self.kline_done is not None:
            out.append(self._kline_frame(at_ns, self.kline_done, True))
            self.kline_done = None
        if self.kline is not None:
            closed = at_ns // 1_000_000 >= self.kline[0] + 60_000
            out.append(self._kline_frame(at_ns, self.kline, closed))
            if closed:
                self.kline = None
        return out

    def _kline_frame(self, at_ns, kline, closed):
        start, o, h, lo, c, volume, quote, trades = kline
        data = {"e": "kline", "E": at_ns // 1_000_000, "s": self.symbol, "k": {
            "t": start, "T": start + 59_999, "s": self.symbol, "i": "1m", "o": _fmt(o * TICK, "0.01"),
            "c": _fmt(c * TICK, "0.01"), "h": _fmt(h * TICK, "0.01"), "l": _fmt(lo * TICK, "0.01"),
            "v": _fmt(volume * QTY_STEP, "0.001"), "n": trades, "x": closed, "q": _fmt(quote, "0.00001")}}
        return self._frame("kline_1m", data)

    def mark_update(self, at_ns):
        """USDT-M markPrice@1s: mark at the mid, index a tick under, funding every 8 h."""
        b, _, a, _ = self.top
        mid = Decimal(b + a) / 2 * TICK
        ms = at_ns // 1_000_000
        return self._frame("markPrice@1s", {
            "e": "markPriceUpdate", "E": ms, "s": self.symbol, "p": _fmt(mid, "0.01"),
            "i": _fmt(mid - TICK, "0.01"), "P": _fmt(mid, "0.01"), "r": "0.00010000",
            "T": (ms // 28_800_000 + 1) * 28_800_000})

    def _frame(self, kind, data):
        return orjson.dumps({"stream": f"{self.stream}@{kind}", "data": data})


def synthetic_feed(seconds: float = 300.0, rate: float = 400.0, seed: int = 7,
                   symbols=(("spot", "BTCUSDT", 6_000_000), ("usdm", "BTCUSDT", 5_999_000))):
    """A ReplayFeed of `seconds` of synthetic market (about `rate` changes/s per symbol)."""
    from ttquant.core.sim.binance_venue import FeedFrame, ReplayFeed, stream_key
    rng = random.Random(seed)
    books = [_Symbol(sym, market, random.Random(rng.random()), mid) for market, sym, mid in symbols]
    frames, snapshots = [], {}
    t0 = 1_700_000_000_000_000_000
    for b in books:
        snapshots[(b.market, b.symbol)] = [(t0 - 1, b.snapshot())]
    step_ns = int(1e9 / rate)
    next_diff = t0 + DIFF_EVERY_NS
    next_second = t0 + 1_000_000_000
    t = t0
    end = t0 + int(seconds * 1e9)
    while t < end:
        for b in books:
            for payload in b.step(t):
                doc = orjson.loads(payload)
                frames.append(FeedFrame(t, b.market, stream_key(doc["stream"]), payload))
        if t >= next_diff:
            for b in books:
                payload = b.diff(t)
                if payload is not None:
                    d = orjson.loads(payload)["data"]
                    frames.append(FeedFrame(t, b.market, stream_key(orjson.loads(payload)["stream"]), payload,
                                            (d["s"], d["U"], d["u"], d.get("pu", 0), d["b"], d["a"])))
            next_diff += DIFF_EVERY_NS
        if t >= next_second:
            for b in books:
                for payload in [*b.kline_updates(t), *([b.mark_update(t)] if b.market == "usdm" else [])]:
                    if payload is not None:
                        frames.append(FeedFrame(t, b.market, stream_key(orjson.loads(payload)["stream"]), payload))
            next_second += 1_000_000_000
        t += step_ns + rng.randint(-step_ns // 2, step_ns // 2)
    return ReplayFeed(frames, snapshots, {m: _exchange_info(m, [s for mk, s, _ in symbols if mk == m])
                                          for m in {mk for mk, _, _ in symbols}},
                      f"synthetic random-walk market, {seconds:.0f} s, seed {seed}")


def _exchange_info(market, symbols) -> bytes:
    entries = []
    for s in symbols:
        entry = {"symbol": s, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": s[-4:],
                 "filters": [
                     {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
                     {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"}]}
        if market == "spot":
            entry.update(baseAssetPrecision=8, quoteAssetPrecision=8)
            entry["filters"].append({"filterType": "NOTIONAL", "minNotional": "5"})
        else:
            entry.update(contractType="PERPETUAL", pricePrecision=2, quantityPrecision=3)
            entry["filters"].append({"filterType": "MIN_NOTIONAL", "notional": "5"})
        entries.append(entry)
    return orjson.dumps({"timezone": "UTC", "symbols": entries})
