"""The md daemon's configuration: a TOML file, checked whole before anything starts.

A bad file is refused with the file and the key named (`md.toml: markets.spot.symbols: ...`).
"""
from __future__ import annotations

import dataclasses

from ttquant.core.toml_config import read_toml, typed

__all__ = ["MdConfig", "MarketConfig", "ConfigError", "load_config", "DEFAULT_STREAMS", "LIVE_URLS"]

LIVE_URLS = {
    "spot": ("wss://stream.binance.com:9443", "https://api.binance.com"),
    "usdm": ("wss://fstream.binance.com", "https://fapi.binance.com"),
}
DEFAULT_STREAMS = {
    "spot": ["trade", "bookTicker", "depth@100ms"],
    "usdm": ["trade", "bookTicker", "depth@0ms", "markPrice@1s"],
}
KNOWN_STREAMS = ("trade", "aggTrade", "bookTicker", "depth", "kline_", "markPrice")


class ConfigError(ValueError):
    """A configuration file that cannot be used; says which file and which key."""


@dataclasses.dataclass(frozen=True)
class MarketConfig:
    name: str
    symbols: tuple[str, ...]
    streams: tuple[str, ...]
    ws_url: str
    rest_url: str
    snapshot_limit: int = 1000

    def stream_names(self) -> list[str]:
        return [f"{s.lower()}@{k}" for s in self.symbols for k in self.streams]

    def has_depth(self) -> bool:
        return any(k.startswith("depth") for k in self.streams)


@dataclasses.dataclass(frozen=True)
class MdConfig:
    path: str
    venue: str = "binance"
    ring_name: str = "binance"        # segments are /ttq.<ring_name>.*; tests and demos use their own
    venue_id: int = 1
    markets: tuple[MarketConfig, ...] = ()
    tick_capacity: int = 1 << 16
    board_depth: int = 20
    board_instruments: int = 256
    shm_group: str | None = None
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 30.0
    max_connection_age_s: float = 23.5 * 3600     # Binance closes connections at 24 h
    rollover_overlap_s: float = 3.0                # both connections stream this long before the old closes
    idle_timeout_s: float = 30.0                   # no frame and no ping this long: reconnect
    snapshot_retry_s: float = 1.0
    exchange_info_refresh_s: float = 3600.0
    max_frame_bytes: int = 1 << 20
    ws_cpus: tuple[int, ...] = ()
    housekeeping_cpus: tuple[int, ...] = ()
    stats_interval_s: float = 5.0


def _get(table, key, kind, where, default=dataclasses.MISSING):
    return typed(table, key, kind, where, default, ConfigError)


def load_config(path: str) -> MdConfig:
    doc = read_toml(path, ConfigError)
    try:
        return _parse(doc, path)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _ring_name(name):
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"rings.name: letters, digits, '_' and '-' only, got {name!r}")
    return name


def _positive(value, key):
    if value <= 0:
        raise ConfigError(f"{key}: must be positive, got {value}")
    return value


def _parse(doc: dict, path: str) -> MdConfig:
    known = {"venue", "venue_id", "rings", "markets", "connection", "threads", "limits"}
    for key in doc:
        if key not in known:
            raise ConfigError(f"{key}: unknown key (known: {', '.join(sorted(known))})")
    venue = _get(doc, "venue", str, "", "binance")
    if venue != "binance":
        raise ConfigError(f"venue: only 'binance' is implemented, got {venue!r}")
    rings = _get(doc, "rings", dict, "", {})
    markets_doc = _get(doc, "markets", dict, "")
    if not markets_doc:
        raise ConfigError("markets: at least one of spot, usdm is needed")
    markets = []
    for name, m in markets_doc.items():
        where = f"markets.{name}"
        if name not in LIVE_URLS:
            raise ConfigError(f"{where}: unknown market (spot or usdm)")
        if not isinstance(m, dict):
            raise ConfigError(f"{where}: expected a table")
        symbols = _get(m, "symbols", list, where)
        if not symbols or not all(isinstance(s, str) and s.isalnum() for s in symbols):
            raise ConfigError(f"{where}.symbols: a non-empty list of symbols like 'BTCUSDT', got {symbols!r}")
        streams = _get(m, "streams", list, where, DEFAULT_STREAMS[name])
        for s in streams:
            if not isinstance(s, str) or not s.startswith(KNOWN_STREAMS):
                raise ConfigError(f"{where}.streams: {s!r} is not one of {', '.join(KNOWN_STREAMS)}...")
        ws_url = _get(m, "ws_url", str, where, LIVE_URLS[name][0])
        rest_url = _get(m, "rest_url", str, where, LIVE_URLS[name][1])
        if not ws_url.startswith(("ws://", "wss://")):
            raise ConfigError(f"{where}.ws_url: must start with ws:// or wss://, got {ws_url!r}")
        if not rest_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}.rest_url: must start with http:// or https://, got {rest_url!r}")
        limit = _get(m, "snapshot_limit", int, where, 1000)
        if limit not in (5, 10, 20, 50, 100, 500, 1000, 5000):
            raise ConfigError(f"{where}.snapshot_limit: one of 5, 10, 20, 50, 100, 500, 1000, 5000")
        markets.append(MarketConfig(name, tuple(s.upper() for s in symbols), tuple(streams),
                                    ws_url.rstrip("/"), rest_url.rstrip("/"), limit))
    conn = _get(doc, "connection", dict, "", {})
    threads = _get(doc, "threads", dict, "", {})
    limits = _get(doc, "limits", dict, "", {})
    capacity = _get(rings, "tick_capacity", int, "rings", 1 << 16)
    if capacity < 2 or capacity & (capacity - 1):
        raise ConfigError(f"rings.tick_capacity: must be a power of two, got {capacity}")
    depth = _get(rings, "board_depth", int, "rings", 20)
    if not 1 <= depth <= 126:
        raise ConfigError(f"rings.board_depth: must be in [1, 126], got {depth}")
    cpus = {}
    for key in ("ws_cpus", "housekeeping_cpus"):
        value = _get(threads, key, list, "threads", [])
        if not all(isinstance(c, int) and c >= 0 for c in value):
            raise ConfigError(f"threads.{key}: a list of CPU numbers, got {value!r}")
        cpus[key] = tuple(value)
    return MdConfig(
        path=path, venue=venue, ring_name=_ring_name(_get(rings, "name", str, "rings", venue)),
        venue_id=_get(doc, "venue_id", int, "", 1), markets=tuple(markets),
        tick_capacity=capacity, board_depth=depth,
        board_instruments=_get(rings, "board_instruments", int, "rings", 256),
        shm_group=_get(rings, "group", str, "rings", None),
        backoff_initial_s=_positive(_get(conn, "backoff_initial_s", float, "connection", 0.1), "connection.backoff_initial_s"),
        backoff_max_s=_positive(_get(conn, "backoff_max_s", float, "connection", 30.0), "connection.backoff_max_s"),
        max_connection_age_s=_positive(_get(conn, "max_connection_age_s", float, "connection", 23.5 * 3600), "connection.max_connection_age_s"),
        rollover_overlap_s=_positive(_get(conn, "rollover_overlap_s", float, "connection", 3.0), "connection.rollover_overlap_s"),
        idle_timeout_s=_positive(_get(conn, "idle_timeout_s", float, "connection", 30.0), "connection.idle_timeout_s"),
        snapshot_retry_s=_positive(_get(conn, "snapshot_retry_s", float, "connection", 1.0), "connection.snapshot_retry_s"),
        exchange_info_refresh_s=_positive(_get(conn, "exchange_info_refresh_s", float, "connection", 3600.0), "connection.exchange_info_refresh_s"),
        max_frame_bytes=_positive(_get(limits, "max_frame_bytes", int, "limits", 1 << 20), "limits.max_frame_bytes"),
        ws_cpus=cpus["ws_cpus"], housekeeping_cpus=cpus["housekeeping_cpus"],
        stats_interval_s=_positive(_get(limits, "stats_interval_s", float, "limits", 5.0), "limits.stats_interval_s"),
    )
