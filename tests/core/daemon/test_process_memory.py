"""lock_memory: mlockall(MCL_CURRENT | MCL_FUTURE), and a refusal that says what is missing;
run under the service runner when $TTQ_LOCK_MEMORY=1 (a child process: the test's own memory
is never locked)."""
import ctypes
import errno
import os
import resource
import subprocess
import sys

import pytest

from ttquant.core.daemon.process import MCL_CURRENT, MCL_FUTURE, ProcessSetupError, keep_out_of_dumps, lock_memory


def test_lock_memory_asks_for_current_and_future_pages():
    calls = []
    lock_memory(mlockall=lambda flags: calls.append(flags) or 0)
    assert calls == [MCL_CURRENT | MCL_FUTURE]


@pytest.mark.parametrize("err", [errno.EPERM, errno.ENOMEM])
def test_a_refusal_names_the_flag_and_what_the_process_needs(err):
    def refuse(flags):
        ctypes.set_errno(err)
        return -1
    with pytest.raises(ProcessSetupError) as exc:
        lock_memory(mlockall=refuse)
    assert str(exc.value).startswith("TTQ_LOCK_MEMORY: cannot lock") and "LimitMEMLOCK=infinity" in str(exc.value)


CHILD = """
import os, sys
from ttquant.core.daemon.runner import Daemon, ServiceRunner

class Probe(Daemon):
    role = "probe"
    def serve(self):
        with open("/proc/self/status") as f:
            print([line.split()[1] for line in f if line.startswith("VmLck")][0])
        return 0

sys.exit(ServiceRunner("probe", "", env=os.environ).run(Probe, cfg=object()))
"""


@pytest.mark.parametrize("flag", ["1", ""])
def test_the_runner_locks_memory_when_asked(flag):
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "TTQ_LOCK_MEMORY": flag, "TTQ_LOG_LEVEL": "ERROR"})
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if flag and os.geteuid() != 0 and soft != resource.RLIM_INFINITY:
        # no CAP_IPC_LOCK and a small limit: the runner must refuse in one line (exit 2), not run unlocked
        assert out.returncode == 2 and "cannot lock" in out.stderr, out.stderr
        return
    assert out.returncode == 0, out.stderr
    locked_kb = int(out.stdout.split()[-1])
    assert (locked_kb > 0) == bool(flag), out.stdout


KEEP_OUT = """
import ctypes, resource
from ttquant.core.daemon.process import PR_GET_DUMPABLE, keep_out_of_dumps
libc = ctypes.CDLL(None)
before = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
keep_out_of_dumps()
print(before, libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), resource.getrlimit(resource.RLIMIT_CORE))
"""


def test_a_process_that_holds_a_secret_is_not_dumpable_and_writes_no_core():
    out = subprocess.run([sys.executable, "-c", KEEP_OUT], capture_output=True, text=True, check=True).stdout
    assert out.split(maxsplit=2)[:2] == ["1", "0"] and out.strip().endswith("(0, 0)"), out


def test_a_kernel_that_refuses_says_so_before_any_secret_is_read(monkeypatch):
    def refuse(*args):
        ctypes.set_errno(errno.EINVAL)
        return -1
    limits = []
    monkeypatch.setattr(resource, "setrlimit", lambda *args: limits.append(args))    # the test's own stay
    with pytest.raises(ProcessSetupError, match="PR_SET_DUMPABLE"):
        keep_out_of_dumps(prctl=refuse)
    assert limits == [(resource.RLIMIT_CORE, (0, 0))]
