"""risk.toml: the gateway's limits, checked whole and turned into raw units before use.

A bad file is refused with the file and the key named (`risk.toml: instruments.spot.BTCUSDT.
max_position: ...`); on SIGHUP the gateway keeps the limits it has when the new file is refused.

    max_order_age_ms = 500            # older than this when the gateway sees it: 1001
    fat_finger_pct = 5.0              # limit price this far from the reference: 3003 (0: off)
    fat_finger_reference = "last"     # "last" trade (mid when none yet) or "mid"
    max_notional = 100000             # per order, in the quote asset: 3004 (0: none)
    max_open_orders = 200             # 2004 (0: none)
    max_open_orders_per_strategy = 50
    daily_loss_limit = 5000           # realised loss today that stops new orders: 5001 (0: none)
    leverage = 1                      # perpetuals: funds needed = notional / leverage
    [rate_limit]                      # token buckets: 2003
    orders_per_s = 50
    burst = 100
    strategy_orders_per_s = 20
    strategy_burst = 40
    [balances]                        # the shadow balance funds are checked against: 2002
    USDT = 100000
    BTC = 1.5
    [instruments.spot.BTCUSDT]        # market (spot, usdm) and venue symbol
    max_position = 2.0                # |position + open orders| of all strategies: 2001
    max_notional = 50000
    [strategies.7.spot.BTCUSDT]       # a strategy by id: its own position limit
    max_position = 0.5
"""
from __future__ import annotations

import dataclasses
from decimal import Decimal, InvalidOperation

from ttquant.core.instruments import MarketType
from ttquant.core.toml_config import known_keys, read_toml

__all__ = ["RiskLimits", "InstrumentLimits", "RiskConfigError", "load_risk_limits", "parse_risk_limits",
           "ACCOUNT_PRECISION", "MARKETS"]

ACCOUNT_PRECISION = 8       # money at 8 decimals of its asset (risk.pxd)
MARKETS = {"spot": MarketType.SPOT, "usdm": MarketType.LINEAR_PERPETUAL}


class RiskConfigError(ValueError):
    """A risk file that cannot be used; says which file and which key."""


@dataclasses.dataclass(frozen=True)
class InstrumentLimits:
    max_position: int = 0       # raw qty; 0: none
    max_notional: int = 0       # account precision; 0: none


@dataclasses.dataclass(frozen=True)
class RiskLimits:
    max_order_age_ms: int = 500
    fat_finger_ppm: int = 0
    fat_finger_reference: str = "last"
    max_notional: int = 0
    max_open_orders: int = 0
    max_open_orders_per_strategy: int = 0
    daily_loss_limit: int = 0
    leverage: int = 1
    orders_per_s: float = 0.0
    burst: float = 0.0
    strategy_orders_per_s: float = 0.0
    strategy_burst: float = 0.0
    balances: dict = dataclasses.field(default_factory=dict)     # asset -> account precision
    reset_balances: bool = False    # on reload: take these balances (else keep the live ones)
    instruments: dict = dataclasses.field(default_factory=dict)  # (MarketType, symbol) -> InstrumentLimits
    strategies: dict = dataclasses.field(default_factory=dict)   # (id, MarketType, symbol) -> raw max position
    path: str = ""

    def instrument(self, inst) -> InstrumentLimits:
        lim = self.instruments.get((inst.market_type, inst.symbol))
        if lim is None:
            return InstrumentLimits(0, self.max_notional)
        return lim if lim.max_notional else dataclasses.replace(lim, max_notional=self.max_notional)

    def strategy_max_position(self, strategy_id: int, inst) -> int:
        return self.strategies.get((strategy_id, inst.market_type, inst.symbol), 0)


def _amount(value, precision: int, key: str) -> int:
    """A non-negative decimal amount as raw units at precision, exactly or refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RiskConfigError(f"{key}: expected a number, got {value!r}")
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        raise RiskConfigError(f"{key}: not a number: {value!r}") from None
    if not d.is_finite() or d < 0:
        raise RiskConfigError(f"{key}: must be a finite number >= 0, got {value!r}")
    raw = d.scaleb(precision)
    if raw != raw.to_integral_value():
        raise RiskConfigError(f"{key}: {value!r} has more than {precision} decimals")
    if raw >= 2**63:
        raise RiskConfigError(f"{key}: {value!r} is too large")
    return int(raw)


def _number(table, key, where, default, kind=float, minimum=0):
    if key not in table:
        return default
    value = table[key]
    name = f"{where}.{key}" if where else key
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise RiskConfigError(f"{name}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    if value < minimum:
        raise RiskConfigError(f"{name}: must be >= {minimum}, got {value!r}")
    return kind(value)


def _table(doc, key, where=""):
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise RiskConfigError(f"{where + '.' if where else ''}{key}: expected a table")
    return value


def _check_keys(table, known, where):
    known_keys(table, known, where, RiskConfigError)


def parse_risk_limits(doc: dict, table, path: str = "risk.toml") -> RiskLimits:
    """The limits of a parsed risk document over an InstrumentTable; RiskConfigError names the key."""
    try:
        return _parse(doc, table, path)
    except RiskConfigError as exc:
        raise RiskConfigError(f"{path}: {exc}") from None


def load_risk_limits(path: str, table) -> RiskLimits:
    doc = read_toml(path, RiskConfigError)
    return parse_risk_limits(doc, table, path)


def _instrument(table, market, symbol, where):
    if market not in MARKETS:
        raise RiskConfigError(f"{where}: unknown market {market!r} (spot, usdm)")
    inst = table.by_symbol(symbol, MARKETS[market])
    if inst is None:
        raise RiskConfigError(f"{where}.{symbol}: not in the instrument table")
    return inst


def _parse(doc, table, path) -> RiskLimits:
    _check_keys(doc, {"max_order_age_ms", "fat_finger_pct", "fat_finger_reference", "max_notional",
                      "max_open_orders", "max_open_orders_per_strategy", "daily_loss_limit", "leverage",
                      "rate_limit", "balances", "reset_balances", "instruments", "strategies"}, "")
    reference = doc.get("fat_finger_reference", "last")
    if reference not in ("last", "mid"):
        raise RiskConfigError(f"fat_finger_reference: 'last' or 'mid', got {reference!r}")
    fat_pct = _number(doc, "fat_finger_pct", "", 0.0)
    rate = _table(doc, "rate_limit")
    _check_keys(rate, {"orders_per_s", "burst", "strategy_orders_per_s", "strategy_burst"}, "rate_limit")
    orders_per_s = _number(rate, "orders_per_s", "rate_limit", 0.0)
    strategy_per_s = _number(rate, "strategy_orders_per_s", "rate_limit", 0.0)
    balances = {}
    for asset, amount in _table(doc, "balances").items():
        balances[asset] = _amount(amount, ACCOUNT_PRECISION, f"balances.{asset}")
    instruments = {}
    for market, symbols in _table(doc, "instruments").items():
        where = f"instruments.{market}"
        if not isinstance(symbols, dict):
            raise RiskConfigError(f"{where}: expected a table of symbols")
        for symbol, lim in symbols.items():
            inst = _instrument(table, market, symbol, where)
            key = f"{where}.{symbol}"
            if not isinstance(lim, dict):
                raise RiskConfigError(f"{key}: expected a table")
            _check_keys(lim, {"max_position", "max_notional"}, key)
            instruments[(inst.market_type, inst.symbol)] = InstrumentLimits(
                _amount(lim.get("max_position", 0), inst.size_precision, f"{key}.max_position"),
                _amount(lim.get("max_notional", 0), ACCOUNT_PRECISION, f"{key}.max_notional"))
    strategies = {}
    for sid, markets in _table(doc, "strategies").items():
        where = f"strategies.{sid}"
        if not sid.isdigit() or not 0 < int(sid) < 2**32:
            raise RiskConfigError(f"{where}: strategies are keyed by their numeric strategy_id")
        if not isinstance(markets, dict):
            raise RiskConfigError(f"{where}: expected a table of markets")
        for market, symbols in markets.items():
            if not isinstance(symbols, dict):
                raise RiskConfigError(f"{where}.{market}: expected a table of symbols")
            for symbol, lim in symbols.items():
                inst = _instrument(table, market, symbol, f"{where}.{market}")
                key = f"{where}.{market}.{symbol}"
                if not isinstance(lim, dict):
                    raise RiskConfigError(f"{key}: expected a table")
                _check_keys(lim, {"max_position"}, key)
                strategies[(int(sid), inst.market_type, inst.symbol)] = _amount(
                    lim.get("max_position", 0), inst.size_precision, f"{key}.max_position")
    reset = doc.get("reset_balances", False)
    if not isinstance(reset, bool):
        raise RiskConfigError(f"reset_balances: expected true or false, got {reset!r}")
    return RiskLimits(
        max_order_age_ms=_number(doc, "max_order_age_ms", "", 500, int),
        fat_finger_ppm=int(Decimal(str(fat_pct)) * 10_000),
        fat_finger_reference=reference,
        max_notional=_amount(doc.get("max_notional", 0), ACCOUNT_PRECISION, "max_notional"),
        max_open_orders=_number(doc, "max_open_orders", "", 0, int),
        max_open_orders_per_strategy=_number(doc, "max_open_orders_per_strategy", "", 0, int),
        daily_loss_limit=_amount(doc.get("daily_loss_limit", 0), ACCOUNT_PRECISION, "daily_loss_limit"),
        leverage=_number(doc, "leverage", "", 1, int, minimum=1),
        orders_per_s=orders_per_s,
        burst=_number(rate, "burst", "rate_limit", max(orders_per_s, 1.0)),
        strategy_orders_per_s=strategy_per_s,
        strategy_burst=_number(rate, "strategy_burst", "rate_limit", max(strategy_per_s, 1.0)),
        balances=balances, reset_balances=reset, instruments=instruments, strategies=strategies, path=path,
    )
