"""Example strategies that are also tests: EMA cross, mean reversion, grid, an Avellaneda-Stoikov
market maker and a spot/perpetual spread arbitrage. Each runs unchanged live and in backtests."""
