"""TTQuant strategies: the BaseStrategy SDK, runtime, backtests and examples ([exec] issue)."""
