"""One contract suite, run unchanged against every queue backend; and a check that every
backend class, queue or job store, implements every role (mailspool.queue.roles)."""

from __future__ import annotations

import asyncio
import inspect
import time
from dataclasses import replace
from typing import Any

import pytest

from mailspool.models import Enqueued, Outcome, State
from mailspool.queue import (
    QUEUES,
    STORES,
    Blobs,
    CampaignControl,
    CampaignSettings,
    Claiming,
    DeadFilter,
    DeadLetterAdmin,
    Enqueuing,
    Inspection,
    JobStore,
    LeaseAdmin,
    Queue,
    StoreCampaignControl,
    StoreClaiming,
    StoreDeadLetterAdmin,
    StoreEnqueuing,
    StoreLeaseAdmin,
    make_queue,
    queue_packs_messages,
)
from tests.support.jobs import make_job
from tests.support.queues import classes


async def test_enqueue_is_idempotent_and_tells_resume_from_duplicate(queue: Queue) -> None:
    assert await queue.enqueue([make_job(1), make_job(2)]) == [Enqueued.NEW, Enqueued.NEW]
    # same rows again (a re-run): pending; same key from another row: duplicate
    again = await queue.enqueue([make_job(1), make_job(2, row=99)])
    assert again == [Enqueued.PENDING, Enqueued.DUPLICATE]
    # the same id twice in one batch: the second is a duplicate
    assert await queue.enqueue([make_job(3), make_job(3, row=50)]) == [
        Enqueued.NEW,
        Enqueued.DUPLICATE,
    ]
    st = await queue.stats("c1")
    assert st.get(State.QUEUED) == 3


async def test_claim_leases_and_increments_attempts(queue: Queue) -> None:
    await queue.enqueue([make_job(i) for i in range(5)])
    a = await queue.claim("w1", 3, lease=30)
    b = await queue.claim("w2", 10, lease=30)
    assert len(a) == 3 and len(b) == 2
    assert not {j.id for j in a} & {j.id for j in b}
    assert all(j.attempts == 1 for j in a + b)
    assert await queue.claim("w3", 10, lease=30) == []
    st = await queue.stats()
    assert st.get(State.SENDING) == 5


async def test_claim_is_scoped_to_a_campaign(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="a"), make_job(1, campaign="b")])
    jobs = await queue.claim("w", 10, 30, campaign="b")
    assert [j.campaign for j in jobs] == ["b"]


async def test_expired_lease_is_claimed_again(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    first = await queue.claim("w1", 1, lease=0.05)
    assert len(first) == 1
    await asyncio.sleep(0.1)
    second = await queue.claim("w2", 1, lease=30)
    assert [j.id for j in second] == [first[0].id]
    assert second[0].attempts == 2
    # the first worker lost its lease: its outcome is not applied
    assert await queue.record("w1", [Outcome(first[0].id, State.SENT, "250 ok")]) == 0
    assert await queue.record("w2", [Outcome(first[0].id, State.SENT, "250 ok")]) == 1
    job = await queue.get(first[0].id)
    assert job is not None and job.state is State.SENT


async def test_reclaiming_an_expired_lease_counts_an_ambiguous_delivery(queue: Queue) -> None:
    await queue.enqueue([make_job(1), make_job(2)])
    await queue.claim("w1", 1, lease=0.05)
    await asyncio.sleep(0.1)
    assert len(await queue.claim("w2", 2, lease=30)) == 2
    assert (await queue.stats()).ambiguous == 1  # only the job whose lease expired


async def test_released_dead_owner_counts_ambiguous(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    await queue.claim("dead", 1, lease=300)
    await queue.release_owner("dead")
    assert (await queue.stats()).ambiguous == 1


async def test_a_job_enqueued_for_later_keeps_its_timezone_and_waits(queue: Queue) -> None:
    later = replace(make_job(1), not_before=time.time() + 0.3, timezone="Asia/Tokyo")
    await queue.enqueue([later, make_job(2)])
    stored = await queue.get(later.id)
    assert stored is not None and stored.timezone == "Asia/Tokyo"
    assert stored.state is State.DEFERRED and stored.attempts == 0
    assert (await queue.get(make_job(2).id)).timezone == ""  # type: ignore[union-attr]
    (now,) = await queue.claim("w1", 2, 30)
    assert now.id == make_job(2).id
    await asyncio.sleep(0.35)
    (due,) = await queue.claim("w1", 2, 30)
    assert due.id == later.id and due.timezone == "Asia/Tokyo" and due.attempts == 1


async def test_heartbeat_keeps_the_lease(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w1", 1, lease=0.2)
    for _ in range(4):
        await asyncio.sleep(0.1)
        await queue.extend("w1", [job.id], 0.2)
    assert await queue.claim("w2", 1, lease=30) == []


async def test_sent_is_recorded_once(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w1", 1, 30)
    assert await queue.record("w1", [Outcome(job.id, State.SENT, "250 ok")]) == 1
    assert await queue.record("w1", [Outcome(job.id, State.SENT, "250 ok")]) == 0
    assert await queue.claim("w1", 1, 30) == []
    assert await queue.enqueue([make_job(1)]) == [Enqueued.SENT]


async def test_deferred_job_waits_for_not_before(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w1", 1, 30)
    due = time.time() + 0.2
    await queue.record("w1", [Outcome(job.id, State.DEFERRED, "451 later", not_before=due)])
    st = await queue.stats()
    assert st.get(State.DEFERRED) == 1
    assert st.next_due == pytest.approx(due, abs=0.01)
    assert st.last_error == "451 later"
    # a job handed back without an attempt (no reply) does not hide the last error
    await queue.enqueue([make_job(2)])
    (other,) = await queue.claim("w1", 1, 30)
    await queue.release("w1", [other.id], not_before=time.time() + 60)
    assert (await queue.stats()).last_error == "451 later"
    assert await queue.claim("w1", 1, 30) == []
    await asyncio.sleep(0.25)
    (again,) = await queue.claim("w1", 2, 30)
    assert again.id == job.id and again.attempts == 2
    assert again.message_id == job.message_id


async def test_release_hands_back_without_counting_an_attempt(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w1", 1, 300)
    await queue.release("w1", [job.id])
    # back as never tried (what a stopping worker hands back): plain queued, and claiming
    # it again is no ambiguous delivery, as it is for a lease taken from a dead worker
    st = await queue.stats()
    assert (st.get(State.QUEUED), st.get(State.SENDING), st.ambiguous) == (1, 0, 0)
    (again,) = await queue.claim("w2", 1, 300)
    assert again.attempts == 1
    assert (await queue.stats()).ambiguous == 0


async def test_release_for_a_paused_relay_keeps_its_reply(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w1", 1, 300)
    await queue.release("w1", [job.id], not_before=time.time() + 60, reply="relay paused: 535")
    got = await queue.get(job.id)
    assert got is not None and got.state is State.DEFERRED
    assert got.attempts == 0 and got.last_reply == "relay paused: 535"
    assert (await queue.stats()).last_error == "relay paused: 535"


async def test_release_owner_reclaims_a_dead_workers_jobs(queue: Queue) -> None:
    await queue.enqueue([make_job(i) for i in range(3)])
    await queue.claim("dead-worker", 3, 300)
    assert await queue.lease_owners("c1") == ["dead-worker"]
    assert await queue.release_owner("dead-worker") == 3
    assert len(await queue.claim("w2", 10, 300)) == 3


async def test_dead_letters_filter_retry_and_purge(queue: Queue) -> None:
    await queue.enqueue([make_job(i) for i in range(3)] + [make_job(9, campaign="other")])
    jobs = await queue.claim("w", 10, 30)
    reasons = ["rejected_permanent", "too_large", "rejected_permanent", "expired"]
    await queue.record(
        "w",
        [Outcome(j.id, State.DEAD, "550 no", reason=r) for j, r in zip(jobs, reasons, strict=True)],
    )
    st = await queue.stats()
    assert st.get(State.DEAD) == 4
    perm = await queue.dead_letters(DeadFilter(campaign="c1", reason="rejected_permanent"))
    assert len(perm) == 2 and all(j.dead_reason == "rejected_permanent" for j in perm)
    future = await queue.dead_letters(DeadFilter(since=time.time() + 60))
    assert future == []
    retried = await queue.retry_dead(DeadFilter(campaign="c1", reason="rejected_permanent"))
    assert retried == 2
    again = await queue.claim("w", 10, 30)
    assert sorted(j.id for j in again) == sorted(j.id for j in perm)
    assert {j.message_id for j in again} == {j.message_id for j in perm}
    assert await queue.purge_dead(DeadFilter(campaign="other")) == 1
    assert (await queue.stats()).total == 3


async def test_ambiguous_outcomes_are_counted(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    (job,) = await queue.claim("w", 1, 30)
    await queue.record(
        "w", [Outcome(job.id, State.DEFERRED, "timeout after data", time.time(), ambiguous=True)]
    )
    assert (await queue.stats()).ambiguous == 1


async def test_blobs_are_stored_once(queue: Queue) -> None:
    await queue.put_blob("d1", b"data")
    await queue.put_blob("d1", b"data")
    assert await queue.get_blob("d1") == b"data"
    assert await queue.get_blob("missing") is None


async def test_campaigns_listed(queue: Queue) -> None:
    await queue.enqueue([make_job(1, campaign="b"), make_job(1, campaign="a")])
    assert await queue.campaigns() == ["a", "b"]


async def test_campaign_settings(queue: Queue) -> None:
    assert await queue.campaign_settings("c1") == {}
    await queue.set_campaign_settings("c1", {"retry": {"first": 10.0}})
    await queue.set_campaign_settings("c1", {"retry": {"first": 20.0}})
    assert await queue.campaign_settings("c1") == {"retry": {"first": 20.0}}
    assert await queue.campaign_settings("c2") == {}


@pytest.mark.parametrize(
    ("url", "store", "packs"),
    [
        ("sqlite:///q.db", None, True),
        ("memory://", None, False),
        ("redis://127.0.0.1:6379/0", None, True),
        ("amqp://guest:guest@127.0.0.1:5672/", "postgresql://postgres@127.0.0.1/test", True),
        ("amqp://guest:guest@127.0.0.1:5672/", "redis://127.0.0.1:6379/0", True),
    ],
)
def test_whether_a_queue_packs_is_known_before_it_is_made(
    url: str, store: str | None, packs: bool
) -> None:
    """The render processes start before the queue is made and pack messages for it:
    a queue handed packed messages that it does not unpack would send them as they are."""
    for scheme, module in (("redis:", "redis"), ("amqp:", "aio_pika"), ("postgresql:", "asyncpg")):
        if scheme in f"{url} {store}":
            pytest.importorskip(module)
    assert queue_packs_messages(url, store) is packs
    assert make_queue(url, store).packs_messages is packs  # made, not opened


# -- every backend class plays every role -------------------------------------------------

QUEUE_ROLES = (
    Enqueuing,
    Claiming,
    LeaseAdmin,
    Inspection,
    DeadLetterAdmin,
    Blobs,
    CampaignSettings,
    CampaignControl,
)
STORE_ROLES = (
    StoreEnqueuing,
    StoreClaiming,
    StoreLeaseAdmin,
    Inspection,
    StoreDeadLetterAdmin,
    Blobs,
    CampaignSettings,
    StoreCampaignControl,
)


def parameters(method: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]


@pytest.mark.parametrize(
    ("cls", "roles"),
    [
        (Queue, QUEUE_ROLES),
        *((c, QUEUE_ROLES) for c in classes(QUEUES)),
        (JobStore, STORE_ROLES),
        *((c, STORE_ROLES) for c in classes(STORES)),
    ],
    ids=lambda x: x.__name__ if isinstance(x, type) else "roles",
)
def test_each_backend_class_implements_every_role(cls: type, roles: tuple[type, ...]) -> None:
    """The interfaces declare every role's methods, and each backend implements them all,
    each one a coroutine taking the role's parameters, with the same defaults: a caller
    typed against a role can be handed any backend."""
    assert cls in (Queue, JobStore) or not inspect.isabstract(cls)
    for role in roles:
        assert issubclass(cls, role), f"{cls.__name__} is not {role.__name__}"
        declared = {n: m for n, m in vars(role).items() if inspect.iscoroutinefunction(m)}
        assert declared, role
        for name, method in declared.items():
            implemented = getattr(cls, name)
            assert inspect.iscoroutinefunction(implemented), f"{cls.__name__}.{name}"
            assert parameters(implemented) == parameters(method), f"{cls.__name__}.{name}"
