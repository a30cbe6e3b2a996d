"""The relay gate: after a relay-level failure (refused connection, 421, 5xx greeting,
authentication or TLS failure) every sender waits, with its own exponential backoff,
instead of burning through the queue."""

from __future__ import annotations

import asyncio
import contextlib
import time

from mailspool.errors import DeliveryError


class RelayGate:
    def __init__(self, first: float = 5.0, max_delay: float = 300.0) -> None:
        self.first = first
        self.max_delay = max_delay
        self._until = 0.0
        self._delay = 0.0
        self.pauses = 0
        self.last_error: DeliveryError | None = None

    @property
    def paused(self) -> bool:
        return time.monotonic() < self._until

    def remaining(self) -> float:
        return max(0.0, self._until - time.monotonic())

    def pause(self, err: DeliveryError) -> float:
        """Close the gate; a failure while already paused does not extend the pause."""
        now = time.monotonic()
        if now < self._until:
            return self._until - now
        self._delay = self.first if self._delay == 0 else min(self.max_delay, self._delay * 2)
        self._until = now + self._delay
        self.pauses += 1
        self.last_error = err
        return self._delay

    def success(self) -> None:
        self._delay = 0.0

    async def wait(self, stopping: asyncio.Event) -> None:
        while (left := self.remaining()) > 0 and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), left)
