"""One way to be a daemon (DESIGN.md §7): md, gateway, recorder and strategies are each a
`Daemon` subclass, and `run_daemon` does the rest the same way for all of them.

    run_daemon(MdDaemon, "binance", config_path=None)
        logging              stderr; journald-friendly under systemd; $TTQ_LOG_LEVEL, else
                             [process] log_level, else INFO
        config               /etc/ttquant/<role>.<instance>.toml unless given; checked whole
                             by the daemon's schema; a refusal names file and key: exit 2
        instance lock        taken before anything else is touched; held elsewhere: exit 4
        signals              SIGTERM/SIGINT stop (exit 0), SIGHUP reload, SIGUSR2 hangs the
                             hot loop when TTQ_TEST_FAULTS=1 (tests of the systemd watchdog)
        systemd notify       READY=1 from the daemon, WATCHDOG=1 from its healthy loop,
                             STATUS= in words (what it waits for, too), STOPPING=1
        CPUs, scheduling     [process] cpus, scheduling, priority
        memory               $TTQ_LOCK_MEMORY=1: mlockall before start (process.lock_memory)
        waiting              `wait_for` says what it waits for every few seconds (log and
                             STATUS=); [process] startup_timeout_s bounds it: exit 5
        the hot loop         `loop`: step, the hybrid wait, the GC policy, the watchdog

Exit codes (README, units' RestartPreventExitStatus=):
    0 stopped on request   1 internal error (a bug; the traceback is logged)
    2 configuration or usage error   3 a strategy stopped by its own handler's error
    4 another instance runs   5 what it needs did not come up within startup_timeout_s
"""
from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections.abc import Callable

from ttquant.core.daemon.config import ConfigError, Table, default_config_path, load_config
from ttquant.core.daemon.hybrid_wait import WAIT_MODES, HybridWait
from ttquant.core.daemon.instance_lock import InstanceLock, LockHeld
from ttquant.core.daemon.notify import LOG_LEVELS, Notifier, configure_logging
from ttquant.core.daemon.process import (
    SCHEDULING_POLICIES,
    ProcessSetupError,
    lock_memory,
    pin_thread,
    set_scheduling,
)

__all__ = [
    "Daemon", "ServiceRunner", "run_daemon", "ServiceError", "NotAvailable", "StopRequested",
    "ProcessTable", "LoopTable", "EXIT_OK", "EXIT_ERROR", "EXIT_CONFIG", "EXIT_STRATEGY_FAILED",
    "EXIT_ALREADY_RUNNING", "EXIT_NOT_AVAILABLE",
]

log = logging.getLogger("ttquant.daemon")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_STRATEGY_FAILED = 3
EXIT_ALREADY_RUNNING = 4
EXIT_NOT_AVAILABLE = 5
SAY_EVERY_S = 5.0           # a waiting daemon says what it waits for this often


class ServiceError(Exception):
    """An expected failure: logged as one line, the process exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_ERROR):
        super().__init__(message)
        self.code = code


class NotAvailable(ServiceError):
    """What the daemon needs did not come up within its startup timeout."""

    def __init__(self, message: str):
        super().__init__(message, EXIT_NOT_AVAILABLE)


class StopRequested(Exception):
    """SIGTERM while starting: stop cleanly, exit 0."""


class ProcessTable(Table):
    """[process]: the same in every daemon's file."""
    cpus: list[int] = []                # the process's CPUs (systemd's CPUAffinity= does it for units)
    scheduling: str = "other"           # other | batch | idle | fifo | rr
    priority: int = 0                   # fifo / rr: 1..99
    log_level: str = ""                 # DEBUG | INFO | WARNING | ERROR; $TTQ_LOG_LEVEL wins; default INFO
    startup_timeout_s: float = 0.0      # how long to wait for what it needs; 0: as long as it takes

    def __post_init__(self):
        if any(c < 0 for c in self.cpus):
            raise ValueError(f"cpus: CPU numbers are >= 0, got {self.cpus}")
        if self.scheduling not in SCHEDULING_POLICIES:
            raise ValueError(f"scheduling: one of {', '.join(SCHEDULING_POLICIES)}, got {self.scheduling!r}")
        if self.scheduling in ("fifo", "rr") and not 1 <= self.priority <= 99:
            raise ValueError(f"priority: {self.scheduling} needs a priority in 1..99, got {self.priority}")
        if self.log_level and self.log_level.upper() not in LOG_LEVELS:
            raise ValueError(f"log_level: one of {', '.join(LOG_LEVELS)}, got {self.log_level!r}")
        if self.startup_timeout_s < 0:
            raise ValueError(f"startup_timeout_s: must be >= 0, got {self.startup_timeout_s}")


class LoopTable(Table):
    """[loop]: how a hot loop waits and collects garbage (gateway, strategies)."""
    wait: str = "hybrid"                # spin (pinned cores) | hybrid (spin, then sleep)
    spin_polls: int = 2_000             # rounds over the rings before hybrid sleeps
    gc: str = "idle"                    # idle: Python's GC only when the loop is idle | python

    def __post_init__(self):
        if self.wait not in WAIT_MODES:
            raise ValueError(f"wait: one of {', '.join(WAIT_MODES)}, got {self.wait!r}")
        if self.spin_polls < 0:
            raise ValueError(f"spin_polls: must be >= 0, got {self.spin_polls}")
        if self.gc not in ("idle", "python"):
            raise ValueError(f"gc: idle or python, got {self.gc!r}")


class Daemon:
    """What a daemon is to the runner. Subclasses set `role` and `schema` and implement
    `start` (open what it needs, waiting with runner.wait_for), `serve` (until runner.stopping,
    returns the exit code), and may implement `reload`, `status` and `close`."""

    role = ""                           # the config file's and the lock's role: md, gateway, ...
    schema: type[Table] = Table
    log_threads = False                 # log lines name the thread (md)

    def __init__(self, cfg, runner: ServiceRunner):
        self.cfg, self.runner = cfg, runner

    @classmethod
    def load_config(cls, path: str, instance: str):
        return load_config(path, cls.schema, instance=instance)

    def locks(self) -> list[tuple[str, str]]:
        """(lock file, what it guards) to hold while running; the first is taken first."""
        return []

    def start(self) -> None:
        pass

    def serve(self) -> int:
        raise NotImplementedError

    def reload(self) -> None:
        log.info("SIGHUP: %s has nothing to reload (restart it to read its configuration again)", self.role)

    def status(self) -> str:
        return ""

    def on_stop_requested(self) -> None:
        """Called from the signal handler (keep it to setting flags)."""

    def close(self) -> None:
        pass


class ServiceRunner:
    def __init__(self, role: str, instance: str, notify: Notifier | None = None, env=os.environ,
                 clock=time.monotonic, sleep=time.sleep):
        self.role, self.instance = role, instance
        self.notify = notify or Notifier(env)
        self.env, self.clock, self.sleep = env, clock, sleep
        self.stopping = False
        self.reload_requested = False
        self.hang_requested = False
        self.faults_enabled = env.get("TTQ_TEST_FAULTS") == "1"
        self.startup_timeout_s = 0.0
        self.daemon: Daemon | None = None
        self.locks: list[InstanceLock] = []

    # -- signals --------------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        if self.faults_enabled:
            signal.signal(signal.SIGUSR2, self._on_hang)

    def _on_stop(self, signum, frame):
        self.request_stop()

    def request_stop(self):
        self.stopping = True
        if self.daemon is not None:
            self.daemon.on_stop_requested()

    def _on_reload(self, signum, frame):
        self.reload_requested = True

    def _on_hang(self, signum, frame):
        self.hang_requested = True

    def check_faults(self) -> None:
        """Called by a hot loop: with TTQ_TEST_FAULTS=1 and SIGUSR2 it hangs here for good."""
        if self.hang_requested:
            log.warning("test fault (TTQ_TEST_FAULTS=1, SIGUSR2): the %s loop hangs now", self.role)
            while True:
                time.sleep(3600)

    def take_reload(self) -> bool:
        """True once per SIGHUP (the loop calls the daemon's reload off the trading path)."""
        if self.reload_requested:
            self.reload_requested = False
            return True
        return False

    # -- waiting for what the daemon needs --------------------------------------------------------
    def wait_for(self, what: str, attempt: Callable, hint="", poll_s: float = 0.1,
                 timeout_s: float | None = None):
        """attempt() until it returns something other than None or False. Says what it waits
        for after a second and then every SAY_EVERY_S (log and STATUS=); feeds the watchdog
        (waiting is healthy); NotAvailable past the startup timeout; StopRequested on SIGTERM.
        `hint` is a string or a callable giving one (the last error seen)."""
        timeout_s = self.startup_timeout_s if timeout_s is None else timeout_s
        start = self.clock()
        say_at = start + 1.0
        while True:
            if self.stopping:
                raise StopRequested()
            value = attempt()
            if value is not None and value is not False:
                if self.clock() >= start + 1.0:
                    log.info("%s: there after %.1f s", what, self.clock() - start)
                return value
            now = self.clock()
            said = hint() if callable(hint) else hint
            if now >= say_at:
                say_at = now + SAY_EVERY_S
                log.info("waiting for %s%s (%.0f s so far)", what, f"; {said}" if said else "", now - start)
                self.notify.status(f"waiting for {what}")
            if timeout_s and now - start >= timeout_s:
                raise NotAvailable(f"{what} did not come up within {timeout_s:g} s" + (f"; {said}" if said else ""))
            self.notify.watchdog(now)
            self.sleep(poll_s)

    # -- the hot loop ---------------------------------------------------------------------------
    def loop(self, step: Callable[[], bool], wait: HybridWait, futex_wait=None, gc: str = "idle",
             every: Callable[[float], None] | None = None, check_every: int = 256) -> None:
        """step() until stopping: the hybrid wait after an idle pass, the GC policy, and every
        `check_every` passes (about a few ms) the watchdog, STATUS=, test faults and `every(now)`.

        futex_wait: None, or a callable returning the callable to sleep on now (or None)."""
        from ttquant.core.idle_gc import IdleCollector

        collector = IdleCollector(self.clock()) if gc == "idle" else None
        passes = 0
        try:
            while not self.stopping:
                busy = step()
                if collector is not None and (busy or not passes & 7):
                    collector.poll(self.clock(), busy)
                if busy:
                    wait.busy()
                else:
                    wait.idle(futex_wait() if futex_wait is not None else None)
                passes += 1
                if passes % check_every:
                    continue
                now = self.clock()
                self.check_faults()
                if self.notify.watchdog(now) and self.daemon is not None:
                    self.notify.status(self.daemon.status())
                if every is not None:
                    every(now)
        finally:
            if collector is not None:
                collector.close()

    # -- the whole life ---------------------------------------------------------------------------
    def take_locks(self, locks) -> None:
        for path, what in locks:
            self.locks.append(InstanceLock(path, what).acquire())

    def release_locks(self) -> None:
        for lock in reversed(self.locks):
            lock.release()
        self.locks.clear()

    def run(self, daemon_cls: type[Daemon], config_path: str | None = None, cfg=None) -> int:
        """The daemon's whole life; the process's exit code."""
        configure_logging(threads=daemon_cls.log_threads, env=self.env)
        name = f"ttquant {daemon_cls.role} {self.instance}".strip()
        if cfg is None:
            path = config_path or default_config_path(daemon_cls.role, self.instance)
            try:
                cfg = daemon_cls.load_config(path, self.instance)
            except ConfigError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return EXIT_CONFIG
        process = getattr(cfg, "process", None) or ProcessTable()
        configure_logging(process.log_level or None, threads=daemon_cls.log_threads, env=self.env)
        self.startup_timeout_s = process.startup_timeout_s
        self.install_signals()
        daemon = None
        opened = False
        code = EXIT_ERROR
        try:
            daemon = daemon_cls(cfg, self)
            self.daemon = daemon
            self.take_locks(daemon.locks())
            opened = True
            pin_thread(f"{daemon_cls.role} main thread", process.cpus)
            set_scheduling(process.scheduling, process.priority)
            if self.env.get("TTQ_LOCK_MEMORY", "") == "1":
                lock_memory()
            daemon.start()
            code = daemon.serve() if not self.stopping else EXIT_OK
        except StopRequested:
            log.info("stopped while starting")
            code = EXIT_OK
        except LockHeld as exc:
            log.error("%s", exc)
            code = EXIT_ALREADY_RUNNING
        except ConfigError as exc:      # found late: a file the config names (risk limits)
            log.error("%s", exc)
            code = EXIT_CONFIG
        except ProcessSetupError as exc:
            log.error("%s", exc)
            code = EXIT_CONFIG
        except ServiceError as exc:
            log.error("%s", exc)
            code = exc.code
        except Exception:
            log.exception("internal error; %s stops", name)
            code = EXIT_ERROR
        finally:
            self.notify.stopping()
            if opened:
                try:
                    daemon.close()
                except Exception:
                    log.exception("%s: error while closing", name)
                    code = code or EXIT_ERROR
            self.release_locks()
        return code


def run_daemon(daemon_cls: type[Daemon], instance: str, config_path: str | None = None, env=os.environ) -> int:
    return ServiceRunner(daemon_cls.role, instance, env=env).run(daemon_cls, config_path)
