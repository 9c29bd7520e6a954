"""Where a daemon's threads run: OS thread names, CPU pinning, the scheduling policy, and its
memory kept resident.

Under systemd the unit's CPUAffinity= and CPUSchedulingPolicy= (rendered per site) do the
same for the whole process; these settings also serve a daemon started by hand and pin
single threads (md's WebSocket thread apart from its housekeeping).

lock_memory: mlockall(MCL_CURRENT | MCL_FUTURE). What the process has is never paged out
(reclaim of cold pages, swap: a trading path that has been quiet must not fault its code back
in), and what it maps later is faulted in when mapped (a new Python arena in one mmap, not page
by page on first touch). Needs CAP_IPC_LOCK or a memlock limit above the process's size
(the unit's LimitMEMLOCK=infinity).

keep_out_of_dumps: a process that holds a secret (an API key) writes no core dump and is not
dumpable (prctl PR_SET_DUMPABLE 0): no core file, no ptrace or /proc/PID/mem by another process
of the same user (every daemon runs as ttquant), /proc/PID/environ root's only.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import threading

__all__ = ["name_thread", "pin_thread", "set_scheduling", "lock_memory", "keep_out_of_dumps", "SCHEDULING_POLICIES",
           "ProcessSetupError"]

log = logging.getLogger("ttquant.daemon")
SCHEDULING_POLICIES = {
    "other": os.SCHED_OTHER, "batch": os.SCHED_BATCH, "idle": os.SCHED_IDLE,
    "fifo": os.SCHED_FIFO, "rr": os.SCHED_RR,
}


class ProcessSetupError(RuntimeError):
    """CPUs or a policy this host or this user cannot give; says which."""


def name_thread(name: str) -> None:
    """The OS thread name (top -H, /proc/PID/task/TID/comm), as threading's name."""
    threading.current_thread().name = name
    try:
        _libc().prctl(15, name.encode()[:15], 0, 0, 0)     # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def pin_thread(what: str, cpus, key: str = "process.cpus") -> None:
    """The calling thread onto `cpus` (nothing when empty)."""
    if not cpus:
        return
    allowed = os.sched_getaffinity(0) | set(range(os.cpu_count() or 1))
    missing = sorted(set(cpus) - set(range(os.cpu_count() or 1)))
    if missing:
        raise ProcessSetupError(f"{key}: CPU {', '.join(map(str, missing))} does not exist on this host "
                                f"(CPUs 0-{max(allowed)})")
    try:
        os.sched_setaffinity(threading.get_native_id(), set(cpus))
    except OSError as exc:
        raise ProcessSetupError(f"{key}: cannot pin {what} to CPUs {sorted(cpus)}: {exc.strerror}") from None
    log.info("%s pinned to CPUs %s", what, sorted(cpus))


def set_scheduling(policy: str, priority: int = 0, key: str = "process.scheduling") -> None:
    """The process's policy (fifo/rr need CAP_SYS_NICE, or the unit's CPUSchedulingPolicy=)."""
    if policy == "other" and not priority:
        return
    try:
        os.sched_setscheduler(0, SCHEDULING_POLICIES[policy], os.sched_param(priority))
    except PermissionError:
        raise ProcessSetupError(f"{key}: {policy} scheduling needs CAP_SYS_NICE (or set it in the unit "
                                f"with CPUSchedulingPolicy=)") from None
    except OSError as exc:
        raise ProcessSetupError(f"{key}: {policy} priority {priority}: {exc.strerror}") from None
    log.info("scheduling: %s, priority %d", policy, priority)


MCL_CURRENT, MCL_FUTURE = 1, 2


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def lock_memory(key: str = "TTQ_LOCK_MEMORY", mlockall=None) -> None:
    """Every page the process has and will map stays in memory (see the module's docstring)."""
    call = mlockall or _libc().mlockall
    if call(MCL_CURRENT | MCL_FUTURE) == 0:
        log.info("memory locked (mlockall current and future)")
        return
    err = ctypes.get_errno()
    if err in (errno.EPERM, errno.ENOMEM):
        raise ProcessSetupError(f"{key}: cannot lock the process's memory ({os.strerror(err)}): it needs "
                                f"CAP_IPC_LOCK or a memlock limit above its size (LimitMEMLOCK=infinity)")
    raise ProcessSetupError(f"{key}: mlockall: {os.strerror(err)}")


PR_SET_DUMPABLE, PR_GET_DUMPABLE = 4, 3


def keep_out_of_dumps(prctl=None) -> None:
    """No core file and no same-user ptrace or /proc/PID/mem for this process (see the module's docstring);
    ProcessSetupError when the kernel refuses, so a secret is never loaded into a process that could leak it."""
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    call = prctl or _libc().prctl
    if call(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise ProcessSetupError(f"prctl(PR_SET_DUMPABLE, 0): {os.strerror(ctypes.get_errno())}")
