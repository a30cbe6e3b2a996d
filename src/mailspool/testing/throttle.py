"""A provider that throttles: for a recording server's ``rcpt_hook``, refuse the
recipients of some domains with ``421 4.7.0`` whenever more than ``per_second`` of them
arrived in the last second, as Gmail answers a sender going too fast; take every other
recipient. Records when each of the provider's recipients was taken or refused, so a
test can see the rate settle."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable

__all__ = ["Throttler"]


class Throttler:
    """``domains``: the provider's recipient domains; ``per_second``: what it takes."""

    def __init__(
        self,
        domains: Iterable[str],
        per_second: float,
        reply: str = "421 4.7.0 Try again later, closing connection. (THROTTLED)",
    ) -> None:
        self.domains = {d.lower() for d in domains}
        self.per_second = per_second
        self.reply = reply
        self.taken: list[float] = []  # monotonic times of the provider's recipients taken
        self.refused: list[float] = []
        self.others: list[float] = []  # other providers' recipients, all taken
        self._recent: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def __call__(self, address: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            if address.rpartition("@")[2].lower() not in self.domains:
                self.others.append(now)
                return None
            while self._recent and self._recent[0] <= now - 1.0:
                self._recent.popleft()
            if len(self._recent) >= self.per_second:
                self.refused.append(now)
                return self.reply
            self._recent.append(now)
            self.taken.append(now)
            return None

    def refused_after(self, moment: float) -> int:
        with self._lock:
            return sum(1 for t in self.refused if t > moment)
