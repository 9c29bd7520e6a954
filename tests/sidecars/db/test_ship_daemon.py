"""`ttquant db ship VENUE` as a process against the suite's PostgreSQL: it follows the journal as
the recorder appends to it, rides out the server going away (retrying, saying so) and catches
up after with exact counts, stops cleanly on SIGTERM, and refuses a database without the schema
in one line."""
import signal
import subprocess
import sys

import numpy as np
import psycopg

from ttquant.core.journal import JournalWriter
from ttquant.core.records import MARKET_EVENT_DTYPE, EventKind, RecordType
from ttquant.sidecars.db.migrate import migrate

from ttq_testing import config_file, spot_table, wait_for

T0 = 1_723_161_540_000_000_000


def _ticks(first, n):
    ev = np.zeros(n, MARKET_EVENT_DTYPE)
    ev["ts_recv"] = T0 + (first + np.arange(n)) * 1_000_000
    ev["instrument_id"], ev["kind"] = 1, EventKind.TRADE
    ev["price"], ev["qty"] = 6_100_000 + np.arange(n), 100
    return ev, spot_table()


def _count(dsn):
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
            return conn.execute("SELECT count(*) FROM trades").fetchone()[0]
    except psycopg.OperationalError:
        return -1


def test_the_shipper_follows_the_journal_and_rides_out_an_outage(postgres, children, venue, tmp_path):
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
    journal = tmp_path / "journal"
    ev, table = _ticks(0, 5000)
    w = JournalWriter(str(journal / f"{venue}.ticks"), f"/ttq.{venue}.ticks", RecordType.MARKET_EVENT,
                      MARKET_EVENT_DTYPE.itemsize, 0, table.to_json(), ring_created_ns=T0)
    w.append(ev)
    w.flush()
    cfg = config_file(tmp_path / "ship.toml", "ship", {
        "rings": venue, "journal": {"dir": str(journal)}, "database": {"dsn": dsn},
        "loop": {"poll_interval_s": 0.1, "retry_min_s": 0.1, "retry_max_s": 0.5, "batch": 1000},
        "retention": {"tick_days": 0}, "process": {"scheduling": "other"}})     # 2024's ticks: kept
    log = tmp_path / "ship.log"
    proc = children.start("-m", "ttquant.core.cli", "db", "ship", venue, "--config", cfg,
                          stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    wait_for(lambda: _count(dsn) == 5000, timeout=60, what="the first 5000 trades shipped")
    w.append(_ticks(5000, 3000)[0])              # the recorder appends: the shipper follows
    w.flush()
    wait_for(lambda: _count(dsn) == 8000, timeout=60, what="the appended 3000 shipped")
    postgres.stop("immediate")                  # the database goes away
    w.append(_ticks(8000, 4000)[0])
    w.close()
    wait_for(lambda: "database unreachable" in log.read_text(), timeout=60, what="the shipper saying so")
    postgres.start()
    wait_for(lambda: _count(dsn) == 12000, timeout=60, what="the shipper catching up after the outage")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    text = log.read_text()
    # the test server commits asynchronously: its crash can take back the last batch (rows and
    # watermark together), which is then shipped again, so "shipped" may count it twice
    assert "database back after" in text and "shipper stopped:" in text, text[-2000:]
    with psycopg.connect(dsn, autocommit=True) as conn:
        seqs = conn.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM trades").fetchone()
    assert seqs == (12000, 12000, 0, 11999)         # each record once


def test_a_database_without_the_schema_is_refused_in_one_line(postgres, venue, tmp_path):
    dsn = postgres.dsn(postgres.create_database())
    cfg = config_file(tmp_path / "ship.toml", "ship", {"rings": venue, "journal": {"dir": str(tmp_path)},
                                                      "database": {"dsn": dsn}, "process": {"scheduling": "other"}})
    p = subprocess.run([sys.executable, "-m", "ttquant.core.cli", "db", "ship", venue, "--config", str(cfg)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "ttquant db migrate" in p.stderr and "Traceback" not in p.stderr, p.stderr

