"""RelayGate: after a relay-level failure every sender waits, with exponential backoff."""

from __future__ import annotations

import pytest

from mailspool.delivery.relay_gate import RelayGate
from mailspool.errors import ConnectError, ReplyError


class FakeClock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def refused() -> ConnectError:
    return ConnectError("connection refused", stage="connect")


def fail_after_each_pause(gate: RelayGate, clock: FakeClock, times: int) -> list[float]:
    """Fail, wait the pause out, fail again... return the pause lengths."""
    delays = []
    for _ in range(times):
        delays.append(gate.pause(refused()))
        assert gate.paused
        clock.now += delays[-1]
        assert not gate.paused
    return delays


def test_open_at_start() -> None:
    gate = RelayGate(clock=FakeClock(-100.0))  # any clock origin, even a negative one
    assert not gate.paused
    assert gate.remaining() == 0.0
    assert gate.pauses == 0


@pytest.mark.parametrize(
    ("first", "cap", "expected"),
    [
        (5.0, 300.0, [5, 10, 20, 40, 80, 160, 300, 300, 300]),
        (1.0, 8.0, [1, 2, 4, 8, 8, 8, 8, 8, 8]),
        (7.0, 7.0, [7] * 9),
    ],
)
def test_pause_doubles_up_to_the_cap(first: float, cap: float, expected: list[float]) -> None:
    clock = FakeClock(1000.0)
    gate = RelayGate(first=first, max_delay=cap, clock=clock)
    assert fail_after_each_pause(gate, clock, len(expected)) == expected
    assert gate.pauses == len(expected)


def test_defaults() -> None:
    clock = FakeClock()
    assert fail_after_each_pause(RelayGate(clock=clock), clock, 9)[0] == 5.0
    assert fail_after_each_pause(RelayGate(clock=clock), clock, 9)[-1] == 300.0


def test_failure_while_paused_does_not_extend_the_pause() -> None:
    clock = FakeClock(100.0)
    gate = RelayGate(first=5.0, max_delay=300.0, clock=clock)
    first_error = refused()
    assert gate.pause(first_error) == 5.0
    clock.now = 103.0
    # every sender that was in flight fails too: the gate keeps its end time
    for _ in range(10):
        assert gate.pause(ReplyError("busy", code=421, stage="mail")) == 2.0
    assert gate.remaining() == 2.0
    assert gate.pauses == 1
    assert gate.last_error is first_error
    clock.now = 105.0
    assert not gate.paused
    # ... and does not count towards the backoff either: the next pause is the second one
    assert gate.pause(refused()) == 10.0


def test_success_resets_the_backoff() -> None:
    clock = FakeClock()
    gate = RelayGate(first=5.0, max_delay=300.0, clock=clock)
    assert fail_after_each_pause(gate, clock, 4) == [5, 10, 20, 40]
    gate.success()
    assert fail_after_each_pause(gate, clock, 3) == [5, 10, 20]


def test_success_during_a_pause_lets_it_run_out() -> None:
    """A success from a message already in flight resets the backoff, not the pause."""
    clock = FakeClock()
    gate = RelayGate(first=5.0, max_delay=300.0, clock=clock)
    fail_after_each_pause(gate, clock, 2)
    gate.pause(refused())  # 20 s
    gate.success()
    assert gate.remaining() == 20.0
    clock.now += 20.0
    assert gate.pause(refused()) == 5.0


def test_remaining_counts_down() -> None:
    clock = FakeClock(50.0)
    gate = RelayGate(first=5.0, clock=clock)
    gate.pause(refused())
    for now, left in [(50.0, 5.0), (51.0, 4.0), (54.5, 0.5), (55.0, 0.0), (60.0, 0.0)]:
        clock.now = now
        assert gate.remaining() == left
        assert gate.paused is (left > 0)


@pytest.mark.parametrize(("first", "cap"), [(0.0, 10.0), (-1.0, 10.0), (10.0, 5.0)])
def test_invalid_settings(first: float, cap: float) -> None:
    with pytest.raises(ValueError, match="first"):
        RelayGate(first=first, max_delay=cap)
