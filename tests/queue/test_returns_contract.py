"""One contract suite for returned mail kept beside the jobs (queue/returns.py), run
unchanged against every backend through the queue fixture (tests/support/queues.py):
memory, SQLite, Redis, RabbitMQ with its PostgreSQL store and with its Redis store."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailspool.models import Job, State
from mailspool.queue import QUEUES, STORES, DeadFilter, JobStore, Queue, Returning
from mailspool.queue.returns import (
    MAX_DIAGNOSTIC_CHARS,
    MAX_UNMATCHED_BYTES,
    ReturnCounts,
    ReturnEvent,
    ReturnKind,
    Unmatched,
    event_key,
)
from tests.support.jobs import make_job
from tests.support.queues import classes

T0 = 1_700_000_000.0
DAY = 86_400.0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def event(
    n: int,
    address: str = "user1@example.com",
    *,
    kind: ReturnKind = ReturnKind.BOUNCED,
    permanent: bool = True,
    at: float = T0,
    diagnostic: str = "550 5.1.1 no such user",
) -> ReturnEvent:
    return ReturnEvent(
        key=event_key(digest(b"bounce %d" % n), address),
        kind=kind,
        address=address,
        permanent=permanent,
        at=at,
        status="5.1.1" if permanent else "4.2.2",
        diagnostic=diagnostic,
    )


@pytest.mark.parametrize("cls", classes(QUEUES) + classes(STORES), ids=lambda c: c.__name__)
def test_every_backend_keeps_returned_mail(cls: type) -> None:
    assert issubclass(cls, Queue | JobStore)
    # overrides the interface's property, which raises NotImplementedError
    assert cls.returns not in (Queue.returns, JobStore.returns)


async def test_the_queue_is_returning(queue: Queue) -> None:
    assert isinstance(queue, Returning)


def ours(i: int, **fields: object) -> Job:
    """A job with an id and a Message-ID as mailspool makes them: ``<JOB_ID@DOMAIN>``."""
    jid = f"{i:032x}"
    return make_job(i, id=jid, message_id=f"<{jid}@example.com>", **fields)


async def test_a_job_is_found_by_its_message_id(queue: Queue) -> None:
    a, b = ours(1), ours(2, campaign="c2")
    await queue.enqueue([a, b])
    find = queue.returns.find_by_message_id
    assert await find(a.message_id) == a.id
    assert await find(f" <{b.id}@EXAMPLE.com> ") == b.id  # blanks, a domain's case
    assert await find(f"<{b.id.upper()}@example.com>") == b.id  # the id's case
    assert await find(f"<{'f' * 32}@example.com>") is None  # no such job
    # a job's id under another domain is not that job's Message-ID
    assert await find(f"<{a.id}@other.example>") is None
    assert await find(f"{a.id}@example.com") is None  # without its brackets
    assert await find("<c1-1@example.com>") is None  # not one mailspool wrote
    assert await find("") is None
    assert await find("<\x00@x>") is None


async def test_a_suppressed_job_is_found_too(queue: Queue) -> None:
    j = ours(1, state=State.SUPPRESSED)
    await queue.enqueue([j])
    assert await queue.returns.find_by_message_id(j.message_id) == j.id


async def test_a_purged_job_is_no_longer_found(queue: Queue) -> None:
    from mailspool.models import Outcome

    j = ours(1)
    await queue.enqueue([j])
    [job] = await queue.claim("w", 10, 60)
    assert await queue.record("w", [Outcome(job.id, State.DEAD, "550 no", reason="x")]) == 1
    assert await queue.purge_dead(DeadFilter()) == 1
    assert await queue.returns.find_by_message_id(j.message_id) is None


async def test_recording_is_idempotent_and_leaves_the_job_as_it_was(queue: Queue) -> None:
    await queue.enqueue([make_job(1)])
    before = await queue.get("c1-00001")
    assert await queue.returns.record("c1-00001", "c1", event(1)) is True
    assert await queue.returns.record("c1-00001", "c1", event(1)) is False
    after = await queue.get("c1-00001")
    assert before is not None and after is not None
    assert after.state is before.state and after.last_reply == before.last_reply
    assert await queue.returns.counts("c1") == ReturnCounts(bounced=1)
    st = await queue.stats("c1")
    assert st.total == 1 and st.get(State.QUEUED) == 1


async def test_counts_per_campaign_each_recipient_once_per_kind(queue: Queue) -> None:
    r = queue.returns
    await r.record("c1-00001", "c1", event(1))
    await r.record("c1-00001", "c1", event(2))  # another copy of the same bounce
    await r.record("c1-00002", "c1", event(3, "user2@example.com", permanent=False))
    await r.record("c1-00002", "c1", event(4, "user2@example.com", permanent=False))
    await r.record("c1-00003", "c1", event(5, "user3@example.com", kind=ReturnKind.COMPLAINED))
    await r.record(
        "c1-00003",
        "c1",
        event(6, "user3@example.com", kind=ReturnKind.COMPLAINED, permanent=False),
    )
    await r.record("c2-00001", "c2", event(7, "user9@example.com"))
    assert await r.counts("c1") == ReturnCounts(bounced=1, soft_bounced=1, complained=1)
    assert await r.counts("c2") == ReturnCounts(bounced=1)
    assert await r.counts("none") == ReturnCounts()
    assert await r.counts() == ReturnCounts(bounced=2, soft_bounced=1, complained=1)


async def test_the_latest_event_of_a_job(queue: Queue) -> None:
    r = queue.returns
    assert await r.latest("c1-00001") is None
    await r.record("c1-00001", "c1", event(1, permanent=False, at=T0 + 10, diagnostic="later"))
    await r.record("c1-00001", "c1", event(2, at=T0, diagnostic="earlier"))
    latest = await r.latest("c1-00001")
    assert latest is not None and latest.diagnostic == "later" and not latest.permanent
    await r.record("c1-00001", "c1", event(3, at=T0 + 10, diagnostic="same time, last"))
    latest = await r.latest("c1-00001")
    assert latest == event(3, at=T0 + 10, diagnostic="same time, last")
    assert latest.kind is ReturnKind.BOUNCED and latest.status == "5.1.1"


async def test_addresses_are_keyed_as_the_suppression_list_keys_them(queue: Queue) -> None:
    r = queue.returns
    await r.record("c1-00001", "c1", event(1, "User1@Example.COM", permanent=False))
    latest = await r.latest("c1-00001")
    assert latest is not None and latest.address == "user1@example.com"
    assert await r.soft_bounces("USER1@example.com", T0) == 1


async def test_soft_bounces_of_an_address_within_a_window(queue: Queue) -> None:
    r = queue.returns
    a = "ann@example.com"
    await r.record("c1-00001", "c1", event(1, a, permanent=False, at=T0 - 10 * DAY))
    await r.record("c1-00001", "c1", event(2, a, permanent=False, at=T0 - DAY))
    await r.record("c2-00001", "c2", event(3, a, permanent=False, at=T0))
    await r.record("c2-00001", "c2", event(4, a, permanent=True, at=T0))  # hard: not soft
    await r.record("c2-00002", "c2", event(5, "bob@example.com", permanent=False, at=T0))
    assert await r.soft_bounces(a, T0 - 7 * DAY) == 2
    assert await r.soft_bounces(a, T0 - 11 * DAY) == 3
    assert await r.soft_bounces(a, T0 + 1) == 0
    assert await r.soft_bounces("not an address", 0) == 0


async def test_an_invalid_event_is_refused(queue: Queue) -> None:
    r = queue.returns
    with pytest.raises(ValueError, match="address"):
        await r.record("c1-00001", "c1", event(1, "nobody"))
    with pytest.raises(ValueError, match="key"):
        await r.record("c1-00001", "c1", ReturnEvent("x", ReturnKind.BOUNCED, "a@b.c", True, 1))
    with pytest.raises(ValueError, match="at"):
        await r.record("c1-00001", "c1", event(1, at=float("nan")))
    assert await r.counts() == ReturnCounts()


async def test_unmatched_messages_are_kept_once_and_counted(queue: Queue) -> None:
    r = queue.returns
    assert await r.unmatched_count() == 0
    big = b"x" * (MAX_UNMATCHED_BYTES + 10)
    small = b"From: MAILER-DAEMON\r\n\r\n\x00\xff binary is kept as it is\r\n"
    first = Unmatched(digest(big), "no job named", T0, len(big), big, "bounces@b.example")
    second = Unmatched(digest(small), "no recipient\nat all", T0 + 1, len(small), small)
    assert await r.keep_unmatched(first) is True
    assert await r.keep_unmatched(second) is True
    assert await r.keep_unmatched(first) is False
    assert await r.unmatched_count() == 2
    kept = await r.unmatched()
    assert [u.digest for u in kept] == [first.digest, second.digest]
    assert len(kept[0].data) == MAX_UNMATCHED_BYTES and kept[0].truncated
    assert kept[0].size == len(big) and kept[0].envelope_to == "bounces@b.example"
    assert kept[1].data == small and not kept[1].truncated
    assert kept[1].reason == "no recipient at all"
    assert len(await r.unmatched(limit=1)) == 1


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=1500))
async def test_any_diagnostic_is_stored_and_read_back_safely(queue: Queue, text: str) -> None:
    e = event(abs(hash(text)) % 10**9, diagnostic=text)
    await queue.returns.record("c9-00001", "c9", e)
    latest = await queue.returns.latest("c9-00001")
    assert latest is not None
    shown = latest.diagnostic
    assert len(shown) <= MAX_DIAGNOSTIC_CHARS
    assert shown.isprintable() or shown == ""
    assert shown == shown.strip()
    # what is kept is the text's words, in order
    words = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    assert words.startswith(shown) or shown.startswith(words[: len(shown)])
