"""Lock-free shared-memory rings (DESIGN.md §2; layout in core/includes/ring_layout.h).

BroadcastWriter / BroadcastReader: one writer that never waits, readers with their own
cursors; a lapped reader counts and reports its loss. SpscWriter / SpscReader: one writer,
one reader; a full ring refuses at once and nothing is overwritten.
"""
from ttquant.core.rings.broadcast import BroadcastReader, BroadcastWriter
from ttquant.core.rings.segment import (
    HEADER_SIZE,
    KIND_BROADCAST,
    KIND_NAMES,
    KIND_SPSC,
    LAYOUT_VERSION,
    RingBusyError,
    RingError,
    RingFullError,
    RingLayoutError,
    RingNotFoundError,
    RingSegment,
    list_segments,
    ring_name,
    unlink,
)
from ttquant.core.rings.spsc import SpscReader, SpscWriter
from ttquant.core.rings.wake import WAIT_MODES

__all__ = [
    "BroadcastReader", "BroadcastWriter", "SpscReader", "SpscWriter", "RingSegment",
    "RingError", "RingLayoutError", "RingNotFoundError", "RingBusyError", "RingFullError",
    "ring_name", "list_segments", "unlink", "KIND_BROADCAST", "KIND_SPSC", "KIND_NAMES",
    "HEADER_SIZE", "LAYOUT_VERSION", "WAIT_MODES",
]
