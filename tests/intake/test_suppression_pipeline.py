"""The suppression list in the pipeline: checked by the producer before each batch is
queued, and by the worker after each claim, one query per list for the whole batch.

A row whose every recipient is suppressed is queued as a final SUPPRESSED job and counted;
a recipient suppressed after its job was queued is dropped from the envelope before
sending, the others still get the message; a job left with none ends SUPPRESSED, never
sent, never dead. Each test runs on every backend here that keeps a suppression list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection, Iterable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from mailspool.delivery.observer import Counter, Observer
from mailspool.errors import QueueError
from mailspool.intake.deliverability import Deliverability
from mailspool.intake.producer import FIRST_BATCH
from mailspool.intake.sources import Row
from mailspool.models import Job, State
from mailspool.observe.logs import LogObserver
from mailspool.observe.metrics import Metrics
from mailspool.queue import MemoryQueue, Queue
from mailspool.queue.suppression import MemorySuppressionList, Reason, Suppression
from mailspool.testing import RecordingSMTPServer
from tests.support.deliverability import (
    BACKENDS,
    TEMPLATE,
    backend,
    counts,
    drain,
    people,
    producer,
    worker,
)

TWO = TEMPLATE.replace("To: {{ Email }}", "To: {{ Email }}, {{ Other }}")
NOW = time.time()


@pytest.fixture(params=BACKENDS)
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    async for q in backend(request.param, tmp_path, suppressing=True):
        yield q


async def suppress(queue: Queue, *addresses: str, list_name: str | None = "default") -> None:
    await queue.suppressions.add(
        Suppression(a, list_name, Reason.UNSUBSCRIBED, "test", NOW - 60) for a in addresses
    )


def pair(number: int, first: str, other: str) -> Row:
    return Row(number, {"Name": first.split("@", maxsplit=1)[0], "Email": first, "Other": other})


class Told(Observer):
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def suppressed(self, job: Job) -> None:
        self.jobs.append(job)


# -- at enqueue ---------------------------------------------------------------------------


async def test_a_suppressed_row_is_queued_as_a_final_suppressed_job(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    await suppress(queue, "Ann@Example.org")
    rows = [
        pair(2, "ann@example.org", "ann@example.org"),
        pair(3, "bob@example.org", "ann@example.org"),
    ]
    rows.append(pair(4, "cat@example.org", "dan@example.org"))
    prod = producer(tmp_path, queue, Deliverability(), TWO)
    rep = await prod.run(rows)
    assert (rep.rows, rep.new, rep.suppressed, rep.queued) == (3, 2, 1, 2)
    jobs = {j.row: j for j in [await queue.get(prod.builder.build(r, NOW).id) for r in rows] if j}
    assert jobs[2].state is State.SUPPRESSED and jobs[2].message == b""
    assert jobs[3].recipients == ("bob@example.org",)  # ann left the envelope
    assert await counts(queue) == {"suppressed": 1, "queued": 2}

    await drain(worker(queue, smtpd.port), queue)
    got = sorted((m.recipients, str(m.message["To"])) for m in smtpd.messages)
    # the message is unchanged (its To still names ann); the envelope decides
    assert got == [
        (["bob@example.org"], "bob@example.org, ann@example.org"),
        (["cat@example.org", "dan@example.org"], "cat@example.org, dan@example.org"),
    ]
    assert await counts(queue) == {"suppressed": 1, "sent": 2}

    # a second run of the campaign finds the suppressed job final: not sent, counted
    again = await producer(tmp_path, queue, Deliverability(), TWO).run(rows)
    assert (again.new, again.suppressed, again.already_sent) == (0, 1, 2)
    assert len(smtpd.messages) == 2


async def test_list_global_and_domain_entries_at_enqueue(queue: Queue, tmp_path: Path) -> None:
    await suppress(queue, "ann@example.org", list_name="weekly")
    await suppress(queue, "@blocked.example", list_name=None)
    rows = people("ann@example.org", "x@blocked.example", "y@sub.blocked.example")
    default = await producer(tmp_path, queue, Deliverability(), campaign="d").run(rows)
    assert (default.new, default.suppressed) == (2, 1)  # the domain, globally
    d = Deliverability(list_name="weekly")
    weekly = await producer(tmp_path, queue, d, campaign="w").run(rows)
    assert (weekly.new, weekly.suppressed) == (1, 2)
    prod = producer(tmp_path, queue, d, campaign="w")
    job = await queue.get(prod.builder.build(rows[2], NOW).id)
    assert job is not None and job.list_name == "weekly" and job.state is State.QUEUED


async def test_the_producer_checks_each_batch_with_one_query(tmp_path: Path) -> None:
    q = Listed(Counting())
    rows = people(*(f"p{i}@example.org" for i in range(FIRST_BATCH + 700)))
    rep = await producer(tmp_path, q, Deliverability()).run(rows)
    assert rep.new == FIRST_BATCH + 700
    assert isinstance(q.listed, Counting)
    assert q.listed.calls == [FIRST_BATCH, 700]  # the addresses of each batch


# -- before sending -----------------------------------------------------------------------


async def test_a_recipient_suppressed_after_enqueue_is_not_sent(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    rows = [
        pair(2, "ann@example.org", "ann@example.org"),
        pair(3, "bob@example.org", "cat@example.org"),
    ]
    prod = producer(tmp_path, queue, Deliverability(), TWO)
    assert (await prod.run(rows)).new == 2
    await suppress(queue, "ann@example.org", "bob@example.org")
    registry = CollectorRegistry()
    counter, told, metrics = Counter(), Told(), Metrics(registry)
    observers = [counter, told, metrics.observer(), LogObserver("info")]
    with capture_logs() as logs:
        await drain(worker(queue, smtpd.port, observers=observers), queue)
    (m,) = smtpd.messages
    assert m.recipients == ["cat@example.org"]
    assert str(m.message["To"]) == "bob@example.org, cat@example.org"
    assert await counts(queue) == {"suppressed": 1, "sent": 1}
    ann = await queue.get(prod.builder.build(rows[0], NOW).id)
    assert ann is not None and ann.state is State.SUPPRESSED
    assert ann.last_reply == "suppressed: ann@example.org"
    bob_cat = await queue.get(prod.builder.build(rows[1], NOW).id)
    assert bob_cat is not None and bob_cat.last_reply.endswith(" | suppressed: bob@example.org")
    assert (counter.suppressed_count, counter.sent_count, counter.dead_count) == (1, 1, 0)
    assert counter.deferred_count == 0
    assert [j.id for j in told.jobs] == [ann.id]
    assert registry.get_sample_value("mailspool_messages_total", {"outcome": "suppressed"}) == 1
    (event,) = [e for e in logs if e["event"] == "message suppressed"]
    assert event["job_id"] == ann.id and event["state"] == "suppressed"


async def test_before_sending_a_job_is_checked_against_its_own_list(
    queue: Queue, tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    rows = people("ann@example.org", "bob@example.org")
    for list_name in ("default", "weekly"):
        d = Deliverability(list_name=list_name)
        assert (await producer(tmp_path, queue, d, campaign=list_name).run(rows)).new == 2
    await suppress(queue, "ann@example.org", list_name="weekly")  # after enqueue
    await drain(worker(queue, smtpd.port), queue)
    got = sorted(m.recipients[0] for m in smtpd.messages)
    assert got == ["ann@example.org", "bob@example.org", "bob@example.org"]
    assert await counts(queue) == {"suppressed": 1, "sent": 3}
    stats = await queue.stats("weekly")
    assert stats.get(State.SUPPRESSED) == 1


class Listed(MemoryQueue):
    """A memory queue with the suppression list it is given."""

    def __init__(self, suppressions: MemorySuppressionList | None = None) -> None:
        super().__init__()
        self.listed = MemorySuppressionList() if suppressions is None else suppressions

    @property
    def suppressions(self) -> MemorySuppressionList:
        return self.listed


class Counting(MemorySuppressionList):
    """Counts the suppressed() calls: the number of addresses of each."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    async def suppressed(
        self, addresses: Iterable[str], list_name: str | None, now: float
    ) -> set[str]:
        given = list(addresses)
        self.calls.append(len(given))
        return await super().suppressed(given, list_name, now)


async def test_the_worker_checks_each_claimed_batch_with_one_query_per_list(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    claims: list[set[str]] = []  # the lists of each claimed batch

    class Claims(Listed):
        async def claim(
            self, owner: str, limit: int, lease: float, campaign: str | None = None
        ) -> list[Job]:
            jobs = await super().claim(owner, limit, lease, campaign)
            if jobs:
                claims.append({j.list_name for j in jobs})
            return jobs

    q = Claims(Counting())
    for list_name, start in (("default", 0), ("weekly", 1000)):
        d = Deliverability(list_name=list_name)
        rows = people(*(f"p{i}@example.org" for i in range(start, start + 40)), first=start)
        await producer(tmp_path, q, d, campaign=list_name).run(rows)
    assert isinstance(q.listed, Counting)
    q.listed.calls.clear()  # the producer's
    await drain(worker(q, smtpd.port, concurrency=2), q)  # batches of 16
    assert len(smtpd.messages) == 80
    assert len(claims) >= 5
    assert len(q.listed.calls) == sum(len(lists) for lists in claims) < 80


async def test_a_store_error_during_the_check_never_sends_unchecked(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    failures: list[QueueError] = []

    class Flaky(MemorySuppressionList):
        async def _match(
            self, keys: Collection[str], list_name: str | None, now: float
        ) -> set[str]:
            if failures:
                raise failures.pop()
            return await super()._match(keys, list_name, now)

    q = Listed(Flaky())
    prod = producer(tmp_path, q, Deliverability())
    rows = people("ann@example.org", "bob@example.org")
    await prod.run(rows)
    failures.append(QueueError("database unreachable"))  # the worker's first check fails
    await suppress(q, "ann@example.org")
    await drain(worker(q, smtpd.port), q)
    assert not failures  # the worker met it
    assert [m.recipients for m in smtpd.messages] == [["bob@example.org"]]
    bob = await q.get(prod.builder.build(rows[1], NOW).id)
    ann = await q.get(prod.builder.build(rows[0], NOW).id)
    assert bob is not None and bob.state is State.SENT and bob.attempts == 2
    assert ann is not None and ann.state is State.SUPPRESSED


async def test_a_store_error_at_enqueue_queues_nothing(tmp_path: Path) -> None:
    class Down(MemorySuppressionList):
        async def _match(
            self, keys: Collection[str], list_name: str | None, now: float
        ) -> set[str]:
            raise QueueError("database unreachable")

    q = Listed(Down())
    with pytest.raises(QueueError):
        await producer(tmp_path, q, Deliverability()).run(people("ann@example.org"))
    assert q.jobs == {}
