"""Helpers for tests: child processes that always die, polling with a deadline."""
import os
import signal
import subprocess
import sys
import time

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


class Children:
    """Child processes in their own process groups, killed (group and all) at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, *args, env=None, **kwargs):
        full_env = dict(os.environ)
        full_env.update(env or {})
        proc = subprocess.Popen([sys.executable, *map(str, args)], start_new_session=True,
                                env=full_env, **kwargs)
        self.procs.append(proc)
        return proc

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


def wait_for(predicate, timeout=10.0, interval=0.005, what="condition"):
    """Poll predicate until true; fail the test with `what` after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")
