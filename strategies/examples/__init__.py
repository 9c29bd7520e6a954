"""Example strategies that are also tests: EMA cross, mean reversion, grid, an Avellaneda-Stoikov
market maker and a spot/perpetual spread arbitrage. Each runs unchanged live and in backtests."""

__all__ = ["EXAMPLES"]

# short name -> class, as `class = "market_maker"` in a strategy's file, the demo and backtests
EXAMPLES = {
    "ema_cross": "ttquant.strategies.examples.ema_cross:EmaCross",
    "mean_reversion": "ttquant.strategies.examples.mean_reversion:MeanReversion",
    "grid": "ttquant.strategies.examples.grid:Grid",
    "market_maker": "ttquant.strategies.examples.market_maker:AvellanedaStoikov",
    "spread_arb": "ttquant.strategies.examples.spread_arb:SpreadArb",
}
