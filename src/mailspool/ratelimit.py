"""Rate limits: parsing ``20/s`` style rates and spacing sends in time (no burst above
the rate, so no one-second window ever sees more than the limit)."""

from __future__ import annotations

import asyncio
import re
import time

from mailspool.errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*([a-z]+)\s*$")


def parse_rate(text: str) -> float:
    """Messages per second from ``20/s``, ``500/m`` or ``10000/h``."""
    m = _RATE.match(text.lower())
    if not m or m.group(2) not in _UNITS or float(m.group(1)) <= 0:
        raise ConfigError(f"bad rate {text!r}: use a positive number per s, m or h, e.g. 20/s")
    return float(m.group(1)) / _UNITS[m.group(2)]


class RateLimiter:
    """Spaces acquisitions ``1/rate`` seconds apart (a virtual schedule, GCRA-style)."""

    def __init__(self, per_second: float) -> None:
        self.interval = 1.0 / per_second
        self._next = 0.0
        self.waited = 0.0  # total seconds spent waiting, for metrics

    def reserve(self, now: float | None = None) -> float:
        """Reserve the next slot; returns how long to wait for it."""
        now = time.monotonic() if now is None else now
        slot = max(now, self._next)
        self._next = slot + self.interval
        return slot - now

    async def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            self.waited += wait
            await asyncio.sleep(wait)
