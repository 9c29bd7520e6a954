"""What a backtest runs over: the md daemon's own MarketEvents, from captures (the normaliser
run over hftbacktest / cryptofeed files) or, later, from our journals."""
from __future__ import annotations

import os
import uuid

import numpy as np

from ttquant.core.records import RecordType
from ttquant.core.rings.names import tick_ring

__all__ = ["events_from_capture"]


def events_from_capture(names=("spot_btcusdt_20240808.gz", "usdm_btcusdt_20240808.gz"), data_dir=None):
    """(events, instrument table) of hftbacktest captures run through the md normaliser: the
    tick stream md published live, merged on one timeline by receive time."""
    import orjson

    from ttquant.core.instruments import InstrumentTable
    from ttquant.core.md.binance.exchange_info import instruments_from_exchange_info, merge_instruments
    from ttquant.core.md.binance.normaliser import BinanceNormaliser
    from ttquant.core.records import MARKET_EVENT_DTYPE
    from ttquant.core.rings import BroadcastReader, BroadcastWriter, unlink
    from ttquant.core.sim.captures import read_cryptofeed_http, read_hftbacktest, sample_data_dir

    d = (data_dir or sample_data_dir()) / "binance"
    table = InstrumentTable("binance")
    for market, name in (("spot", "cryptofeed_spot_exchangeinfo.0"), ("usdm", "cryptofeed_usdm_exchangeinfo.0")):
        (msg,) = read_cryptofeed_http(d / name)
        merge_instruments(table, instruments_from_exchange_info(orjson.loads(msg.payload), market,
                                                                symbols=["BTCUSDT"])[0])
    parts = []
    for name in names:
        market = "usdm" if name.startswith("usdm") else "spot"
        ring = tick_ring(f"bt{os.getpid()}x{uuid.uuid4().hex[:6]}")
        w = BroadcastWriter(ring, RecordType.MARKET_EVENT, 1 << 21)
        r = BroadcastReader(ring, start="oldest")
        try:
            norm = BinanceNormaliser(market, list(table), w)
            for msg in read_hftbacktest(d / name):
                if msg.source == "ws":
                    norm.on_frame(msg.payload, msg.recv_ns)
                else:
                    norm.on_snapshot("BTCUSDT", msg.payload, msg.recv_ns)
            out = np.zeros(r.lag, MARKET_EVENT_DTYPE)
            parts.append(out[:r.poll_into(out)])
        finally:
            r.close()
            w.close()
            unlink(ring)
    size = MARKET_EVENT_DTYPE.itemsize
    # as raw rows: the dtype's overlapping body fields do not survive numpy's concatenate
    rows = np.concatenate([p.view(np.uint8).reshape(-1, size) for p in parts])
    # events without a receive time (a book reset) keep their place: each stream's own order
    key = np.concatenate([np.maximum.accumulate(p["ts_recv"].astype(np.int64)) for p in parts])
    order = np.argsort(key, kind="stable")
    return np.ascontiguousarray(rows[order]).view(MARKET_EVENT_DTYPE).reshape(-1), table
