"""`ttquant db ship VENUE` as a process against the suite's PostgreSQL: it follows the journal as
the recorder appends to it, rides out the server going away (retrying, saying so) and catches
up after with exact counts, makes today's and tomorrow's partitions at start, loses and
duplicates nothing when SIGKILLed mid-batch and started again, stops cleanly on SIGTERM, and
refuses a database without the schema in one line; in-process, its counts for telemetry."""
import datetime
import signal
import subprocess
import sys
import threading

import numpy as np
import psycopg
import pytest

from ttquant.core.daemon.config import parse_config
from ttquant.core.daemon.runner import ServiceRunner
from ttquant.core.journal import JournalWriter
from ttquant.core.records import EXEC_REPORT_DTYPE, MARKET_EVENT_DTYPE, EventFlag, EventKind, RecordType
from ttquant.core.rings import unlink
from ttquant.core.rings.names import telemetry_segment
from ttquant.core.telemetry.telemetry import read_telemetry
from ttquant.sidecars.db.daemon import Shipper, ShipperConfig
from ttquant.sidecars.db.migrate import migrate

from ttq_testing import config_file, spot_table, wait_for


@pytest.fixture(autouse=True)
def _telemetry_gone(venue):
    """The shipper's telemetry segment outlives it (its last counts stay readable): removed here."""
    yield
    unlink(telemetry_segment(venue, "ship"))

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
    with psycopg.connect(dsn, autocommit=True) as conn:      # made ahead at start, for the live ticks
        days = [datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=d) for d in (0, 1)]
        for table in ("trades", "quotes", "book_snapshots"):
            for day in days:
                assert conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{table}_p{day:%Y%m%d}",)).fetchone()[0]
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



def _big_journal(journal, venue, n=300_000):
    """n ticks (trades, quotes, and book messages after a reset) and a fill per 100 ticks."""
    ev = np.zeros(n, MARKET_EVENT_DTYPE)
    i = np.arange(n)
    ev["ts_recv"] = T0 + i * 1_000_000
    ev["ts_pub"] = ev["ts_recv"] + 100
    ev["instrument_id"] = 1
    ev["kind"] = np.where(i % 5 == 4, EventKind.BOOK_LEVEL, np.where(i % 2 == 0, EventKind.TRADE, EventKind.BBO))
    ev["kind"][0] = EventKind.BOOK_RESET
    book = ev["kind"] == EventKind.BOOK_LEVEL
    ev["flags"][book] = np.where(i[book] % 10 == 9, EventFlag.ASK_SIDE | EventFlag.LAST_IN_BATCH, 0)
    ev["price"] = np.where(book & (i % 10 == 9), 6_200_000, 6_000_000) + i % 50
    ev["qty"] = 100 + i % 300
    ev["ask_price"][ev["kind"] == EventKind.BBO] = 6_100_001
    ex = np.zeros(n // 100, EXEC_REPORT_DTYPE)
    k = np.arange(len(ex))
    ex["ts_pub"] = T0 + k * 100_000_000
    ex["strategy_id"], ex["instrument_id"], ex["status"], ex["side"] = 7, 1, 4, np.where(k % 2 == 0, 1, 2)
    ex["last_price"], ex["last_qty"], ex["fee"] = 6_100_000 + k, 10 + k % 7, 3
    for kind, records, rtype in (("ticks", ev, RecordType.MARKET_EVENT), ("exec", ex, RecordType.EXEC_REPORT)):
        w = JournalWriter(str(journal / f"{venue}.{kind}"), f"/ttq.{venue}.{kind}", rtype, records.dtype.itemsize, 0,
                          spot_table().to_json(), ring_created_ns=T0)
        w.append(records)
        w.close()
    return ev, ex


def _dump(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY seq").fetchall() if t != "book_snapshots" else
                conn.execute(f"SELECT * FROM {t} ORDER BY ts_ns").fetchall()
                for t in ("trades", "quotes", "exec_reports", "position_snapshots", "book_snapshots")}


def test_a_shipper_killed_mid_batch_and_started_again_loses_and_duplicates_nothing(postgres, children, venue,
                                                                                    tmp_path):
    from ttquant.sidecars.db.shipper import ship
    _big_journal(tmp_path / "journal", venue)
    ref = postgres.dsn(postgres.create_database())
    with psycopg.connect(ref, autocommit=True) as conn:
        migrate(conn, timescale=False)
        ship(conn, tmp_path / "journal", batch=7000, book_interval_ms=0)
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
    cfg = config_file(tmp_path / "ship.toml", "ship", {
        "rings": venue, "journal": {"dir": str(tmp_path / "journal")}, "database": {"dsn": dsn},
        "loop": {"poll_interval_s": 0.1, "batch": 7000}, "book": {"interval_ms": 0},
        "retention": {"tick_days": 0}, "process": {"scheduling": "other"}})
    want = _dump(ref)
    total = sum(len(v) for v in want.values())
    kills = 0
    for _ in range(3):          # killed at whatever point of a batch it has reached, three times
        proc = children.start("-m", "ttquant.core.cli", "db", "ship", venue, "--config", cfg,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before = _count(dsn)
        wait_for(lambda b=before, p=proc: _count(dsn) > b or p.poll() is not None, timeout=60, what="rows shipped")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills += sum(len(v) for v in _dump(dsn).values()) < total
    assert kills >= 1                           # at least one kill fell before the end
    proc = children.start("-m", "ttquant.core.cli", "db", "ship", venue, "--config", cfg,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: sum(len(v) for v in _dump(dsn).values()) >= total, timeout=120, what="the rest shipped")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert _dump(dsn) == want


def test_the_shipper_keeps_its_counts_for_telemetry(database, venue, tmp_path):
    ev, ex = _big_journal(tmp_path / "journal", venue, n=20_000)
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
    cfg = parse_config({"rings": venue, "journal": {"dir": str(tmp_path / "journal")}, "database": {"dsn": database},
                        "loop": {"batch": 3000, "poll_interval_s": 0.05}, "retention": {"tick_days": 0}},
                       ShipperConfig, str(tmp_path / "ship.toml"), instance=venue)
    runner = ServiceRunner("ship", venue, env={})
    shipper = Shipper(cfg, runner)
    shipper.start()
    t = threading.Thread(target=shipper.serve)
    t.start()
    try:
        streams = {f"{venue}.{s}" for s in ("trades", "quotes", "book", "exec", "positions")}
        wait_for(lambda: set(shipper.shipped) == streams and all(
            shipper.shipped[s] == (len(ex) if s.endswith(("exec", "positions")) else len(ev)) for s in streams),
            timeout=60, what="every stream shipped")
        wait_for(lambda: shipper.watermark_lag_s == dict.fromkeys(streams, 0.0), timeout=30, what="no lag left")
        assert shipper.last_error == ""
        # and the same in its telemetry segment, as ttquant metrics reads it
        seg = read_telemetry(telemetry_segment(venue, "ship"))
        assert seg["labels"]["role"] == "ship" and seg["writer_alive"]
        rows = {s["labels"]["stream"]: s["value"] for s in seg["series"] if s["name"] == "rows_total"}
        lag = {s["labels"]["stream"]: s["value"] for s in seg["series"] if s["name"] == "watermark_lag_seconds"}
        assert rows == shipper.shipped and lag == dict.fromkeys(streams, 0)
        assert {s["name"]: s["value"] for s in seg["series"] if not s["labels"]} == {"errors_total": 0,
                                                                                    "database_down": 0}
    finally:
        runner.request_stop()
        t.join(timeout=30)
        shipper.close()
    assert not t.is_alive()
