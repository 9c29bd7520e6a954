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
from typing import Any

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, convert_entry, explain, read_toml
from ttquant.core.instruments import MarketType

__all__ = ["RiskLimits", "InstrumentLimits", "RiskConfigError", "load_risk_limits", "parse_risk_limits",
           "ACCOUNT_PRECISION", "MARKETS"]

ACCOUNT_PRECISION = 8       # money at 8 decimals of its asset (risk.pxd)
MARKETS = {"spot": MarketType.SPOT, "usdm": MarketType.LINEAR_PERPETUAL}


RiskConfigError = ConfigError          # a risk file that cannot be used; names the file and the key


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


Amount = int | float | str           # exact decimals: 0.1 is read as "0.1", never as a float's digits


class RateLimitTable(Table):
    orders_per_s: float = 0.0           # all strategies together (0: none)
    burst: float = 0.0                  # 0: max(orders_per_s, 1)
    strategy_orders_per_s: float = 0.0  # each strategy
    strategy_burst: float = 0.0

    def __post_init__(self):
        for key in self.__struct_fields__:
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")


class InstrumentLimitsTable(Table):
    max_position: Amount = 0            # |position + open orders| of all strategies: 2001
    max_notional: Amount = 0            # per order: 3004


class StrategyLimitsTable(Table):
    max_position: Amount = 0            # this strategy's |position + open orders|: 2001


class RiskFile(Table):
    """risk.<venue>.toml as written; parse_risk_limits turns it into raw units."""
    max_order_age_ms: int = 500
    fat_finger_pct: float = 0.0
    fat_finger_reference: str = "last"
    max_notional: Amount = 0
    max_open_orders: int = 0
    max_open_orders_per_strategy: int = 0
    daily_loss_limit: Amount = 0
    leverage: int = 1
    rate_limit: RateLimitTable = msgspec.field(default_factory=RateLimitTable)
    balances: dict[str, Any] = {}      # asset -> amount (name-keyed tables are checked entry by entry)
    reset_balances: bool = False
    instruments: dict[str, dict[str, Any]] = {}             # market -> symbol -> InstrumentLimitsTable
    strategies: dict[str, dict[str, dict[str, Any]]] = {}   # strategy id -> market -> symbol -> ...

    def __post_init__(self):
        if self.fat_finger_reference not in ("last", "mid"):
            raise ValueError(f"fat_finger_reference: 'last' or 'mid', got {self.fat_finger_reference!r}")
        for key in ("max_order_age_ms", "fat_finger_pct", "max_open_orders", "max_open_orders_per_strategy"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key}: must be >= 0, got {getattr(self, key)}")
        if self.leverage < 1:
            raise ValueError(f"leverage: must be >= 1, got {self.leverage}")


def parse_risk_limits(doc: dict, table, path: str = "risk.toml") -> RiskLimits:
    """The limits of a parsed risk document over an InstrumentTable; RiskConfigError names the key."""
    try:
        return _parse(doc, table, path)
    except RiskConfigError as exc:
        raise RiskConfigError(f"{path}: {exc}") from None


def load_risk_limits(path: str, table) -> RiskLimits:
    return parse_risk_limits(read_toml(path), table, path)


def _instrument(table, market, symbol, where):
    if market not in MARKETS:
        raise RiskConfigError(f"{where}: unknown market {market!r} (spot, usdm)")
    inst = table.by_symbol(symbol, MARKETS[market])
    if inst is None:
        raise RiskConfigError(f"{where}.{symbol}: not in the instrument table")
    return inst


def _parse(doc, table, path) -> RiskLimits:
    try:
        f = msgspec.convert(doc, RiskFile)
    except msgspec.ValidationError as exc:
        raise RiskConfigError(explain(str(exc), RiskFile)) from None
    rate = f.rate_limit
    balances = {asset: _amount(amount, ACCOUNT_PRECISION, f"balances.{asset}") for asset, amount in f.balances.items()}
    instruments = {}
    for market, symbols in f.instruments.items():
        for symbol, lim in symbols.items():
            inst = _instrument(table, market, symbol, f"instruments.{market}")
            key = f"instruments.{market}.{symbol}"
            lim = convert_entry(lim, InstrumentLimitsTable, key)
            instruments[(inst.market_type, inst.symbol)] = InstrumentLimits(
                _amount(lim.max_position, inst.size_precision, f"{key}.max_position"),
                _amount(lim.max_notional, ACCOUNT_PRECISION, f"{key}.max_notional"))
    strategies = {}
    for sid, markets in f.strategies.items():
        where = f"strategies.{sid}"
        if not sid.isdigit() or not 0 < int(sid) < 2**32:
            raise RiskConfigError(f"{where}: strategies are keyed by their numeric strategy_id")
        for market, symbols in markets.items():
            if not isinstance(symbols, dict):
                raise RiskConfigError(f"{where}.{market}: expected a table of symbols")
            for symbol, lim in symbols.items():
                inst = _instrument(table, market, symbol, f"{where}.{market}")
                key = f"{where}.{market}.{symbol}"
                lim = convert_entry(lim, StrategyLimitsTable, key)
                strategies[(int(sid), inst.market_type, inst.symbol)] = _amount(
                    lim.max_position, inst.size_precision, f"{key}.max_position")
    return RiskLimits(
        max_order_age_ms=f.max_order_age_ms,
        fat_finger_ppm=int(Decimal(str(f.fat_finger_pct)) * 10_000),
        fat_finger_reference=f.fat_finger_reference,
        max_notional=_amount(f.max_notional, ACCOUNT_PRECISION, "max_notional"),
        max_open_orders=f.max_open_orders,
        max_open_orders_per_strategy=f.max_open_orders_per_strategy,
        daily_loss_limit=_amount(f.daily_loss_limit, ACCOUNT_PRECISION, "daily_loss_limit"),
        leverage=f.leverage,
        orders_per_s=rate.orders_per_s,
        burst=rate.burst or max(rate.orders_per_s, 1.0),
        strategy_orders_per_s=rate.strategy_orders_per_s,
        strategy_burst=rate.strategy_burst or max(rate.strategy_orders_per_s, 1.0),
        balances=balances, reset_balances=f.reset_balances, instruments=instruments, strategies=strategies,
        path=path,
    )
