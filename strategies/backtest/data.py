"""What a backtest runs over: the md daemon's own MarketEvents, from our journals (what the
tick ring carried, as the recorder wrote it) or from captures (the md normaliser run over the
hftbacktest / cryptofeed files in data/)."""
from __future__ import annotations

import os
import uuid

import numpy as np

from ttquant.core.records import RecordType
from ttquant.core.rings.names import tick_ring

__all__ = ["events_from_capture", "events_from_journal", "load_events"]


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
    events = np.ascontiguousarray(rows[order]).view(MARKET_EVENT_DTYPE).reshape(-1)
    # ts_pub: when md would have published it (its receive time), not when this conversion ran,
    # so the same capture gives the same events byte for byte
    events["ts_pub"] = key[order]
    return events, table


def events_from_journal(directory, from_ns: int = 0, to_ns: int = 0):
    """(events, instrument table) of the tick ring recorded under directory (a ring's journal
    directory or one above it holding one stack's), the latest ring run, in position order;
    from_ns / to_ns bound ts_pub (0: no bound)."""
    from ttquant.core.journal.journal_file import between, journal_files, read_journal
    from ttquant.core.journal.replay import recorded_rings
    stacks = recorded_rings(str(directory))
    ticks = [kinds["ticks"] for kinds in stacks.values() if "ticks" in kinds]
    if not ticks:
        raise ValueError(f"{directory}: no recorded tick ring here or below (the recorder writes "
                         f"<dir>/<rings>.ticks/)")
    if len(ticks) > 1:
        raise ValueError(f"{directory}: tick rings of several stacks ({', '.join(sorted(stacks))}): give one")
    records, _, _ = read_journal(ticks[0])
    files = [f for f in journal_files(ticks[0]) if f.instruments is not None]
    if not files:
        raise ValueError(f"{ticks[0]}: the journal files hold no instrument table")
    return between(records, records["ts_pub"], from_ns, to_ns), files[-1].instruments


def load_events(path, from_ns: int = 0, to_ns: int = 0):
    """(events, table) from a journal directory, or from a capture file of data/binance (its
    exchangeInfo beside it), by what path is."""
    import pathlib

    from ttquant.core.journal.journal_file import between
    p = pathlib.Path(path)
    if p.is_dir():
        return events_from_journal(p, from_ns, to_ns)
    if not p.exists():
        raise ValueError(f"{path}: no such file or directory")
    events, table = events_from_capture((p.name,), data_dir=p.parent.parent)
    return between(events, events["ts_recv"], from_ns, to_ns), table
