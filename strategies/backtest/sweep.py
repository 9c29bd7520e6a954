"""Parameter sweeps: `ttquant backtest STRATEGY ... --sweep 'fast=5,10,20 slow=50,100'`.

The grid is every combination of the values given, each put over the config's [params]; each
point is one deterministic backtest (engine.py), so the grid runs in any order, anywhere, and
gives the same results: in parallel processes on this machine (--jobs), or on an existing Dask
cluster (--cluster tcp://host:8786). Dask rather than Ray: a point is a plain function call
over files the workers can read, which is what dask.distributed does with a pip-installed
scheduler and workers and nothing else to run; Ray brings its own object store, dashboard and
runtime that a grid of pure functions does not use.

Each worker loads the data once (per process) and keeps it. The points' summaries, ranked by
--rank-by (default sharpe, best first; a point without the statistic last), go to
OUT/sweep.json (the same grid and data give the same bytes) and a table on stdout.
"""
from __future__ import annotations

import functools
import itertools
import json
import math
import os
import tomllib

__all__ = ["parse_grid", "grid_points", "run_point", "run_sweep", "rank", "format_table"]

SUMMARY = ("orders_sent", "fills", "equity", "handler_errors")
STATS = ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "trades", "win_rate", "profit_factor", "fees")


def _value(text: str, key: str):
    """One grid value as TOML reads it (10, 0.5, true, "usdm"); a bare word is a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text and all(c.isalnum() or c in "_-." for c in text):
            return text
        raise ValueError(f"--sweep: {key}={text!r} is not a value (a number, true/false or a word)") from None


def parse_grid(text: str) -> dict[str, list]:
    """'fast=5,10,20 slow=50,100' -> {"fast": [5, 10, 20], "slow": [50, 100]}."""
    grid: dict[str, list] = {}
    for part in text.split():
        key, sep, values = part.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"--sweep: {part!r} is not NAME=V1,V2,...")
        if key in grid:
            raise ValueError(f"--sweep: {key} given twice")
        grid[key] = [_value(v, key) for v in values.split(",")]
    if not grid:
        raise ValueError("--sweep: no parameter given (NAME=V1,V2,... separated by spaces)")
    return grid


def grid_points(grid: dict[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


@functools.lru_cache(maxsize=2)
def _data(path: str, from_ns: int, to_ns: int):
    from ttquant.strategies.backtest.data import load_events
    return load_events(path, from_ns, to_ns)


def run_point(task: dict) -> dict:
    """One point of the grid: its backtest's summary (plain JSON values). Runs in a worker."""
    from ttquant.core.gateway.risk_config import load_risk_limits
    from ttquant.core.sim.matching import FillModel
    from ttquant.strategies.backtest.engine import run_backtest
    from ttquant.strategies.backtest.results import result_document
    from ttquant.strategies.loader import load_strategy_class
    events, table = _data(task["data"], task["from_ns"], task["to_ns"])
    cls = load_strategy_class(task["strategy"], task["base_dir"])
    model = FillModel(**task["fill_model"])
    limits = load_risk_limits(task["risk"], table) if task["risk"] else None
    result = run_backtest(cls, task["params"], events, table, model=model, strategy_id=task["strategy_id"],
                          raise_errors=False, limits=limits)
    doc = result_document(result, events, table, strategy=task["strategy"], params=task["params"],
                          data=task["data"], fill_model=model, capital=task["capital"], period_s=task["period_s"],
                          risk_file=task["risk"])
    stats = doc["statistics"] or {}
    return {"point": task["point"], "params": task["params"], **{k: doc[k] for k in SUMMARY},
            "statistics": {k: stats.get(k) for k in STATS}}


def rank(rows: list[dict], by: str) -> list[dict]:
    """Best first by the statistic (max_drawdown: the least negative); points without it last,
    then by their place in the grid, so ties keep one order everywhere."""
    def key(row):
        v = row["statistics"].get(by)
        missing = v is None or (isinstance(v, float) and not math.isfinite(v))
        return (missing, 0.0 if missing else -v, row["point"])
    return sorted(rows, key=key)


def run_sweep(base_task: dict, grid: dict[str, list], jobs: int = 0, cluster: str = "") -> list[dict]:
    """Every point's summary, in grid order."""
    tasks = []
    for i, point in enumerate(grid_points(grid)):
        tasks.append({**base_task, "point": i, "params": {**base_task["params"], **point}})
    if cluster:
        from distributed import Client
        with Client(cluster, timeout="10s") as client:
            # pure=False: a point is cheap to name but not to share between two identical tasks
            futures = client.map(run_point, tasks, pure=False)
            return client.gather(futures)
    jobs = jobs or os.cpu_count() or 1
    if jobs == 1 or len(tasks) == 1:
        return [run_point(t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(run_point, tasks))


def format_table(rows: list[dict], grid: dict[str, list], by: str) -> str:
    keys = list(grid)

    def cell(v, pct=False):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.2%}" if pct else f"{v:.3f}"
        return str(v)
    head = ["#", *keys, by, "return", "max dd", "trades", "orders", "fills", "PnL"]
    lines = [head]
    for place, r in enumerate(rows, 1):
        s = r["statistics"]
        lines.append([str(place), *(cell(r["params"][k]) for k in keys), cell(s.get(by)),
                      cell(s.get("total_return"), True), cell(s.get("max_drawdown"), True), cell(s.get("trades")),
                      str(r["orders_sent"]), str(r["fills"]), r["equity"]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)


def write_sweep(rows: list[dict], grid: dict, by: str, path) -> None:
    with open(path, "w") as f:
        f.write(json.dumps({"grid": grid, "rank_by": by, "points": rows}, sort_keys=True, separators=(",", ":"),
                           allow_nan=False) + "\n")
