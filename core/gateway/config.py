"""gateway.<venue>.toml, as a schema (core/daemon/config.py); every key with its default and
what it does: `ttquant config example gateway` (core/daemon/examples/gateway.toml).

Paths (journal, risk file) are relative to the config file's directory.
"""
from __future__ import annotations

import os
from typing import Any

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, check_power_of_two, check_rings_key
from ttquant.core.daemon.runner import LoopTable, ProcessTable
from ttquant.core.gateway.order_journal import FSYNC_POLICIES
from ttquant.core.venues.registry import ADAPTERS

__all__ = ["GatewayConfig", "GatewayConfigError", "ADAPTERS"]

GatewayConfigError = ConfigError


class GatewayRings(Table):
    name: str = ""                      # md's /ttq.<name>.ticks and .books; ours: .exec, .orders.<strategy>
    exec_capacity: int = 1 << 16
    group: str = ""

    def __post_init__(self):
        check_rings_key(self.name)
        check_power_of_two(self.exec_capacity, "exec_capacity")


class AdapterTable(Table):
    kind: str = "sim"                   # sim (the simulated venue) | dry (takes every order, fills none) | binance
    http_url: str = ""                  # sim: the simulated venue's http://host:port
    environment: str = "live"           # binance: live | testnet | custom (rest_url)
    rest_url: str = ""                  # binance, custom: the REST base URL, http(s)://host[:port]
    market: str = "spot"                # binance: spot | usdm (USDT-M futures: its user data over a listen key)
    credentials: str = "binance"        # binance: a systemd credential's name, or a path to a 0600 file
    recv_window_ms: int = 5000          # binance: how late a signed request may arrive (recvWindow)
    order_entry: str = "ws"             # binance: ws (the WebSocket API, REST when it is down) | rest (signed REST
                                        # only)
    ws_api_url: str = ""                # binance, custom with order_entry ws: the WebSocket API, ws(s)://host:port/path
                                        # (spot /ws-api/v3, usdm /ws-fapi/v1)
    user_stream_url: str = ""           # binance usdm, custom: the listen key stream's base, ws(s)://host:port/ws

    def __post_init__(self):
        if self.kind not in ADAPTERS:
            raise ValueError(f"kind: one of {', '.join(ADAPTERS)}, got {self.kind!r}")
        if self.kind == "sim" and not self.http_url.startswith("http://"):
            raise ValueError(f"http_url: the simulated venue's http://host:port, got {self.http_url!r}")
        if self.kind == "binance":
            if self.environment not in ("live", "testnet", "custom"):
                raise ValueError(f"environment: live, testnet or custom, got {self.environment!r}")
            if self.environment == "custom" and not self.rest_url.startswith(("http://", "https://")):
                raise ValueError(f"rest_url: environment custom needs http(s)://host[:port], got {self.rest_url!r}")
            if self.market not in ("spot", "usdm"):
                raise ValueError(f"market: spot or usdm, got {self.market!r}")
            if not self.credentials:
                raise ValueError("credentials: a systemd credential's name or a file's path")
            if self.order_entry not in ("ws", "rest"):
                raise ValueError(f"order_entry: ws or rest, got {self.order_entry!r}")
            if self.market == "usdm" and self.environment == "custom" and \
                    not self.user_stream_url.startswith(("ws://", "wss://")):
                raise ValueError(f"user_stream_url: market usdm on environment custom needs the listen key stream's "
                                 f"base, ws(s)://host:port/ws, got {self.user_stream_url!r}")
            if self.environment == "custom" and self.order_entry == "ws" and \
                    not self.ws_api_url.startswith(("ws://", "wss://")):
                raise ValueError(f"ws_api_url: environment custom with order_entry ws needs ws(s)://host:port/path, "
                                 f"got {self.ws_api_url!r}")
            if not 0 < self.recv_window_ms <= 60000:
                raise ValueError(f"recv_window_ms: in 1..60000 (Binance's most), got {self.recv_window_ms}")


class JournalTable(Table):
    path: str = ""                      # default: <venue>.orders.journal beside this file
    fsync: str = "every"                # every | interval | never
    fsync_interval_ms: int = 10

    def __post_init__(self):
        if self.fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync: one of {', '.join(FSYNC_POLICIES)}, got {self.fsync!r}")
        if self.fsync_interval_ms < 0:
            raise ValueError(f"fsync_interval_ms: must be >= 0, got {self.fsync_interval_ms}")


class RiskTable(Table):
    file: str = ""                      # default: risk.<venue>.toml beside this file; reloaded on SIGHUP


class GatewayLoop(LoopTable):
    discover_interval_s: float = 0.5    # new strategy order rings are picked up this often

    def __post_init__(self):
        super().__post_init__()
        if self.discover_interval_s <= 0:
            raise ValueError(f"discover_interval_s: must be positive, got {self.discover_interval_s}")


class GatewayConfig(Table):
    venue: str = ""                     # default: the instance (`ttquant gateway binance`)
    rings: GatewayRings = msgspec.field(default_factory=GatewayRings)
    adapter: AdapterTable = msgspec.field(default_factory=AdapterTable)
    journal: JournalTable = msgspec.field(default_factory=JournalTable)
    risk: RiskTable = msgspec.field(default_factory=RiskTable)
    loop: GatewayLoop = msgspec.field(default_factory=GatewayLoop)
    strategies: dict[str, Any] = {}     # order ring owner -> the strategy id it must use
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def __post_init__(self):
        for name, sid in self.strategies.items():
            if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 2**32:
                raise ValueError(f"strategies.{name}: a strategy id in 1..2^32-1, got {sid!r}")

    def finish(self, base_dir: str, instance: str = "", path: str = ""):
        self.venue = self.venue or instance or "binance"
        if instance and self.venue != instance:
            raise ConfigError(f"venue: {self.venue!r}, but the gateway was started for {instance!r}")
        rel = lambda p: p if os.path.isabs(p) else os.path.join(base_dir, p)     # noqa: E731
        self.path = path
        self.ring_name = self.rings.name or self.venue
        self.journal_path = rel(self.journal.path or f"{self.venue}.orders.journal")
        self.risk_file = rel(self.risk.file or f"risk.{self.venue}.toml")

    @property
    def shm_group(self):
        return self.rings.group or None
