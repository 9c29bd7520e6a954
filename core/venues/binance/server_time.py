"""The venue's clock as seen from here, so a signed request's `timestamp` is the venue's time.

Binance takes a SIGNED request only if `timestamp < serverTime + 1000` and
`serverTime - timestamp <= recvWindow`; otherwise it answers -1021 (INVALID_TIMESTAMP). A host clock
a few seconds off, or drifting since boot, fails every order. `ClockOffset` asks the server for its
time (`GET /api/v3/time` -> serverTime, or `/fapi/v1/time`) a few times, takes each answer as the
server's time at the midpoint of that round trip, keeps the sample with the shortest round trip
(its midpoint is the least wrong: by at most half the round trip) and adds that offset to a local
clock. The local clock defaults to CLOCK_MONOTONIC in ms: a step of the wall clock (NTP, an operator)
then changes nothing, and only drift between refreshes remains, which `refresh()` (called at start
and every few minutes) removes.

    offset = ClockOffset(fetch_server_ms=lambda: rest.get("/api/v3/time")["serverTime"])
    offset.refresh()
    params = signed_query(signer, order, timestamp_ms=offset.timestamp_ms())
"""
from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ClockOffset", "ClockSyncError"]


def _monotonic_ms() -> float:
    return time.monotonic_ns() / 1e6


class ClockSyncError(Exception):
    """No usable server-time sample (every round trip too slow or the local clock went backwards)."""


class ClockOffset:
    def __init__(self, fetch_server_ms: Callable[[], int], clock_ms: Callable[[], float] = _monotonic_ms,
                 samples: int = 3, max_rtt_ms: float = 1000.0):
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        self._fetch, self._clock = fetch_server_ms, clock_ms
        self.samples, self.max_rtt_ms = samples, max_rtt_ms
        self.offset_ms: float | None = None  # server time minus local clock
        self.rtt_ms: float | None = None  # round trip of the sample the offset came from
        self.measured_at_ms: float | None = None  # local clock when it was measured

    def refresh(self) -> float:
        """Measure again; the new offset (server minus local, ms). Errors of the fetch propagate."""
        return self.take_samples(self.measure())

    def measure(self, fetch_server_ms: Callable[[], int] | None = None) -> list[tuple[float, int, float]]:
        """`samples` (sent, server_ms, received) from fetch_server_ms (default: this offset's own fetch), for
        take_samples; errors of the fetch propagate."""
        fetch = fetch_server_ms or self._fetch
        samples = []
        for _ in range(self.samples):
            sent = self._clock()
            server_ms = fetch()
            samples.append((sent, server_ms, self._clock()))
        return samples

    def now_ms(self) -> float:
        """The local clock this offset is against (for samples taken elsewhere: take_samples)."""
        return self._clock()

    def take_samples(self, samples) -> float:
        """The offset from (sent, server_ms, received) samples taken elsewhere (a WebSocket API `time`
        request, on its own loop), local times from now_ms(); the shortest round trip wins."""
        best: tuple[float, float] | None = None
        for sent, server_ms, received in samples:
            rtt = received - sent
            if rtt < 0 or rtt > self.max_rtt_ms:
                continue
            if best is None or rtt < best[0]:
                best = (rtt, server_ms - (sent + received) / 2)
        if best is None:
            raise ClockSyncError(f"no server-time sample of {len(samples)} came back within {self.max_rtt_ms} ms")
        self.rtt_ms, self.offset_ms = best
        self.measured_at_ms = self._clock()
        return self.offset_ms

    def age_ms(self) -> float:
        """How long ago the offset was measured (infinite before the first refresh)."""
        return float("inf") if self.measured_at_ms is None else self._clock() - self.measured_at_ms

    def wall_offset_ms(self) -> float:
        """The venue's clock minus this host's wall clock (what an operator compares; offset_ms is against
        the monotonic clock, so steps of the wall clock do not move the timestamps we sign)."""
        return self.timestamp_ms() - time.time() * 1000

    def timestamp_ms(self) -> int:
        """The venue's time now, in ms, for a request's `timestamp`."""
        if self.offset_ms is None:
            raise ClockSyncError("no offset measured yet: call refresh() first")
        return int(self._clock() + self.offset_ms)
