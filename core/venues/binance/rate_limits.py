"""Binance's rate limits as the venue counts them: request weight, orders, raw requests; 429 and 418.

The limits come from exchangeInfo's `rateLimits` (REQUEST_WEIGHT per IP, ORDERS per account,
RAW_REQUESTS per IP; spot and USDT-M futures alike). What is used of them comes back on every answer
(https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits, futures "General Info"):

    X-MBX-USED-WEIGHT-1M: 12          weight used in the current 1-minute window (per IP)
    X-MBX-ORDER-COUNT-10S: 3          orders placed in the current 10-second window (per account)
    X-MBX-ORDER-COUNT-1D: 1500

The header's suffix is intervalNum + the interval's first letter (S, M, H, D). No header counts
RAW_REQUESTS: those are counted here, over a sliding window (never less than the venue's count).
The WebSocket API says the same in every answer's `rateLimits` list (`on_ws_rate_limits`):

    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000, "count": 70}

with the limit itself: a limit exchangeInfo did not list is learnt from the first answer that names it, and
one the venue changed since exchangeInfo was read takes the answer's value.

A 429 means a limit was broken: send nothing until `Retry-After` seconds have passed (Binance's
documented warning: keep sending and the IP is banned, 418). A 418 is that ban: order entry stops,
is said once in the log at ERROR, and stays stopped until an operator calls `resume()` — a ban
is never retried through.

A used count is trusted for one window after it was seen: the venue's window has rolled over by then.
`order_rate()` gives the token bucket (core/gateway risk: orders_per_s, burst) a rate no limit can be
broken by, with `safety` of each limit kept in reserve for cancels, retries and other programs on the key.
"""
from __future__ import annotations

import collections
import functools
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from ttquant.core.venues.binance.errors import parse_retry_after

__all__ = ["RateLimit", "RateLimits"]

log = logging.getLogger("ttquant.venues.binance")

INTERVAL_S = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_HEADER_RE = re.compile(r"x-mbx-(used-weight|order-count)-(\d+)([smhd])", re.IGNORECASE)
_HEADER_KIND = {"used-weight": "REQUEST_WEIGHT", "order-count": "ORDERS"}
_LETTER_INTERVAL = {"s": "SECOND", "m": "MINUTE", "h": "HOUR", "d": "DAY"}
DEFAULT_BACKOFF_S = 60.0  # a 429 without Retry-After: the longest common window (weights reset each minute)


@dataclass(frozen=True)
class RateLimit:
    """One entry of exchangeInfo `rateLimits`."""
    kind: str           # REQUEST_WEIGHT, ORDERS, RAW_REQUESTS
    interval: str       # SECOND, MINUTE, HOUR, DAY
    interval_num: int
    limit: int

    @property
    def window_s(self) -> float:
        return float(INTERVAL_S[self.interval] * self.interval_num)

    @functools.cached_property
    def label(self) -> str:
        """`REQUEST_WEIGHT/1M`: the kind and the header's suffix."""
        return f"{self.kind}/{self.interval_num}{self.interval[0]}"


class RateLimits:
    """What is left of each limit, and whether a request may be sent now. `clock`: monotonic seconds."""

    def __init__(self, limits: Iterable[RateLimit], clock: Callable[[], float] = time.monotonic,
                 safety: float = 0.8):
        if not 0 < safety <= 1:
            raise ValueError(f"safety must be in (0, 1], got {safety}")
        self.limits = tuple(limits)
        for lim in self.limits:
            if lim.interval not in INTERVAL_S or lim.interval_num <= 0 or lim.limit <= 0:
                raise ValueError(f"rate limit {lim} cannot be used")
        self.clock, self.safety = clock, safety
        self._used: dict[str, tuple[int, float]] = {}   # label -> (used, when seen)
        self._read: dict[tuple, RateLimit] = {}         # a rateLimits entry's fields -> the limit they name
        self._raw: collections.deque[float] = collections.deque()
        self.backoff_until = 0.0                        # clock time before which nothing is sent (429)
        self.halted: str | None = None                  # why order entry stopped (418), until resume()
        self.banned_until: float | None = None          # the ban's end as the venue said (Retry-After)
        self.counts = collections.Counter()             # 429s, 418s, refused_locally

    @classmethod
    def from_exchange_info(cls, info: Mapping, **kw) -> RateLimits:
        return cls((RateLimit(r["rateLimitType"], r["interval"], int(r["intervalNum"]), int(r["limit"]))
                    for r in info["rateLimits"]), **kw)

    def __repr__(self) -> str:
        return f"RateLimits({', '.join(f'{lim.label}={lim.limit}' for lim in self.limits)})"

    # -- what the venue said ------------------------------------------------------------------------
    def on_request(self) -> None:
        """A request is about to leave (RAW_REQUESTS has no header: counted here)."""
        self._raw.append(self.clock())

    def on_response(self, status: int | None, headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        """Read the used counts from an answer's headers; a 429 starts a back-off, a 418 halts."""
        now = self.clock()
        retry_after = None
        for name, value in headers.items() if isinstance(headers, Mapping) else headers:
            if (m := _HEADER_RE.fullmatch(name)) is not None:
                kind, num, letter = _HEADER_KIND[m.group(1).lower()], int(m.group(2)), m.group(3).lower()
                try:
                    self._used[f"{kind}/{num}{_LETTER_INTERVAL[letter][0]}"] = (int(value), now)
                except ValueError:
                    continue
            elif name.lower() == "retry-after":
                retry_after = parse_retry_after(value)
        if status == 429:
            self.back_off(retry_after)
        elif status == 418:
            self.halt("HTTP 418: the IP is banned for breaking the request rate limits after 429s", retry_after)

    def on_ws_rate_limits(self, entries) -> None:
        """Read a WebSocket API answer's `rateLimits` (the used count of each limit, and the limit)."""
        if not isinstance(entries, list):
            return
        now = self.clock()
        for entry in entries:
            try:
                fields = (entry["rateLimitType"], entry["interval"], entry["intervalNum"], entry["limit"])
                lim = self._read.get(fields)    # every answer names the same few limits: read each once
                if lim is None:
                    lim = RateLimit(fields[0], fields[1], int(fields[2]), int(fields[3]))
                    if lim.interval not in INTERVAL_S or lim.interval_num <= 0 or lim.limit <= 0:
                        continue
                    self._read[fields] = lim
                count = int(entry["count"])
            except (KeyError, TypeError, ValueError):
                continue
            if lim not in self.limits:     # new, or changed since exchangeInfo: the answer is the fresher word
                self.limits = (*(known for known in self.limits if known.label != lim.label), lim)
            self._used[lim.label] = (count, now)

    def back_off(self, retry_after_s: float | None) -> None:
        """Send nothing for retry_after_s (DEFAULT_BACKOFF_S when the venue did not say)."""
        wait = DEFAULT_BACKOFF_S if retry_after_s is None else retry_after_s
        self.backoff_until = max(self.backoff_until, self.clock() + wait)
        self.counts["429"] += 1
        log.warning("Binance rate limit broken: no request for %.0f s", wait)

    def halt(self, reason: str, retry_after_s: float | None = None) -> None:
        """Stop order entry until resume(); said once, at ERROR."""
        self.counts["418"] += 1
        if retry_after_s is not None:
            self.banned_until = self.clock() + retry_after_s
        if self.halted is None:
            self.halted = reason
            log.error("order entry halted: %s%s; it stays halted until an operator resumes it", reason,
                      f" (banned for {retry_after_s:.0f} s)" if retry_after_s is not None else "")

    def resume(self) -> None:
        self.halted, self.banned_until = None, None

    # -- what may be sent ---------------------------------------------------------------------------
    def used(self, lim: RateLimit) -> int:
        """The venue's last count of `lim` while its window can still hold it (else 0)."""
        now = self.clock()
        if lim.kind == "RAW_REQUESTS":
            while self._raw and self._raw[0] <= now - lim.window_s:
                self._raw.popleft()
            return sum(1 for t in self._raw if t > now - lim.window_s)
        used, seen = self._used.get(lim.label, (0, now))
        return used if now - seen < lim.window_s else 0

    def remaining(self) -> dict[str, int]:
        """Label -> how much of the limit is left (may be negative after a breach)."""
        return {lim.label: lim.limit - self.used(lim) for lim in self.limits}

    def headroom(self) -> float:
        """The smallest fraction left of any limit, 0.0 .. 1.0 (0.0 while backing off or halted)."""
        if self.blocked() is not None:
            return 0.0
        return max(0.0, min((1.0 - self.used(lim) / lim.limit for lim in self.limits), default=1.0))

    def blocked(self) -> str | None:
        """Why nothing may be sent now, or None."""
        if self.halted is not None:
            return f"order entry halted: {self.halted}"
        wait = self.backoff_until - self.clock()
        if wait > 0:
            return f"backing off after a 429 for {wait:.1f} s more"
        return None

    def check(self, weight: int = 1, orders: int = 0) -> str | None:
        """Why a request of `weight` placing `orders` orders must not go now, or None when it may. It must
        leave each limit below its `safety` share; new orders are refused first, queries last."""
        reason = self.blocked()
        if reason is None:
            for lim in self.limits:
                cost = {"REQUEST_WEIGHT": weight, "ORDERS": orders, "RAW_REQUESTS": 1}.get(lim.kind, 0)
                if cost and self.used(lim) + cost > lim.limit * (self.safety if orders else 1.0):
                    reason = f"{lim.label}: {self.used(lim)} of {lim.limit} used"
                    break
        if reason is not None:
            self.counts["refused_locally"] += 1
        return reason

    def order_rate(self, order_weight: int = 1, burst_share: float = 0.1) -> tuple[float, float]:
        """(orders_per_s, burst) for a token bucket. In a window T the bucket lets through at most
        burst + rate * T orders; that stays within safety * L for every ORDERS limit L and for the weight
        the orders cost. The rate is (1 - burst_share) of the tightest sustained rate, so each window keeps
        a share for bursts: burst is the least any window leaves. (0, 0) while halted or backing off."""
        if not 0 < burst_share < 1:
            raise ValueError(f"burst_share must be in (0, 1), got {burst_share}")
        if self.blocked() is not None:
            return 0.0, 0.0
        caps = [(lim.limit * self.safety, lim.window_s) for lim in self.limits if lim.kind == "ORDERS"]
        caps += [(lim.limit * self.safety / order_weight, lim.window_s) for lim in self.limits
                 if lim.kind == "REQUEST_WEIGHT" and order_weight > 0]
        if not caps:
            return float("inf"), float("inf")
        rate = (1.0 - burst_share) * min(cap / window for cap, window in caps)
        return rate, min(cap - rate * window for cap, window in caps)
