"""The simulated venue: matching against the live market by the fill model backtests share."""
