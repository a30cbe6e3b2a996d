"""The relay gate: after a relay-level failure (refused connection, 421, 5xx greeting,
authentication or TLS failure) every sender waits, with its own exponential backoff,
instead of burning through the queue."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mailspool.errors import DeliveryError


class RelayGate:
    """Whether the relay may be used now. A relay-level failure closes it for a pause
    that doubles from ``first`` seconds up to ``max_delay``; a success resets the
    backoff. ``clock`` (monotonic seconds) is there for tests."""

    def __init__(
        self,
        *,
        first: float = 5.0,
        max_delay: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < first <= max_delay:
            raise ValueError("the relay pause needs 0 < first <= max_delay")
        self.first = first
        self.max_delay = max_delay
        self._clock = clock
        self._until = -math.inf  # paused until this time on the clock
        self._delay = 0.0
        self.pauses = 0
        self.last_error: DeliveryError | None = None

    @property
    def paused(self) -> bool:
        """Closed: no sender may use the relay now."""
        return self._clock() < self._until

    def remaining(self) -> float:
        """Seconds until the gate opens again (0 when open)."""
        return max(0.0, self._until - self._clock())

    def pause(self, err: DeliveryError) -> float:
        """Close the gate; a failure while already paused does not extend the pause."""
        now = self._clock()
        if now < self._until:
            return self._until - now
        self._delay = self.first if self._delay == 0 else min(self.max_delay, self._delay * 2)
        self._until = now + self._delay
        self.pauses += 1
        self.last_error = err
        return self._delay

    def success(self) -> None:
        """A message went through: the next pause starts again at ``first``. A pause in
        progress is left to run out (the success may come from an older connection)."""
        self._delay = 0.0
