"""A synthetic Binance-like feed: random-walk microstructure with consistent trades, best
bid/offer and depth diffs, and correct update ids, so the project can demo and test without
any outside data.

Each market/symbol keeps a real book (50 levels a side around a mid on the tick grid). Every
step either trades at the best bid or ask (taking quantity off that level, possibly clearing
it) or moves liquidity (adds, resizes or cancels a level). Every change is one update id; a
bookTicker goes out whenever the top changes, carrying the id of that change; depth diffs
go out every 100 ms of feed time with the final quantity of each level changed since the last
one (spot U/u, futures U/u/pu, exactly as Binance numbers them). A REST snapshot taken at the
start is served until the venue's own book takes over.
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

    def _top(self):
        b, a = max(self.bids), min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def snapshot(self) -> bytes:
        return orjson.dumps({"lastUpdateId": self.update_id,
                             "bids": [[_fmt(p * TICK, "0.01"), _fmt(q * QTY_STEP, "0.001")] for p, q in sorted(self.bids.items(), reverse=True)],
                             "asks": [[_fmt(p * TICK, "0.01"), _fmt(q * QTY_STEP, "0.001")] for p, q in sorted(self.asks.items())]})

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
            data = {"u": self.update_id, "s": self.symbol, "b": _fmt(b * TICK, "0.01"), "B": _fmt(bq * QTY_STEP, "0.001"),
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
        t += step_ns + rng.randint(-step_ns // 2, step_ns // 2)
    return ReplayFeed(frames, snapshots, {m: _exchange_info(m, [s for mk, s, _ in symbols if mk == m])
                                          for m in {mk for mk, _, _ in symbols}},
                      f"synthetic random-walk market, {seconds:.0f} s, seed {seed}")


def _exchange_info(market, symbols) -> bytes:
    entries = []
    for s in symbols:
        entry = {"symbol": s, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": s[-4:],
                 "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
                             {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"}]}
        if market == "spot":
            entry.update(baseAssetPrecision=8, quoteAssetPrecision=8)
            entry["filters"].append({"filterType": "NOTIONAL", "minNotional": "5"})
        else:
            entry.update(contractType="PERPETUAL", pricePrecision=2, quantityPrecision=3)
            entry["filters"].append({"filterType": "MIN_NOTIONAL", "notional": "5"})
        entries.append(entry)
    return orjson.dumps({"timezone": "UTC", "symbols": entries})
