"""Logging and systemd's notify protocol, the same for every daemon (DESIGN.md §7).

Logs go to stderr. Under systemd (INVOCATION_ID or JOURNAL_STREAM set) lines carry no
timestamp (journald adds its own) and start with the syslog priority `<N>`, so
`journalctl -p warning -u ttquant-md@binance` filters by level.
"""
from __future__ import annotations

import logging
import os
import time

__all__ = ["configure_logging", "under_systemd", "Notifier", "LOG_LEVELS"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SYSLOG_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def under_systemd(env=os.environ) -> bool:
    return bool(env.get("INVOCATION_ID") or env.get("JOURNAL_STREAM"))


class _JournalFormatter(logging.Formatter):
    def format(self, record):
        prefix = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines() or [""])


def configure_logging(level: str | None = None, threads: bool = False, env=os.environ) -> str:
    """Root logging to stderr at $TTQ_LOG_LEVEL, else `level`, else INFO; the level taken."""
    chosen = (env.get("TTQ_LOG_LEVEL") or level or "INFO").upper()
    if chosen not in LOG_LEVELS:
        chosen = "INFO"
    fmt = "%(name)s" + (" %(threadName)s" if threads else "") + " %(levelname)s %(message)s"
    if under_systemd(env):
        formatter = _JournalFormatter(fmt)
    else:
        formatter = logging.Formatter("%(asctime)s " + fmt)
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(chosen)
    return chosen


class Notifier:
    """sd_notify when NOTIFY_SOCKET is set (Type=notify), else nothing. The watchdog is fed at
    a third of WATCHDOG_USEC (once a second without one); STATUS= is sent when it changes."""

    def __init__(self, env=os.environ, clock=time.monotonic):
        self._socket = None
        self._clock = clock
        if env.get("NOTIFY_SOCKET"):
            import sdnotify
            self._socket = sdnotify.SystemdNotifier()
        usec = int(env.get("WATCHDOG_USEC") or 0)
        pid = env.get("WATCHDOG_PID")
        if usec and (not pid or int(pid) == os.getpid()):
            self.watchdog_interval_s = usec / 3e6
        else:
            self.watchdog_interval_s = 1.0
        self._last_watchdog = float("-inf")
        self._status = None
        self.sent: list[str] = []           # what was sent, for tests without a socket
        self.record = False

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, text: str) -> None:
        if self.record:
            self.sent.append(text)
        if self._socket is not None:
            self._socket.notify(text)

    def __call__(self, text: str) -> None:
        self.send(text)

    def ready(self, status: str | None = None) -> None:
        self.send("READY=1")
        if status:
            self.status(status)

    def status(self, text: str) -> None:
        if text != self._status:
            self._status = text
            self.send("STATUS=" + text)

    def watchdog(self, now: float | None = None) -> bool:
        """WATCHDOG=1 if one is due; call it from the healthy loop as often as you like."""
        now = self._clock() if now is None else now
        if now - self._last_watchdog < self.watchdog_interval_s:
            return False
        self._last_watchdog = now
        self.send("WATCHDOG=1")
        return True

    def stopping(self, status: str | None = None) -> None:
        self.send("STOPPING=1")
        if status:
            self.status(status)
