"""Spot / USDT-M perpetual spread arbitrage on Binance: when the perpetual's bid is more than
`entry_bps` above the spot ask, buy spot and sell the perpetual (IOC at the touch); unwind both
when the basis falls under `exit_bps`. One lot at a time; when one leg fills more than the
other, the perpetual is traded to square it before anything else."""
from ttquant.core.records import OrderType
from ttquant.strategies.base import BaseStrategy


class SpreadArb(BaseStrategy):
    name = "spread_arb"
    PARAMS = {"symbol": "BTCUSDT", "qty": 0.001, "entry_bps": 5.0, "exit_bps": 1.0}

    def on_start(self):
        p = self.params
        symbol = p["symbol"]
        self.spot = self.instrument(symbol, "spot")
        self.perp = self.instrument(symbol, "usdm")
        self.qty = float(p["qty"])
        self.entry = float(p["entry_bps"]) / 1e4
        self.exit = float(p["exit_bps"]) / 1e4
        self.top = {}               # instrument id -> (bid, ask)
        self.basis_seen = []

    def on_quote(self, q):
        if q.instrument.instrument_id not in (self.spot.instrument_id, self.perp.instrument_id) or not q.bid:
            return
        self.top[(q.instrument.venue, q.instrument.instrument_id)] = (q.bid, q.ask)
        s = self.top.get((self.spot.venue, self.spot.instrument_id))
        f = self.top.get((self.perp.venue, self.perp.instrument_id))
        if s is None or f is None or self.open_orders():
            return
        long_spot = self.position(self.spot)
        imbalance = long_spot + self.position(self.perp)
        if abs(imbalance) >= self.qty / 2:          # one leg filled more than the other: square the perp
            if imbalance > 0:
                self.sell(self.perp, imbalance, f[0], OrderType.IOC)
            else:
                self.buy(self.perp, -imbalance, f[1], OrderType.IOC)
            return
        entry_basis = (f[0] - s[1]) / s[1]          # sell perp at its bid, buy spot at its ask
        exit_basis = (f[1] - s[0]) / s[0]           # buy perp back at its ask, sell spot at its bid
        self.basis_seen.append(entry_basis)
        if long_spot < self.qty / 2 and entry_basis > self.entry:
            self.buy(self.spot, self.qty, s[1], OrderType.IOC)
            self.sell(self.perp, self.qty, f[0], OrderType.IOC)
        elif long_spot >= self.qty / 2 and exit_basis < self.exit:
            self.sell(self.spot, long_spot, s[0], OrderType.IOC)
            short = -self.position(self.perp)
            if short > 0:
                self.buy(self.perp, short, f[1], OrderType.IOC)
