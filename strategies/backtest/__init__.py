"""Backtests (DESIGN.md §6): the engine, its data, and the statistics of what it ran."""
from ttquant.strategies.backtest.data import events_from_capture
from ttquant.strategies.backtest.engine import BacktestContext, BacktestResult, run_backtest

__all__ = ["BacktestContext", "BacktestResult", "run_backtest", "events_from_capture"]
