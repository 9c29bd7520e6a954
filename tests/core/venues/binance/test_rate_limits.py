"""Binance rate limits: exchangeInfo's rateLimits, the X-MBX-* headers, headroom, 429 back-off, 418 halt,
and the rate a token bucket may allow; with an injected clock, so every wait is exact."""
import json
import logging

import pytest

from ttquant.core.sim.captures import sample_data_dir
from ttquant.core.venues.binance.rate_limits import DEFAULT_BACKOFF_S, RateLimit, RateLimits

DATA = sample_data_dir() / "binance"


def _exchange_info(name):
    # a cryptofeed capture: "<url> -> <time>: <body>" on the first line
    return json.loads((DATA / name).read_text().split(": ", 1)[1].splitlines()[0])


SPOT = _exchange_info("cryptofeed_spot_exchangeinfo.0")
USDM = _exchange_info("cryptofeed_usdm_exchangeinfo.0")


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


def test_limits_from_the_recorded_exchange_info(clock):
    spot = RateLimits.from_exchange_info(SPOT, clock=clock)
    assert [lim.label for lim in spot.limits] == ["REQUEST_WEIGHT/1M", "ORDERS/10S", "ORDERS/1D", "RAW_REQUESTS/5M"]
    assert spot.limits[3] == RateLimit("RAW_REQUESTS", "MINUTE", 5, 6100) and spot.limits[3].window_s == 300
    usdm = RateLimits.from_exchange_info(USDM, clock=clock)
    assert usdm.remaining() == {"REQUEST_WEIGHT/1M": 2400, "ORDERS/1M": 1200, "ORDERS/10S": 300}
    assert usdm.headroom() == 1.0


def test_headers_are_read_and_headroom_is_the_tightest_limit(clock):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock)
    rl.on_response(200, [("Content-Type", "application/json"), ("x-mbx-used-weight-1m", "600"),
                         ("X-MBX-ORDER-COUNT-10S", "45"), ("X-MBX-ORDER-COUNT-1D", "1600"),
                         ("X-MBX-USED-WEIGHT", "600")])  # the old header without an interval: ignored
    assert rl.remaining() == {"REQUEST_WEIGHT/1M": 600, "ORDERS/10S": 5, "ORDERS/1D": 158400, "RAW_REQUESTS/5M": 6100}
    assert rl.headroom() == pytest.approx(0.1)  # 45 of 50 orders in 10 s
    assert rl.check(weight=1, orders=1) == "ORDERS/10S: 45 of 50 used"  # past the 0.8 safety share
    assert rl.check(weight=1, orders=0) is None                          # a query still goes
    clock.t += 10.0  # the 10-second window has rolled over; the minute and the day have not
    assert rl.remaining()["ORDERS/10S"] == 50 and rl.remaining()["REQUEST_WEIGHT/1M"] == 600
    assert rl.check(weight=1, orders=1) is None
    clock.t += 50.0
    assert rl.remaining()["REQUEST_WEIGHT/1M"] == 1200


def test_websocket_api_rate_limits_are_read_and_their_limits_are_the_venues_latest_word(clock):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock)       # 2021: 1200 weight a minute
    # the documented order.place answer's rateLimits (web-socket-api.md, "Unfilled Order Count"), and junk
    rl.on_ws_rate_limits([{"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 50,
                           "count": 12},
                          {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 160000,
                           "count": 4043},
                          {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000,
                           "count": 321},
                          {"rateLimitType": "ORDERS", "interval": "WEEK", "intervalNum": 1, "limit": 9, "count": 1},
                          {"rateLimitType": "ORDERS"}, "not a dict"])
    assert rl.remaining() == {"REQUEST_WEIGHT/1M": 6000 - 321, "ORDERS/10S": 38, "ORDERS/1D": 160000 - 4043,
                              "RAW_REQUESTS/5M": 6100}
    assert len(rl.limits) == 4
    fresh = RateLimits((), clock=clock)
    fresh.on_ws_rate_limits([{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                              "limit": 6000, "count": 5990}])
    assert fresh.check(weight=20) == "REQUEST_WEIGHT/1M: 5990 of 6000 used"
    fresh.on_ws_rate_limits(None)           # an answer without rateLimits changes nothing
    clock.t += 60.0
    assert fresh.check(weight=20) is None


def test_a_later_header_replaces_the_earlier_count(clock):
    rl = RateLimits.from_exchange_info(USDM, clock=clock)
    rl.on_response(200, {"X-MBX-USED-WEIGHT-1M": "2000"})
    rl.on_response(200, {"X-MBX-USED-WEIGHT-1M": "3"})
    assert rl.remaining()["REQUEST_WEIGHT/1M"] == 2397
    rl.on_response(200, {"X-MBX-USED-WEIGHT-1M": "not a number"})
    assert rl.remaining()["REQUEST_WEIGHT/1M"] == 2397


def test_raw_requests_are_counted_here_over_a_sliding_window(clock):
    rl = RateLimits([RateLimit("RAW_REQUESTS", "MINUTE", 5, 3)], clock=clock)
    for _ in range(3):
        rl.on_request()
        clock.t += 1
    assert rl.remaining() == {"RAW_REQUESTS/5M": 0}
    assert rl.check() == "RAW_REQUESTS/5M: 3 of 3 used"
    clock.t = 1000.0 + 300.5  # the first request has left the window
    assert rl.remaining() == {"RAW_REQUESTS/5M": 1}


def test_a_429_backs_off_for_retry_after_then_lets_requests_go(clock):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock)
    rl.on_response(429, {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "1201"})
    assert rl.backoff_until == 1007.0
    assert rl.check(weight=1) == "backing off after a 429 for 7.0 s more"
    assert rl.headroom() == 0.0 and rl.order_rate() == (0.0, 0.0)
    clock.t = 1006.9
    assert rl.check(weight=1) is not None
    clock.t = 1007.0
    assert rl.check(weight=1) == "REQUEST_WEIGHT/1M: 1201 of 1200 used"  # the minute has not rolled over yet
    clock.t = 1060.0
    assert rl.check(weight=1) is None and rl.counts["429"] == 1


def test_a_429_without_retry_after_waits_a_whole_window(clock):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock)
    rl.on_response(429, {})
    assert rl.backoff_until == 1000.0 + DEFAULT_BACKOFF_S


def test_a_418_halts_until_resumed_and_says_so_once(clock, caplog):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock)
    with caplog.at_level(logging.ERROR, logger="ttquant.venues.binance"):
        rl.on_response(418, {"Retry-After": "120"})
        rl.on_response(418, {"Retry-After": "240"})
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "halted" in caplog.records[0].getMessage()
    assert rl.halted is not None and rl.banned_until == 1240.0 and rl.counts["418"] == 2
    clock.t += 10_000  # the ban is over, but order entry stays stopped until an operator says so
    assert rl.check(weight=1, orders=1).startswith("order entry halted")
    assert rl.order_rate() == (0.0, 0.0)
    rl.resume()
    assert rl.check(weight=1, orders=1) is None


def _worst_window(rl, rate, burst):
    """The largest share of a limit the bucket can use in one of its windows."""
    return max((burst + rate * lim.window_s) / lim.limit for lim in rl.limits if lim.kind == "ORDERS")


def test_order_rate_keeps_every_window_within_its_safety_share(clock):
    rl = RateLimits.from_exchange_info(SPOT, clock=clock, safety=0.8)
    rate, burst = rl.order_rate()
    assert rate == pytest.approx(0.9 * 160000 * 0.8 / 86400)  # the day's limit is the tightest sustained rate
    assert burst == pytest.approx(50 * 0.8 - rate * 10)       # the 10-second window leaves the least
    assert burst > 25 and _worst_window(rl, rate, burst) == pytest.approx(0.8)
    usdm = RateLimits.from_exchange_info(USDM, clock=clock)
    usdm_rate, usdm_burst = usdm.order_rate()
    assert usdm_rate == pytest.approx(0.9 * 1200 * 0.8 / 60)  # 14.4/s: the minute's 1200 orders
    assert usdm_burst == pytest.approx(96)                     # 960 - 14.4 * 60 = 240 - 14.4 * 10
    assert _worst_window(usdm, usdm_rate, usdm_burst) == pytest.approx(0.8)
    # orders that cost 10 weight each make the weight limit (2400/min) the tightest
    assert usdm.order_rate(order_weight=10)[0] == pytest.approx(0.9 * 2400 * 0.8 / 60 / 10)


def test_bad_limits_are_refused_at_construction():
    with pytest.raises(ValueError):
        RateLimits([RateLimit("ORDERS", "WEEK", 1, 10)])
    with pytest.raises(ValueError):
        RateLimits([RateLimit("ORDERS", "SECOND", 10, 0)])
    with pytest.raises(ValueError):
        RateLimits([], safety=0)
