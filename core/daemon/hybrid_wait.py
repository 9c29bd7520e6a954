"""What a hot loop does when a pass found nothing: spin, then sleep, the same in every daemon.

    spin     poll again at once (pinned production cores: the lowest latency, a whole core)
    hybrid   spin `spin_polls` rounds, then sleep: on a ring's futex when the loop waits on one
             ring (the writer's next push wakes it at once), else in short sleeps that double
             up to `max_sleep_s` (a sleeping loop still answers within ~0.3 ms)

Hybrid is the default: two cores must carry many processes (DESIGN.md §2).
"""
from __future__ import annotations

import time

__all__ = ["HybridWait", "WAIT_MODES"]

WAIT_MODES = ("spin", "hybrid")


class HybridWait:
    def __init__(self, mode: str = "hybrid", spin_polls: int = 2_000, rounds_per_pass: int = 1,
                 min_sleep_s: float = 50e-6, max_sleep_s: float = 250e-6, futex_timeout_s: float = 250e-6,
                 sleep=time.sleep):
        if mode not in WAIT_MODES:
            raise ValueError(f"wait mode {mode!r}: one of {', '.join(WAIT_MODES)}")
        self.mode, self.spin_polls, self.rounds = mode, spin_polls, rounds_per_pass
        self.min_sleep_s, self.max_sleep_s = min_sleep_s, max_sleep_s
        self.futex_timeout_s = futex_timeout_s     # bounds the sleep so timers and housekeeping run
        self._sleep = sleep
        self._idle = 0
        self._sleep_s = min_sleep_s
        self.sleeps = 0                 # times it slept (futex or timer), for tests and status

    def busy(self) -> None:
        self._idle = 0
        self._sleep_s = self.min_sleep_s

    def idle(self, futex_wait=None) -> bool:
        """After a pass that found nothing. `futex_wait(timeout_s)` sleeps on a ring until a
        push (returns True if it took work); without one the loop sleeps a little. True when
        the wait itself took work."""
        self._idle += self.rounds
        if self.mode == "spin" or self._idle <= self.spin_polls:
            return False
        self.sleeps += 1
        if futex_wait is not None:
            if futex_wait(self.futex_timeout_s):
                self.busy()
                return True
            return False
        self._sleep(self._sleep_s)
        self._sleep_s = min(self._sleep_s * 2, self.max_sleep_s)
        return False
