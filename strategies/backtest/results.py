"""What a backtest leaves behind: result.json, byte for byte the same for the same inputs.

The equity curve is marked to market from the run's own fills (the venue's record: price,
quantity, fee, exact) and the last trade price of each instrument at every sample, sampled
every `period_s` of market time from a starting capital in the quote asset; the statistics
(statistics.py) are taken over it. Nothing in the file depends on the machine or the wall
clock (how long the run took is printed, not written), so two runs can be compared with cmp.
"""
from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import numpy as np

from ttquant.core.records import EventKind, Side
from ttquant.strategies.backtest.statistics import RoundTrip, compute_statistics

__all__ = ["equity_curve", "round_trips", "result_document", "write_result"]

SECONDS_PER_YEAR = 365 * 24 * 3600


def _marks(events, instrument_id, times):
    """The last trade price (raw) of the instrument at or before each time (0 before the first)."""
    trades = events[(events["kind"] == EventKind.TRADE) & (events["instrument_id"] == instrument_id)]
    ts = np.where(trades["ts_recv"] > 0, trades["ts_recv"], trades["ts_exchange"]).astype(np.int64)
    at = np.searchsorted(ts, times, side="right") - 1
    prices = trades["price"].astype(np.float64)
    return np.where(at >= 0, prices[np.maximum(at, 0)], 0.0)


def equity_curve(events, fills, table, capital: float, period_s: float = 60.0):
    """(sample times ns, equity in the quote asset) from the first event to the last."""
    if not len(events):
        return np.zeros(0, np.int64), np.zeros(0)
    ts = np.where(events["ts_recv"] > 0, events["ts_recv"], events["ts_exchange"]).astype(np.int64)
    start, end = int(ts.min()), int(ts.max())
    step = int(period_s * 1e9)
    times = np.arange(start, end + step, step, dtype=np.int64)
    equity = np.full(len(times), float(capital))
    by_inst = {}
    for f in fills:
        by_inst.setdefault(f["instrument_id"], []).append(f)
    for iid, fs in by_inst.items():
        inst = table[iid]
        pscale, qscale = 10.0 ** inst.price_precision, 10.0 ** inst.size_precision
        f_ts = np.array([f["ts"] for f in fs], np.int64)
        sign = np.array([1 if f["side"] == Side.BUY else -1 for f in fs], np.float64)
        qty = np.array([f["qty"] for f in fs], np.float64) / qscale * sign
        cash = -qty * np.array([f["price"] for f in fs], np.float64) / pscale * inst.multiplier \
            - np.array([f["fee"] for f in fs], np.float64) / 1e8
        upto = np.searchsorted(f_ts, times, side="right")
        pos = np.concatenate([[0.0], np.cumsum(qty)])[upto]
        flow = np.concatenate([[0.0], np.cumsum(cash)])[upto]
        equity += flow + pos * _marks(events, iid, times) / pscale * inst.multiplier
    return times, equity


def round_trips(fills, table) -> list[RoundTrip]:
    """Each position taken from flat and back to flat (or through it), per instrument, with
    what it made net of fees."""
    out, state = [], {}
    for f in fills:
        inst = table[f["instrument_id"]]
        qty = Decimal(f["qty"]).scaleb(-inst.size_precision) * (1 if f["side"] == Side.BUY else -1)
        cash = -qty * Decimal(f["price"]).scaleb(-inst.price_precision) * inst.multiplier \
            - Decimal(f["fee"]).scaleb(-8)
        pos, pnl, opened = state.get(inst.instrument_id, (Decimal(0), Decimal(0), f["ts"]))
        if pos == 0:
            opened, pnl = f["ts"], Decimal(0)
        after = pos + qty
        if pos != 0 and (after == 0 or (after > 0) != (pos > 0)):
            part = abs(pos) / abs(qty)              # the share of this fill that closes the trip
            out.append(RoundTrip(opened, f["ts"], float(pnl + cash * part)))
            pnl, opened = cash * (1 - part), f["ts"]
        else:
            pnl += cash
        state[inst.instrument_id] = (after, pnl, opened)
    return out


def _events_digest(events) -> str:
    return hashlib.sha256(np.ascontiguousarray(events).view(np.uint8).tobytes()).hexdigest()


def result_document(result, events, table, *, strategy: str, params: dict, data: str, fill_model,
                    capital: float, period_s: float = 60.0, risk_file: str = "") -> dict:
    """Everything a run produced, as plain JSON values (exact integers for prices and sizes)."""
    fills = result.matcher.fills
    times, equity = equity_curve(events, fills, table, capital, period_s)
    trips = round_trips(fills, table)
    fees = sum(f["fee"] for f in fills) / 1e8
    slippage = sum(f.get("slippage", 0) for f in fills) / 1e8
    traded = sum(f["price"] * f["qty"] / 10 ** (table[f["instrument_id"]].price_precision
                                                + table[f["instrument_id"]].size_precision) for f in fills)
    stats = None
    if len(equity) >= 2 and (equity > 0).all():
        stats = compute_statistics(equity, SECONDS_PER_YEAR / period_s, trips, traded, fees, slippage).as_dict()
    positions = {}
    for p in result.strategy.portfolio.positions():
        inst = table.get(p.instrument_id)
        positions[inst.label if inst is not None else str(p.instrument_id)] = str(p.qty)
    orders = [{"ts": e["ts"], "client_order_id": e["client_order_id"], "action": e["action"],
               "instrument_id": e["instrument_id"], "side": e["side"], "price": e["price"], "qty": e["qty"]}
              for e in result.matcher.ledger]
    return {
        "strategy": strategy, "params": params, "strategy_id": result.strategy.strategy_id,
        "data": {"source": data, "events": int(len(events)), "sha256": _events_digest(events),
                 "from_ns": int(times[0]) if len(times) else 0, "to_ns": int(times[-1]) if len(times) else 0},
        "fill_model": {k: getattr(fill_model, k) for k in fill_model.__dataclass_fields__},
        "risk_file": risk_file,
        "events": result.events, "orders_sent": result.orders_sent, "fills": len(fills),
        "handler_errors": result.errors,
        "rejects_by_code": {str(k): v for k, v in sorted(result.rejects_by_code.items())},
        "equity": str(result.equity()), "positions": positions,
        "capital": capital, "period_s": period_s, "statistics": stats,
        "equity_curve": {"ts": times.tolist(), "equity": [round(float(x), 10) for x in equity]},
        "round_trips": [{"opened_ns": t.opened_ns, "closed_ns": t.closed_ns, "pnl": round(t.pnl, 10)} for t in trips],
        "orders": orders, "fill_list": fills,
    }


def write_result(doc: dict, path) -> None:
    """Sorted keys, fixed separators, one trailing newline: the same document, the same bytes."""
    with open(path, "w") as f:
        f.write(json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n")
