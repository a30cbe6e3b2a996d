"""The dispatcher against a real HTTP receiver on loopback, over the in-memory queue's
event log (the log's own contract is tests/queue/test_events_contract.py, for every
backend): delivered signed, retried with backoff, held while an endpoint is down,
dead-lettered after the retry period, revived, one dispatcher per endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable

import pytest
from standardwebhooks.webhooks import Webhook

from mailspool.models import Outcome, State
from mailspool.queue.memory import MemoryQueue
from mailspool.testing.webhooks import WebhookReceiver
from mailspool.webhooks.dispatcher import Dispatcher, DispatchSettings
from mailspool.webhooks.endpoints import parse_webhook
from mailspool.webhooks.signing import WebhookSecrets
from tests.support.jobs import make_job

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
FAST = DispatchSettings(
    timeout=2.0, poll=0.02, lease=5.0, backoff=(0.05,), retry_period=60.0, gather=0.0,
    retry_check=0.0,
)  # fmt: skip


async def outcomes(q: MemoryQueue, n: int, state: State = State.SENT, start: int = 1) -> None:
    jobs = [make_job(i) for i in range(start, start + n)]
    await q.enqueue(jobs)
    claimed = await q.claim("w", n, 60)
    await q.record("w", [Outcome(j.id, state, "250 2.0.0 ok", reason="") for j in claimed])


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():  # noqa: ASYNC110 - the receiver's thread sets no event
            await asyncio.sleep(0.01)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Dispatcher], None]]:
    stops: list[tuple[asyncio.Event, asyncio.Task[None]]] = []

    def run(d: Dispatcher) -> None:
        stop = asyncio.Event()
        stops.append((stop, asyncio.create_task(d.run(stop))))

    yield run
    for stop, task in stops:
        stop.set()
        await asyncio.wait_for(task, 10)


def dispatcher(q: MemoryQueue, *specs: str, settings: DispatchSettings = FAST) -> Dispatcher:
    eps = [parse_webhook(s) for s in specs]
    return Dispatcher(q.events, eps, WebhookSecrets([SECRET], "test"), settings)


async def test_events_are_delivered_signed_with_their_fields(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    await outcomes(q, 1)  # before the endpoint first existed: not offered to it
    with WebhookReceiver() as rx:
        d = dispatcher(q, rx.url)
        await d.start()
        running(d)
        await outcomes(q, 3, start=2)
        await until(lambda: rx.count == 3)
    bodies = [Webhook(SECRET).verify(r.body, r.headers) for r in rx.requests]
    assert sorted(b["data"]["job_id"] for b in bodies) == ["c1-00002", "c1-00003", "c1-00004"]
    one = next(b for b in bodies if b["data"]["job_id"] == "c1-00002")
    assert one["type"] == "sent" and one["timestamp"].endswith("Z")
    assert one["data"]["campaign"] == "c1" and one["data"]["recipient"] == "user2@example.com"
    assert one["data"]["reply"] == "250 2.0.0 ok" and one["data"]["attempts"] == 1
    ids = {r.headers["webhook-id"] for r in rx.requests}
    assert len(ids) == 3 and all(i.startswith("evt_") for i in ids)
    assert d.counts[parse_webhook(rx.url).name].delivered == 3


async def test_a_filter_takes_only_its_types(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    with WebhookReceiver() as rx:
        d = dispatcher(q, "dead=" + rx.url)
        await d.start()
        running(d)
        await outcomes(q, 2)
        await outcomes(q, 1, State.DEAD, start=3)
        await until(lambda: rx.count == 1)
        await asyncio.sleep(0.1)  # the sent events were read too, and skipped
        [ep] = await q.events.endpoints()
        assert ep.cursor == await q.events.head()
    assert [json.loads(r.body)["type"] for r in rx.requests] == ["dead"]


async def test_a_failed_event_is_retried_until_it_is_taken(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    with WebhookReceiver(statuses=[503, 500]) as rx:
        d = dispatcher(q, rx.url)
        await d.start()
        running(d)
        await outcomes(q, 1)
        await until(lambda: rx.count == 3)
        [ep] = await q.events.endpoints()
        await until(lambda: d.counts[ep.name].delivered == 1)
    first, _, last = rx.requests
    assert first.headers["webhook-id"] == last.headers["webhook-id"]  # the same event
    assert first.body == last.body
    assert await q.events.pending(ep.name, dead=False) == []
    assert d.counts[ep.name].failed == 2


async def test_a_down_endpoint_loses_nothing(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    rx = WebhookReceiver()
    rx.start()
    d = dispatcher(q, rx.url)
    await d.start()
    rx.stop()
    running(d)
    await outcomes(q, 20)
    name = parse_webhook(rx.url).name
    await until(lambda: d.counts[name].failed >= 5)  # then it counts as down
    await outcomes(q, 20, start=21)
    await asyncio.sleep(0.2)
    [ep] = await q.events.endpoints()
    assert ep.cursor != await q.events.head()  # new events wait in the log, unread
    rx.start()
    await until(lambda: len({r.headers["webhook-id"] for r in rx.requests}) == 40)
    rx.stop()
    jobs = {json.loads(r.body)["data"]["job_id"] for r in rx.requests}
    assert jobs == {f"c1-{i:05d}" for i in range(1, 41)}


async def test_after_the_retry_period_events_are_dead_then_revived(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    short = DispatchSettings(
        poll=0.02, backoff=(0.05,), retry_period=0.3, gather=0.0, retry_check=0.0
    )
    with WebhookReceiver(status=500) as rx:
        d = dispatcher(q, rx.url, settings=short)
        await d.start()
        running(d)
        await outcomes(q, 2)
        name = parse_webhook(rx.url).name
        await until(lambda: d.counts[name].dead == 2)
        dead = await q.events.pending(name, dead=True)
        assert len(dead) == 2 and all(p.error == "HTTP 500" for p in dead)
        assert all(p.attempts >= 2 for p in dead)
        seen = rx.count
        await asyncio.sleep(0.2)
        assert rx.count == seen  # dead: no longer tried
        rx.answer(204)
        assert await q.events.revive(name) == 2
        await until(lambda: d.counts[name].delivered == 2)
    assert await q.events.pending(name, dead=True) == []


async def test_one_dispatcher_delivers_to_an_endpoint_at_a_time(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    with WebhookReceiver() as rx:
        a, b = dispatcher(q, rx.url), dispatcher(q, rx.url)
        await a.start()
        await b.start()
        running(a)
        running(b)
        await outcomes(q, 50)
        await until(lambda: rx.count >= 50)
        await asyncio.sleep(0.2)
    assert rx.count == 50
    name = parse_webhook(rx.url).name
    assert {a.counts[name].delivered, b.counts[name].delivered} == {0, 50}


async def test_a_slow_endpoint_delays_only_its_own_events(running) -> None:  # type: ignore[no-untyped-def]
    q = MemoryQueue()
    with WebhookReceiver(delay=3.0) as slow, WebhookReceiver() as fast:
        patient = DispatchSettings(timeout=20.0, poll=0.02, backoff=(0.05,), gather=0.0)
        d = dispatcher(q, slow.url, fast.url, settings=patient)
        await d.start()
        running(d)
        await outcomes(q, 5)
        slow_name, fast_name = parse_webhook(slow.url).name, parse_webhook(fast.url).name
        await until(lambda: d.counts[fast_name].delivered == 5)
        assert d.counts[slow_name].delivered == 0  # still waiting for its answers
        await until(lambda: d.counts[slow_name].delivered == 5)
