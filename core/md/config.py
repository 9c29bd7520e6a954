"""md.<venue>.toml: the market-data daemon's configuration, as a schema (core/daemon/config.py).

Every key with its default and what it does: `ttquant config example md`
(core/daemon/examples/md.toml). A bad file is refused whole before anything starts, with the
file and the key named (`md.binance.toml: markets.spot.symbols: ...`).
"""
from __future__ import annotations

import os

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, check_power_of_two, check_rings_key
from ttquant.core.daemon.runner import ProcessTable

__all__ = ["MdConfig", "MarketConfig", "ConfigError", "DEFAULT_STREAMS", "LIVE_URLS", "KNOWN_STREAMS"]

LIVE_URLS = {
    "spot": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "usdm": ("wss://fstream.binance.com", "https://fapi.binance.com"),
}
DEFAULT_STREAMS = {
    "spot": ["trade", "bookTicker", "depth@100ms"],
    "usdm": ["trade", "bookTicker", "depth@0ms", "markPrice@1s"],
}
KNOWN_STREAMS = ("trade", "aggTrade", "bookTicker", "depth", "kline_", "markPrice")
SNAPSHOT_LIMITS = (5, 10, 20, 50, 100, 500, 1000, 5000)


def _positive(value, key):
    if value <= 0:
        raise ValueError(f"{key}: must be positive, got {value}")


class MarketConfig(Table):
    """[markets.spot], [markets.usdm]: one market's streams (one WebSocket connection)."""
    symbols: list[str]
    streams: list[str] = []             # default: DEFAULT_STREAMS of the market
    ws_url: str = ""                    # default: the venue's live URL (LIVE_URLS)
    rest_url: str = ""
    snapshot_limit: int = 1000

    def __post_init__(self):
        if not self.symbols or not all(s.isalnum() for s in self.symbols):
            raise ValueError(f"symbols: a non-empty list of symbols like 'BTCUSDT', got {self.symbols!r}")
        self.symbols = [s.upper() for s in self.symbols]
        for s in self.streams:
            if not s.startswith(KNOWN_STREAMS):
                raise ValueError(f"streams: {s!r} is not one of {', '.join(KNOWN_STREAMS)}...")
        if self.ws_url and not self.ws_url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_url: must start with ws:// or wss://, got {self.ws_url!r}")
        if self.rest_url and not self.rest_url.startswith(("http://", "https://")):
            raise ValueError(f"rest_url: must start with http:// or https://, got {self.rest_url!r}")
        if self.snapshot_limit not in SNAPSHOT_LIMITS:
            raise ValueError(f"snapshot_limit: one of {', '.join(map(str, SNAPSHOT_LIMITS))}")

    def resolve(self, name: str) -> MarketConfig:
        self.name = name
        self.streams = list(self.streams or DEFAULT_STREAMS[name])
        self.ws_url = (self.ws_url or LIVE_URLS[name][0]).rstrip("/")
        self.rest_url = (self.rest_url or LIVE_URLS[name][1]).rstrip("/")
        return self

    def stream_names(self) -> list[str]:
        return [f"{s.lower()}@{k}" for s in self.symbols for k in self.streams]

    def has_depth(self) -> bool:
        return any(k.startswith("depth") for k in self.streams)


class Markets(Table):
    spot: MarketConfig | None = None
    usdm: MarketConfig | None = None


class RingsTable(Table):
    name: str = ""                      # segments /ttq.<name>.*; default: the venue (the instance)
    tick_capacity: int = 1 << 16
    board_depth: int = 20
    board_instruments: int = 256
    group: str = ""                     # the segments' group (default: $TTQ_SHM_GROUP, else ttquant if it exists)

    def __post_init__(self):
        check_rings_key(self.name)
        check_power_of_two(self.tick_capacity, "tick_capacity")
        if not 1 <= self.board_depth <= 126:
            raise ValueError(f"board_depth: must be in [1, 126], got {self.board_depth}")
        _positive(self.board_instruments, "board_instruments")


class ConnectionTable(Table):
    backoff_initial_s: float = 0.1      # reconnect backoff with jitter, doubling
    backoff_max_s: float = 30.0
    max_connection_age_s: float = 23.5 * 3600      # Binance closes connections at 24 h
    rollover_overlap_s: float = 3.0     # both connections stream this long before the old closes
    idle_timeout_s: float = 30.0        # no frame and no ping this long: reconnect
    snapshot_retry_s: float = 1.0
    exchange_info_refresh_s: float = 3600.0

    def __post_init__(self):
        for key in self.__struct_fields__:
            _positive(getattr(self, key), key)


class ThreadsTable(Table):
    ws_cpus: list[int] = []             # pin the WebSocket thread
    housekeeping_cpus: list[int] = []

    def __post_init__(self):
        for key in self.__struct_fields__:
            if any(c < 0 for c in getattr(self, key)):
                raise ValueError(f"{key}: a list of CPU numbers, got {getattr(self, key)!r}")


class LimitsTable(Table):
    max_frame_bytes: int = 1 << 20
    stats_interval_s: float = 5.0

    def __post_init__(self):
        _positive(self.max_frame_bytes, "max_frame_bytes")
        _positive(self.stats_interval_s, "stats_interval_s")


class RecordFramesTable(Table):
    """[record_frames]: every received frame (and REST snapshot) into gzip capture files."""
    dir: str = ""                       # "": off; relative: from this file's directory
    max_file_s: float = 3600.0          # a new file every hour
    max_queued: int = 1_000_000         # frames waiting for the disk before they are dropped (counted)

    def __post_init__(self):
        _positive(self.max_file_s, "max_file_s")
        _positive(self.max_queued, "max_queued")


class MdConfig(Table):
    markets: Markets
    venue: str = ""                     # default: the instance (`ttquant md binance`)
    venue_id: int = 1
    rings: RingsTable = msgspec.field(default_factory=RingsTable)
    connection: ConnectionTable = msgspec.field(default_factory=ConnectionTable)
    threads: ThreadsTable = msgspec.field(default_factory=ThreadsTable)
    limits: LimitsTable = msgspec.field(default_factory=LimitsTable)
    record_frames: RecordFramesTable = msgspec.field(default_factory=RecordFramesTable)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def finish(self, base_dir: str, instance: str = "binance", path: str = ""):
        self.venue = self.venue or instance
        if self.venue != instance:
            raise ConfigError(f"venue: {self.venue!r}, but md was started for {instance!r}")
        if self.venue != "binance":
            raise ConfigError(f"venue: only 'binance' is implemented, got {self.venue!r}")
        chosen = [(n, getattr(self.markets, n)) for n in ("spot", "usdm") if getattr(self.markets, n)]
        if not chosen:
            raise ConfigError("markets: at least one of spot, usdm is needed")
        self.market_list = tuple(m.resolve(n) for n, m in chosen)
        self.ring_name = self.rings.name or self.venue
        self.path = path
        d = self.record_frames.dir
        self.frames_dir = (d if os.path.isabs(d) else os.path.join(base_dir, d)) if d else ""

    # flat names the daemon reads
    @property
    def shm_group(self):
        return self.rings.group or None
