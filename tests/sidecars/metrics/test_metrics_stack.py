"""`ttquant metrics` scraped over HTTP during a demo-sized run of the whole stack (venue-sim, md,
gateway, a strategy trading, the recorder, the shipper into the suite's PostgreSQL): every name
the alert rules and the dashboard use (ansible/roles/ttquant_monitoring/files/metric-names.txt)
is served for the venue, read back by prometheus-client's parser, and the counters move."""
import os
import pathlib
import subprocess
import time

import psycopg
import pytest

from ttquant.sidecars.db.migrate import migrate

from ttq_stack import RISK, TradingStack
from ttq_testing import TESTS_DIR, config_file, free_port, wait_for
from ttq_testing import scrape_metrics as scrape

NAMES = pathlib.Path(TESTS_DIR).parent / "ansible" / "roles" / "ttquant_monitoring" / "files" / "metric-names.txt"
# a position limit for the gateway to report against (ttq_gateway_position_limit_ratio)
LIMITED = RISK + "[instruments.spot.BTCUSDT]\nmax_position = 0.01\n"


def _total(samples, name, venue, **labels):
    return sum(v for (n, ls), v in samples.items()
               if n == name and dict(ls).get("venue") == venue and all(dict(ls).get(k) == x for k, x in labels.items()))


def test_a_running_stack_serves_every_name_the_rules_and_dashboard_use(children, venue, tmp_path, postgres):
    dsn = postgres.dsn(postgres.create_database())
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn, timescale=False)
    port = free_port()
    metrics_cfg = config_file(tmp_path / "metrics.toml", "metrics", {"listen": f"127.0.0.1:{port}"})
    metrics = children.start("-m", "ttquant.core.cli", "metrics", "--config", metrics_cfg,
                             stdout=subprocess.DEVNULL, stderr=open(tmp_path / "metrics.log", "wb"))
    s = TradingStack(children, venue, tmp_path, risk=LIMITED)
    try:
        s.wait_ready()
        journal = tmp_path / "journal"
        rec_cfg = config_file(tmp_path / "record.toml", "record", {"rings": {"name": venue},
                                                                   "journal": {"dir": str(journal)}})
        children.start("-m", "ttquant.core.cli", "record", venue, "--config", rec_cfg,
                       stdout=subprocess.DEVNULL, stderr=open(tmp_path / "record.log", "wb"))
        ship_cfg = config_file(tmp_path / "ship.toml", "ship", {
            "rings": venue, "journal": {"dir": str(journal)}, "database": {"dsn": dsn},
            "loop": {"poll_interval_s": 0.2}, "process": {"scheduling": "other"}})
        children.start("-m", "ttquant.core.cli", "db", "ship", venue, "--config", ship_cfg,
                       stdout=subprocess.DEVNULL, stderr=open(tmp_path / "ship.log", "wb"))
        st_cfg = config_file(tmp_path / "acc.toml", "strategy", {
            "name": "acc", "strategy_id": 41,
            "class": os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py:Accumulate"),
            "venues": {"binance": {"rings": venue}}, "params": {"every": 3, "buys": 2}})
        env = {"PYTHONPATH": os.path.join(TESTS_DIR, "strategies") + os.pathsep + os.environ.get("PYTHONPATH", "")}
        children.start("-m", "ttquant.core.cli", "strategy", "run", "acc", "--config", st_cfg, env=env,
                       stdout=subprocess.DEVNULL, stderr=open(tmp_path / "acc.log", "wb"))
        url = f"http://127.0.0.1:{port}/metrics"
        wanted = [n.strip() for n in NAMES.read_text().splitlines() if n.strip() and not n.startswith("#")]

        missing, deadline = wanted, time.monotonic() + 120
        while True:
            try:
                first = scrape(url)
            except OSError:
                first = {}
            missing = [n for n in wanted if n not in {n for (n, ls) in first if dict(ls).get("venue") == venue}]
            if not missing and _total(first, "ttq_ship_rows_total", venue) > 0 \
                    and _total(first, "ttq_strategy_orders_total", venue) > 0:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"not served for venue {venue} after 120 s: {missing}")
            time.sleep(1)
        moving = [("ttq_md_messages_total", {}), ("ttq_md_frames_total", {}), ("ttq_strategy_events_total", {}),
                  ("ttq_recorder_records_total", {"ring": "ticks"}), ("ttq_ring_write_position", {"ring": "ticks"})]
        second = wait_for(lambda: (lambda got: got if all(
            _total(got, n, venue, **ls) > _total(first, n, venue, **ls) for n, ls in moving) else None)(scrape(url)),
            timeout=60, interval=0.5, what="the counters moving between scrapes")
        assert _total(second, "ttq_up", venue, role="md") == 1 and _total(second, "ttq_up", venue, role="gateway") == 1
        assert _total(second, "ttq_strategy_tick_to_order_seconds_count", venue) >= 1
        assert _total(second, "ttq_gateway_orders_total", venue, strategy="acc") >= 1
        assert _total(second, "ttq_gateway_kill_switch", venue) == 0
        assert 0 < _total(second, "ttq_gateway_position_limit_ratio", venue, strategy="all") <= 1
        assert _total(second, "ttq_md_dropped_total", venue) == 0
        with psycopg.connect(dsn, autocommit=True) as conn:
            shipped = conn.execute("SELECT count(*) FROM trades").fetchone()[0]
        assert shipped > 0
    finally:
        s.close()
        assert metrics.poll() is None, (tmp_path / "metrics.log").read_text()
