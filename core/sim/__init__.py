"""The simulated exchange, in one place: real exchange formats on 127.0.0.1 fed by captures or
a generator (binance_venue, binance_replay, captures, synthetic), and order entry against the
live market (order_venue) by the matcher and fill model backtests share (matching)."""
