"""Backtests (DESIGN.md §6): the engine, and the statistics of what it ran."""
from ttquant.strategies.backtest.engine import BacktestContext, BacktestResult, events_from_capture, run_backtest

__all__ = ["BacktestContext", "BacktestResult", "run_backtest", "events_from_capture"]
