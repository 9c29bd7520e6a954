"""record.toml: checked whole before anything starts; a bad file names the file and the key.

    [rings]
    name = "binance"                  # the venue's rings: /ttq.<name>.<kind>
    record = ["ticks", "exec"]        # broadcast rings to record (ticks: md's; exec: the gateway's)
    [journal]
    dir = "/var/lib/ttquant/journal"  # one directory per ring below it: <dir>/<name>.<kind>/
    max_file_mb = 256                 # a new file past this size
    max_file_s = 3600                 # ...or this age
    fsync_interval_ms = 1000          # what is written is on disk within this
    [loop]
    batch = 4096                      # records per read
    idle_sleep_ms = 1                 # a sidecar never spins: it sleeps when the rings are quiet
"""
from __future__ import annotations

import dataclasses
import os

from ttquant.core.rings import ring_name
from ttquant.core.toml_config import known_keys, read_toml, typed

__all__ = ["RecorderConfig", "RecorderConfigError", "load_recorder_config", "RING_KINDS"]

RING_KINDS = ("ticks", "exec")


class RecorderConfigError(ValueError):
    """A recorder file that cannot be used; says which file and which key."""


@dataclasses.dataclass(frozen=True)
class RecorderConfig:
    rings_name: str
    record: tuple[str, ...]
    journal_dir: str
    max_file_bytes: int
    max_file_s: float
    fsync_interval_ms: int
    batch: int
    idle_sleep_ms: float

    def ring_path(self, kind: str) -> str:
        return f"/ttq.{self.rings_name}.{kind}"

    def journal_path(self, kind: str) -> str:
        return os.path.join(self.journal_dir, f"{self.rings_name}.{kind}")


def load_recorder_config(path: str) -> RecorderConfig:
    def fail(message):
        return RecorderConfigError(f"{path}: {message}")

    doc = read_toml(path, RecorderConfigError)
    try:
        return _parse(doc, os.path.dirname(os.path.abspath(path)))
    except RecorderConfigError as exc:
        raise fail(exc) from None


def _parse(doc: dict, base: str) -> RecorderConfig:
    E = RecorderConfigError
    known_keys(doc, ("rings", "journal", "loop"), "", E)
    rings = typed(doc, "rings", dict, "", {}, E)
    known_keys(rings, ("name", "record"), "rings", E)
    name = typed(rings, "name", str, "rings", error=E)
    try:
        ring_name(name, "ticks")
    except ValueError:
        raise E(f"rings.name: {name!r} must match [a-z0-9][a-z0-9_-]* (the rings' venue part)") from None
    record = typed(rings, "record", list, "rings", list(RING_KINDS), E)
    if not record:
        raise E("rings.record: nothing to record")
    for kind in record:
        if kind not in RING_KINDS:
            raise E(f"rings.record: {kind!r} is not one of {', '.join(RING_KINDS)}")
    if len(set(record)) != len(record):
        raise E("rings.record: a ring is named twice")
    journal = typed(doc, "journal", dict, "", {}, E)
    known_keys(journal, ("dir", "max_file_mb", "max_file_s", "fsync_interval_ms"), "journal", E)
    directory = typed(journal, "dir", str, "journal", error=E)
    max_mb = typed(journal, "max_file_mb", int, "journal", 256, E)
    max_s = typed(journal, "max_file_s", float, "journal", 3600.0, E)
    fsync_ms = typed(journal, "fsync_interval_ms", int, "journal", 1000, E)
    if max_mb < 1:
        raise E(f"journal.max_file_mb: {max_mb} must be at least 1")
    if max_s <= 0:
        raise E(f"journal.max_file_s: {max_s} must be positive")
    if fsync_ms < 0:
        raise E(f"journal.fsync_interval_ms: {fsync_ms} must not be negative")
    loop = typed(doc, "loop", dict, "", {}, E)
    known_keys(loop, ("batch", "idle_sleep_ms"), "loop", E)
    batch = typed(loop, "batch", int, "loop", 4096, E)
    idle = typed(loop, "idle_sleep_ms", float, "loop", 1.0, E)
    if not 1 <= batch <= 1 << 20:
        raise E(f"loop.batch: {batch} must be in 1..{1 << 20}")
    if not 0 < idle <= 1000:
        raise E(f"loop.idle_sleep_ms: {idle} must be in (0, 1000]")
    return RecorderConfig(name, tuple(record), os.path.join(base, directory), max_mb << 20, max_s,
                          fsync_ms, batch, idle)
