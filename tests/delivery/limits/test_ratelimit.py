"""Rate limits: parse_rate, and RateLimiter's schedule driven by an injected clock.

No test sleeps or measures time: the limiter is asked for slots at chosen instants, and the
instants it hands out (``now + wait``) are checked against the rate.
"""

from __future__ import annotations

import bisect
import random

import pytest

from mailspool.delivery.limits import RateLimiter, parse_rate
from mailspool.errors import ConfigError

# -- parse_rate -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "per_second"),
    [
        ("20/s", 20.0),
        ("500/m", 500 / 60),
        ("10000/h", 10000 / 3600),
        ("1/sec", 1.0),
        ("3/second", 3.0),
        ("30/min", 0.5),
        ("120/minute", 2.0),
        ("7200/hour", 2.0),
        ("0.5/s", 0.5),
        ("2.5/m", 2.5 / 60),
        (" 20 / S ", 20.0),
        ("20/S", 20.0),
        ("100000/s", 100000.0),
    ],
)
def test_parse_rate(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second, rel=1e-15)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "20",
        "/s",
        "20/",
        "20/d",
        "20/ms",
        "20/x",
        "0/s",
        "0.0/m",
        "-5/s",
        "+5/s",
        "abc/s",
        "20/s/s",
        "1e3/s",
        "20 per s",
        "20s",
        "inf/s",
        "nan/s",
        "9" * 400 + "/s",  # overflows to infinity
        ".5/s",
    ],
)
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match="rate"):
        parse_rate(text)


# -- RateLimiter --------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def most_in_any_window(slots: list[float], period: float, eps: float = 1e-9) -> int:
    """The largest number of slots in any half-open window [t, t + period).

    The busiest window starts at a slot, so only those starts need checking. ``eps`` (a
    nanosecond) absorbs float rounding in ``t + period``; it is far below any clock a
    relay counts with.
    """
    slots = sorted(slots)
    return max(bisect.bisect_left(slots, t + period - eps) - i for i, t in enumerate(slots))


def run(limiter: RateLimiter, arrivals: list[float]) -> list[float]:
    """Ask for a slot at each arrival time; return when each one may send."""
    return [t + limiter.reserve(now=t) for t in arrivals]


@pytest.mark.parametrize("rate", [1.0, 2.0, 3.0, 7.0, 10.0, 20.0, 49.0, 1000.0, 0.5])
def test_burst_is_spaced_exactly(rate: float) -> None:
    """Many callers at the same instant: the n-th waits exactly n/rate."""
    limiter = RateLimiter(rate)
    waits = [limiter.reserve(now=5000.0) for _ in range(200)]
    assert waits == [n / rate for n in range(200)]


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        ("1/s", 1, 1.0),
        ("3/s", 3, 1.0),
        ("7/s", 7, 1.0),
        ("10/s", 10, 1.0),
        ("20/s", 20, 1.0),
        ("49/s", 49, 1.0),
        ("500/m", 500, 60.0),
        ("10000/h", 10000, 3600.0),
    ],
)
@pytest.mark.parametrize("start", [0.0, 1.0, 12345.678, 987654.321])
def test_no_window_holds_more_than_the_rate(
    text: str, count: int, period: float, start: float
) -> None:
    limiter = RateLimiter(parse_rate(text))
    n = 3 * count + 7
    slots = run(limiter, [start] * n)  # everybody at once
    assert most_in_any_window(slots, period) == count
    # and the rate is reached, not undershot: n slots take (n - 1) intervals
    assert slots[-1] - slots[0] == pytest.approx((n - 1) * period / count)


def test_arrivals_faster_than_the_rate_are_queued_behind_each_other() -> None:
    limiter = RateLimiter(20.0)
    arrivals = [100.0 + i * 0.01 for i in range(100)]  # 100/s offered, 20/s allowed
    slots = run(limiter, arrivals)
    assert slots == pytest.approx([100.0 + i / 20 for i in range(100)], abs=1e-9)
    assert most_in_any_window(slots, 1.0) == 20


def test_arrivals_slower_than_the_rate_never_wait() -> None:
    limiter = RateLimiter(20.0)
    waits = [limiter.reserve(now=100.0 + i * 0.1) for i in range(50)]  # 10/s offered
    assert waits == [0.0] * 50


def test_idle_time_is_not_saved_up_for_a_burst() -> None:
    """After a quiet minute the next send goes at once, the one after it waits a full
    interval: the limiter never allows a burst above the rate."""
    limiter = RateLimiter(10.0)
    run(limiter, [0.0] * 10)  # busy until t=0.9
    waits = [limiter.reserve(now=60.0) for _ in range(5)]
    assert waits == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_a_caller_behind_the_schedule_goes_at_once() -> None:
    limiter = RateLimiter(4.0)
    assert limiter.reserve(now=10.0) == 0.0
    assert limiter.reserve(now=10.0) == 0.25  # slot 10.25
    assert limiter.reserve(now=10.5) == 0.0  # behind schedule: a new period starts
    assert limiter.reserve(now=10.5) == 0.25
    assert limiter.reserve(now=10.625) == 0.375  # slot 11.0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("rate", [3.0, 20.0, 37.0])
def test_random_arrivals(seed: int, rate: float) -> None:
    """Bursty, random arrivals: never more than ``rate`` in a second, and never an
    unnecessary wait (each slot is its arrival time or one interval after the last)."""
    rng = random.Random(seed)
    t, arrivals = 1000.0, []
    for _ in range(2000):
        t += rng.choice([0.0, 0.0, 0.001, rng.expovariate(rate / 2), rng.uniform(0, 3)])
        arrivals.append(t)
    limiter = RateLimiter(rate)
    slots = run(limiter, arrivals)
    assert all(s >= a for s, a in zip(slots, arrivals, strict=True))
    assert most_in_any_window(slots, 1.0) <= rate
    for i in range(1, len(slots)):
        prev, slot, arrival = slots[i - 1], slots[i], arrivals[i]
        assert slot == arrival or slot == pytest.approx(prev + 1 / rate, abs=1e-9)
        assert slot - prev >= 1 / rate - 1e-9


def test_reserve_uses_the_injected_clock() -> None:
    clock = FakeClock(50.0)
    limiter = RateLimiter(2.0, clock=clock)
    assert [limiter.reserve() for _ in range(3)] == [0.0, 0.5, 1.0]
    clock.now = 50.75
    assert limiter.reserve() == 0.75  # slot 51.5


async def test_acquire_sleeps_until_its_slot() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        await limiter.acquire()
    # everyone asked at once would be 0, .25, .5, ...; here each caller comes back after
    # its sleep, so each waits one interval
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]
    assert clock.now == 1.0
    assert limiter.waited == 1.0


async def test_acquire_without_contention_does_not_sleep() -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(4.0, clock=clock, sleep=clock.sleep)
    for i in range(5):
        clock.now = i * 1.0
        await limiter.acquire()
    assert clock.sleeps == []
    assert limiter.waited == 0.0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_limiter_rejects_nonsense_rates(bad: float) -> None:
    with pytest.raises(ConfigError):
        RateLimiter(bad)
