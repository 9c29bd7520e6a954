"""What every shared-memory name is, in one place (DESIGN.md §2, §8).

A ring is `/ttq.<rings>.<kind>[.<owner>]`: `<rings>` is the stack's name (the venue in
production, a unique name per test), `<kind>` what it carries. Files that sit beside the
rings in the same directory (instrument tables, control flags, instance locks) carry an
extension, so `list_segments` can tell them from rings.

    tick_ring("binance")            /ttq.binance.ticks          md -> strategies, gateway
    book_board("binance")           /ttq.binance.books          md's top-N books
    telemetry_segment("binance", "md")  /ttq.binance.telemetry.md   a process's counters (core/telemetry)
    exec_ring("binance")            /ttq.binance.exec           gateway -> strategies
    order_ring("binance", "mm")     /ttq.binance.orders.mm      strategy mm -> gateway
"""
from __future__ import annotations

import os
import re

__all__ = [
    "SHM_DIR", "ring_name", "shm_path", "tick_ring", "book_board", "telemetry_segment", "exec_ring", "order_ring",
    "order_ring_prefix", "instruments_file", "kill_switch_file", "instance_lock_file", "stack_entries",
    "check_rings_name",
]

SHM_DIR = "/dev/shm"            # where POSIX shared memory lives on Linux (shm_open's names)
_NAME_PART = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def check_rings_name(rings: str) -> str:
    if not isinstance(rings, str) or not _NAME_PART.match(rings):
        raise ValueError(f"rings name {rings!r} must match [a-z0-9][a-z0-9_-]*")
    return rings


def ring_name(rings: str, kind: str, owner: str | None = None) -> str:
    """/ttq.<rings>.<kind>[.<owner>], each part lower-case [a-z0-9_-]."""
    parts = [rings, kind] + ([owner] if owner is not None else [])
    for part in parts:
        if not isinstance(part, str) or not _NAME_PART.match(part):
            raise ValueError(f"ring name part {part!r} must match [a-z0-9][a-z0-9_-]*")
    return "/ttq." + ".".join(parts)


def shm_path(name: str) -> str:
    """The file behind a segment name: /ttq.binance.ticks -> /dev/shm/ttq.binance.ticks."""
    return SHM_DIR + name if name.startswith("/") else os.path.join(SHM_DIR, name)


def tick_ring(rings: str) -> str:
    return ring_name(rings, "ticks")


def book_board(rings: str) -> str:
    return ring_name(rings, "books")


def telemetry_segment(rings: str, process: str) -> str:
    """The telemetry of one process of a stack: "md", "gateway", "recorder", "ship", "strategy-mm"."""
    return ring_name(rings, "telemetry", process)


def exec_ring(rings: str) -> str:
    return ring_name(rings, "exec")


def order_ring(rings: str, strategy: str) -> str:
    return ring_name(rings, "orders", strategy)


def order_ring_prefix(rings: str) -> str:
    """The file-name prefix of every strategy's order ring of a stack (in SHM_DIR)."""
    return ring_name(rings, "orders")[1:] + "."


def instruments_file(rings: str, directory: str = SHM_DIR) -> str:
    return os.path.join(directory, f"ttq.{check_rings_name(rings)}.instruments.json")


def kill_switch_file(rings: str) -> str:
    return os.path.join(SHM_DIR, f"ttq.{check_rings_name(rings)}.kill_switch.ctl")


def instance_lock_file(rings: str, role: str, name: str | None = None) -> str:
    """The lock a daemon holds while it runs: one md, one gateway, one recorder per stack,
    one strategy of a name per stack (core/daemon/instance_lock.py)."""
    parts = [rings, role] + ([name] if name else [])
    for part in parts:
        if not _NAME_PART.match(part):
            raise ValueError(f"lock name part {part!r} must match [a-z0-9][a-z0-9_-]*")
    return os.path.join(SHM_DIR, "ttq." + ".".join(parts) + ".lock")


def stack_entries(rings: str) -> list[str]:
    """Every file of a stack in SHM_DIR (rings, board, tables, flags, locks), as paths."""
    prefix = f"ttq.{check_rings_name(rings)}."
    try:
        return sorted(os.path.join(SHM_DIR, e) for e in os.listdir(SHM_DIR) if e.startswith(prefix))
    except FileNotFoundError:
        return []
