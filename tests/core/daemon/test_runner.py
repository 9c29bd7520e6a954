"""The service runner, once for every daemon (core/daemon/runner.py): a toy daemon with nothing
of its own (toy_daemon.py) shows config refusals, the default config path, logging, signals,
systemd notify, the instance lock, waiting, exit codes, CPUs and scheduling, the test fault
switch; the hybrid wait and the GC policy are driven in-process with an injected clock."""
import gc
import os
import signal
import subprocess
import sys
import time

import pytest

from ttquant.core.daemon.hybrid_wait import HybridWait
from ttquant.core.daemon.notify import Notifier
from ttquant.core.daemon.runner import ServiceRunner
from ttquant.core.rings.names import instance_lock_file

from ttq_testing import NotifyListener, wait_for

TOY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "toy_daemon.py")


def toy_config(path, rings, **toy):
    lines = [f'[toy]\nrings = "{rings}"\n'] + [f"{k} = {v!r}\n".replace("'", '"') for k, v in toy.items()]
    path.write_text("".join(lines))
    return path


def extra(path, text):
    with open(path, "a") as f:
        f.write(text)
    return path


class Toy:
    """The toy daemon as a child process; its notify messages on a socket of its own."""

    def __init__(self, children, tmp_path, rings, config=None, env=None, name="toy"):
        self.notify = NotifyListener(tmp_path / f"{name}.notify")
        self.out = open(tmp_path / f"{name}.out", "wb")
        self.err_path = tmp_path / f"{name}.err"
        args = [TOY, rings] + ([str(config)] if config else [])
        self.proc = children.start(*args, stdout=self.out, stderr=open(self.err_path, "wb"),
                                   env={"NOTIFY_SOCKET": self.notify.path, "WATCHDOG_USEC": "300000", **(env or {})})
        self.messages = self.notify.messages
        self.read, self.wait_message = self.notify.read, self.notify.wait_message

    def stdout(self):
        return open(self.out.name).read()

    def stderr(self):
        return open(self.err_path).read()

    def close(self):
        self.notify.close()


def run_toy(rings, config=None, env=None, timeout=30):
    args = [sys.executable, TOY, rings] + ([str(config)] if config else [])
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def test_a_refused_config_is_one_line_naming_the_file_the_key_and_the_known_keys(tmp_path, venue):
    path = extra(toy_config(tmp_path / "toy.toml", venue), "[loop]\nwiat = \"spin\"\n")
    out = run_toy(venue, path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"ttquant toy {venue}: {path}: loop.wiat: unknown key (known: gc, spin_polls, wait)"]
    bad_value = extra(toy_config(tmp_path / "value.toml", venue), "[process]\nscheduling = \"fast\"\n")
    out = run_toy(venue, bad_value)
    assert out.returncode == 2 and "process.scheduling: one of other, batch" in out.stderr
    assert "Traceback" not in out.stderr
    missing = run_toy(venue, tmp_path / "nope.toml")
    assert missing.returncode == 2 and f"{tmp_path / 'nope.toml'}: no such file" in missing.stderr


def test_the_default_config_is_role_dot_instance_in_the_config_dir(tmp_path, venue):
    out = run_toy(venue, env={"TTQ_CONFIG_DIR": str(tmp_path)})
    assert out.returncode == 2 and f"{tmp_path}/toy.{venue}.toml: no such file" in out.stderr
    toy_config(tmp_path / f"toy.{venue}.toml", venue, fail="service")
    out = run_toy(venue, env={"TTQ_CONFIG_DIR": str(tmp_path)})
    assert out.returncode == 3 and "the toy cannot start: told so" in out.stderr      # read and used


def test_notify_signals_and_a_clean_stop(children, tmp_path, venue):
    toy = Toy(children, tmp_path, venue, toy_config(tmp_path / "toy.toml", venue, steps_busy=100))
    try:
        toy.wait_message("READY=1")
        toy.wait_message("STATUS=")
        first = len([m for m in toy.read() if m == "WATCHDOG=1"])
        wait_for(lambda: len([m for m in toy.read() if m == "WATCHDOG=1"]) >= first + 3, timeout=10,
                 what="WATCHDOG=1 every 0.1 s (a third of WATCHDOG_USEC)")
        toy.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "toy reloaded 1" in toy.stdout(), timeout=10, what="the reload")
        assert toy.proc.poll() is None                      # SIGHUP does not end it
        toy.proc.send_signal(signal.SIGTERM)
        assert toy.proc.wait(timeout=20) == 0
        toy.wait_message("STOPPING=1")
        assert toy.messages.index("READY=1") < toy.messages.index("STOPPING=1")
        assert "toy stopping after" in toy.stdout()
        assert not os.path.exists(instance_lock_file(venue, "toy"))     # released and removed
    finally:
        toy.close()


def test_sigint_stops_it_cleanly_too(children, tmp_path, venue):
    toy = Toy(children, tmp_path, venue, toy_config(tmp_path / "toy.toml", venue))
    try:
        toy.wait_message("READY=1")
        toy.proc.send_signal(signal.SIGINT)
        assert toy.proc.wait(timeout=20) == 0
    finally:
        toy.close()


def test_a_second_instance_is_refused_before_it_starts_and_a_dead_ones_lock_is_free(children, tmp_path, venue):
    config = toy_config(tmp_path / "toy.toml", venue)
    first = Toy(children, tmp_path, venue, config, name="first")
    try:
        first.wait_message("READY=1")
        second = run_toy(venue, config)
        assert second.returncode == 4
        assert f"already runs (pid {first.proc.pid})" in second.stderr and "Traceback" not in second.stderr
        assert "toy started" not in second.stdout                 # refused before start()
        os.killpg(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=10)
        assert os.path.exists(instance_lock_file(venue, "toy"))   # left behind, but not held
        third = Toy(children, tmp_path, venue, config, name="third")
        third.wait_message("READY=1")
        third.proc.send_signal(signal.SIGTERM)
        assert third.proc.wait(timeout=20) == 0
        third.close()
    finally:
        first.close()


def test_waiting_says_what_for_and_gives_up_after_the_startup_timeout(children, tmp_path, venue):
    marker = tmp_path / "marker"
    config = toy_config(tmp_path / "toy.toml", venue, wait_for_file=str(marker))
    toy = Toy(children, tmp_path, venue, config)
    try:
        toy.wait_message(f"STATUS=waiting for the file {marker}")
        wait_for(lambda: f"waiting for the file {marker}; the test makes it" in toy.stderr(), timeout=10,
                 what="the waiting log line")
        marker.touch()
        toy.wait_message("READY=1")
        toy.proc.send_signal(signal.SIGTERM)
        assert toy.proc.wait(timeout=20) == 0
    finally:
        toy.close()
    marker.unlink()
    timed = extra(toy_config(tmp_path / "timed.toml", venue, wait_for_file=str(marker)),
                  "[process]\nstartup_timeout_s = 1.5\n")
    out = run_toy(venue, timed)
    assert out.returncode == 5
    assert f"the file {marker} did not come up within 1.5 s; the test makes it" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_sigterm_while_waiting_stops_with_0(children, tmp_path, venue):
    toy = Toy(children, tmp_path, venue, toy_config(tmp_path / "toy.toml", venue, wait_for_file=str(tmp_path / "x")))
    try:
        toy.wait_message("STATUS=waiting for")
        toy.proc.send_signal(signal.SIGTERM)
        assert toy.proc.wait(timeout=20) == 0
        assert "stopped while starting" in toy.stderr()
    finally:
        toy.close()


def test_expected_failures_are_one_line_and_a_bug_is_a_traceback(tmp_path, venue):
    out = run_toy(venue, toy_config(tmp_path / "a.toml", venue, fail="service"))
    assert out.returncode == 3 and "the toy cannot start: told so" in out.stderr and "Traceback" not in out.stderr
    out = run_toy(venue, toy_config(tmp_path / "b.toml", venue, fail="bug"))
    assert out.returncode == 1 and "internal error" in out.stderr and "Traceback" in out.stderr


def test_cpus_and_scheduling_from_the_config(children, tmp_path, venue):
    config = extra(toy_config(tmp_path / "toy.toml", venue), '[process]\ncpus = [0]\nscheduling = "batch"\n')
    toy = Toy(children, tmp_path, venue, config)
    try:
        toy.wait_message("READY=1")
        assert f"affinity [0] policy {os.SCHED_BATCH}" in toy.stdout()
        toy.proc.send_signal(signal.SIGTERM)
        assert toy.proc.wait(timeout=20) == 0
    finally:
        toy.close()
    nowhere = extra(toy_config(tmp_path / "nowhere.toml", venue), "[process]\ncpus = [4095]\n")
    out = run_toy(venue, nowhere)
    assert out.returncode == 2 and "process.cpus: CPU 4095 does not exist on this host" in out.stderr


def test_logs_are_journald_friendly_under_systemd_and_the_level_comes_from_env_then_config(tmp_path, venue):
    config = toy_config(tmp_path / "toy.toml", venue, fail="service")
    plain = run_toy(venue, config)
    line = next(x for x in plain.stderr.splitlines() if "told so" in x)
    assert line[:4].isdigit() and not line.startswith("<")                  # a timestamp first
    journal = run_toy(venue, config, env={"INVOCATION_ID": "0123456789abcdef"})
    line = next(x for x in journal.stderr.splitlines() if "told so" in x)
    assert line.startswith("<3>ttquant.daemon ERROR ")                        # syslog priority, no time
    quiet = extra(toy_config(tmp_path / "quiet.toml", venue, wait_for_file=str(tmp_path / "m")),
                  '[process]\nlog_level = "ERROR"\nstartup_timeout_s = 1.2\n')
    out = run_toy(venue, quiet)
    assert out.returncode == 5 and "waiting for" not in out.stderr             # INFO hidden by the config
    out = run_toy(venue, quiet, env={"TTQ_LOG_LEVEL": "INFO"})
    assert "waiting for the file" in out.stderr                               # the environment wins


def test_the_fault_switch_hangs_the_loop_only_when_enabled(children, tmp_path, venue):
    config = toy_config(tmp_path / "toy.toml", venue)
    toy = Toy(children, tmp_path, venue, config, env={"TTQ_TEST_FAULTS": "1"})
    try:
        toy.wait_message("WATCHDOG=1")
        toy.proc.send_signal(signal.SIGUSR2)
        wait_for(lambda: "the toy loop hangs now" in toy.stderr(), timeout=10, what="the hang")
        time.sleep(0.3)
        toy.read()
        before = len(toy.messages)
        time.sleep(1.0)
        assert toy.read()[before:] == [] and toy.proc.poll() is None           # alive, but no WATCHDOG=1
    finally:
        toy.close()
    os.killpg(toy.proc.pid, signal.SIGKILL)
    toy.proc.wait(timeout=10)
    os.unlink(instance_lock_file(venue, "toy"))                              # what a SIGKILL leaves
    plain = Toy(children, tmp_path, f"{venue}b", toy_config(tmp_path / "b.toml", f"{venue}b"), name="plain")
    try:
        plain.wait_message("READY=1")
        plain.proc.send_signal(signal.SIGUSR2)                               # not a test run: the default
        assert plain.proc.wait(timeout=10) == -signal.SIGUSR2
    finally:
        plain.close()
        if os.path.exists(instance_lock_file(f"{venue}b", "toy")):
            os.unlink(instance_lock_file(f"{venue}b", "toy"))


# -- in-process: the hybrid wait and the GC policy, with injected sleeps ---------------------------

def test_hybrid_spins_then_sleeps_doubling_and_work_resets_it():
    slept = []
    w = HybridWait("hybrid", spin_polls=4, rounds_per_pass=2, min_sleep_s=1e-4, max_sleep_s=4e-4, sleep=slept.append)
    assert [w.idle() for _ in range(2)] == [False, False] and slept == []     # 4 rounds: still spinning
    for _ in range(4):
        w.idle()
    assert slept == [1e-4, 2e-4, 4e-4, 4e-4]
    w.busy()
    w.idle(), w.idle(), w.idle()
    assert slept[-1] == 1e-4                                                  # spun again, then from the start
    spin = HybridWait("spin", spin_polls=0, sleep=slept.append)
    n = len(slept)
    for _ in range(1000):
        spin.idle()
    assert len(slept) == n                                                    # spin never sleeps


def test_hybrid_sleeps_on_a_futex_when_given_one():
    woken = []
    w = HybridWait("hybrid", spin_polls=0, futex_timeout_s=1e-3, sleep=lambda s: pytest.fail("not this"))
    assert w.idle(lambda timeout: woken.append(timeout) or False) is False
    assert w.idle(lambda timeout: woken.append(timeout) or True) is True      # it took work
    assert woken == [1e-3, 1e-3] and w.sleeps == 2
    with pytest.raises(ValueError, match="wait mode"):
        HybridWait("busy")


def _runner(steps, clock):
    runner = ServiceRunner("toy", "x", notify=Notifier(env={}, clock=clock), env={}, clock=clock)
    runner.notify.record = True
    seen = []

    def step():
        seen.append(gc.isenabled())
        if len(seen) >= steps:
            runner.stopping = True
        return False
    return runner, step, seen


def test_the_loop_runs_with_pythons_gc_off_when_idle_gc_is_chosen_and_restores_it():
    t = [0.0]
    clock = lambda: t[0]                                                  # noqa: E731
    runner, step, seen = _runner(10, clock)
    assert gc.isenabled()
    runner.loop(step, HybridWait("spin"), gc="idle", check_every=2)
    assert seen and not any(seen) and gc.isenabled()
    runner, step, seen = _runner(10, clock)
    runner.loop(step, HybridWait("spin"), gc="python", check_every=2)
    assert all(seen)


def test_the_loop_feeds_the_watchdog_at_its_interval_from_the_loop_only():
    t = [0.0]
    clock = lambda: t[0]                                                  # noqa: E731
    runner, step, seen = _runner(40, clock)

    def ticking_step():
        t[0] += 0.25
        return step()
    runner.loop(ticking_step, HybridWait("spin"), gc="python", check_every=1)
    # 40 passes over 10 s, a watchdog at most once a second (no WATCHDOG_USEC): 10
    assert runner.notify.sent.count("WATCHDOG=1") == 10
