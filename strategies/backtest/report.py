"""A backtest's report: one self-contained HTML file from its result.json document.

The header says what ran (strategy, params, data, fill model) and the statistics table; then
the plots, each a `<figure class="plot">` holding an inline SVG drawn by matplotlib (its
object API, no pyplot, so no display and no global figure state):

    equity-drawdown     the equity curve and its fall from the running peak
    position            the position of each traded instrument, from the fills
    fills-on-price      buys and sells on the instrument's trade price (fill prices alone without one)
    pnl-distribution    a histogram of the round trips' PnL
    rolling-sharpe      the Sharpe of a sliding window of the equity curve's returns, annualised
                        as statistics.py annualises it

A plot with nothing to draw (no fills, no round trips) holds a note instead. The file loads
nothing from anywhere, and the same document gives the same bytes: the SVGs carry no date and
their ids are hashed from a fixed salt.

Prices and quantities in result.json are raw integers at the instrument's precision; the
instrument table (`table`) turns them into prices and sizes.
"""
from __future__ import annotations

import datetime
import html
import io
import math

import numpy as np

from ttquant.core.records import Side
from ttquant.strategies.backtest.results import SECONDS_PER_YEAR

__all__ = ["PLOTS", "format_statistic", "rolling_sharpe", "trade_prices", "write_report"]

# figure ids, in the order the report shows them
PLOTS = ("equity-drawdown", "position", "fills-on-price", "pnl-distribution", "rolling-sharpe")
MAX_LINE_POINTS = 4000          # a price line thinned past this: an SVG path of 100k points is megabytes
MAX_VECTOR_MARKS = 3000         # more fills than this are drawn as an embedded image inside the SVG

_PERCENT = {"total_return", "annual_return", "volatility", "max_drawdown", "win_rate"}
_RATIO = {"sharpe", "sortino", "calmar", "profit_factor"}
_QUOTE = {"expectancy", "fees", "slippage", "funding"}
_LABELS = {"periods": "periods", "total_return": "total return", "annual_return": "annual return",
           "volatility": "volatility (annual)", "sharpe": "Sharpe", "sortino": "Sortino",
           "max_drawdown": "max drawdown", "max_drawdown_periods": "longest drawdown (periods)",
           "calmar": "Calmar", "trades": "round trips", "win_rate": "win rate", "profit_factor": "profit factor",
           "expectancy": "expectancy (quote)", "avg_holding_s": "average holding (s)", "turnover": "turnover",
           "fees": "fees (quote)", "slippage": "slippage (quote)", "funding": "funding (quote)"}
_RC = {"font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
       "axes.spines.right": False, "svg.fonttype": "path", "figure.dpi": 100, "savefig.dpi": 100}
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{padding:.15em .8em;text-align:left;border-bottom:1px solid #ddd}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure.plot{margin:1.2em 0;padding:0}figure.plot svg{max-width:100%;height:auto;display:block}
figcaption{font-size:.85em;color:#555;margin-top:.3em}p.empty{color:#777;font-style:italic;padding:1em 0}
.grid{display:grid;grid-template-columns:auto 1fr;gap:0 1.5em}"""


def trade_prices(events, table) -> dict:
    """{instrument_id: (ts ns, trade price)} of every instrument in the events, in prices (not raw)."""
    from ttquant.core.records import EventKind
    trades = events[events["kind"] == EventKind.TRADE]
    out = {}
    for iid in np.unique(trades["instrument_id"]).tolist():
        t = trades[trades["instrument_id"] == iid]
        ts = np.where(t["ts_recv"] > 0, t["ts_recv"], t["ts_exchange"]).astype(np.int64)
        inst = table.get(iid)
        scale = 10.0 ** inst.price_precision if inst is not None else 1.0
        out[iid] = (ts, t["price"].astype(np.float64) / scale)
    return out


def write_report(doc: dict, path, prices=None, table=None, rolling_window: int = 30) -> None:
    """The report of a result document (results.result_document) as one HTML file at path.

    prices: {instrument_id: (ts ns, price)} (trade_prices) or one (ts ns, price) pair for a run
    on one instrument; table: the instrument table, for labels, prices and sizes (without it
    fills are drawn in raw units, scaled to the price series by a power of ten when there is one);
    rolling_window: the rolling Sharpe's window in samples of the equity curve."""
    figures = [_equity_drawdown(doc), _position(doc, table), _fills_on_price(doc, prices, table),
               _pnl_distribution(doc), _rolling_sharpe(doc, rolling_window)]
    body = "\n".join(_figure(fid, content, caption) for fid, (content, caption) in zip(PLOTS, figures))
    title = f"{doc.get('strategy', '?')}: backtest report"
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<title>{_esc(title)}</title>\n'
            # no favicon request: the file must load nothing from anywhere
            f'<link rel="icon" href="data:,">\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n'
            f'<h1>{_esc(title)}</h1>\n{_header(doc, table)}\n<h2>Statistics</h2>\n{_statistics(doc)}\n'
            f'<h2>Plots</h2>\n{body}\n</body>\n</html>\n')
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)


# --- the header -------------------------------------------------------------------------------


def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _utc(ns: int) -> str:
    if not ns:
        return "-"
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.UTC)
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{ns % 1_000_000_000 // 1_000_000:03d} UTC"


def _pairs(d) -> str:
    if not d:
        return "-"
    return ", ".join(f"{k}={v}" for k, v in sorted(d.items()))


def _header(doc: dict, table) -> str:
    data = doc.get("data") or {}
    sha = data.get("sha256", "")
    rows = [
        ("strategy", f"{doc.get('strategy', '?')} (strategy_id {doc.get('strategy_id', '-')})"),
        ("params", _pairs(doc.get("params"))),
        ("data", f"{data.get('source', '-')}: {data.get('events', 0):,} events, "
                 f"{_utc(data.get('from_ns', 0))} to {_utc(data.get('to_ns', 0))}"
                 + (f", sha256 {sha[:16]}…" if sha else "")),
        ("fill model", _pairs(doc.get("fill_model"))),
        ("risk file", doc.get("risk_file") or "-"),
        ("capital", f"{doc.get('capital', '-')} (quote), equity sampled every {doc.get('period_s', '-')} s"),
        ("orders", f"{doc.get('orders_sent', 0):,} sent, {doc.get('fills', 0):,} fills, rejects by code "
                   f"{_pairs(doc.get('rejects_by_code')) if doc.get('rejects_by_code') else 'none'}, "
                   f"{doc.get('handler_errors', 0)} handler errors"),
        ("PnL", f"{doc.get('equity', '-')} (quote)"),
        ("positions at the end", _pairs(doc.get("positions"))),
    ]
    cells = "".join(f"<div><b>{_esc(k)}</b></div><div>{_esc(v)}</div>" for k, v in rows)
    return f'<div class="grid">{cells}</div>'


def format_statistic(key: str, value) -> str:
    """A statistic as the table shows it: None (undefined) as '-', fractions as percentages."""
    if value is None:
        return "-"
    if isinstance(value, bool) or isinstance(value, int):
        return f"{value:,}"
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return "-"
    if key in _PERCENT:
        return f"{value:.4%}"
    if key in _RATIO:
        return f"{value:,.3f}"
    if key in _QUOTE:
        return f"{value:,.6f}"
    if key == "turnover":
        return f"{value:,.2f}×"
    return f"{value:,.3f}"


def _statistics(doc: dict) -> str:
    stats = doc.get("statistics")
    if not stats:
        return '<p class="empty">no statistics: the equity curve has fewer than two samples or is not positive</p>'
    keys = [k for k in _LABELS if k in stats] + sorted(k for k in stats if k not in _LABELS)
    rows = "".join(f'<tr><th>{_esc(_LABELS.get(k, k))}</th><td class="num">{_esc(format_statistic(k, stats[k]))}'
                   f"</td></tr>" for k in keys)
    return f'<table id="statistics">{rows}</table>'


# --- the plots ----------------------------------------------------------------------------------


def _figure(fid: str, content, caption: str) -> str:
    inner = content if content.startswith("<svg") else f'<p class="empty">{_esc(content)}</p>'
    return f'<figure class="plot" id="{fid}">\n{inner}\n<figcaption>{_esc(caption)}</figcaption>\n</figure>'


def _svg(fig, fid: str) -> str:
    """The figure as inline SVG: a salt per figure, so ids are fixed and no two plots share one."""
    import matplotlib
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"ttquant-report-{fid}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):].strip()


def _new_figure(rows: int = 1, height: float = 3.2, ratios=None):
    """A figure of rows axes over one time axis; height per row, or in all when ratios are given."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(10, height * rows if ratios is None else height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": ratios} if ratios else None)[:, 0]
    return fig, axes


def _draw(fid: str, build) -> str:
    """The figure build() makes, as SVG, under the report's style (drawing reads rcParams too)."""
    import matplotlib
    with matplotlib.rc_context(_RC):
        fig = build()
        return _svg(fig, fid)


def _dates(ns) -> np.ndarray:
    return np.asarray(ns, dtype=np.int64).astype("datetime64[ns]")


def _time_axis(ax) -> None:
    import matplotlib.dates as mdates
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.set_xlabel("time (UTC)")


def _instruments(doc: dict, table) -> dict:
    """{instrument_id: (label, price scale, size scale)} of the traded instruments, by id."""
    out = {}
    for iid in sorted({f["instrument_id"] for f in doc.get("fill_list") or ()}):
        inst = table.get(iid) if table is not None else None
        if inst is None:
            out[iid] = (f"instrument {iid}", None, None)
        else:
            out[iid] = (inst.label, 10.0 ** inst.price_precision, 10.0 ** inst.size_precision)
    return out


def _equity_drawdown(doc: dict):
    curve = doc.get("equity_curve") or {}
    ts, equity = np.asarray(curve.get("ts") or [], np.int64), np.asarray(curve.get("equity") or [], np.float64)
    caption = (f"Equity (quote, marked to the last trade every {doc.get('period_s', '-')} s from "
               f"{doc.get('capital', '-')} capital) and drawdown: its fall from the highest equity before it.")
    if len(ts) < 2:
        return "no equity curve: the run has fewer than two samples", caption

    def build():
        fig, (top, bottom) = _new_figure(2, height=5.5, ratios=[2, 1])
        t = _dates(ts)
        top.plot(t, equity, color="#1f77b4", linewidth=1.1)
        top.axhline(equity[0], color="#999", linewidth=0.8, linestyle="--")
        top.set_ylabel("equity (quote)")
        top.ticklabel_format(axis="y", useOffset=False, style="plain")
        peak = np.maximum.accumulate(equity)
        dd = np.where(peak > 0, equity / np.where(peak > 0, peak, 1.0) - 1.0, 0.0) * 100
        bottom.fill_between(t, dd, 0, color="#d62728", alpha=0.35, linewidth=0)
        bottom.plot(t, dd, color="#d62728", linewidth=0.8)
        bottom.set_ylabel("drawdown (%)")
        bottom.set_ylim(top=0)
        _time_axis(bottom)
        return fig
    return _draw("equity-drawdown", build), caption


def _position(doc: dict, table):
    fills = doc.get("fill_list") or []
    caption = "Position of each traded instrument after each fill (base units; raw units without the table)."
    if not fills:
        return "no fills", caption
    insts = _instruments(doc, table)
    data = doc.get("data") or {}

    def build():
        fig, axes = _new_figure(len(insts), height=2.6)
        for ax, (iid, (label, _, qscale)) in zip(axes, insts.items()):
            fs = [f for f in fills if f["instrument_id"] == iid]
            ts = np.array([f["ts"] for f in fs], np.int64)
            qty = np.array([f["qty"] if f["side"] == Side.BUY else -f["qty"] for f in fs], np.float64)
            pos = np.cumsum(qty) / (qscale or 1.0)
            # flat from the start of the data, held to its end
            start = min(int(data.get("from_ns") or ts[0]), int(ts[0]))
            end = max(int(data.get("to_ns") or ts[-1]), int(ts[-1]))
            t = _dates(np.concatenate([[start], ts, [end]]))
            p = np.concatenate([[0.0], pos, [pos[-1]]])
            ax.step(t, p, where="post", color="#2ca02c", linewidth=1.0, rasterized=len(p) > MAX_VECTOR_MARKS)
            ax.axhline(0, color="#999", linewidth=0.8)
            ax.set_ylabel(f"{label}\nposition" + ("" if qscale else " (raw)"))
        _time_axis(axes[-1])
        return fig
    return _draw("position", build), caption


def _thin(ts: np.ndarray, price: np.ndarray, limit: int = MAX_LINE_POINTS):
    """At most ~limit points keeping each bucket's low and high, so the line keeps its extremes."""
    if len(ts) <= limit:
        return ts, price
    edges = np.linspace(0, len(ts), limit // 2 + 1).astype(np.int64)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b > a:
            seg = price[a:b]
            keep.extend(sorted({a + int(np.argmin(seg)), a + int(np.argmax(seg))}))
    idx = np.asarray(keep, np.int64)
    return ts[idx], price[idx]


def _series_for(prices, iid, single: bool):
    if prices is None:
        return None
    if isinstance(prices, dict):
        return prices.get(iid)
    return prices if single else None


def _fills_on_price(doc: dict, prices, table):
    fills = doc.get("fill_list") or []
    caption = ("Fills on the instrument's trade price: buys ▲ green, sells ▼ red"
               + ("." if prices is not None else " (no price series given: the fill prices alone)."))
    if not fills:
        return "no fills", caption
    insts = _instruments(doc, table)

    def build():
        fig, axes = _new_figure(len(insts), height=3.4)
        for ax, (iid, (label, pscale, _)) in zip(axes, insts.items()):
            fs = [f for f in fills if f["instrument_id"] == iid]
            ts = np.array([f["ts"] for f in fs], np.int64)
            raw = np.array([f["price"] for f in fs], np.float64)
            buy = np.array([f["side"] == Side.BUY for f in fs])
            series = _series_for(prices, iid, len(insts) == 1)
            if series is not None and len(series[0]):
                s_ts, s_px = np.asarray(series[0], np.int64), np.asarray(series[1], np.float64)
                if pscale is None:
                    # no table: the power of ten that puts the raw fill prices on the series
                    ratio = float(np.median(raw)) / float(np.median(s_px)) if np.median(s_px) > 0 else 1.0
                    pscale = 10.0 ** round(math.log10(ratio)) if ratio > 0 else 1.0
                t, p = _thin(s_ts, s_px)
                ax.plot(_dates(t), p, color="#888", linewidth=0.7, label="trade price")
            else:
                ax.plot(_dates(ts), raw / (pscale or 1.0), color="#bbb", linewidth=0.6, label="fill price")
            px = raw / (pscale or 1.0)
            many = len(fs) > MAX_VECTOR_MARKS
            ax.scatter(_dates(ts[buy]), px[buy], marker="^", s=22, color="#2ca02c", label="buy", zorder=3,
                       rasterized=many)
            ax.scatter(_dates(ts[~buy]), px[~buy], marker="v", s=22, color="#d62728", label="sell", zorder=3,
                       rasterized=many)
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
            ax.set_ylabel(f"{label}\nprice" + ("" if pscale else " (raw)"))
            # above the axes: inside, it would hide fills
            ax.legend(loc="lower left", bbox_to_anchor=(0, 1.0), fontsize=8, frameon=False, ncols=3)
        _time_axis(axes[-1])
        return fig
    return _draw("fills-on-price", build), caption


def _pnl_distribution(doc: dict):
    trips = doc.get("round_trips") or []
    caption = "PnL of each round trip (flat to flat, net of fees, quote); dashed: zero and the mean."
    if not trips:
        return "no round trips" if doc.get("fill_list") else "no fills", caption
    pnl = np.array([t["pnl"] for t in trips], np.float64)

    def build():
        fig, (ax,) = _new_figure(1, height=3.2)
        edges = np.histogram_bin_edges(pnl, bins="auto")
        bins = min(len(edges) - 1, 60) if len(edges) > 1 else 1
        counts, edges = np.histogram(pnl, bins=bins)
        colors = ["#2ca02c" if (a + b) / 2 > 0 else "#d62728" for a, b in zip(edges[:-1], edges[1:])]
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=colors, edgecolor="white",
               linewidth=0.4)
        ax.axvline(0, color="#555", linewidth=0.8, linestyle="--")
        ax.axvline(float(pnl.mean()), color="#1f77b4", linewidth=1.0, linestyle="--",
                   label=f"mean {pnl.mean():.6g}")
        ax.set_xlabel("round trip PnL (quote)")
        ax.set_ylabel("round trips")
        ax.legend(loc="upper right", fontsize=8, frameon=False)
        return fig
    return _draw("pnl-distribution", build), caption


def rolling_sharpe(equity, window: int, periods_per_year: float) -> np.ndarray:
    """The Sharpe of each window of returns ending at each sample from the window-th on, as
    statistics.py defines it (mean / std ddof 1 * sqrt(periods per year)); nan where std is 0."""
    equity = np.asarray(equity, np.float64)
    returns = equity[1:] / equity[:-1] - 1.0
    if len(returns) < window:
        return np.zeros(0)
    win = np.lib.stride_tricks.sliding_window_view(returns, window)
    mean, std = win.mean(axis=1), win.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(std > 0, mean / std * math.sqrt(periods_per_year), np.nan)


def _rolling_sharpe(doc: dict, window: int):
    curve = doc.get("equity_curve") or {}
    ts, equity = np.asarray(curve.get("ts") or [], np.int64), np.asarray(curve.get("equity") or [], np.float64)
    period_s = float(doc.get("period_s") or 60.0)
    n = len(equity) - 1
    # a short run still gets a curve: at most a third of its returns per window
    w = max(2, min(int(window), n // 3)) if n >= 6 else n
    caption = (f"Sharpe of the last {w} returns of the equity curve (a window of {w * period_s:g} s), annualised "
               f"by sqrt({SECONDS_PER_YEAR / period_s:g} periods a year) as the statistics table's; "
               f"dashed: the whole run's.")
    if n < 2 or w < 2:
        return "no rolling Sharpe: the equity curve is too short", caption
    if (equity <= 0).any():
        return "no rolling Sharpe: the equity went to zero or below, returns mean nothing", caption
    sharpe = rolling_sharpe(equity, w, SECONDS_PER_YEAR / period_s)
    if not np.isfinite(sharpe).any():
        return "no rolling Sharpe: the equity never moved (no fills, or flat all along)", caption
    whole = (doc.get("statistics") or {}).get("sharpe")

    def build():
        fig, (ax,) = _new_figure(1, height=3.0)
        ax.plot(_dates(ts[w:]), sharpe, color="#9467bd", linewidth=1.0)
        ax.axhline(0, color="#999", linewidth=0.8)
        if whole is not None and math.isfinite(whole):
            ax.axhline(whole, color="#9467bd", linewidth=0.8, linestyle="--", label=f"whole run {whole:,.3f}")
            ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.set_ylabel(f"Sharpe ({w} samples)")
        _time_axis(ax)
        return fig
    return _draw("rolling-sharpe", build), caption
