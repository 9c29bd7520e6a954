"""`ttquant db migrate` against a real PostgreSQL started by the test suite: every migration
once, in order, the plain variant's partitions and views working, the audit log append-only, a
changed migration refused by name, and the TimescaleDB variant at least parsed by the server."""
import re
import shutil
import subprocess
import sys
from importlib import resources

import psycopg
import pytest

from ttquant.sidecars.db.migrate import MigrationError, migrate, migrations

TABLES = {"instruments", "orders", "exec_reports", "position_snapshots", "klines", "strategy_runs", "audit_log",
          "ship_watermarks", "trades", "quotes", "book_snapshots", "schema_migrations"}


def test_migrations_apply_in_order_once_and_a_second_run_changes_nothing(database):
    p = subprocess.run([sys.executable, "-m", "ttquant.core.cli", "db", "migrate", "--dsn", database],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "0001_reference" in p.stdout and "0002_ticks.plain" in p.stdout
    with psycopg.connect(database, autocommit=True) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert TABLES <= tables
        rows = conn.execute("SELECT version, name, variant FROM schema_migrations ORDER BY version").fetchall()
        assert rows == [(1, "reference", "any"), (2, "ticks", "plain"), (3, "streams", "plain"),
                        (4, "runs_audit", "any")]
        assert migrate(conn) == []                      # twice: nothing
    again = subprocess.run([sys.executable, "-m", "ttquant.core.cli", "db", "migrate", "--dsn", database],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr


def test_the_plain_variant_partitions_by_day_and_serves_the_same_queries(database):
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        assert conn.execute("SELECT ttq_ensure_partitions('trades', '2024-08-08', 2)").fetchone()[0] == 2
        assert conn.execute("SELECT ttq_ensure_partitions('trades', '2024-08-08', 2)").fetchone()[0] == 0
        for k, (ts, price) in enumerate([("2024-08-08 23:59:30+00", "61000.10"), ("2024-08-08 23:59:50+00", "61001.20"),
                                         ("2024-08-09 00:00:10+00", "60999.90")]):
            conn.execute("INSERT INTO trades VALUES ('binance', 1, %s, 0, NULL, %s, 0.001, true, NULL, %s, 1)",
                         (ts, price, k))
        parts = conn.execute("SELECT tableoid::regclass::text, count(*) FROM trades GROUP BY 1 ORDER BY 1").fetchall()
        assert parts == [("trades_p20240808", 2), ("trades_p20240809", 1)]
        bars = conn.execute("SELECT open_time AT TIME ZONE 'UTC', open, high, low, close, trade_count FROM klines_1m "
                            "ORDER BY open_time").fetchall()
        assert [(str(b[0]), str(b[1]), str(b[2]), str(b[3]), str(b[4]), b[5]) for b in bars] == [
            ("2024-08-08 23:59:00", "61000.10", "61001.20", "61000.10", "61001.20", 2),
            ("2024-08-09 00:00:00", "60999.90", "60999.90", "60999.90", "60999.90", 1)]
        with pytest.raises(psycopg.errors.CheckViolation):     # no partition for that day: refused, not lost
            conn.execute("INSERT INTO trades VALUES ('binance', 1, '2024-08-10 00:00:00+00', 0, NULL, 1, 1, true, "
                         "NULL, 9, 1)")
        assert conn.execute("SELECT ttq_drop_partitions('trades', 30)").fetchone()[0] == 2    # 2024 is long gone


def test_the_audit_log_only_grows(database):
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        conn.execute("INSERT INTO audit_log (who, host, venue, action, detail) VALUES "
                     "('ops', 'tyo1', 'binance', 'kill_switch', '{\"reason\": \"test\"}')")
        for statement in ("UPDATE audit_log SET who = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] == 1


def test_an_applied_migration_that_changed_is_refused_by_name(database, tmp_path):
    shutil.copytree(resources.files("ttquant.sql") / "migrations", tmp_path / "migrations")
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, tmp_path / "migrations", timescale=False)
        path = tmp_path / "migrations" / "0001_reference.sql"
        path.write_text(path.read_text() + "\n-- edited after the fact\n")
        with pytest.raises(MigrationError, match="0001_reference.sql has changed since it was applied"):
            migrate(conn, tmp_path / "migrations")
        gap = max(migrations(tmp_path / "migrations")) + 2          # one number left out
        (tmp_path / "migrations" / f"{gap:04d}_gap.sql").write_text("SELECT 1;")
        with pytest.raises(MigrationError, match="without gaps"):
            migrations(tmp_path / "migrations")


def _statements(sql):
    """The file's statements: split at ';' ending a line, outside $$ bodies."""
    out, current, quoted = [], [], False
    for line in sql.splitlines():
        if line.strip().startswith("--") and not current:
            continue
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if not quoted and line.rstrip().endswith(";"):
            out.append("\n".join(current).strip().rstrip(";"))
            current = []
    return out


def test_the_timescale_variant_is_parsed_by_the_server(database):
    """The extension is not packaged for this machine: each statement is parsed (not run) by the
    server's own parser, in the body of a PL/pgSQL function it checks and then drops."""
    variants = {n: v["timescale"] for n, v in migrations().items() if "timescale" in v}
    assert sorted(variants) == [2, 3]
    ticks = _statements(variants[2].sql)
    assert len(ticks) >= 20 and any("create_hypertable" in s for s in ticks)
    statements = [s for m in variants.values() for s in _statements(m.sql)]
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("SET check_function_bodies = on")
        for k, statement in enumerate(statements):
            body = re.sub(r"\$\$", "$q$", statement)
            conn.execute(f"CREATE FUNCTION ttq_parse_{k}() RETURNS void LANGUAGE plpgsql AS $ttq$ BEGIN {body}; "
                         f"END $ttq$")
            conn.execute(f"DROP FUNCTION ttq_parse_{k}()")
        with pytest.raises(psycopg.errors.SyntaxError):      # the check does catch a broken statement
            conn.execute("CREATE FUNCTION ttq_parse_bad() RETURNS void LANGUAGE plpgsql AS $ttq$ BEGIN "
                         "SELECT create_hypertable('trades' 'ts'; END $ttq$")
