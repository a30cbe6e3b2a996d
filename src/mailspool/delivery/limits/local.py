"""Rate limits: parsing ``20/s`` style rates and spacing sends in time (no burst above
the rate, so no window of the rate's period ever sees more than the limit)."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable

from mailspool.errors import ConfigError

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$", re.ASCII)


def parse_rate(text: str) -> float:
    """Messages per second from ``20/s``, ``500/m`` or ``10000/h``."""
    m = _RATE.match(text.lower())
    count = float(m.group(1)) if m else 0.0
    if not m or m.group(2) not in _UNITS or not 0 < count < math.inf:
        raise ConfigError(f"bad rate {text!r}: use a positive number per s, m or h, e.g. 20/s")
    return count / _UNITS[m.group(2)]


class RateLimiter:
    """Spaces acquisitions exactly ``1/rate`` seconds apart, with no burst after idling.

    A virtual schedule (GCRA-style): the n-th slot of a busy period that started at
    ``anchor`` is ``anchor + n / rate``, computed from the anchor each time rather than
    by adding the interval up, so rounding never accumulates into an extra send per
    window. When the schedule has fallen behind the clock (idle), a new period starts now.
    """

    def __init__(
        self,
        per_second: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not 0 < per_second < math.inf:
            raise ConfigError(
                f"a rate limit must be a positive number per second, not {per_second}"
            )
        self.per_second = per_second
        self.interval = 1.0 / per_second
        self._clock = clock
        self._sleep = sleep
        self._anchor = -math.inf  # start of the current busy period
        self._n = 0  # slots handed out since the anchor
        self.waited = 0.0  # total seconds spent waiting, for metrics

    def reserve(self, now: float | None = None) -> float:
        """Reserve the next slot; returns how long to wait for it (0 if it is now)."""
        now = self._clock() if now is None else now
        if self._anchor + self._n / self.per_second <= now:
            self._anchor, self._n = now, 0  # idle: the schedule restarts from now
        wait = (self._anchor - now) + self._n / self.per_second
        self._n += 1
        return max(0.0, wait)

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self.waited += wait
            await self._sleep(wait)
