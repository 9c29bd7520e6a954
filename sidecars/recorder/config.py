"""record.<venue>.toml, as a schema (core/daemon/config.py); every key with its default and
what it does: `ttquant config example record` (core/daemon/examples/record.toml). The journal
directory is relative to the config file's directory.
"""
from __future__ import annotations

import os

import msgspec

from ttquant.core.daemon.config import ConfigError, Table, check_rings_key, load_config
from ttquant.core.daemon.runner import ProcessTable
from ttquant.core.rings.names import ring_name

__all__ = ["RecorderConfig", "RecorderConfigError", "load_recorder_config", "RING_KINDS"]

RING_KINDS = ("ticks", "exec")
RecorderConfigError = ConfigError


class RecorderRings(Table):
    name: str = ""                      # the venue's rings: /ttq.<name>.<kind> (default: the venue)
    record: list[str] = msgspec.field(default_factory=lambda: list(RING_KINDS))

    def __post_init__(self):
        check_rings_key(self.name)
        if not self.record:
            raise ValueError("record: nothing to record")
        for kind in self.record:
            if kind not in RING_KINDS:
                raise ValueError(f"record: {kind!r} is not one of {', '.join(RING_KINDS)}")
        if len(set(self.record)) != len(self.record):
            raise ValueError("record: a ring is named twice")


class RecorderJournal(Table):
    dir: str                            # one directory per ring below it: <dir>/<name>.<kind>/
    max_file_mb: int = 256              # a new file past this size
    max_file_s: float = 3600.0          # ...or this age
    fsync_interval_ms: int = 1000       # what is written is on disk within this

    def __post_init__(self):
        if self.max_file_mb < 1:
            raise ValueError(f"max_file_mb: {self.max_file_mb} must be at least 1")
        if self.max_file_s <= 0:
            raise ValueError(f"max_file_s: {self.max_file_s} must be positive")
        if self.fsync_interval_ms < 0:
            raise ValueError(f"fsync_interval_ms: {self.fsync_interval_ms} must not be negative")


class RecorderLoop(Table):
    batch: int = 4096                   # records per read
    idle_sleep_ms: float = 1.0          # a sidecar never spins: it sleeps when the rings are quiet

    def __post_init__(self):
        if not 1 <= self.batch <= 1 << 20:
            raise ValueError(f"batch: {self.batch} must be in 1..{1 << 20}")
        if not 0 < self.idle_sleep_ms <= 1000:
            raise ValueError(f"idle_sleep_ms: {self.idle_sleep_ms} must be in (0, 1000]")


class RecorderConfig(Table):
    journal: RecorderJournal
    rings: RecorderRings = msgspec.field(default_factory=RecorderRings)
    loop: RecorderLoop = msgspec.field(default_factory=RecorderLoop)
    process: ProcessTable = msgspec.field(default_factory=ProcessTable)

    def finish(self, base_dir: str, instance: str = "", path: str = ""):
        self.path = path
        self.rings_name = self.rings.name or instance
        if not self.rings_name:
            raise ConfigError("rings.name: missing (or start it as `ttquant record VENUE`)")
        self.record = tuple(self.rings.record)
        self.journal_dir = os.path.join(base_dir, self.journal.dir)
        self.max_file_bytes = self.journal.max_file_mb << 20
        self.max_file_s = self.journal.max_file_s
        self.fsync_interval_ms = self.journal.fsync_interval_ms
        self.batch = self.loop.batch
        self.idle_sleep_ms = self.loop.idle_sleep_ms

    def ring_path(self, kind: str) -> str:
        return ring_name(self.rings_name, kind)

    def journal_path(self, kind: str) -> str:
        return os.path.join(self.journal_dir, f"{self.rings_name}.{kind}")


def load_recorder_config(path: str, instance: str = "") -> RecorderConfig:
    return load_config(path, RecorderConfig, instance=instance)
