"""gateway.toml: checked whole before anything starts; a bad file names the file and the key.

    venue = "binance"
    [rings]
    name = "binance"                  # md's /ttq.<name>.ticks and .books; ours: .exec, .orders.<strategy>
    exec_capacity = 65536
    [adapter]
    kind = "sim"                      # sim, or dry (takes every order, fills none); binance: next issue
    http_url = "http://127.0.0.1:8765"    # the simulated venue's control address
    [journal]
    path = "binance.orders.journal"
    fsync = "every"                   # every | interval | never
    fsync_interval_ms = 10
    [risk]
    file = "risk.toml"                # reloaded on SIGHUP
    [loop]
    wait = "hybrid"                   # spin (pinned cores) | hybrid (spin, then sleep)
    spin_polls = 2000                 # rounds over the order rings before hybrid sleeps
    cpus = [1]
    discover_interval_s = 0.5         # new strategy order rings are picked up this often
    gc = "idle"                       # idle: Python's GC only when the loop is idle | python
    [strategies]                      # optional: the strategy id each order ring's owner must use
    mm = 7
"""
from __future__ import annotations

import dataclasses
import os

from ttquant.core.toml_config import known_keys, read_toml, typed

__all__ = ["GatewayConfig", "GatewayConfigError", "load_gateway_config"]


class GatewayConfigError(ValueError):
    """A gateway file that cannot be used; says which file and which key."""


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    path: str
    venue: str = "binance"
    rings: str = "binance"
    exec_capacity: int = 1 << 16
    adapter: str = "sim"
    http_url: str = ""
    journal_path: str = "orders.journal"
    fsync: str = "every"
    fsync_interval_ms: int = 10
    risk_file: str = "risk.toml"
    wait: str = "hybrid"
    spin_polls: int = 2_000
    cpus: tuple[int, ...] = ()
    discover_interval_s: float = 0.5
    strategies: dict = dataclasses.field(default_factory=dict)
    shm_group: str | None = None
    gc: str = "idle"


def _get(table, key, kind, where, default):
    return typed(table, key, kind, where, default, GatewayConfigError)


def _known(table, keys, where):
    known_keys(table, keys, where, GatewayConfigError)


def load_gateway_config(path: str) -> GatewayConfig:
    doc = read_toml(path, GatewayConfigError)
    try:
        return _parse(doc, path)
    except GatewayConfigError as exc:
        raise GatewayConfigError(f"{path}: {exc}") from None


def _parse(doc, path):
    _known(doc, {"venue", "rings", "adapter", "journal", "risk", "loop", "strategies"}, "")
    base = os.path.dirname(os.path.abspath(path))
    rel = lambda p: p if os.path.isabs(p) else os.path.join(base, p)     # relative to the config file
    rings = _get(doc, "rings", dict, "", {})
    adapter = _get(doc, "adapter", dict, "", {})
    journal = _get(doc, "journal", dict, "", {})
    risk = _get(doc, "risk", dict, "", {})
    loop = _get(doc, "loop", dict, "", {})
    strategies = _get(doc, "strategies", dict, "", {})
    _known(rings, {"name", "exec_capacity", "group"}, "rings")
    _known(adapter, {"kind", "http_url"}, "adapter")
    _known(journal, {"path", "fsync", "fsync_interval_ms"}, "journal")
    _known(risk, {"file"}, "risk")
    _known(loop, {"wait", "spin_polls", "cpus", "discover_interval_s", "gc"}, "loop")
    venue = _get(doc, "venue", str, "", "binance")
    kind = _get(adapter, "kind", str, "adapter", "sim")
    if kind not in ("sim", "dry"):
        raise GatewayConfigError(f"adapter.kind: sim or dry (binance: the next issue), got {kind!r}")
    http_url = _get(adapter, "http_url", str, "adapter", "")
    if kind == "sim" and not http_url.startswith("http://"):
        raise GatewayConfigError(f"adapter.http_url: the simulated venue's http://host:port, got {http_url!r}")
    fsync = _get(journal, "fsync", str, "journal", "every")
    if fsync not in ("every", "interval", "never"):
        raise GatewayConfigError(f"journal.fsync: every, interval or never, got {fsync!r}")
    wait = _get(loop, "wait", str, "loop", "hybrid")
    if wait not in ("spin", "hybrid"):
        raise GatewayConfigError(f"loop.wait: spin or hybrid, got {wait!r}")
    gc_mode = _get(loop, "gc", str, "loop", "idle")
    if gc_mode not in ("idle", "python"):
        raise GatewayConfigError(f"loop.gc: idle or python, got {gc_mode!r}")
    cpus = _get(loop, "cpus", list, "loop", [])
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in cpus):
        raise GatewayConfigError(f"loop.cpus: a list of CPU numbers, got {cpus!r}")
    for name, sid in strategies.items():
        if not isinstance(sid, int) or isinstance(sid, bool) or not 0 < sid < 2**32:
            raise GatewayConfigError(f"strategies.{name}: a strategy id in 1..2^32-1, got {sid!r}")
    capacity = _get(rings, "exec_capacity", int, "rings", 1 << 16)
    if capacity < 2 or capacity & (capacity - 1):
        raise GatewayConfigError(f"rings.exec_capacity: a power of two, got {capacity}")
    return GatewayConfig(
        path=path, venue=venue, rings=_get(rings, "name", str, "rings", venue), exec_capacity=capacity,
        adapter=kind, http_url=http_url,
        journal_path=rel(_get(journal, "path", str, "journal", f"{venue}.orders.journal")), fsync=fsync,
        fsync_interval_ms=_get(journal, "fsync_interval_ms", int, "journal", 10),
        risk_file=rel(_get(risk, "file", str, "risk", "risk.toml")), wait=wait,
        spin_polls=_get(loop, "spin_polls", int, "loop", 2_000), cpus=tuple(cpus),
        discover_interval_s=_get(loop, "discover_interval_s", float, "loop", 0.5),
        strategies=dict(strategies), shm_group=_get(rings, "group", str, "rings", None), gc=gc_mode)
