"""The backtest benchmarks' input and decision rule, shared by TTQuant's engine and the peers.

Events (`bench_events`): the md normaliser's MarketEvents of the BTCUSDT captures in data/
(spot + USD-M, `events_from_capture`), merged by receive time, and repeated back to back until
there are at least `min_events` (10 M by default, issue 10): each repetition's timestamps are
shifted by the span of the data plus 1 ns, so time keeps increasing across repetitions. Two
selections:

  "top"   TRADE and BBO events only (backtest_noop, backtest_ema_cross)
  "full"  the whole recorded stream: depth levels and book resets too (backtest_full)

Built once and cached as raw 120-byte rows (.npy) under build/bench/tmp, keyed by the capture
files and the loader's source, so a second call (or a peer process) only reads the file.

The decision rule every implementation follows (`ema_cross_decisions` is its reference):

  instrument  the USD-M perpetual BTCUSDT (`ema_instrument_id`), its TRADE events only
  price       float(raw price) / 10**price_precision (IEEE division, correctly rounded)
  EMA         alpha = 2 / (span + 1), fast span 10, slow span 50, both seeded with the first
              price, then for every trade (the first included) ema = alpha * p + (1 - alpha) * ema
              (NautilusTrader's ExponentialMovingAverage.update_raw, to the bit)
  cross       from the 50th trade on, s = sign(fast - slow) (0 keeps the previous sign); the
              first non-zero s only sets the state; every later change of s sends one order:
              buy when fast crosses above slow, sell when below
  order       ORDER_QTY (0.001 BTC) at market, or IOC at the touch, filled against the quotes

The rule is over the whole repeated stream (the EMAs carry over from one repetition to the
next), so the reference count is that of the events the benchmark runs, not a multiple of one
repetition's.

This module imports only numpy at the top: the peers' venv (bench/backtest_peers.py) reads the
cache and the constants without TTQuant installed.
"""
from __future__ import annotations

import functools
import hashlib
import os
import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
TMP_DIR = ROOT / "build" / "bench" / "tmp"
CAPTURES = ("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz")

EMA_FAST = 10
EMA_SLOW = 50
ORDER_QTY = 0.001            # BTC: the perpetual's step and minimum

# EventKind / EventFlag values (ttquant.core.records; checked against it in bench_events)
TRADE, BBO, BOOK_LEVEL, BOOK_RESET = 1, 2, 3, 4
BUYER_AGGRESSOR, ASK_SIDE, SNAPSHOT, LAST_IN_BATCH = 1, 2, 4, 8

ROW_BYTES = 120
# The fields the peers read, without the overlapping union (MARKET_EVENT_DTYPE's layout).
PEER_DTYPE = np.dtype({
    "names": ["ts_exchange", "ts_recv", "ts_pub", "seq", "instrument_id", "kind", "flags",
              "price", "qty", "ask_price", "ask_qty"],
    "formats": ["<i8", "<i8", "<i8", "<u8", "<u4", "u1", "u1", "<i8", "<i8", "<i8", "<i8"],
    "offsets": [0, 8, 16, 24, 32, 38, 39, 40, 48, 56, 64],
    "itemsize": ROW_BYTES,
})


def _fingerprint(which, min_events):
    h = hashlib.sha256(f"{which}:{min_events}:{ROW_BYTES}".encode())
    data_dir = ROOT / "data" / "binance"
    for name in CAPTURES + ("cryptofeed_spot_exchangeinfo.0", "cryptofeed_usdm_exchangeinfo.0"):
        st = (data_dir / name).stat()
        h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update((ROOT / "strategies" / "backtest" / "data.py").read_bytes())
    h.update(pathlib.Path(__file__).read_bytes())
    return h.hexdigest()[:12]


def cache_path(which="top", min_events=10_000_000):
    return TMP_DIR / f"events_{which}_{min_events}_{_fingerprint(which, min_events)}.npy"


@functools.lru_cache(maxsize=1)
def _capture():
    from ttquant.core.records import MARKET_EVENT_DTYPE, EventFlag, EventKind
    from ttquant.strategies.backtest.data import events_from_capture

    assert MARKET_EVENT_DTYPE.itemsize == ROW_BYTES
    assert (EventKind.TRADE, EventKind.BBO, EventKind.BOOK_LEVEL, EventKind.BOOK_RESET) == \
        (TRADE, BBO, BOOK_LEVEL, BOOK_RESET)
    assert (EventFlag.BUYER_AGGRESSOR, EventFlag.ASK_SIDE, EventFlag.SNAPSHOT, EventFlag.LAST_IN_BATCH) == \
        (BUYER_AGGRESSOR, ASK_SIDE, SNAPSHOT, LAST_IN_BATCH)
    return events_from_capture(CAPTURES)


def _repeat(events, min_events):
    """Raw rows of `events` back to back until >= min_events, timestamps shifted per repetition."""
    n = len(events)
    reps = max(1, -(-min_events // n))
    ts = events["ts_recv"]
    span = int(ts.max() - ts.min()) + 1
    rows = np.tile(events.view(np.uint8).reshape(n, ROW_BYTES), (reps, 1))
    view = rows.reshape(-1).view(PEER_DTYPE)
    shift = np.repeat(np.arange(reps, dtype=np.int64) * span, n)
    for field in ("ts_exchange", "ts_recv", "ts_pub"):
        col = view[field]
        col += np.where(col != 0, shift, 0)      # 0 stays "not known" (spot BBO has no exchange time)
    return rows


def bench_events_path(which="top", min_events=10_000_000):
    """The cache file of bench_events (built if missing): raw rows, uint8 (n, 120)."""
    if which not in ("top", "full"):
        raise ValueError(f"which must be 'top' or 'full', not {which!r}")
    path = cache_path(which, min_events)
    if not path.exists():
        events, _ = _capture()
        if which == "top":
            events = events[np.isin(events["kind"], (TRADE, BBO))]
        rows = _repeat(events, min_events)
        TMP_DIR.mkdir(parents=True, exist_ok=True)
        for old in TMP_DIR.glob(f"events_{which}_{min_events}_*.npy"):
            old.unlink()
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, rows)
        os.replace(tmp, path)
    return path


def load_rows(path):
    """The cached rows as PEER_DTYPE records (the fields the peers read), in memory."""
    rows = np.load(path)
    return rows.reshape(-1).view(PEER_DTYPE)


def bench_events(which="top", min_events=10_000_000):
    """(events, instrument table): MARKET_EVENT_DTYPE events of the BTCUSDT captures, "top"
    (trades and BBO) or "full" (every event), repeated to at least min_events (module doc)."""
    from ttquant.core.records import MARKET_EVENT_DTYPE

    path = bench_events_path(which, min_events)
    rows = np.load(path)
    _, table = _capture_table()
    return rows.reshape(-1).view(MARKET_EVENT_DTYPE), table


@functools.lru_cache(maxsize=1)
def _capture_table():
    import orjson

    from ttquant.core.instruments import InstrumentTable
    from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
    from ttquant.core.sim.captures import read_cryptofeed_http, sample_data_dir

    d = sample_data_dir() / "binance"
    table = InstrumentTable("binance")
    for market, name in (("spot", "cryptofeed_spot_exchangeinfo.0"), ("usdm", "cryptofeed_usdm_exchangeinfo.0")):
        (msg,) = read_cryptofeed_http(d / name)
        merge_instruments(table, instruments_from_exchange_info(orjson.loads(msg.payload), market,
                                                                symbols=["BTCUSDT"])[0])
    return None, table


def ema_instrument_id(table):
    """The instrument the EMA cross trades: the USD-M perpetual BTCUSDT."""
    from ttquant.core.instruments import MarketType

    (iid,) = [i.instrument_id for i in table if i.symbol == "BTCUSDT"
              and i.market_type == MarketType.LINEAR_PERPETUAL]
    return iid


def trade_prices(events, instrument_id, price_precision):
    """The rule's input: float prices of the instrument's trades, in event order."""
    mask = (events["kind"] == TRADE) & (events["instrument_id"] == instrument_id)
    return events["price"][mask].astype(np.float64) / float(10 ** price_precision)


def ema_cross_sides(prices, fast=EMA_FAST, slow=EMA_SLOW):
    """The decision rule over float trade prices: +1 (buy) / -1 (sell) per order, in order."""
    a_f, a_s = 2.0 / (fast + 1.0), 2.0 / (slow + 1.0)
    b_f, b_s = 1.0 - a_f, 1.0 - a_s
    px = prices.tolist()
    if not px:
        return []
    ef = es = px[0]
    prev, out = 0, []
    for n, p in enumerate(px, 1):
        ef = a_f * p + b_f * ef
        es = a_s * p + b_s * es
        if n < slow:
            continue
        d = ef - es
        s = 1 if d > 0.0 else (-1 if d < 0.0 else 0)
        if s != 0:
            if prev != 0 and s != prev:
                out.append(s)
            prev = s
    return out


def ema_cross_decisions(events, instrument_id, table=None):
    """Reference: the number of orders the EMA 10/50 cross rule sends over `events` (module doc)."""
    if table is None:
        _, table = _capture_table()
    prec = table.get(int(instrument_id)).price_precision
    return len(ema_cross_sides(trade_prices(events, instrument_id, prec)))
