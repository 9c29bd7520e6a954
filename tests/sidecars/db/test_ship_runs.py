"""The strategies' run records into strategy_runs: a row per run equal to its file, upserted on
(strategy, started_at), so the record rewritten at the stop updates the row its start made;
exactly once by content (a file touched but not changed ships nothing, a changed one ships
once); only the runs of the shipper's stack; a file that is not a run record is skipped; and
`ttquant db ship` does it with journal.runs."""
import datetime
import json
import os
import signal
import subprocess

import psycopg

from ttquant.core.rings import unlink
from ttquant.core.rings.names import telemetry_segment
from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import ship_runs

from ttq_testing import config_file, wait_for

T0 = 1_723_161_540_123_456_789


def record(name="mm", started_ns=T0, rings="binance", stopped_ns=None, exit_code=None, counts=None):
    return {"format": 1, "strategy": name, "strategy_id": 7, "class": "market_maker",
            "class_qualname": "ttquant.strategies.examples.market_maker:AvellanedaStoikov",
            "config_file": "/etc/ttquant/strategy.mm.toml",
            "config": {"name": name, "strategy_id": 7, "params": {"qty": 0.002}},
            "code": {"ttquant": "0.1.0", "git": "abc1234-dirty", "source": "/x/market_maker.py",
                     "source_sha256": "ab" * 32},
            "environment": {"host": "tyo1", "python": "3.11.7", "pid": 42, "user": "ttquant",
                            "venues": {"binance": rings}, "systemd_unit": "ttquant-strategy@mm.service",
                            "invocation_id": "f00"},
            "started_ns": started_ns, "stopped_ns": stopped_ns, "exit_code": exit_code, "counts": counts}


def write(directory, rec):
    path = directory / f"{rec['strategy']}.{rec['started_ns']}.json"
    tmp = directory / f".{path.name}.tmp"
    tmp.write_text(json.dumps(rec))
    os.replace(tmp, path)
    return path


def utc(ns):
    return datetime.datetime.fromtimestamp(ns // 10**9, datetime.UTC).replace(microsecond=ns // 1000 % 10**6)


def rows(conn):
    return conn.execute("SELECT strategy, strategy_id, venue, class, config, code_version, code, environment, host, "
                        "venues, started_at, started_ns, stopped_at, stopped_ns, exit_code, counts, record_file "
                        "FROM strategy_runs ORDER BY started_ns").fetchall()


def expected(rec, path):
    stopped = rec["stopped_ns"]
    return (rec["strategy"], 7, "binance", "market_maker", rec["config"],
            f"ttquant 0.1.0, git abc1234-dirty, sha256 {'ab' * 8}", rec["code"], rec["environment"], "tyo1",
            rec["environment"]["venues"], utc(rec["started_ns"]), rec["started_ns"],
            None if stopped is None else utc(stopped), stopped, rec["exit_code"], rec["counts"], str(path))


def test_a_run_is_upserted_once_per_content_and_its_stop_updates_the_row(database, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    start = record()
    path = write(runs, start)
    other = write(runs, record(name="arb", started_ns=T0 + 5, rings="okx"))       # another stack's run
    (runs / "notes.json").write_text("{not json")
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        assert ship_runs(conn, runs, "binance.runs", rings="binance") == 1
        assert rows(conn) == [expected(start, path)]                   # stopped_at NULL: still running
        assert ship_runs(conn, runs, "binance.runs", rings="binance") == 0
        os.utime(path)                                                  # touched, same content: nothing
        assert ship_runs(conn, runs, "binance.runs", rings="binance") == 0
        stop = record(stopped_ns=T0 + 60 * 10**9, exit_code=0, counts={"events": 1234, "orders": 5})
        write(runs, stop)                                               # rewritten at the stop
        assert ship_runs(conn, runs, "binance.runs", rings="binance") == 1
        assert rows(conn) == [expected(stop, path)]
        assert ship_runs(conn, runs, "binance.runs", rings="binance") == 0
        state = conn.execute("SELECT state FROM ship_watermarks WHERE stream = 'binance.runs'").fetchone()[0]
        assert sorted(state["files"]) == sorted([path.name, other.name, "notes.json"])
        # every stack's shipper: the okx run too, and the binance one's upsert changes nothing
        assert ship_runs(conn, runs, "all.runs") == 2
        assert [r[0] for r in rows(conn)] == ["mm", "arb"] and rows(conn)[0] == expected(stop, path)
        other.unlink()                                                  # gone files leave the state
        assert ship_runs(conn, runs, "all.runs") == 0
        state = conn.execute("SELECT state FROM ship_watermarks WHERE stream = 'all.runs'").fetchone()[0]
        assert sorted(state["files"]) == sorted([path.name, "notes.json"])


def test_a_database_error_mid_upsert_leaves_neither_rows_nor_watermark(database, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    write(runs, record())
    write(runs, record(name="zz", started_ns=T0 + 1, counts=["not", "an", "object"]))
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        conn.execute("ALTER TABLE strategy_runs ADD CONSTRAINT test_counts CHECK (jsonb_typeof(counts) <> 'array')")
        try:
            ship_runs(conn, runs, "binance.runs")
            raise AssertionError("the bad row was accepted")
        except psycopg.errors.CheckViolation:
            pass
        assert rows(conn) == [] and conn.execute("SELECT count(*) FROM ship_watermarks").fetchone()[0] == 0
        conn.execute("ALTER TABLE strategy_runs DROP CONSTRAINT test_counts")
        assert ship_runs(conn, runs, "binance.runs") == 2               # loaded again, whole


def test_ship_daemon_ships_journal_runs(postgres, children, venue, tmp_path):
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
    runs = tmp_path / "runs"
    runs.mkdir()
    (tmp_path / "journal").mkdir()
    start = record(rings=venue)
    path = write(runs, start)
    cfg = config_file(tmp_path / "ship.toml", "ship", {
        "rings": venue, "journal": {"dir": str(tmp_path / "journal"), "runs": "runs"}, "database": {"dsn": dsn},
        "loop": {"poll_interval_s": 0.1}, "process": {"scheduling": "other"}})

    def stopped_at():
        with psycopg.connect(dsn, autocommit=True) as conn:
            r = conn.execute("SELECT stopped_ns FROM strategy_runs").fetchall()
        return r[0] if r else None
    proc = children.start("-m", "ttquant.core.cli", "db", "ship", venue, "--config", cfg,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(stopped_at, timeout=60, what="the run shipped") == (None,)
        write(runs, record(rings=venue, stopped_ns=T0 + 10**9, exit_code=3, counts={"events": 1}))
        assert wait_for(lambda: stopped_at() != (None,) and stopped_at(), timeout=60,
                        what="the stop shipped") == (T0 + 10**9,)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        unlink(telemetry_segment(venue, "ship"))        # its last counts outlive it: removed here
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*), max(exit_code), max(record_file) FROM strategy_runs").fetchone() == \
            (1, 3, str(path))
