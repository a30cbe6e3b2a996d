"""One contract suite for the job events kept beside the jobs and each webhook endpoint's
delivery state (queue/events.py), run unchanged against every backend through the queue
fixture (tests/support/queues.py): memory, SQLite, Redis, RabbitMQ with its PostgreSQL
store and with its Redis store."""

from __future__ import annotations

import asyncio
import time

import pytest

from mailspool.models import Outcome, State
from mailspool.queue import QUEUES, STORES, DeadFilter, JobStore, Queue
from mailspool.queue.events import Event, EventType, Pending
from mailspool.queue.returns import ReturnEvent, ReturnKind, event_key
from mailspool.queue.suppression import Reason, Suppression
from tests.support.jobs import claim_n, make_job
from tests.support.queues import classes

# leases of a fraction of a second: run alone, after the parallel part of make test
pytestmark = pytest.mark.serial


@pytest.mark.parametrize("cls", classes(QUEUES) + classes(STORES), ids=lambda c: c.__name__)
def test_every_backend_keeps_events(cls: type) -> None:
    assert issubclass(cls, Queue | JobStore)
    # overrides the interface's property, which raises NotImplementedError
    assert cls.events not in (Queue.events, JobStore.events)


async def everything(queue: Queue) -> list[Event]:
    return await queue.events.read(None, 1000)


def kinds(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.type.value, e.job_id) for e in events]


async def test_outcomes_write_their_events_in_order(queue: Queue) -> None:
    await queue.enqueue([make_job(i) for i in (1, 2, 3, 4)])
    claimed = await claim_n(queue, "w", 4)
    assert len(claimed) == 4
    before = time.time()
    applied = await queue.record(
        "w",
        [
            Outcome("c1-00001", State.SENT, "250 2.0.0 ok"),
            Outcome("c1-00002", State.DEFERRED, "451 4.3.0 later", not_before=time.time() + 60),
            Outcome("c1-00003", State.DEAD, "550 5.1.1 no such user", reason="rejected_permanent"),
            Outcome("c1-00004", State.SUPPRESSED, "suppressed: unsubscribed"),
        ],
    )
    assert applied == 4
    got = await everything(queue)
    assert kinds(got) == [
        ("sent", "c1-00001"),
        ("deferred", "c1-00002"),
        ("dead", "c1-00003"),
        ("suppressed", "c1-00004"),
    ]
    sent, deferred, dead, _ = got
    assert sent.campaign == "c1" and sent.recipients == ("user1@example.com",)
    assert sent.detail == "250 2.0.0 ok" and sent.attempts == 1
    assert sent.at >= before - 1
    assert deferred.detail == "451 4.3.0 later"
    assert dead.reason == "rejected_permanent" and dead.detail.startswith("550 5.1.1")
    assert len({e.id for e in got}) == 4 and all(e.id.startswith("evt_") for e in got)
    # the same events read again have the same ids (a webhook's id on every attempt)
    assert [e.id for e in await everything(queue)] == [e.id for e in got]


async def test_reading_after_a_cursor_and_by_page(queue: Queue) -> None:
    await queue.enqueue([make_job(i) for i in range(1, 6)])
    await claim_n(queue, "w", 5)
    for i in range(1, 6):  # one transaction each
        await queue.record("w", [Outcome(f"c1-{i:05d}", State.SENT, "250 ok")])
    first = await queue.events.read(None, 2)
    assert [e.job_id for e in first] == ["c1-00001", "c1-00002"]
    rest = await queue.events.read(first[-1].cursor, 10)
    assert [e.job_id for e in rest] == ["c1-00003", "c1-00004", "c1-00005"]
    assert await queue.events.read(rest[-1].cursor, 10) == []
    assert await queue.events.head() == rest[-1].cursor
    only = await queue.events.read(None, 10, types=[EventType.DEAD])
    assert only == []
    got = await queue.events.get([rest[1].cursor, first[0].cursor, "999999999-0"])
    assert [e.job_id for e in got] == ["c1-00001", "c1-00004"]


async def test_nothing_else_writes_an_event(queue: Queue) -> None:
    await queue.enqueue([make_job(1), make_job(2)])
    assert await everything(queue) == []
    assert await queue.events.head() is None
    await claim_n(queue, "w", 2)
    # a lease another worker does not hold: not applied, no event
    assert await queue.record("other", [Outcome("c1-00001", State.SENT, "250")]) == 0
    await queue.release("w", ["c1-00001"])  # handed back: no attempt, no event
    await queue.extend("w", ["c1-00002"], 60)
    await queue.record("w", [Outcome("c1-00002", State.DEAD, "550 no", reason="x")])
    assert kinds(await everything(queue)) == [("dead", "c1-00002")]
    assert await queue.retry_dead(DeadFilter()) == 1  # queued again: no event
    await queue.suppressions.add(
        [Suppression("x@example.com", None, Reason.MANUAL, "test", time.time())]
    )
    assert kinds(await everything(queue)) == [("dead", "c1-00002")]


async def test_a_job_enqueued_suppressed_writes_its_event(queue: Queue) -> None:
    await queue.enqueue([make_job(1, state=State.SUPPRESSED, last_reply="unsubscribed")])
    await queue.enqueue([make_job(1, state=State.SUPPRESSED)])  # the same job again
    assert kinds(await everything(queue)) == [("suppressed", "c1-00001")]


async def test_ambiguous_deliveries_write_their_events(queue: Queue) -> None:
    await queue.enqueue([make_job(1), make_job(2)])
    await claim_n(queue, "w", 2, 0.2)
    await asyncio.sleep(0.4)  # the lease expires: a claim again may duplicate a delivery
    again = await claim_n(queue, "w2", 2, campaign="c1")
    assert {j.id for j in again} == {"c1-00001", "c1-00002"}
    await queue.record("w2", [Outcome("c1-00001", State.SENT, "250", ambiguous=True)])
    got = kinds(await everything(queue))
    assert sorted(got[:2]) == [("ambiguous", "c1-00001"), ("ambiguous", "c1-00002")]
    assert sorted(got[2:]) == [("ambiguous", "c1-00001"), ("sent", "c1-00001")]
    assert (await queue.stats("c1")).ambiguous == 3


def returned(address: str, kind: ReturnKind, permanent: bool, n: int = 1) -> ReturnEvent:
    return ReturnEvent(
        key=event_key(f"{n:064x}", address),
        kind=kind,
        address=address,
        permanent=permanent,
        at=time.time(),
        status="5.1.1" if permanent else "4.2.2",
        diagnostic="550 5.1.1 unknown user",
    )


async def test_returned_mail_writes_bounced_and_complained_once(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    r = queue.returns
    hard = returned("user1@example.com", ReturnKind.BOUNCED, True)
    assert await r.record("c1-00001", "c1", hard)
    assert not await r.record("c1-00001", "c1", hard)  # the same bounce again
    await r.record("c1-00001", "c1", returned("user1@example.com", ReturnKind.BOUNCED, False, 2))
    await r.record("c1-00001", "c1", returned("user1@example.com", ReturnKind.COMPLAINED, True, 3))
    got = await everything(queue)
    assert [(e.type.value, e.permanent) for e in got] == [
        ("bounced", True),
        ("bounced", False),
        ("complained", True),
    ]
    assert got[0].job_id == "c1-00001" and got[0].campaign == "c1"
    assert got[0].recipients == ("user1@example.com",)
    assert got[0].reason == "5.1.1" and got[0].detail == "550 5.1.1 unknown user"


async def test_a_new_unsubscribe_writes_its_event(queue: Queue) -> None:
    s = queue.suppressions
    now = time.time()
    await s.add([Suppression("u@example.com", "news", Reason.UNSUBSCRIBED, "link", now)])
    await s.add([Suppression("u@example.com", "news", Reason.UNSUBSCRIBED, "link", now)])
    await s.add([Suppression("v@example.com", None, Reason.BOUNCED, "dsn", now)])
    [e] = await everything(queue)
    assert e.type is EventType.UNSUBSCRIBED and e.recipients == ("u@example.com",)
    assert e.detail == "news" and e.reason == "link" and e.job_id == ""


async def test_prune_forgets_old_events_and_their_pending_rows(queue: Queue) -> None:
    await queue.enqueue([make_job(1), make_job(2)])
    await claim_n(queue, "w", 2)
    await queue.record("w", [Outcome("c1-00001", State.SENT, "250")])
    [old] = await everything(queue)
    ev = queue.events
    await ev.lease("hook", "d1", 60)
    await ev.put_pending("hook", [Pending(old.cursor, 1, 0.0, time.time(), "503")])
    assert await ev.prune(old.at - 1) == 0
    cut = time.time() + 1
    assert await ev.prune(cut) == 1
    assert await everything(queue) == []
    assert await ev.due("hook", time.time() + 10) == []
    # the cursor goes on growing after a prune
    await queue.record("w", [Outcome("c1-00002", State.SENT, "250")])
    [new] = await everything(queue)
    assert await ev.read(old.cursor, 10) == [new]


async def test_an_endpoint_is_held_by_one_dispatcher_at_a_time(queue: Queue) -> None:
    ev = queue.events
    await queue.enqueue([make_job(1), make_job(2)])
    await claim_n(queue, "w", 2)
    await queue.record("w", [Outcome("c1-00001", State.SENT, "250")])
    [first] = await everything(queue)
    got = await ev.lease("hook", "d1", 0.3)
    assert got is not None and got.cursor == first.cursor  # starts at the head
    assert got.owner == "d1" and got.retrying == 0 and got.dead == 0
    assert await ev.lease("hook", "d2", 60) is None  # held
    assert await ev.lease("hook", "d1", 0.3) is not None  # renewed by its owner
    assert not await ev.advance("hook", "d2", "x")
    await asyncio.sleep(0.5)
    taken = await ev.lease("hook", "d2", 60)
    assert taken is not None and taken.owner == "d2" and taken.cursor == first.cursor
    assert not await ev.advance("hook", "d1", first.cursor)  # no longer its lease
    await queue.record("w", [Outcome("c1-00002", State.SENT, "250")])
    [second] = await ev.read(first.cursor, 10)
    assert await ev.advance("hook", "d2", second.cursor)
    again = await ev.lease("hook", "d2", 60)
    assert again is not None and again.cursor == second.cursor
    # a new endpoint starts at the head, whatever other endpoints have taken
    fresh = await ev.lease("other", "d1", 60)
    assert fresh is not None and fresh.cursor == second.cursor
    names = [e.name for e in await ev.endpoints()]
    assert names == ["hook", "other"]


async def test_an_endpoint_on_an_empty_log_starts_at_the_beginning(queue: Queue) -> None:
    ev = queue.events
    got = await ev.lease("hook", "d1", 60)
    assert got is not None and got.cursor is None
    await queue.enqueue([make_job(1)])
    await claim_n(queue, "w", 1)
    await queue.record("w", [Outcome("c1-00001", State.SENT, "250")])
    assert [e.job_id for e in await ev.read(got.cursor, 10)] == ["c1-00001"]


async def test_pending_rows_retry_die_and_revive(queue: Queue) -> None:
    ev = queue.events
    await queue.enqueue([make_job(i) for i in (1, 2, 3)])
    await claim_n(queue, "w", 3)
    for i in (1, 2, 3):
        await queue.record("w", [Outcome(f"c1-{i:05d}", State.SENT, "250")])
    a, b, c = (e.cursor for e in await everything(queue))
    await ev.lease("hook", "d1", 60)
    now = time.time()
    await ev.put_pending(
        "hook",
        [
            Pending(a, 1, now + 100, now, "HTTP 503"),
            Pending(b, 2, now - 5, now - 50, "timed out"),
            Pending(c, 9, 0.0, now - 4 * 86400, "HTTP 500 " + "x" * 5000, dead=True),
        ],
    )
    assert [p.cursor for p in await ev.due("hook", now)] == [b]
    assert [p.cursor for p in await ev.due("hook", now + 200)] == [b, a]
    assert await ev.due("other", now + 200) == []  # another endpoint's rows are its own
    [dead] = await ev.pending("hook", dead=True)
    assert dead.cursor == c and dead.attempts == 9 and len(dead.error) == 1000
    assert [p.cursor for p in await ev.pending("hook", dead=False)] == [a, b]
    # replaced by cursor: one more failure
    await ev.put_pending("hook", [Pending(b, 3, now + 50, now - 50, "HTTP 502")])
    [row] = [p for p in await ev.pending("hook", dead=False) if p.cursor == b]
    assert row.attempts == 3 and row.error == "HTTP 502" and row.first_at == pytest.approx(now - 50)
    [state] = [e for e in await ev.endpoints() if e.name == "hook"]
    assert state.retrying == 2 and state.dead == 1
    assert await ev.revive("hook") == 1
    assert await ev.revive("hook") == 0
    revived = [p for p in await ev.due("hook", time.time() + 1) if p.cursor == c]
    assert revived and revived[0].attempts == 0 and not revived[0].dead
    await ev.drop_pending("hook", [a, b, c])
    assert await ev.pending("hook", dead=False) == []
    [state] = [e for e in await ev.endpoints() if e.name == "hook"]
    assert state.retrying == 0 and state.dead == 0


async def test_arguments_are_checked(queue: Queue) -> None:
    ev = queue.events
    with pytest.raises(ValueError, match="limit"):
        await ev.read(None, 0)
    with pytest.raises(ValueError, match="endpoint name"):
        await ev.lease("", "d1", 60)
    with pytest.raises(ValueError, match="endpoint name"):
        await ev.due("a\nb", time.time())
    with pytest.raises(ValueError, match="lease"):
        await ev.lease("hook", "", 60)
