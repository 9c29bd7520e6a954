"""`ttquant backtest STRATEGY --config FILE --data DIR|CAPTURE [--from T] [--to T] [--out DIR]`.

STRATEGY is named as `ttquant strategy run` names it (an example's short name,
package.module:Class, path/file.py:Class); FILE is the strategy's own config (its [params],
strategy_id and [backtest] table: fill model, risk file, capital; its live keys are not used);
DATA a journal directory (what the recorder wrote) or a capture file of data/binance. Writes
OUT/result.json (results.py: the same inputs give the same bytes) and OUT/report.html (report.py:
plots in one self-contained file) and prints a summary; a progress line on a terminal (events,
events/s, ETA), none otherwise. --sweep runs a grid of parameters instead (sweep.py).
"""
from __future__ import annotations

import os
import sys
import time

__all__ = ["run_backtest_command", "Progress"]


class Progress:
    """events done, events/s and the time left, redrawn in place at most 10 times a second."""

    def __init__(self, stream=sys.stderr):
        self.stream, self.on = stream, stream.isatty()
        self.started = self.drawn = time.monotonic()

    def __call__(self, done, total):
        if not self.on:
            return
        now = time.monotonic()
        if now - self.drawn < 0.1 and done < total:
            return
        self.drawn = now
        rate = done / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate else 0
        width = 30
        bar = "#" * int(width * done / total) if total else ""
        self.stream.write(f"\r[{bar:<{width}}] {done:,}/{total:,} events  {rate / 1e6:.2f} M/s  ETA {left:.0f} s ")
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()


def _load(args):
    from ttquant.core.daemon.config import ConfigError, parse_config, read_toml
    from ttquant.strategies.config import StrategyConfig
    from ttquant.strategies.loader import load_strategy_class
    doc = read_toml(args.config) if args.config else {"strategy_id": 1}
    doc.setdefault("class", args.strategy)
    cfg = parse_config(doc, StrategyConfig, args.config or "<no config>", load_class=False, backtest=True)
    base = os.path.dirname(os.path.abspath(args.config)) if args.config else os.getcwd()
    try:
        cls = load_strategy_class(args.strategy, os.getcwd())
    except Exception as exc:
        raise ConfigError(str(exc)) from None
    from ttquant.strategies.config import check_params
    check_params(cls, cfg.params)
    risk = cfg.backtest.risk
    if risk and not os.path.isabs(risk):
        risk = os.path.join(base, risk)
    return cfg, cls, risk


def run_backtest_command(args) -> int:
    from ttquant.core.daemon.config import ConfigError
    from ttquant.core.gateway.risk_config import load_risk_limits
    from ttquant.core.journal.replay import parse_time
    from ttquant.strategies.backtest.data import load_events
    from ttquant.strategies.backtest.engine import run_backtest
    from ttquant.strategies.backtest.results import result_document, write_result
    try:
        cfg, cls, risk = _load(args)
        t0 = time.monotonic()
        events, table = load_events(args.data, parse_time(args.from_time) if args.from_time else 0,
                                    parse_time(args.to_time) if args.to_time else 0)
        limits = load_risk_limits(risk, table) if risk else None
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"ttquant backtest: {exc}", file=sys.stderr)
        return 2
    if not len(events):
        print(f"ttquant backtest: {args.data}: no events (in the time asked)", file=sys.stderr)
        return 2
    loaded = time.monotonic() - t0
    model = cfg.backtest.fill.model()
    if args.sweep:
        return _sweep(args, cfg, risk, model, len(events))
    t1 = time.monotonic()
    result = run_backtest(cls, cfg.params, events, table, model=model, strategy_id=cfg.strategy_id,
                          raise_errors=False, limits=limits, progress=Progress())
    ran = time.monotonic() - t1
    doc = result_document(result, events, table, strategy=args.strategy, params=cfg.params,
                          data=os.path.abspath(args.data), fill_model=model, capital=cfg.backtest.capital,
                          period_s=cfg.backtest.period_s, risk_file=risk)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "result.json")
    write_result(doc, path)
    if not args.no_report:
        from ttquant.strategies.backtest.report import trade_prices, write_report
        write_report(doc, os.path.join(args.out, "report.html"), prices=trade_prices(events, table), table=table)
    stats = doc["statistics"] or {}

    def num(key, fmt="{:.3f}"):
        v = stats.get(key)
        return "-" if v is None else fmt.format(v)
    rejects = doc["rejects_by_code"] or "none"
    print(f"{args.strategy}: {len(events):,} events in {ran:.2f} s ({len(events) / ran / 1e6:.2f} M/s; data loaded "
          f"in {loaded:.1f} s); {result.orders_sent} orders, {doc['fills']} fills, rejects {rejects}, "
          f"{result.errors} handler errors")
    print(f"  PnL {doc['equity']} (quote), positions {doc['positions'] or 'none'}; "
          f"return {num('total_return', '{:.4%}')}, Sharpe {num('sharpe')}, "
          f"max drawdown {num('max_drawdown', '{:.4%}')}, trades {stats.get('trades', 0)}, "
          f"win rate {num('win_rate', '{:.1%}')}, fees {num('fees', '{:.4f}')}")
    print(f"  {path}" + ("" if args.no_report else f"\n  {os.path.join(args.out, 'report.html')}"))
    return 0


def _sweep(args, cfg, risk, model, n_events) -> int:
    import dataclasses

    from ttquant.core.journal.replay import parse_time
    from ttquant.strategies.backtest.sweep import format_table, parse_grid, rank, run_sweep, write_sweep
    from ttquant.strategies.config import check_params
    from ttquant.strategies.loader import load_strategy_class
    try:
        grid = parse_grid(args.sweep)
        first = {k: v[0] for k, v in grid.items()}
        check_params(load_strategy_class(args.strategy, os.getcwd()), {**cfg.params, **first})
    except Exception as exc:
        print(f"ttquant backtest: {exc}", file=sys.stderr)
        return 2
    module, _, cls = args.strategy.rpartition(":")
    strategy = f"{os.path.abspath(module)}:{cls}" if module.endswith(".py") else args.strategy   # workers elsewhere
    base = {"strategy": strategy, "base_dir": os.getcwd(), "data": os.path.abspath(args.data),
            "from_ns": parse_time(args.from_time) if args.from_time else 0,
            "to_ns": parse_time(args.to_time) if args.to_time else 0,
            "params": dict(cfg.params), "strategy_id": cfg.strategy_id, "fill_model": dataclasses.asdict(model),
            "risk": risk, "capital": cfg.backtest.capital, "period_s": cfg.backtest.period_s}
    t0 = time.monotonic()
    try:
        rows = run_sweep(base, grid, jobs=args.jobs, cluster=args.cluster or "")
    except OSError as exc:
        print(f"ttquant backtest: --cluster {args.cluster}: {exc}", file=sys.stderr)
        return 1
    ranked = rank(rows, args.rank_by)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "sweep.json")
    write_sweep(ranked, grid, args.rank_by, path)
    where = f"on {args.cluster}" if args.cluster else f"in {args.jobs or os.cpu_count()} processes"
    print(f"{len(rows)} points x {n_events:,} events {where} in {time.monotonic() - t0:.1f} s, ranked by "
          f"{args.rank_by}:")
    print(format_table(ranked, grid, args.rank_by))
    print(f"  {path}")
    return 0
