"""strategy.<name>.toml, as a schema (core/daemon/config.py); every key with its default and
what it does: `ttquant config example strategy` (core/daemon/examples/strategy.toml).

`class` names the strategy the way every tool names it (strategies/loader.py): an example's
short name (`market_maker`), `package.module:Class`, or `path/to/file.py:Class` relative to
this file's directory. A class that cannot be loaded is refused like any bad key.
"""
from __future__ import annotations

import os
from typing import Any

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, convert_entry
from ttquant.core.daemon.runner import LoopTable, ProcessTable
from ttquant.core.rings.names import check_rings_name
from ttquant.strategies.backtest.config import BacktestTable

__all__ = ["StrategyConfig", "StrategyConfigError", "VenueTable", "RuntimeTable", "check_params"]

StrategyConfigError = ConfigError


def _is_name(text: str) -> bool:
    return bool(text) and text == text.lower() and all(c.isalnum() or c in "_-" for c in text)


def _kind_of(default):
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    return (type(default),), type(default).__name__


def check_params(cls, params: dict) -> None:
    """[params] against the class's PARAMS (when it declares them): no key it does not know, each
    value of its default's kind, so a typo is refused instead of running on the default."""
    known = getattr(cls, "PARAMS", None)
    if known is None:
        return
    for key, value in params.items():
        if key not in known:
            raise ConfigError(f"params.{key}: not a parameter of {cls.__name__} (its parameters: "
                              f"{', '.join(sorted(known))})")
        default = known[key]
        if default is None:
            continue
        kinds, said = _kind_of(default)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(f"params.{key}: {said} (like its default {default!r}), got {value!r}")


class VenueTable(Table):
    rings: str = ""                     # the venue's stack: /ttq.<rings>.ticks, .exec, .books (default: the venue)


class RuntimeTable(Table):
    on_error: str = "stop"              # a handler that raises: stop (on_stop, cancel-all, exit 3) | continue
    cancel_all_on_stop: bool = True
    max_seconds: float = 0.0            # stop after this long (0: until SIGTERM)
    sync_timeout_s: float = 0.0         # how long to wait for the gateway's state of this strategy (0: no limit)
    runs_dir: str = "/var/lib/ttquant/runs"     # run records (relative: from this file; "": none)

    def __post_init__(self):
        if self.on_error not in ("stop", "continue"):
            raise ValueError(f"on_error: stop or continue, got {self.on_error!r}")
        if self.max_seconds < 0:
            raise ValueError(f"max_seconds: must be >= 0, got {self.max_seconds}")
        if self.sync_timeout_s < 0:
            raise ValueError(f"sync_timeout_s: must be >= 0, got {self.sync_timeout_s}")


class StrategyConfig(Table):
    strategy_id: int
    class_path: str = msgspec.field(name="class")
    name: str = ""                      # the order rings' owner name (default: the instance)
    venues: dict[str, Any] = {}         # venue -> VenueTable
    params: dict[str, Any] = {}         # given to the strategy as self.params
    runtime: RuntimeTable = msgspec.field(default_factory=RuntimeTable)
    backtest: BacktestTable = msgspec.field(default_factory=BacktestTable)     # `ttquant backtest` only
    loop: LoopTable = msgspec.field(default_factory=LoopTable)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def __post_init__(self):
        if not 0 < self.strategy_id < 2**32:
            raise ValueError(f"strategy_id: an integer in 1..2^32-1, got {self.strategy_id!r}")
        if self.name and not _is_name(self.name):
            raise ValueError(f"name: lower-case letters, digits, '_' and '-', got {self.name!r}")

    def finish(self, base_dir: str, instance: str = "", path: str = "", load_class: bool = True,
               backtest: bool = False):
        self.path, self.base_dir = path, base_dir
        self.name = self.name or instance or ("backtest" if backtest else "")
        if not _is_name(self.name):
            raise ConfigError(f"name: lower-case letters, digits, '_' and '-', got {self.name!r}")
        if instance and self.name != instance:
            raise ConfigError(f"name: is {self.name!r}, but the command asked for {instance!r}")
        if not self.venues and not backtest:          # a backtest's file needs none
            raise ConfigError("venues: at least one [venues.NAME] table")
        rings = {}
        for venue, table in self.venues.items():
            entry = convert_entry(table, VenueTable, f"venues.{venue}")
            try:
                rings[venue] = check_rings_name(entry.rings or venue)
            except ValueError:
                raise ConfigError(f"venues.{venue}.rings: [a-z0-9][a-z0-9_-]*, got {entry.rings!r}") from None
        self.venue_rings = rings
        self.runs_dir = os.path.join(base_dir, self.runtime.runs_dir) if self.runtime.runs_dir else ""
        if load_class:
            from ttquant.strategies.loader import StrategyLoadError, load_strategy_class
            try:
                self.strategy_class = load_strategy_class(self.class_path, base_dir)
            except StrategyLoadError as exc:
                raise ConfigError(f"class: {exc}") from None
            check_params(self.strategy_class, self.params)

    # the names the runtime reads
    @property
    def strategy_name(self) -> str:
        return self.name
