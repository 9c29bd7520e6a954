"""Python's garbage collector off the trading path, for the daemons' loops.

CPython collects when allocations pass a threshold, wherever the code happens to be: on a
strategy's order path that is a pause of tens of microseconds to milliseconds (a full pass
walks every object). Here what start-up made is frozen (never scanned again), automatic
collection is off, and the loop collects the young generation once it has had nothing to do
for `idle_after_s` (at most every `min_interval_s`), and within `young_every_s` even when
busy; the middle generation every tenth time, everything every `full_every_s`.

    collector = IdleCollector(time.monotonic())       # after start-up: freezes what exists
    ...in the loop: collector.poll(now_s, busy)
"""
from __future__ import annotations

import gc

__all__ = ["IdleCollector"]


class IdleCollector:
    def __init__(self, now_s: float, idle_after_s: float = 200e-6, min_interval_s: float = 0.01,
                 young_every_s: float = 0.1, full_every_s: float = 60.0):
        self.idle_after_s, self.min_interval_s = idle_after_s, min_interval_s
        self.young_every_s, self.full_every_s = young_every_s, full_every_s
        gc.collect()
        gc.freeze()
        gc.disable()
        self.collections = [0, 0, 0]
        self._last = self._last_full = now_s
        self._busy_at = now_s
        self._young = 0

    def poll(self, now_s: float, busy: bool) -> int:
        """Collect if it is time: the generation collected, or -1 for none."""
        if busy:
            self._busy_at = now_s
        since = now_s - self._last
        if since < self.young_every_s and (since < self.min_interval_s or now_s - self._busy_at < self.idle_after_s):
            return -1
        generation = 0
        if now_s - self._last_full >= self.full_every_s:
            generation, self._last_full = 2, now_s
        elif self._young % 10 == 9:
            generation = 1
        self._young += 1
        gc.collect(generation)
        self.collections[generation] += 1
        self._last = now_s
        return generation

    def close(self):
        """Back to CPython's own collection (tests run many daemons in one process)."""
        gc.unfreeze()
        gc.enable()
