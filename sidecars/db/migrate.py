"""`ttquant db migrate`: the schema's migrations (sql/migrations) applied in order, each once.

A migration is `NNNN_name.sql`, or a pair `NNNN_name.plain.sql` / `NNNN_name.timescale.sql` of
which the TimescaleDB one is taken when the server has the extension available (the plain one
otherwise: the same tables and queries on declarative partitions). Each runs in its own
transaction with its version, name, variant and checksum recorded in `schema_migrations`; a run
applies what is missing, so a second run changes nothing. A recorded migration whose file has
changed since is refused by name (edit the schema with a new migration, never an old one).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from importlib import resources

__all__ = ["Migration", "MigrationError", "migrations", "applied", "migrate", "timescale_available"]

log = logging.getLogger("ttquant.db")
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+?)(?:\.(plain|timescale))?\.sql\Z")
LOCK_KEY = 0x74747164622D6D67          # advisory lock: one migrate at a time per database

TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    variant text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class MigrationError(RuntimeError):
    """The migrations cannot be applied as they are (a changed file, a gap, a bad name)."""


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    variant: str            # "any", "plain" or "timescale"
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}" + ("" if self.variant == "any" else f".{self.variant}")


def migrations(directory=None) -> dict[int, dict[str, Migration]]:
    """{version: {variant: Migration}} of the package's sql/migrations (or `directory`)."""
    root = resources.files("ttquant.sql") / "migrations" if directory is None else directory
    found: dict[int, dict[str, Migration]] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        m = _NAME.match(entry.name)
        if m is None:
            raise MigrationError(f"{entry.name}: a migration is NNNN_name.sql or NNNN_name.plain|timescale.sql")
        version, name, variant = int(m[1]), m[2], m[3] or "any"
        same = found.setdefault(version, {})
        if any(v.name != name for v in same.values()):
            raise MigrationError(f"{entry.name}: version {version} is taken by {next(iter(same.values())).label}")
        same[variant] = Migration(version, name, variant, entry.read_text())
    for version, variants in found.items():
        if "any" in variants and len(variants) > 1 or "any" not in variants and set(variants) != {"plain", "timescale"}:
            raise MigrationError(f"version {version}: one NNNN_name.sql, or both a .plain.sql and a .timescale.sql "
                                 f"(found {', '.join(sorted(v.label for v in variants.values()))})")
    expected = list(range(1, len(found) + 1))
    if sorted(found) != expected:
        raise MigrationError(f"migrations must be numbered 1, 2, 3, ... without gaps: found {sorted(found)}")
    return found


def timescale_available(conn) -> bool:
    return conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone() is not None


def applied(conn) -> dict[int, tuple[str, str, str]]:
    """{version: (name, variant, checksum)} recorded in the database."""
    conn.execute(TABLE)
    return {v: (n, var, c) for v, n, var, c in
            conn.execute("SELECT version, name, variant, checksum FROM schema_migrations ORDER BY version")}


def migrate(conn, directory=None, timescale: bool | None = None) -> list[Migration]:
    """Apply what is missing, in order; returns what was applied. conn: a psycopg connection in
    autocommit mode (each migration gets its own transaction)."""
    available = migrations(directory)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY & 0x7FFFFFFFFFFFFFFF,))
        done = applied(conn)
    if timescale is None:
        timescale = timescale_available(conn)
    for version, (name, variant, checksum) in done.items():
        m = available.get(version, {}).get(variant)
        if m is None:
            raise MigrationError(f"the database has migration {version:04d}_{name} ({variant}), which this "
                                 f"version of ttquant does not know: it is older than the database")
        if m.checksum != checksum:
            raise MigrationError(f"{m.label}.sql has changed since it was applied to this database "
                                 f"(checksum {checksum[:12]} recorded, {m.checksum[:12]} now): add a new migration "
                                 f"instead of editing an applied one")
    out = []
    for version in sorted(available):
        if version in done:
            continue
        variants = available[version]
        m = variants.get("any") or variants["timescale" if timescale else "plain"]
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY & 0x7FFFFFFFFFFFFFFF,))
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone():
                continue                # another migrate got there first
            conn.execute(m.sql)
            conn.execute("INSERT INTO schema_migrations (version, name, variant, checksum) VALUES (%s, %s, %s, %s)",
                         (m.version, m.name, m.variant, m.checksum))
        log.info("applied %s", m.label)
        out.append(m)
    return out
