"""Turn build/bench/results.json (pytest-benchmark JSON, extra_info per DESIGN.md §9) into
report.md: percentile tables, ratios against the peers run in the same session, the issue
targets checked, and a latency histogram (SVG) per path beside it.

  python bench/report.py build/bench/results.json build/bench/report.md
"""
import json
import os
import platform
import sys

# (what, path, impl, field, comparison, bar) - the targets issues set for this machine.
TARGETS = [
    ("ring hop p50 one way, spinning", "ring_hop", "ttquant_spin", "p50_ns", "<=", 500),
    ("ring hop p99 one way, spinning", "ring_hop", "ttquant_spin", "p99_ns", "<=", 2000),
    ("ring hop p50 vs pyzmq ipc", "ring_hop", "ttquant_spin", "ratio:pyzmq_ipc:p50_ns", ">=", 50),
    ("Python -> Python records/s", "ring_throughput", "ttquant_py", "per_s", ">=", 5e6),
    ("Cython -> Cython records/s", "ring_throughput", "ttquant_cy", "per_s", ">=", 30e6),
    ("Cython -> Cython records/s, runs of 64", "ring_throughput", "ttquant_cy_batch", "per_s", ">=", 100e6),
    ("Cython -> Cython orders/s, SPSC", "ring_throughput", "ttquant_cy_spsc", "per_s", ">=", 30e6),
    ("Cython -> Cython orders/s, SPSC, runs of 64", "ring_throughput", "ttquant_cy_spsc_batch", "per_s", ">=", 100e6),
    ("bookTicker decode + normalise p50", "decode_book_ticker", "ttquant", "p50_ns", "<=", 1000),
    ("bookTicker decode vs stdlib json + float", "decode_book_ticker", "ttquant", "ratio:stdlib_json:p50_ns", ">=", 3),
    ("trade decode vs stdlib json + float", "decode_trade", "ttquant", "ratio:stdlib_json:p50_ns", ">=", 3),
    ("depth diff decode vs stdlib json + float", "decode_depth", "ttquant", "ratio:stdlib_json:p50_ns", ">=", 3),
    ("md frames/s from venue-sim over loopback", "md_throughput", "ttquant", "per_s", ">=", 300e3),
    ("frame to ring p99", "frame_to_ring", "ttquant", "p99_ns", "<=", 50_000),
    ("tick to order p50, spinning", "tick_to_order", "ttquant_spin", "p50_ns", "<=", 5_000),
    ("tick to order p99, spinning", "tick_to_order", "ttquant_spin", "p99_ns", "<=", 25_000),
    ("tick to order p50 vs the pyzmq chain", "tick_to_order", "ttquant_spin", "ratio:pyzmq_ipc:p50_ns", ">=", 20),
    ("all risk checks per order", "risk_check", "ttquant", "p50_ns", "<=", 1_000),
    ("replay at max, records/s", "replay_throughput", "ttquant", "per_s", ">=", 5e6),
    ("tick to order p50 with recorder, shipper, metrics / the run just before without them",
     "tick_to_order", "ttquant_with_sidecars", "p50_vs_without", "<=", 1.10),
    ("journal -> PostgreSQL rows/s, binary COPY", "ship_rows", "ttquant", "per_s", ">=", 1e6),
    ("journal -> PostgreSQL vs executemany", "ship_rows", "ttquant", "rate_ratio:psycopg_executemany:per_s", ">=", 3),
    ("backtest, no-op strategy, events/s", "backtest_noop", "ttquant", "per_s", ">=", 5e6),
    ("backtest, EMA cross with orders, events/s", "backtest_ema_cross", "ttquant", "per_s", ">=", 1e6),
    ("backtest, EMA cross vs NautilusTrader", "backtest_ema_cross", "ttquant", "rate_ratio:nautilus_trader:per_s",
     ">=", 10),
    ("backtest, whole stream with depth vs hftbacktest", "backtest_full", "ttquant", "rate_ratio:hftbacktest:per_s",
     ">=", 1),
    ("order round trip p50, WebSocket API vs ccxt's REST", "order_ack", "ttquant_wsapi", "ratio:ccxt:p50_ns", ">=", 2),
]

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f"]


def _entries(doc):
    for bench in doc.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "path" in info and "impl" in info:
            yield info


def _ns(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.0f} ns"


def _is_peer(impl):
    return not impl.startswith("ttquant")


def _find(entries, path, impl):
    for e in entries:
        if e["path"] == path and e["impl"] == impl:
            return e
    return None


def _svg_histogram(path, rows, out_dir):
    """Latency distribution per impl on log2 buckets: one polyline each, share of samples."""
    series = [(e["impl"], e["hist_log2"]) for e in rows if "hist_log2" in e]
    if not series:
        return None
    lo = min(h["first_exp"] for _, h in series)
    hi = max(h["first_exp"] + len(h["counts"]) for _, h in series)
    width, height, left, bottom = 760, 300, 60, 40
    plot_w, plot_h = width - left - 170, height - bottom - 20
    n_buckets = max(1, hi - lo)

    def x(k):
        return left + (k - lo + 0.5) * plot_w / n_buckets

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11">',
             f'<text x="{left}" y="14">{path}: share of samples per latency bucket (log2)</text>',
             f'<line x1="{left}" y1="{20 + plot_h}" x2="{left + plot_w}" y2="{20 + plot_h}" stroke="#000"/>']
    for k in range(lo, hi + 1, max(1, n_buckets // 10)):
        parts.append(f'<text x="{x(k) - 14:.0f}" y="{20 + plot_h + 15}">{_ns(2 ** k)}</text>')
    for i, (impl, hist) in enumerate(series):
        total = sum(hist["counts"]) or 1
        pts = " ".join(f"{x(hist['first_exp'] + j):.1f},{20 + plot_h - plot_h * c / total:.1f}"
                       for j, c in enumerate(hist["counts"]))
        color = COLORS[i % len(COLORS)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        parts.append(f'<rect x="{left + plot_w + 15}" y="{24 + 16 * i}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{left + plot_w + 30}" y="{33 + 16 * i}">{impl}</text>')
    parts.append("</svg>")
    name = f"{path}.svg"
    with open(os.path.join(out_dir, name), "w") as f:
        f.write("\n".join(parts))
    return name


def _target_rows(entries):
    rows = []
    for what, path, impl, field, op, bar in TARGETS:
        e = _find(entries, path, impl)
        if e is None:
            rows.append((what, f"{path}/{impl}", "not measured", _bar(field, op, bar), "MISSING"))
            continue
        if field.startswith(("ratio:", "rate_ratio:")):
            kind, peer, f = field.split(":")
            p = _find(entries, path, peer)
            if p is None or not e.get(f) or not p.get(f):
                rows.append((what, f"{path}/{impl}", "no peer", _bar(field, op, bar), "MISSING"))
                continue
            if kind == "ratio":         # a time: the peer's over ours
                value = p[f] / e[f]
                shown = f"{value:.1f}x ({_ns(p[f])} / {_ns(e[f])})"
            else:                       # a rate: ours over the peer's
                value = e[f] / p[f]
                shown = f"{value:.1f}x ({_rate(e[f])}/s / {_rate(p[f])}/s)"
        else:
            value = e.get(field)
            if value is None:
                rows.append((what, f"{path}/{impl}", f"no {field}", _bar(field, op, bar), "MISSING"))
                continue
            shown = _rate(value) + "/s" if field == "per_s" else _ns(value) if field.endswith("_ns") \
                else f"{value:.2f}x"
        ok = value <= bar if op == "<=" else value >= bar
        rows.append((what, f"{path}/{impl}", shown, _bar(field, op, bar), "pass" if ok else "FAIL"))
    return rows


def _bar(field, op, bar):
    if field == "per_s":
        return f"{op} {_rate(bar)}/s"
    if field.startswith(("ratio:", "rate_ratio:")) or not field.endswith("_ns"):
        return f"{op} {bar:g}x"
    return f"{op} {_ns(bar)}"


def render(doc, out_dir):
    entries = list(_entries(doc))
    machine = doc.get("machine_info", {})
    lines = ["# TTQuant benchmark report", ""]
    lines.append(f"- when: {doc.get('datetime', '?')}")
    lines.append(f"- machine: {machine.get('cpu', {}).get('brand_raw', platform.processor()) or '?'}, "
                 f"{os.cpu_count()} CPUs, {platform.system()} {platform.release()}, "
                 f"Python {machine.get('python_version', platform.python_version())}")
    lines.append("- latency: one way (round trip / 2) for `ring_hop`; per operation for the rest. "
                 "Ratios are peer / TTQuant, from the same run.")
    lines.append("")
    lines.append("## Targets")
    lines.append("")
    lines.append("| target | entry | measured | bar | |")
    lines.append("|---|---|---|---|---|")
    for row in _target_rows(entries):
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")

    paths = []
    for e in entries:
        if e["path"] not in paths:
            paths.append(e["path"])
    for path in paths:
        rows = [e for e in entries if e["path"] == path]
        lines.append(f"## {path}")
        lines.append("")
        peers = [e for e in rows if _is_peer(e["impl"])]
        if "p50_ns" in rows[0]:
            head = "| impl | n | p50 | p99 | p99.9 | max |" + "".join(f" p50 vs {p['impl']} |" for p in peers)
            lines.append(head)
            lines.append("|" + "---|" * (6 + len(peers)))
            for e in rows:
                ratios = "".join(f" {p['p50_ns'] / e['p50_ns']:.1f}x |" if e["p50_ns"] else " - |" for p in peers)
                lines.append(f"| {e['impl']} | {e['n']:,} | {_ns(e['p50_ns'])} | {_ns(e['p99_ns'])} | "
                             f"{_ns(e['p999_ns'])} | {_ns(e['max_ns'])} |{ratios}")
            if any("transport" in e for e in rows):     # order_ack: what each client sent and how
                lines.append("")
                lines.append("; ".join(f"{e['impl']}: {e['transport']}" for e in rows if "transport" in e) + ". "
                             + "; ".join(sorted({f"{e['order']}" + "".join(f", {label}{e[key]}" for key, label in (
                                 ("resp_type", "newOrderRespType "), ("signing", ""), ("cpus", "CPUs ")) if key in e)
                                 for e in rows if "order" in e})) + ".")
                floors = [e for e in rows if "venue_floor_p50_ns" in e]
                if floors:
                    lines.append("")
                    lines.append("The venue's share (the same order pre-signed on a bare connection), then each "
                                 "client's p50 above it: " + "; ".join(
                                     f"{e['impl']}: {_ns(e['venue_floor_p50_ns'])} + {_ns(e['client_p50_ns'])}"
                                     for e in floors) + ".")
            stalls = [e for e in rows if any(k.startswith("host_stall_pct") for k in e)]
            if stalls:
                lines.append("")
                lines.append("The VM's own stalls just before each run (a bare spin loop per core, gaps over 20 µs): "
                             + "; ".join(f"{e['impl']}: " + ", ".join(
                                 f"cpu{c} {e[f'host_stalls_per_s_cpu{c}']:g}/s, {e[f'host_stall_pct_cpu{c}']:g} % "
                                 f"of the time, longest {_ns(e[f'host_stall_max_ns_cpu{c}'])}"
                                 for c in (0, 1) if f"host_stall_pct_cpu{c}" in e) for e in stalls))
            svg = _svg_histogram(path, rows, out_dir)
            if svg:
                lines.append("")
                lines.append(f"![{path} histogram]({svg})")
        elif not path.startswith("ring_throughput"):
            lines.append("Per second over the whole run (one round)" + (
                "; orders: what the strategy sent, the same for every implementation (checked against the "
                "rule's reference)." if path.startswith("backtest_") else "."))
            lines.append("")
            lines.append("| impl | events | per second | orders |" + "".join(f" vs {p['impl']} |" for p in peers))
            lines.append("|" + "---|" * (4 + len(peers)))
            for e in rows:
                ratios = "".join(f" {e['per_s'] / p['per_s']:.1f}x |" for p in peers)
                orders = f"{e['orders']:,}" if "orders" in e else "-"
                lines.append(f"| {e['impl']} | {e['n']:,} | {_rate(e['per_s'])} | {orders} |{ratios}")
        else:
            lines.append("Per second: each round's median chunk rate, the median over the rounds; every round is "
                         "listed to show the spread, with the plain average of the median round and one cache "
                         "line's round trip between the two processes before each round (the host moves the "
                         "two vCPUs; when it puts them far apart every figure drops).")
            lines.append("")
            head = ("| impl | ring | batch | records | per second | rounds (per s) | average | line RTT | lost |"
                    + "".join(f" vs {p['impl']} |" for p in peers))
            lines.append(head)
            lines.append("|" + "---|" * (9 + len(peers)))
            for e in rows:
                ratios = "".join(f" {e['per_s'] / p['per_s']:.1f}x |" for p in peers)
                rtts = " / ".join(f"{x}" for x in (e.get("line_rtt_ns") or []) if x is not None) or "-"
                average = _rate(e["overall_per_s"]) if e.get("overall_per_s") else "-"
                lines.append(f"| {e['impl']} | {e.get('ring', '-')} | {e.get('batch', '-')} | {e['n']:,} | "
                             f"{_rate(e['per_s'])} | {_rounds(e)} | {average} | {rtts} | {e.get('lost', 0):,} |"
                             f"{ratios}")
        lines.append("")
    return "\n".join(lines) + "\n"


def _rounds(entry):
    rates = entry.get("rounds_per_s") or []
    return " / ".join(_rate(r) for r in rates) or "-"


def _rate(v):
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k"


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    src, dst = argv
    with open(src) as f:
        doc = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(dst))
    text = render(doc, out_dir)
    with open(dst, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
