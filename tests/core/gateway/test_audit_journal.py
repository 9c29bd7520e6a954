"""The gateway's audit trail: each kill switch change (who, pid, reason, as `ttquant kill` set
it) and each risk reload (the file, accepted or refused with the error) goes into its order
journal as it happens; the shipper turns them into audit_log rows, in order, which the table
keeps append-only. A journal of the layout before these entries still reads and replays, and
a gateway restarted on a journal holding them replays past them."""
import getpass
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys

import psycopg
import pytest

from ttquant.core.gateway.order_journal import (
    AUDIT_MAX,
    KILL,
    MARK,
    ORDER,
    RISK_RELOAD,
    JournalError,
    OrderJournal,
)
from ttquant.core.records import Order
from ttquant.core.records import OrderStatus as S
from ttquant.sidecars.db.migrate import migrate
from ttquant.sidecars.db.shipper import ship_orders

from ttq_stack import RISK, TradingStack
from ttq_testing import wait_for


def _version(path):
    with open(path, "rb") as f:
        return struct.unpack_from("<I", f.read(12), 8)[0]


def _set_version(path, version):
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", version))


def test_audit_entries_read_back_and_a_layout_1_journal_reads_and_is_marked_2(tmp_path):
    path = tmp_path / "orders.journal"
    j = OrderJournal(str(path), "binance")
    j.mark(5)
    j.order(Order(client_order_id=1, strategy_id=2), 7)
    j.close()
    _set_version(path, 1)                   # what the build before the audit kinds wrote: the same bytes
    j = OrderJournal(str(path), "binance")
    assert _version(path) == 2              # an older build now refuses it instead of cutting audit entries
    assert [k for k, _ in j.entries()] == [MARK, ORDER]
    j.kill({"engaged": True, "who": "alice via root@h", "reason": "ünïcode " + "x" * 5000}, ts_ns=11)
    j.risk_reload({"file": "/etc/ttquant/risk.binance.toml", "accepted": False, "error": "bad"}, ts_ns=12)
    j.close()
    j = OrderJournal(str(path), "binance")
    got = list(j.entries())
    j.close()
    assert [k for k, _ in got] == [MARK, ORDER, KILL, RISK_RELOAD] and j.torn_bytes == 0
    (ts, kill), (ts2, reload) = got[2][1], got[3][1]
    assert (ts, kill["engaged"], kill["who"]) == (11, True, "alice via root@h")
    assert kill["reason"].startswith("ünïcode xxx") and kill["reason"].endswith("…")     # cut to fit
    assert 8 + len(json.dumps(kill, separators=(",", ":"), ensure_ascii=False).encode()) <= AUDIT_MAX
    assert (ts2, reload) == (12, {"file": "/etc/ttquant/risk.binance.toml", "accepted": False, "error": "bad"})
    _set_version(path, 3)
    with pytest.raises(JournalError, match="layout 3"):
        OrderJournal(str(path), "binance")


def _journal_entries(path):
    j = OrderJournal(str(path), "binance")
    try:
        return [(k, v) for k, v in j.entries()]
    finally:
        j.close()


def test_kill_switch_and_risk_reloads_reach_audit_log_in_order(children, venue, tmp_path, database):
    s = TradingStack(children, venue, tmp_path)
    journal = tmp_path / "orders.journal"
    try:
        s.wait_ready()
        bid, _ = s.touch()
        price = bid * 97 // 100 // s.spot.tick_size * s.spot.tick_size
        resting = s.order(price=price)
        s.report_for(resting.client_order_id, S.ACCEPTED)
        assert s.stop_gateway() == 0
        _set_version(journal, 1)            # an old journal: written before the audit entries existed
        s.start_gateway()
        s.wait_ready()
        assert re.search(r"ready: 1 orders from the journal \(1 open\)", s.gateway_log()), s.gateway_log()[-2000:]
        assert _version(journal) == 2

        cli = [sys.executable, "-m", "ttquant.core.cli", "kill", venue]
        env = {**os.environ, "SUDO_USER": "alice"}          # run through sudo: the audit names alice
        out = subprocess.run(cli + ["--reason", "fat finger on desk 2"], capture_output=True, text=True, timeout=30,
                             env=env)
        assert out.returncode == 0 and "ENGAGED" in out.stdout, out.stderr
        s.report_for(resting.client_order_id, S.CANCELED)
        out = subprocess.run(cli + ["--release", "--reason", "checked"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "released" in out.stdout, out.stderr
        wait_for(lambda: "kill switch released" in s.gateway_log(), timeout=10, what="the release seen")

        good = RISK
        s.risk_path.write_text(good + "\n[instruments.spot.NOPE]\nmax_position = 1\n")
        s.gateway.send_signal(signal.SIGHUP)
        wait_for(lambda: "risk reload refused" in s.gateway_log(), timeout=10, what="the refusal")
        s.risk_path.write_text(good)
        s.gateway.send_signal(signal.SIGHUP)
        wait_for(lambda: "risk limits reloaded" in s.gateway_log(), timeout=10, what="the reload")
        assert s.stop_gateway() == 0

        # restarted on the journal with its audit entries: replayed past them, nothing cut
        s.start_gateway()
        s.wait_ready()
        log = s.gateway_log()
        assert re.search(r"ready: 1 orders from the journal \(0 open\)", log) and "torn" not in log, log[-2000:]
        assert s.stop_gateway() == 0

        # engaged while no gateway ran: the next gateway journals it at its start, and only it
        out = subprocess.run(cli + ["--force", "--reason", "weekend"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        for _ in range(2):
            s.start_gateway()
            s.wait_ready()
            assert s.stop_gateway() == 0
    finally:
        s.close()

    kinds = [k for k, _ in _journal_entries(journal)]
    assert kinds.count(KILL) == 3 and kinds.count(RISK_RELOAD) == 2 and kinds.count(MARK) == 5
    host = os.uname().nodename
    me = f"{getpass.getuser()}@{host}"
    with psycopg.connect(database, autocommit=True) as conn:
        migrate(conn, timescale=False)
        n = ship_orders(conn, journal, f"{venue}.orders")
        assert n == len(kinds)
        rows = conn.execute("SELECT who, host, venue, action, detail, ts FROM audit_log ORDER BY id").fetchall()
        assert [r[3] for r in rows] == ["gateway_start", "gateway_start", "kill_switch_engaged",
                                        "kill_switch_released", "risk_reload", "risk_reload", "gateway_start",
                                        "gateway_start", "kill_switch_engaged", "gateway_start"]
        assert [r[1] for r in rows] == [host] * 10 and {r[2] for r in rows} == {"binance"}
        weekend = rows[8][4]
        assert weekend["seen_at_start"] is True and weekend["reason"] == "weekend" and weekend["engaged"] is True
        assert [r[5] for r in rows] == sorted(r[5] for r in rows)           # in the order it happened
        engaged, released, refused, accepted = (r for r in rows[2:6])
        assert engaged[0] == f"alice via {me}"
        d = engaged[4]
        assert d["reason"] == "fat finger on desk 2" and d["engaged"] is True and d["open_orders"] == 1
        assert d["pid"] > 0 and d["pid"] != os.getpid() and d["missed"] == 0 and d["journal"] == str(journal)
        assert released[0] == me and released[4]["reason"] == "checked" and released[4]["engaged"] is False
        assert (refused[0], refused[4]["accepted"]) == ("gateway", False)
        assert "instruments.spot.NOPE" in refused[4]["error"] and refused[4]["file"] == str(s.risk_path)
        assert accepted[4]["accepted"] is True and accepted[4]["error"] is None
        assert accepted[4]["sha256"] == hashlib.sha256(good.encode()).hexdigest()
        assert ship_orders(conn, journal, f"{venue}.orders") == 0          # once
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("UPDATE audit_log SET who = 'someone else' WHERE action = 'kill_switch_engaged'")
        assert conn.execute("SELECT who FROM audit_log WHERE action = 'kill_switch_engaged'").fetchone()[0] \
            == f"alice via {me}"
