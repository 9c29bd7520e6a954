"""Read-only views of rings for tools: `ttquant rings ls` / `inspect`, metrics later.

Nothing here takes a role or writes to a segment: it maps read-only and copies what it shows.
"""
from __future__ import annotations

import numpy as np

from ttquant.core.records import RecordType, dtype_for
from ttquant.core.rings.segment import KIND_NAMES, KIND_SPSC, RingError, RingSegment, list_segments

__all__ = ["ring_info", "ring_infos", "last_records", "record_type_name"]


def record_type_name(record_type: int) -> str:
    try:
        return RecordType(record_type).name.lower()
    except ValueError:
        return f"type{record_type}"


def _info(seg: RingSegment) -> dict:
    h = seg.header_fields()
    status = seg.status()
    info = {
        "name": seg.name,
        "kind": KIND_NAMES[h["ring_kind"]],
        "record": record_type_name(h["record_type"]),
        "record_size": h["record_size"],
        "capacity": h["capacity"],
        "writer_pid": h["writer_pid"],
        "writer_alive": status["writer_alive"],
        "epoch": h["writer_epoch"],
        "write_position": h["write_position"],
        "heartbeat_age_ns": status["heartbeat_age_ns"] if h["heartbeat_ns"] else None,
        "created_ns": h["created_ns"],
        "rejected_full": h["rejected_full"],
        "wakeups": h["wakeups"],
        "sleep_announced": h["sleep_announced"],
        "writer_fences": bool(h["writer_fences"]),
        "header": h,
    }
    if h["ring_kind"] == KIND_SPSC:
        info.update(read_position=h["read_position"], reader_pid=h["reader_pid"],
                    reader_alive=status["reader_alive"],
                    unread=h["write_position"] - h["read_position"])
    return info


def ring_info(name: str) -> dict:
    """Header, liveness and counters of one ring (RingError if it is not a usable ring)."""
    seg = RingSegment.attach(name, read_only=True)
    try:
        return _info(seg)
    finally:
        seg.close()


def ring_infos() -> list[dict]:
    """ring_info of every segment in /dev/shm; unusable ones carry an "error" instead."""
    infos = []
    for name in list_segments():
        try:
            infos.append(ring_info(name))
        except (RingError, OSError) as exc:
            infos.append({"name": name, "error": str(exc)})
    return infos


def last_records(name: str, count: int) -> tuple[dict, np.ndarray]:
    """(ring_info, the last `count` records still in the ring, oldest first, decoded)."""
    seg = RingSegment.attach(name, read_only=True)
    try:
        info = _info(seg)
        try:
            dtype = dtype_for(info["header"]["record_type"])
        except KeyError:
            dtype = np.dtype(f"V{info['record_size']}")
        end = info["write_position"]
        start = max(0, end - count, end - info["capacity"] + 1)
        rows, positions = [], []
        for position in range(start, end):
            raw = seg.read_at(position)
            if raw is not None:         # overwritten while we looked: leave it out
                rows.append(raw)
                positions.append(position)
        records = np.frombuffer(b"".join(rows), dtype=dtype) if rows else np.zeros(0, dtype)
        info["positions"] = positions
        return info, records
    finally:
        seg.close()
