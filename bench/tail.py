"""Where a latency benchmark's tail comes from, measured while it runs (tick_to_order).

Two sources, both read around the measured window only:

    ProcCounters   /proc per process: page faults, voluntary and involuntary context switches,
                   time runnable but waiting for a CPU (schedstat run_delay); /proc/stat steal
                   per CPU (the hypervisor). Always available, costs nothing during the run.
    KernelTrace    `perf record` of every context switch on every CPU (sched:sched_switch), and
                   the page faults and system calls of the processes under test, on
                   CLOCK_MONOTONIC. Optional: when perf is missing or not permitted the
                   benchmark runs without it (TTQ_BENCH_KERNEL_TRACE=0 turns it off).

`attribute` then takes each slow sample (over `threshold_ns`) and the two hops it is made of,
tick store -> order written (the strategy's CPU) and order written -> risk checked (the
gateway's CPU), and says who had that CPU meanwhile instead of the process that had work:
another process (the host's other work), the sidecars (record, ship, metrics, their
database, when they run beside), the tick writer, a kernel thread, the tracer, nobody
(the process was asleep: a hybrid wait's wake-up), or no one else at all (the process itself
was running: its own code, a collection, a page fault, or a vCPU the hypervisor did not run,
which the guest cannot tell apart from running).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time

import numpy as np

__all__ = ["ProcCounters", "KernelTrace", "attribute", "cpu_shares", "roles_of", "clock_offset_ns", "CAUSES"]

CAUSES = ("other_process", "sidecars", "tick_writer", "kernel_thread", "tracer", "asleep", "own_thread", "in_process")
KERNEL_COMMS = ("kworker", "ksoftirqd", "migration", "rcu", "kdamond", "irq/", "watchdog", "cpuhp", "kswapd",
                "khugepaged", "kcompactd", "jbd2", "idle_inject")


def clock_offset_ns() -> int:
    """CLOCK_REALTIME - CLOCK_MONOTONIC, from the closest of a few bracketed reads."""
    best = None
    for _ in range(20):
        m0 = time.monotonic_ns()
        r = time.time_ns()
        m1 = time.monotonic_ns()
        if best is None or m1 - m0 < best[0]:
            best = (m1 - m0, r - (m0 + m1) // 2)
    return best[1]


def _tids(pid):
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")}
    except FileNotFoundError:
        return set()


class ProcCounters:
    """Counters of some processes (all their threads) and of the CPUs, before and after."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self._before = None

    @staticmethod
    def _process(pid):
        out = {"minflt": 0, "majflt": 0, "voluntary_switches": 0, "involuntary_switches": 0, "run_delay_ns": 0}
        for tid in _tids(pid):
            base = f"/proc/{pid}/task/{tid}"
            try:
                with open(f"{base}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out["minflt"] += int(fields[7])
                out["majflt"] += int(fields[9])
                with open(f"{base}/status") as f:
                    for line in f:
                        if line.startswith("voluntary_ctxt_switches"):
                            out["voluntary_switches"] += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            out["involuntary_switches"] += int(line.split()[1])
                with open(f"{base}/schedstat") as f:
                    out["run_delay_ns"] += int(f.read().split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
        return out

    @staticmethod
    def _steal():
        ticks = os.sysconf("SC_CLK_TCK")
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3].isdigit():
                    parts = line.split()
                    out[parts[0]] = int(parts[8]) * 1_000_000_000 // ticks
        return out

    def start(self):
        self._before = ({k: self._process(p) for k, p in self.pids.items()}, self._steal(), time.monotonic_ns())

    def stop(self) -> dict:
        """Deltas: {"<name>_<counter>": n, "steal_ms_cpuN": ms, "seconds": s}."""
        before, steal0, t0 = self._before
        out = {}
        for k, p in self.pids.items():
            now = self._process(p)
            for c, v in now.items():
                out[f"{k}_{c}"] = v - before[k][c]
        for cpu, v in self._steal().items():
            out[f"steal_ms_{cpu}"] = round((v - steal0.get(cpu, v)) / 1e6, 1)
        out["seconds"] = round((time.monotonic_ns() - t0) / 1e9, 2)
        return out


_SWITCH = re.compile(r"\[(\d+)\]\s+(\d+)\.(\d+):\s+sched:sched_switch:.*?prev_pid=(\d+) .*?==> next_comm=(.*?) "
                     r"next_pid=(\d+)")
_OTHER = re.compile(r"^\s*\S.*?\s+(\d+)\s+\[(\d+)\]\s+(\d+)\.(\d+):\s+"
                    r"(exceptions:page_fault_user|raw_syscalls:sys_enter):"
                    r"(?:.*?NR (\d+))?(?:.*?address=(0x[0-9a-f]+))?")


class KernelTrace:
    """perf's record of context switches (every CPU) and of the page faults and system calls
    of `pids` (all their threads), for one measured window."""

    def __init__(self, path, pids):
        self.path = str(path)
        self.pids = list(pids)
        self.proc = None
        self.error = ""

    @staticmethod
    def wanted() -> bool:
        return os.environ.get("TTQ_BENCH_KERNEL_TRACE", "1") not in ("0", "") and shutil.which("perf") is not None

    def start(self) -> bool:
        tids = sorted(set().union(*(_tids(p) for p in self.pids))) if self.pids else []
        filt = " || ".join(f"common_pid == {t}" for t in tids) or "common_pid == 0"
        # a big buffer: perf wakes to write rarely, so the tracer itself seldom takes a CPU
        cmd = ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-m", "4M", "-o", self.path,
               "-e", "sched:sched_switch",
               "-e", "exceptions:page_fault_user", "--filter", filt,
               "-e", "raw_syscalls:sys_enter", "--filter", filt]
        try:
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
        except OSError as exc:
            self.error = str(exc)
            return False
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:          # recording once the file has its header
            if self.proc.poll() is not None:
                self.error = self.proc.stderr.read().decode()[-300:]
                self.proc = None
                return False
            if os.path.exists(self.path) and os.path.getsize(self.path) > 0:
                break
            time.sleep(0.05)
        time.sleep(0.3)
        return True

    def stop(self):
        """Stop recording; (switches per CPU {cpu: (t_ns array, next_pid array, comms)}, page
        faults [(t_ns, pid)], system calls [(t_ns, pid, nr)]), or None."""
        if self.proc is None:
            return None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        script = subprocess.run(["perf", "script", "-i", self.path, "--ns", "-F", "comm,tid,cpu,time,event,trace"],
                                capture_output=True, text=True)
        switches, faults, syscalls = {}, [], []
        for line in script.stdout.splitlines():
            if "sched_switch" in line:
                m = _SWITCH.search(line)
                if m:
                    cpu, t = int(m[1]), int(m[2]) * 1_000_000_000 + int(m[3])
                    switches.setdefault(cpu, []).append((t, int(m[6]), m[5]))
                continue
            m = _OTHER.match(line)
            if m:
                t = int(m[3]) * 1_000_000_000 + int(m[4])
                if m[5].startswith("exceptions"):
                    faults.append((t, int(m[1]), int(m[7] or "0", 16)))
                else:
                    syscalls.append((t, int(m[1]), int(m[6] or -1)))
        per_cpu = {}
        for cpu, ev in switches.items():
            ev.sort()
            per_cpu[cpu] = (np.array([e[0] for e in ev], np.int64), np.array([e[1] for e in ev], np.int64),
                            [e[2] for e in ev])
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        return per_cpu, faults, syscalls


def _who(pid, comm, roles):
    if pid == 0:
        return "asleep"
    role = roles.get(pid)
    if role is not None:
        return "sidecars" if role.startswith("sidecar") else role
    if comm.startswith("perf"):
        return "tracer"
    if comm.startswith(KERNEL_COMMS):
        return "kernel_thread"
    return "other_process"


def _occupants(per_cpu, cpu, a, b):
    """[(ns, pid, comm)] of who ran on cpu within [a, b] (monotonic ns)."""
    if cpu not in per_cpu:
        return []
    t, nxt, comms = per_cpu[cpu]
    i = max(int(np.searchsorted(t, a, "right")) - 1, 0)
    out = []
    while i < len(t) and t[i] < b:
        start = max(int(t[i]), a)
        end = min(int(t[i + 1]) if i + 1 < len(t) else b, b)
        if end > start:
            out.append((end - start, int(nxt[i]), comms[i]))
        i += 1
    return out


def roles_of(pids: dict[str, int]) -> dict[int, str]:
    """{thread id: role} of {role: pid} (read while the processes are alive)."""
    return {tid: role for role, pid in pids.items() for tid in (_tids(pid) or {pid})}


def attribute(rows, trace, pids, roles, cpus, offset_ns, threshold_ns=50_000):
    """rows: int64 (n, 4) of tick ts_pub, order ts_created, taken, checked (CLOCK_REALTIME).
    pids: {"strategy": pid, "gateway": pid, "writer": pid}, roles: roles_of(pids);
    cpus: {"strategy": cpu, "gateway": cpu}.
    Each sample over threshold_ns gets the cause that held its hop's CPU longest (in_process: no
    one but the process itself). Returns the extra_info dict."""
    lat = rows[:, 3] - rows[:, 0]
    slow = np.flatnonzero(lat > threshold_ns)
    hop1 = rows[:, 1] - rows[:, 0]
    hop2 = rows[:, 3] - rows[:, 1]
    out = {"threshold_ns": int(threshold_ns), "samples_over": int(len(slow)),
           "slow_hop_strategy": int(np.sum(hop1[slow] >= hop2[slow])),
           "slow_hop_gateway": int(np.sum(hop1[slow] < hop2[slow]))}
    if trace is None:
        return out
    per_cpu, faults, syscalls = trace
    main_tid = {role: pid for role, pid in pids.items()}
    causes = dict.fromkeys(CAUSES, 0)
    others: dict[str, int] = {}         # comm -> slow samples it was in
    fault_t = np.array(sorted(t for t, p, _ in faults if roles.get(p) in ("strategy", "gateway")), np.int64)
    sys_ev = sorted((t, p, nr) for t, p, nr in syscalls if roles.get(p) in ("strategy", "gateway"))
    sys_t = np.array([s[0] for s in sys_ev], np.int64)
    with_fault = with_syscall = 0
    syscall_nrs: dict[int, int] = {}
    for k in slow:
        pub, created, _taken, checked = (int(x) - offset_ns for x in rows[k])
        off, seen = {}, set()
        for role, a, b in (("strategy", pub, created), ("gateway", created, checked)):
            for ns, pid, comm in _occupants(per_cpu, cpus[role], a, b):
                who = _who(pid, comm, roles)
                if who == role and pid == main_tid[role]:
                    continue
                if who in ("strategy", "gateway"):
                    who = "own_thread" if who == role else "other_process"
                elif who == "writer":
                    who = "tick_writer"
                off[who] = off.get(who, 0) + ns
                if who == "other_process":
                    seen.add(comm)
        for comm in seen:
            others[comm] = others.get(comm, 0) + 1
        excess = int(lat[k]) - int(np.median(lat))
        top = max(off.items(), key=lambda kv: kv[1]) if off else ("in_process", 0)
        cause = top[0] if top[1] * 2 >= excess else "in_process"
        causes[cause] += 1
        a, b = pub, checked
        if len(fault_t) and np.searchsorted(fault_t, b) > np.searchsorted(fault_t, a):
            with_fault += 1
        lo, hi = np.searchsorted(sys_t, a), np.searchsorted(sys_t, b)
        if hi > lo:
            with_syscall += 1
            for s in sys_ev[lo:hi]:
                syscall_nrs[s[2]] = syscall_nrs.get(s[2], 0) + 1
    out["causes"] = causes
    out["other_process_top"] = dict(sorted(others.items(), key=lambda kv: -kv[1])[:5])
    out["with_page_fault"] = with_fault
    out["with_syscall"] = with_syscall
    out["syscall_nrs"] = {str(k): v for k, v in sorted(syscall_nrs.items(), key=lambda kv: -kv[1])[:5]}
    return out


def cpu_shares(trace, roles, cpus, a_ns, b_ns):
    """Over [a_ns, b_ns] (monotonic): per CPU, the ms each kind of task held it, the number of
    times another task took the CPU from the process that owns it, and the longest such stall."""
    if trace is None:
        return {}
    per_cpu = trace[0]
    out = {}
    for role, cpu in cpus.items():
        held: dict[str, int] = {}
        stalls, longest = 0, 0
        for ns, pid, comm in _occupants(per_cpu, cpu, a_ns, b_ns):
            who = _who(pid, comm, roles)
            if who == "sidecars":           # which one: sidecar_record, sidecar_ship, sidecar_postgres...
                who = roles[pid].rstrip("0123456789")
            held[who] = held.get(who, 0) + ns
            if who != role and who != "asleep":     # (a sidecar counts: it took the CPU)
                stalls += 1
                longest = max(longest, ns)
        out[f"cpu{cpu}"] = {"owner": role, "held_ms": {k: round(v / 1e6, 1) for k, v in held.items()},
                            "taken_away": stalls, "longest_us": longest // 1000}
    return out
