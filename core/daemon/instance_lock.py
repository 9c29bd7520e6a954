"""One running instance per role and stack, refused before it touches anything.

An flock on a file beside the rings (`/dev/shm/ttq.<rings>.<role>[.<name>].lock`), taken
first thing: a second md, gateway, recorder or strategy of the same name fails at once with
the pid of the one that runs. The kernel drops the lock when the holder dies, SIGKILL
included, so a restart never waits for a stale lock. The file is unlinked on a clean exit;
a taker checks that the file it locked is still the one at the path, so a lock being
removed at the same moment is never taken twice.
"""
from __future__ import annotations

import fcntl
import os

__all__ = ["InstanceLock", "LockHeld", "lock_holder"]


class LockHeld(RuntimeError):
    """Another live process holds the lock; says which."""

    def __init__(self, message: str, pid: int | None):
        super().__init__(message)
        self.pid = pid


class InstanceLock:
    def __init__(self, path: str, what: str):
        self.path, self.what = path, what
        self.fd = -1

    def acquire(self) -> InstanceLock:
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o660)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                raise LockHeld(f"{self.what} already runs" + (f" (pid {pid})" if pid else "")
                               + f": {self.path} is locked", pid) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                self.fd = fd
                return self
            os.close(fd)                # unlinked by its last holder as we took it: again
        raise LockHeld(f"{self.path}: could not be taken (it keeps changing)", None)

    @property
    def held(self) -> bool:
        return self.fd >= 0

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)        # while still held: the next taker makes a new file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def lock_holder(path: str) -> int | None:
    """The pid holding the lock at `path` (0 when the holder wrote none), or None when nobody
    does (no file, or a file left by a process that died)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read_pid(fd) or 0
    finally:
        os.close(fd)
    return None
