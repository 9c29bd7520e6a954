"""What a new user met starting the daemons (issue 9), each through the real command line: a
daemon waiting for another says what it waits for (log and STATUS=) and stops cleanly on
SIGTERM; an expected failure is one line with its documented exit code; a second instance is
refused before it touches anything; `ttquant kill` refuses a venue with no running stack."""
import os
import signal
import subprocess
import sys
import time

from ttquant.core.instruments import instruments_path
from ttquant.core.records import RecordType
from ttquant.core.rings import BroadcastWriter
from ttquant.core.rings.names import instance_lock_file, tick_ring

from ttq_stack import TradingStack
from ttq_testing import TESTS_DIR, NotifyListener, config_file, md_config, unlink_venue, wait_for

CLI = [sys.executable, "-m", "ttquant.core.cli"]


class Notifications(NotifyListener):
    def __init__(self, tmp_path, name="notify"):
        super().__init__(tmp_path / f"{name}.sock")

    def status(self, prefix, timeout=20):
        return self.wait_message("STATUS=" + prefix, timeout)


def start(children, tmp_path, name, *args, env=None):
    log = open(tmp_path / f"{name}.log", "wb")
    proc = children.start("-m", "ttquant.core.cli", *args, stdout=log, stderr=subprocess.STDOUT, env=env)
    return proc, log.name


def gateway_config(tmp_path, venue, url="http://127.0.0.1:9", **process):
    (tmp_path / "risk.toml").write_text("[balances]\nUSDT = 1000\n")
    return config_file(tmp_path / "gateway.toml", "gateway", {
        "rings": {"name": venue}, "adapter": {"http_url": url}, "journal": {"path": "orders.journal"},
        "risk": {"file": "risk.toml"}, "process": process})


def test_a_gateway_without_md_says_what_it_waits_for_and_stops_on_sigterm(children, venue, tmp_path):
    note = Notifications(tmp_path)
    gw, log = start(children, tmp_path, "gw", "gateway", "binance", "--config", gateway_config(tmp_path, venue),
                    env={"NOTIFY_SOCKET": note.path})
    note.status(f"waiting for md's instrument table {instruments_path(venue)}")
    wait_for(lambda: f"is ttquant-md@binance running? its rings are '{venue}'" in open(log).read(), timeout=10,
             what="the waiting log line")
    gw.send_signal(signal.SIGTERM)
    assert gw.wait(timeout=20) == 0
    assert "Traceback" not in open(log).read()


def test_a_gateway_gives_up_on_md_after_its_startup_timeout_in_one_line(venue, tmp_path):
    out = subprocess.run([*CLI, "gateway", "binance", "--config",
                          str(gateway_config(tmp_path, venue, startup_timeout_s=1.5))],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 5, out.stderr
    lines = [line for line in out.stderr.splitlines() if "ERROR" in line]
    assert len(lines) == 1 and "did not come up within 1.5 s" in lines[0] and "Traceback" not in out.stderr


def test_a_gateway_without_its_venue_waits_for_it_by_name(children, venue, tmp_path):
    # md's part by hand: the instrument table and the tick ring; no simulated venue at the URL
    import shutil

    from ttquant.core.instruments import Instrument, InstrumentTable, MarketType
    table = InstrumentTable("binance", [Instrument(1, "binance", "BTCUSDT", MarketType.SPOT, "BTC", "USDT", 2, 5,
                                                   1, 1, 1, 0, 1, 0, 0)])
    table.save(instruments_path(venue))
    ticks = BroadcastWriter(tick_ring(venue), RecordType.MARKET_EVENT, 1024)
    note = Notifications(tmp_path)
    try:
        gw, log = start(children, tmp_path, "gw", "gateway", "binance", "--config",
                        gateway_config(tmp_path, venue, "http://127.0.0.1:9"), env={"NOTIFY_SOCKET": note.path})
        note.status("waiting for the simulated venue at http://127.0.0.1:9")
        gw.send_signal(signal.SIGTERM)
        assert gw.wait(timeout=20) == 0 and "Traceback" not in open(log).read()
        assert not any(m == "READY=1" for m in note.read())
    finally:
        ticks.close()
        unlink_venue(venue)
        shutil.rmtree(tmp_path / "orders.journal", ignore_errors=True)


def test_a_strategy_without_md_says_what_it_waits_for(children, venue, tmp_path):
    note = Notifications(tmp_path)
    config = config_file(tmp_path / "s.toml", "strategy", {"name": "waiter", "venues": {"binance": {"rings": venue}}})
    st, log = start(children, tmp_path, "st", "strategy", "run", "waiter", "--config", config,
                    env={"NOTIFY_SOCKET": note.path})
    note.status("waiting for binance's instrument table")
    wait_for(lambda: "waiting for binance's instrument table; is ttquant-md@binance running?" in open(log).read(),
             timeout=10, what="the waiting log line")
    st.send_signal(signal.SIGTERM)
    assert st.wait(timeout=20) == 0


def test_a_second_gateway_is_refused_before_it_opens_the_journal(children, venue, tmp_path):
    import shutil
    s = TradingStack(children, venue, tmp_path)
    try:
        s.wait_ready()
        journal = tmp_path / "orders.journal"
        before = (journal.stat().st_size, journal.stat().st_mtime_ns)
        out = subprocess.run([*CLI, "gateway", "binance", "--config", str(s.gw_config)], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 4
        assert f"gateway of rings '{venue}' already runs (pid {s.gateway.pid})" in out.stderr
        assert "journal" not in out.stderr and "Traceback" not in out.stderr     # never got that far
        assert (journal.stat().st_size, journal.stat().st_mtime_ns) == before
        assert s.gateway.poll() is None
        # a gateway under another rings name on the same journal file: the journal's own lock
        other = config_file(tmp_path / "other.toml", "gateway", {
            "rings": {"name": f"{venue}o"}, "adapter": {"http_url": f"http://127.0.0.1:{s.port}"},
            "journal": {"path": "orders.journal"}, "risk": {"file": "risk.toml"}})
        shutil.copy(instruments_path(venue), instruments_path(f"{venue}o"))     # md's part of that stack
        ticks = BroadcastWriter(tick_ring(f"{venue}o"), RecordType.MARKET_EVENT, 1024)
        try:
            out = subprocess.run([*CLI, "gateway", "binance", "--config", str(other)], capture_output=True, text=True,
                                 timeout=60)
        finally:
            ticks.close()
            unlink_venue(f"{venue}o")
        assert out.returncode == 4 and "another gateway has this order journal open" in out.stderr, out.stderr
        assert (journal.stat().st_size, journal.stat().st_mtime_ns) == before
    finally:
        s.close()


def test_kill_refuses_a_venue_with_no_running_stack_and_shows_the_switch(children, venue, tmp_path):
    out = subprocess.run([*CLI, "kill", venue], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and f"no gateway of {venue!r} is running" in out.stderr
    assert not [e for e in os.listdir("/dev/shm") if e.startswith(f"ttq.{venue}.")]      # nothing made
    status = subprocess.run([*CLI, "kill", venue, "--status"], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and "never set (no gateway running)" in status.stdout
    forced = subprocess.run([*CLI, "kill", venue, "--force", "--reason", "maintenance"], capture_output=True,
                            text=True, timeout=60)
    assert forced.returncode == 0 and "ENGAGED" in forced.stdout
    status = subprocess.run([*CLI, "kill", venue, "--status"], capture_output=True, text=True, timeout=60)
    assert "ENGAGED" in status.stdout and "(maintenance)" in status.stdout
    # with a gateway running (its lock held) no --force is needed
    from ttquant.core.daemon.instance_lock import InstanceLock
    with InstanceLock(instance_lock_file(venue, "gateway"), "a gateway"):
        out = subprocess.run([*CLI, "kill", venue, "--release"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "released" in out.stdout and f"gateway pid {os.getpid()}" in out.stdout
    unlink_venue(venue)


def test_md_stops_at_once_on_sigterm_during_its_reconnect_backoff(children, venue, tmp_path):
    sim = children.start("-m", "ttquant.core.cli", "venue-sim", "binance", "--port", "0", "--speed", "4",
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    port = int(sim.stdout.readline().decode().split("127.0.0.1:")[1].split()[0])
    config = md_config(tmp_path / "md.toml", venue, port,
                       connection={"backoff_initial_s": 20.0, "backoff_max_s": 30.0})
    md, log = start(children, tmp_path, "md", "md", "binance", "--config", config)
    try:
        wait_for(lambda: "ready:" in open(log).read(), timeout=60, what="md ready")
        os.killpg(sim.pid, signal.SIGKILL)                  # the venue is gone: md backs off 10-20 s
        sim.wait(timeout=10)
        wait_for(lambda: "reconnecting in" in open(log).read(), timeout=30, what="md in its backoff")
        t0 = time.monotonic()
        md.send_signal(signal.SIGTERM)
        assert md.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 2.0                   # not the rest of the backoff
        text = open(log).read()
        assert "Task was destroyed but it is pending" not in text and "Traceback" not in text
    finally:
        unlink_venue(venue)


def test_a_strategy_file_next_to_its_config_loads_without_pythonpath(children, venue, tmp_path):
    import shutil
    shutil.copy(os.path.join(TESTS_DIR, "strategies", "runtime_strategies.py"), tmp_path / "mine.py")
    config = config_file(tmp_path / "s.toml", "strategy", {"name": "mine", "class": "mine.py:RestingOrder",
                                                            "venues": {"binance": {"rings": venue}}})
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([*CLI, "config", "check", "strategy", "--config", str(config)], capture_output=True,
                         text=True, timeout=60, env=env, cwd="/")
    assert out.returncode == 0, out.stderr
    bad = config_file(tmp_path / "bad.toml", "strategy", {"class": "mine.py:RestingOrdr"})
    out = subprocess.run([*CLI, "strategy", "run", "mm", "--config", str(bad)], capture_output=True, text=True,
                         timeout=60, env=env, cwd="/")
    assert out.returncode == 2 and "class: mine.py:RestingOrdr: mine.py has no 'RestingOrdr'" in out.stderr
    assert "Traceback" not in out.stderr
