"""Why a campaign is held back (api/dashboard/holdback.py), from what status tells."""

from __future__ import annotations

from mailspool.api.dashboard.holdback import Situation, held_by

NOW = 1_000_000.0


def kinds(s: Situation) -> list[str]:
    return [h["limit"] for h in held_by(s, NOW)]


def test_nothing_pending_is_held_by_nothing() -> None:
    assert held_by(Situation(pending=0, paused=True, rate=10, limit=10), NOW) == []


def test_each_limit_is_named() -> None:
    assert kinds(Situation(pending=5, paused=True)) == ["paused"]
    assert kinds(Situation(pending=5, rate=9.5, limit=10)) == ["rate"]
    assert kinds(Situation(pending=5, rate=2.0, limit=10)) == []
    relay = Situation(pending=5, relays=[{"name": "a", "state": "paused", "reason": "421 busy"}])
    assert held_by(relay, NOW) == [{"limit": "relay", "detail": "relay a paused: 421 busy"}]
    assert kinds(Situation(pending=5, gates_paused=1)) == ["relay"]
    parked = Situation(pending=5, next_due=NOW + 30, last_error="relay paused: 421 4.3.2 busy")
    assert held_by(parked, NOW) == [{"limit": "relay", "detail": "relay paused: 421 4.3.2 busy"}]
    slowed = {"name": "gmail", "rate": 2.0, "ceiling": 10.0, "suspended_for": 0}
    assert held_by(Situation(pending=5, providers=[slowed]), NOW)[0]["detail"] == (
        "gmail slowed to 2/s of 10/s"
    )
    suspended = {"name": "yahoo", "suspended_for": 30.0, "last_reply": "421 4.7.0 too fast"}
    assert kinds(Situation(pending=5, providers=[suspended])) == ["provider"]
    held = Situation(pending=5, last_error="held back: outlook at 3/s")
    assert held_by(held, NOW) == [{"limit": "provider", "detail": "outlook at 3/s"}]
    window = Situation(pending=5, next_due=NOW + 3600, schedule={"windows": ["09:00-17:00"]})
    assert kinds(window) == ["window"]
    retry = Situation(pending=5, deferred=5, next_due=NOW + 60, last_error="451 try later")
    assert kinds(retry) == ["retry"]


def test_several_limits_at_once() -> None:
    s = Situation(pending=5, paused=True, rate=10.0, limit=10.0, gates_paused=1)
    assert kinds(s) == ["paused", "relay", "rate"]
