"""The dashboard's digest of the job events (api/dashboard/digest.py)."""

from __future__ import annotations

from mailspool.api.dashboard.digest import PAGE, EventDigest
from mailspool.queue.events import EventType, MemoryEventLog


async def test_events_are_folded_by_campaign_domain_job_and_address() -> None:
    log = MemoryEventLog()
    t = 1_000.0
    log.append(EventType.DEFERRED, at=t, job_id="j1", campaign="c", recipients=("Ann@Example.org",),
               detail="451 4.7.1 later", attempts=1)  # fmt: skip
    log.append(EventType.SENT, at=t + 1, job_id="j1", campaign="c", recipients=("ann@example.org",),
               detail="250 ok", attempts=2)  # fmt: skip
    log.append(EventType.SENT, at=t + 1, job_id="j2", campaign="c", recipients=("bob@other.net",))
    log.append(EventType.DEAD, at=t + 2, job_id="j3", campaign="c", recipients=("eve@other.net",),
               detail="550 5.1.1 no such user", reason="rejected_permanent")  # fmt: skip
    log.append(EventType.UNSUBSCRIBED, at=t + 3, recipients=("ann@example.org",), detail="news")
    digest = EventDigest(log)
    await digest.refresh()
    assert digest.caught_up and digest.read == 5
    found = digest.campaign("c")
    assert found is not None
    assert found.domains["example.org"] == {"deferred": 1, "sent": 1}
    assert found.domains["other.net"] == {"sent": 1, "dead": 1}
    assert [s.detail for s in found.deferrals] == ["451 4.7.1 later"]
    assert [(s.reason, s.detail) for s in found.deaths] == [
        ("rejected_permanent", "550 5.1.1 no such user")
    ]
    assert list(found.series) == [[1001, 2], [1002, 1]]
    assert [s.type for s in digest.trail("j1")] == ["deferred", "sent"]
    assert digest.trail("j2") == []  # sent at once: nothing to tell
    assert digest.jobs_of("ANN@example.org") == ["j1"]
    assert digest.campaign("nope") is None


async def test_a_long_log_is_read_a_few_pages_a_call() -> None:
    log = MemoryEventLog()
    for i in range(PAGE * 3):
        log.append(EventType.SENT, at=float(i), job_id=f"j{i}", campaign="c", recipients=("a@b.c",))
    digest = EventDigest(log)
    await digest.refresh(pages=2)
    assert not digest.caught_up and digest.read == PAGE * 2
    await digest.refresh(pages=2)
    assert digest.caught_up and digest.read == PAGE * 3
    log.append(EventType.SENT, at=1e6, job_id="new", campaign="c", recipients=("a@b.c",))
    await digest.refresh()
    assert digest.read == PAGE * 3 + 1
