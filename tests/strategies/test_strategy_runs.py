"""Run records of `ttquant strategy run` on a trading stack: written at the start (what ran,
its config and code version, where), rewritten at the stop with the exit code and the counts;
the shipper loads them into strategy_runs, a row equal to the file, updated when the stop is
added; a strategy SIGKILLed leaves its start-only record, shipped with stopped_at NULL."""
import datetime
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys

import psycopg

from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import ship_runs

from ttq_stack import TradingStack
from ttq_testing import TESTS_DIR, config_file, wait_for

SOURCE = os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py")


def _config(tmp_path, venue, name, sid, **runtime):
    return config_file(tmp_path / f"{name}.toml", "strategy", {
        "name": name, "strategy_id": sid, "class": f"{SOURCE}:RestingOrder",
        "venues": {"binance": {"rings": venue}}, "params": {"market": None, "qty": None, "every": 10},
        "runtime": {"runs_dir": "runs", **runtime}})


def _run(children, tmp_path, name, config):
    log = open(tmp_path / f"{name}.log", "wb")
    env = {"PYTHONPATH": os.path.join(TESTS_DIR, "strategies") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return children.start("-m", "ttquant.core.cli", "strategy", "run", name, "--config", config,
                          stdout=log, stderr=subprocess.STDOUT, env=env)


def _records(runs, name):
    return [json.loads(p.read_text()) for p in sorted(runs.glob(f"{name}.*.json"))]


def _utc(ns):
    return datetime.datetime.fromtimestamp(ns // 10**9, datetime.UTC).replace(microsecond=ns // 1000 % 10**6)


def _row(conn, name):
    return conn.execute("SELECT strategy, strategy_id, venue, class, config, code, environment, started_at, "
                        "started_ns, stopped_at, stopped_ns, exit_code, counts, record_file, host "
                        "FROM strategy_runs WHERE strategy = %s", (name,)).fetchall()


def _want(rec, path):
    return [(rec["strategy"], rec["strategy_id"], "binance", rec["class"], rec["config"], rec["code"],
             rec["environment"], _utc(rec["started_ns"]), rec["started_ns"],
             None if rec["stopped_ns"] is None else _utc(rec["stopped_ns"]), rec["stopped_ns"], rec["exit_code"],
             rec["counts"], str(path), socket.gethostname())]


def test_run_records_at_start_and_stop_and_a_killed_run_shipped(children, venue, tmp_path, database):
    runs = tmp_path / "runs"
    runs.mkdir()
    conn = psycopg.connect(database, autocommit=True)
    migrate(conn, timescale=False)
    s = TradingStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        short = _run(children, tmp_path, "short", _config(tmp_path, venue, "short", 51, max_seconds=8))
        doomed = _run(children, tmp_path, "doomed", _config(tmp_path, venue, "doomed", 52))
        (start,) = wait_for(lambda: _records(runs, "short"), timeout=60, what="the run record at the start")
        assert start["stopped_ns"] is None and start["exit_code"] is None and start["counts"] is None
        path = runs / f"short.{start['started_ns']}.json"
        wait_for(lambda: _records(runs, "doomed"), timeout=60, what="the other run's record")
        # shipped while they run: stopped_at NULL
        assert ship_runs(conn, runs, f"{venue}.runs", rings=venue) == 2
        assert _row(conn, "short") == _want(start, path)
        wait_for(lambda: [r for r in s.drain() if r.strategy_id == 52], timeout=60, what="its first order seen")
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=10)

        assert short.wait(timeout=60) == 0                  # max_seconds: a clean stop
        (stop,) = _records(runs, "short")
        assert stop["started_ns"] == start["started_ns"] and stop["stopped_ns"] > stop["started_ns"]
        assert stop["exit_code"] == 0
        assert {k: v for k, v in stop.items() if k not in ("stopped_ns", "exit_code", "counts")} == \
            {k: v for k, v in start.items() if k not in ("stopped_ns", "exit_code", "counts")}
        counts = stop["counts"]
        assert counts["events"] > 0 and counts["orders"] >= 1 and counts["handler_errors"] == 0
        assert not list(runs.glob(".*"))                    # no temporary file left behind
    finally:
        s.close()

    # what the record says, checked against the sources
    assert (stop["strategy"], stop["strategy_id"], stop["class"]) == ("short", 51, f"{SOURCE}:RestingOrder")
    assert stop["class_qualname"].endswith("runtime_strategies:RestingOrder")     # as the loader named its module
    assert stop["config"]["runtime"]["max_seconds"] == 8.0 and stop["config"]["params"]["every"] == 10
    assert stop["config_file"] == str(tmp_path / "short.toml")
    code = stop["code"]
    with open(SOURCE, "rb") as f:
        assert code["source_sha256"] == hashlib.sha256(f.read()).hexdigest()
    git = subprocess.run(["git", "-C", os.path.dirname(SOURCE), "describe", "--always", "--dirty"],
                         capture_output=True, text=True)
    assert git.returncode == 0 and code["git"] == git.stdout.strip()      # the tests are in a work tree
    from importlib.metadata import version
    assert code["ttquant"] == version("ttquant") and code["source"] == SOURCE
    env = stop["environment"]
    assert env["venues"] == {"binance": venue} and env["host"] == socket.gethostname()
    assert env["python"] == sys.version.split()[0] and env["pid"] == short.pid

    # the stop rewrite ships as an update of the same row; the killed run as it was left
    (killed,) = _records(runs, "doomed")
    assert killed["stopped_ns"] is None and killed["exit_code"] is None
    assert ship_runs(conn, runs, f"{venue}.runs", rings=venue) == 1          # the stop: an update
    assert _row(conn, "short") == _want(stop, path)
    assert _row(conn, "doomed") == _want(killed, runs / f"doomed.{killed['started_ns']}.json")
    assert conn.execute("SELECT strategy, stopped_at IS NULL FROM strategy_runs ORDER BY strategy").fetchall() == \
        [("doomed", True), ("short", False)]
    assert ship_runs(conn, runs, f"{venue}.runs", rings=venue) == 0
    conn.close()


def test_a_runs_dir_that_cannot_be_written_is_said_and_the_run_goes_on(tmp_path, caplog):
    from ttquant.strategies.runtime import RunRecord, load_strategy_config
    cfg = load_strategy_config(str(_config(tmp_path, "somevenue", "lost", 53, runs_dir="nowhere")))
    record = RunRecord(cfg)
    assert record.path == str(tmp_path / "nowhere" / f"lost.{record.started_ns}.json")
    assert record.start() is False and record.stop(0, {}) is False
    assert "lost: no run record written to" in caplog.text and "runs_dir in" in caplog.text
    cfg = load_strategy_config(str(_config(tmp_path, "somevenue", "none", 54, runs_dir="")))
    assert RunRecord(cfg).path == "" and RunRecord(cfg).start() is False
