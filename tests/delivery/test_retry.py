"""RetryPolicy: exponential backoff with jitter, a cap, max attempts and max age."""

from __future__ import annotations

import random

import pytest

from mailspool.delivery.retry import RetryPolicy
from mailspool.errors import ConfigError
from mailspool.models import DeadReason

MIN, HOUR, DAY = 60.0, 3600.0, 86400.0


def test_defaults_match_the_design() -> None:
    """First retry 5 minutes, doubling, capped at about an hour, give up after 5 days."""
    p = RetryPolicy()
    assert p.first == 5 * MIN
    assert p.factor == 2
    assert 50 * MIN <= p.max_delay <= 70 * MIN
    assert p.max_age == 5 * DAY
    assert p.max_attempts == 0  # no count limit: max_age decides
    assert 0 < p.jitter < 0.5


@pytest.mark.parametrize(
    ("attempts", "base"),
    [
        (0, 300.0),  # defensive: "no attempt yet" waits the first delay
        (1, 300.0),
        (2, 600.0),
        (3, 1200.0),
        (4, 2400.0),
        (5, 3600.0),  # 4800 capped
        (6, 3600.0),
        (50, 3600.0),
        (10_000, 3600.0),  # no float overflow for absurd counts
    ],
)
def test_default_schedule(attempts: int, base: float) -> None:
    assert RetryPolicy().base_delay(attempts) == base
    assert RetryPolicy(jitter=0).delay(attempts) == base


@pytest.mark.parametrize(
    ("first", "factor", "max_delay", "expected"),
    [
        (10, 3, 1000, [10, 30, 90, 270, 810, 1000, 1000]),
        (1, 2, 5, [1, 2, 4, 5, 5, 5, 5]),
        (60, 1, 3600, [60, 60, 60, 60, 60, 60, 60]),  # factor 1: constant
        (100, 1.5, 1e9, [100, 150, 225, 337.5, 506.25, 759.375, 1139.0625]),
        (600, 2, 300, [300] * 7),  # cap below the first delay: the cap wins
    ],
)
def test_delays_grow_by_the_factor_up_to_the_cap(
    first: float, factor: float, max_delay: float, expected: list[float]
) -> None:
    p = RetryPolicy(first=first, factor=factor, max_delay=max_delay, jitter=0)
    assert [p.delay(n) for n in range(1, 8)] == pytest.approx(expected)


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.2, 0.5])
@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 5, 8, 100])
def test_jitter_stays_within_bounds_of_the_base(jitter: float, attempts: int) -> None:
    p = RetryPolicy(jitter=jitter)
    base = p.base_delay(attempts)
    rng = random.Random(1234)
    delays = [p.delay(attempts, rng) for _ in range(2000)]
    assert all(base * (1 - jitter) <= d <= base * (1 + jitter) for d in delays)
    if jitter:
        # it actually spreads, both ways, rather than always adding or always removing
        assert min(delays) < base * (1 - jitter / 2)
        assert max(delays) > base * (1 + jitter / 2)
    else:
        assert set(delays) == {base}


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    p = RetryPolicy()
    a = [p.delay(n, random.Random(7)) for n in range(1, 10)]
    b = [p.delay(n, random.Random(7)) for n in range(1, 10)]
    assert a == b


@pytest.mark.parametrize(
    ("max_attempts", "attempts", "dead"),
    [
        (3, 1, False),
        (3, 2, False),
        (3, 3, True),  # the third failed attempt was the last
        (3, 4, True),
        (1, 1, True),
        (0, 1000, False),  # 0: no limit on the count
    ],
)
def test_max_attempts(max_attempts: int, attempts: int, dead: bool) -> None:
    p = RetryPolicy(max_attempts=max_attempts, max_age=1e9)
    got = p.next_attempt(attempts, created_at=0.0, now=100.0, rng=random.Random(0))
    if dead:
        assert got is DeadReason.MAX_ATTEMPTS
    else:
        assert isinstance(got, float)
        assert got > 100.0


def test_next_attempt_is_now_plus_the_delay() -> None:
    p = RetryPolicy(jitter=0)
    assert p.next_attempt(1, created_at=1000.0, now=1000.0) == 1300.0
    assert p.next_attempt(3, created_at=1000.0, now=5000.0) == 6200.0
    assert p.next_attempt(9, created_at=1000.0, now=5000.0) == 8600.0


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0.0, 300.0),  # fresh: the normal delay
        (5 * DAY - 2 * HOUR, 3600.0),
        (5 * DAY - 10 * MIN, 10 * MIN),  # the last try lands on the deadline itself
        (5 * DAY - 1, 1.0),
        (5 * DAY, DeadReason.EXPIRED),  # failed at the deadline: give up
        (6 * DAY, DeadReason.EXPIRED),
    ],
)
def test_max_age_expires(age: float, expected: float | DeadReason) -> None:
    p = RetryPolicy(jitter=0)
    attempts = 1 if age == 0 else 60
    got = p.next_attempt(attempts, created_at=1_000_000.0, now=1_000_000.0 + age)
    if isinstance(expected, DeadReason):
        assert got is expected
    else:
        assert isinstance(got, float)
        assert got - (1_000_000.0 + age) == pytest.approx(expected)


def test_never_schedules_past_the_deadline() -> None:
    p = RetryPolicy(first=60, max_delay=3600, max_age=DAY)
    rng = random.Random(3)
    now, attempts, created = 0.0, 0, 0.0
    while True:
        attempts += 1
        got = p.next_attempt(attempts, created, now, rng)
        if isinstance(got, DeadReason):
            assert got is DeadReason.EXPIRED
            break
        assert now < got <= created + DAY
        now = got
    assert now == created + DAY  # the last attempt was made at the deadline


def test_max_attempts_is_checked_before_max_age() -> None:
    p = RetryPolicy(max_attempts=2)
    assert p.next_attempt(2, created_at=0, now=10 * DAY) is DeadReason.MAX_ATTEMPTS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first": 0},
        {"first": -1},
        {"factor": 0.5},
        {"max_delay": 0},
        {"max_age": 0},
        {"max_attempts": -1},
        {"jitter": -0.1},
        {"jitter": 1.0},
    ],
)
def test_invalid_policies_are_config_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
