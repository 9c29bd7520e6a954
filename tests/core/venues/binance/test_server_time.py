"""The server-time offset against a fake venue whose clock is 5 s ahead or behind ours, with a fake local
clock: timestamps pass Binance's documented recvWindow check where the raw local clock gets -1021."""
import time

import pytest

from ttquant.core.venues.binance.server_time import ClockOffset, ClockSyncError

ONE_WAY_MS = 15  # a request's trip to the venue in the acceptance checks


class Venue:
    """A local clock (ms) and a venue whose clock reads local + skew; each fetch takes (out, back) ms."""

    def __init__(self, skew_ms, legs=None):
        self.local, self.skew_ms = 1_000_000.0, skew_ms
        self.legs = iter(legs or [(ONE_WAY_MS, ONE_WAY_MS)] * 100)
        self.fetches, self.down = 0, False

    def clock_ms(self):
        return self.local

    def server_ms(self):
        return self.local + self.skew_ms

    def fetch_server_time(self):  # what GET /api/v3/time answers: {"serverTime": ...}
        if self.down:
            raise ConnectionError("venue unreachable")
        out, back = next(self.legs)
        self.fetches += 1
        self.local += out
        served = int(self.server_ms())
        self.local += back
        return served

    def accepts(self, timestamp_ms, recv_window_ms=5000):
        """Binance's documented check, when the request arrives ONE_WAY_MS after it was stamped."""
        server = self.server_ms() + ONE_WAY_MS
        return timestamp_ms < server + 1000 and server - timestamp_ms <= recv_window_ms


@pytest.mark.parametrize("skew_ms", [5000, -5000])
def test_a_skewed_venue_clock_is_measured_and_timestamps_pass_where_the_local_clock_fails(skew_ms):
    venue = Venue(skew_ms)
    offset = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms)
    assert offset.refresh() == skew_ms and offset.rtt_ms == 2 * ONE_WAY_MS and venue.fetches == 3
    assert not venue.accepts(int(venue.clock_ms()))  # -1021 without the offset
    assert offset.timestamp_ms() == int(venue.server_ms())
    assert venue.accepts(offset.timestamp_ms())
    venue.local += 60_000  # a minute later, same clocks: still right
    assert offset.timestamp_ms() == int(venue.server_ms()) and offset.age_ms() == 60_000


@pytest.mark.parametrize("legs, rtt", [
    ([(150, 10), (5, 5), (40, 90)], 10),
    ([(40, 90), (150, 10), (5, 5)], 10),
    ([(300, 1), (2, 300), (20, 21)], 41),
])
def test_the_sample_with_the_shortest_round_trip_wins(legs, rtt):
    venue = Venue(-5000, legs)
    offset = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms, samples=3)
    offset.refresh()
    out, back = next(leg for leg in legs if sum(leg) == rtt)
    # the midpoint is off by half the asymmetry of the round trip it came from; the slow ones were off by more
    assert offset.rtt_ms == rtt and offset.offset_ms == -5000 + (out - back) / 2


def test_a_drifted_clock_is_caught_up_by_a_refresh():
    venue = Venue(5000)
    offset = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms)
    offset.refresh()
    venue.local += 3_600_000
    venue.skew_ms = -5000  # our clock gained 10 s on the venue's since the last refresh
    assert not venue.accepts(offset.timestamp_ms())
    assert offset.age_ms() >= 3_600_000
    offset.refresh()
    assert venue.accepts(offset.timestamp_ms()) and offset.offset_ms == -5000 and offset.age_ms() == 0


def test_slow_or_backwards_samples_are_dropped_and_none_usable_is_an_error():
    venue = Venue(5000, [(900, 900), (3, 3), (-50, 10)])  # too slow; good; local clock stepped back mid-sample
    offset = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms, max_rtt_ms=1000)
    assert offset.refresh() == 5000 and offset.rtt_ms == 6
    venue = Venue(5000, [(900, 900)] * 3)
    slow = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms, max_rtt_ms=1000)
    with pytest.raises(ClockSyncError, match="no server-time sample of 3 came back within 1000"):
        slow.refresh()
    with pytest.raises(ClockSyncError, match="refresh"):
        slow.timestamp_ms()
    assert slow.age_ms() == float("inf")


def test_a_failed_refresh_keeps_the_last_offset():
    venue = Venue(-5000)
    offset = ClockOffset(venue.fetch_server_time, clock_ms=venue.clock_ms)
    offset.refresh()
    venue.down = True
    with pytest.raises(ConnectionError):
        offset.refresh()
    assert offset.offset_ms == -5000 and venue.accepts(offset.timestamp_ms())


def test_the_default_local_clock_gives_wall_clock_milliseconds_when_the_venue_agrees_with_us():
    offset = ClockOffset(lambda: time.time_ns() // 1_000_000)
    offset.refresh()
    assert abs(offset.timestamp_ms() - time.time_ns() // 1_000_000) < 100
    with pytest.raises(ValueError, match="samples"):
        ClockOffset(lambda: 0, samples=0)
