"""The kill switch: a flag in shared memory (kill_switch_file: /dev/shm/ttq.<venue>.kill_switch.ctl) that any operator
process sets and the gateway reads on every loop.

    0   magic b"TTQCTRL1"     8  engaged (u32)     12 changes (u32, +1 per switch)
    16  ts_ns of the last switch (i64)   24 pid (i32)   28 uid (i32)
    32  who (64 bytes, utf-8)            96 reason (128 bytes, utf-8)

`ttquant kill binance` engages it (every new order rejected with 5001, open orders
cancelled); `ttquant kill binance --release` releases it. Each switch is logged by the
gateway with who, when and why, and written to its order journal (KILL), from which the
shipper fills audit_log. Who: user@host of the process that set it, and the user sudo ran it
for ("alice via root@host"), so the audit names a person, not only root.
"""
from __future__ import annotations

import collections
import getpass
import mmap
import os
import struct
import time

from ttquant.core.rings.names import kill_switch_file

__all__ = ["KillSwitch", "KillState", "control_path", "operator"]

MAGIC = b"TTQCTRL1"
LAYOUT = struct.Struct("<8sIIqii64s128s")
SIZE = 4096


def control_path(venue: str) -> str:
    return kill_switch_file(venue)


def operator() -> str:
    """user@host, with the user sudo ran it for in front ("alice via root@host")."""
    me = f"{getpass.getuser()}@{os.uname().nodename}"
    sudo = os.environ.get("SUDO_USER", "")
    return f"{sudo} via {me}" if sudo and sudo != me.split("@")[0] else me


KillState = collections.namedtuple("KillState", "engaged changes ts_ns pid uid who reason")


class KillSwitch:
    """The control segment of a venue; created on first use, mode 0660."""

    def __init__(self, venue: str, create: bool = True):
        self.path = control_path(venue)
        flags = os.O_RDWR | (os.O_CREAT if create else 0)
        fd = os.open(self.path, flags, 0o660)
        try:
            if os.fstat(fd).st_size < SIZE:
                os.ftruncate(fd, SIZE)
            self.map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        if self.map[:8] != MAGIC:
            if self.map[:8] != b"\0" * 8:
                raise ValueError(f"{self.path}: not a TTQuant control segment")
            LAYOUT.pack_into(self.map, 0, MAGIC, 0, 0, 0, 0, 0, b"", b"")

    def read(self) -> KillState:
        magic, engaged, changes, ts, pid, uid, who, reason = LAYOUT.unpack_from(self.map, 0)
        return KillState(bool(engaged), changes, ts, pid, uid, who.rstrip(b"\0").decode(errors="replace"),
                         reason.rstrip(b"\0").decode(errors="replace"))

    @property
    def engaged(self) -> bool:
        return struct.unpack_from("<I", self.map, 8)[0] != 0

    @property
    def changes(self) -> int:
        return struct.unpack_from("<I", self.map, 12)[0]

    def set(self, engaged: bool, reason: str = "", who: str | None = None) -> KillState:
        who = who or operator()
        # the details first, the flag and the change count last: a reader that sees the new
        # count sees who did it
        struct.pack_into("<qii64s128s", self.map, 16, time.time_ns(), os.getpid(), os.getuid(),
                         who.encode()[:64], reason.encode()[:128])
        struct.pack_into("<II", self.map, 8, 1 if engaged else 0, self.changes + 1)
        return self.read()

    def close(self):
        self.map.close()
