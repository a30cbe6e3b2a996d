"""Timing what arrives: when each message reached a test SMTP server, and the most events
in any window of time."""

from __future__ import annotations

import time
from typing import Any

from mailspool.testing import RecordingSMTPServer


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most events in any half-open window [t, t + window) starting at an event."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t + window:
            j += 1
        best = max(best, j - i)
    return best


#: how late a message may reach the server after its turn on a loaded machine (a
#: process descheduled between the limiter and the socket); arrivals can only lag
#: their turns, never precede them
JITTER = 0.25


def assert_rate(times: list[float], rate: float, jitter: float = JITTER) -> None:
    """Arrivals at a server kept ``rate`` a second: on average (the first and the last
    are at least ``(n - 1) / rate`` apart, less the first one's lateness), and in every
    one-second window (at most ``rate`` plus what arrived late from the one before)."""
    times = sorted(times)
    if len(times) < 2:
        return
    span = times[-1] - times[0]
    least = (len(times) - 1) / rate - jitter
    assert span >= least, f"{len(times)} arrivals in {span:.2f}s: faster than {rate}/s"
    most = int(rate + rate * jitter)
    busiest = max_in_window(times)
    assert busiest <= most, f"{busiest} arrivals in one second (at {rate}/s, {most} at most)"


class ArrivalTimes:
    """When each message reached the test SMTP server, and for whom."""

    def __init__(self, server: RecordingSMTPServer) -> None:
        self.seen: list[tuple[float, str]] = []
        original = server.handler.handle_DATA

        async def handle_data(srv: Any, session: Any, envelope: Any) -> str:
            reply = await original(srv, session, envelope)
            self.seen.append((time.monotonic(), envelope.rcpt_tos[0]))
            return reply

        server.handler.handle_DATA = handle_data  # type: ignore[method-assign]

    def times(self, domain: str | None = None) -> list[float]:
        return [t for t, rcpt in self.seen if domain is None or rcpt.endswith("@" + domain)]
