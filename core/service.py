"""What every daemon does the same way at start (DESIGN.md §7): logs to stderr (journald under
systemd) at $TTQ_LOG_LEVEL, and systemd's notify protocol when it runs as Type=notify."""
from __future__ import annotations

import logging
import os

__all__ = ["configure_logging", "SystemdNotify"]


def configure_logging(threads: bool = False) -> None:
    fmt = "%(asctime)s %(name)s" + (" %(threadName)s" if threads else "") + " %(levelname)s %(message)s"
    logging.basicConfig(level=os.environ.get("TTQ_LOG_LEVEL", "INFO"), format=fmt)


class SystemdNotify:
    """sd_notify("READY=1", ...) when NOTIFY_SOCKET is set (systemd Type=notify), else nothing."""

    def __init__(self):
        self._n = None
        if os.environ.get("NOTIFY_SOCKET"):
            import sdnotify
            self._n = sdnotify.SystemdNotifier()

    def __call__(self, text: str) -> None:
        if self._n is not None:
            self._n.notify(text)
