"""Stopping a worker, in process, against real SMTP servers and a real SQLite job store:
a stop calls off every send whose transaction has not begun (waiting for the rate, a
per-domain concurrency slot, its provider's shaping, or a connection), hands those jobs
back untried (queued, no attempt charged, not ambiguous) and never sends them after the
stop; a send whose transaction has begun finishes, or, cut short (the grace ran out,
``stop_now``), is recorded as interrupted and ambiguous. The same through the command
line is in tests/cli/test_send_stop.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from mailspool.delivery.limits import LimitSettings
from mailspool.delivery.providers import Provider, Providers
from mailspool.delivery.shaping import Shaper
from mailspool.delivery.worker import Worker, WorkerConfig
from mailspool.models import State
from mailspool.queue.sqlite.queue import SQLiteQueue
from mailspool.testing import LineServer, RecordingSMTPServer, SMTPSink
from mailspool.transport import SMTPTransport, parse_smtp_url
from tests.support.jobs import HAND_MADE, make_job

pytestmark = pytest.mark.unchecked_mail(HAND_MADE)

N = 20


async def queue_of(path: Path, n: int = N) -> SQLiteQueue:
    queue = SQLiteQueue(path)
    await queue.open()
    await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(n)])
    return queue


def transport(port: int, connect_timeout: float = 5) -> SMTPTransport:
    return SMTPTransport(
        parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=connect_timeout)
    )


def config(**kw: object) -> WorkerConfig:
    return WorkerConfig(**{"concurrency": 4, "poll_interval": 0.05, **kw})  # type: ignore[arg-type]


def job_of(recipient: str) -> str:
    """The job id make_job gives the message to ``recipient`` (user7@... -> job00007)."""
    return f"job{int(recipient.partition('@')[0].removeprefix('user')):05d}"


async def until(check: Callable[[], bool]) -> None:
    """Wait until ``check()`` holds (a bound against hanging, not a timing assertion)."""
    async with asyncio.timeout(60):
        while not check():  # noqa: ASYNC110 - polling what another thread records
            await asyncio.sleep(0.01)


def received(server: RecordingSMTPServer) -> set[str]:
    """The jobs whose message the server has taken."""
    return {job_of(m.recipients[0]) for m in server.messages}


async def stop_when(
    worker: Worker, run: asyncio.Task[None], server: RecordingSMTPServer, n: int
) -> set[str]:
    """Stop the worker once the server has taken ``n`` messages; the jobs that may still
    arrive then: those taken, and those whose transaction had begun (read in the same
    step as the stop: nothing runs in between)."""
    await until(lambda: len(server.messages) >= n)
    may_arrive = received(server) | worker.flight.begun
    worker.stop()
    await asyncio.wait_for(run, 60)
    return may_arrive


async def assert_handed_back_untried(queue: SQLiteQueue, sent: set[str]) -> None:
    """What was not sent is back in the queue as never tried, and nothing is ambiguous."""
    st = await queue.stats()
    assert st.ambiguous == 0 and st.get(State.SENDING) == 0
    assert st.get(State.SENT) == len(sent)
    for i in range(N):
        job = await queue.get(f"job{i:05d}")
        assert job is not None
        if job.id in sent:
            assert job.state is State.SENT
        else:
            assert (job.state, job.attempts, job.lease_owner) == (State.QUEUED, 0, ""), job


async def test_a_stop_calls_off_the_sends_waiting_for_the_rate(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    queue = await queue_of(tmp_path / "q.db")
    limits = LimitSettings(rate=4.0)
    worker = Worker(queue=queue, transport=transport(smtpd.port), config=config(limits=limits))
    may_arrive = await stop_when(worker, asyncio.create_task(worker.run()), smtpd, 2)
    got = received(smtpd)
    assert len(smtpd.messages) == len(got) < N  # once each, and the rest never
    assert got <= may_arrive  # nothing sent after the stop but what had begun
    await assert_handed_back_untried(queue, got)
    await queue.close()


async def test_a_stop_calls_off_the_sends_waiting_for_their_provider(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    """Shaping holds the jobs for their provider's rate slots and connections (outside
    the senders: the shaper hands them back when the worker stops)."""
    queue = await queue_of(tmp_path / "q.db")
    rules = Providers([Provider("p", domains=("example.com",), rate=4.0, connections=1)])
    worker = Worker(
        queue=queue, transport=transport(smtpd.port), config=config(), shaper=Shaper(rules)
    )
    may_arrive = await stop_when(worker, asyncio.create_task(worker.run()), smtpd, 2)
    got = received(smtpd)
    assert len(smtpd.messages) == len(got) < N
    assert got <= may_arrive
    st = await queue.stats()
    assert st.ambiguous == 0 and st.get(State.SENDING) == 0 and st.get(State.SENT) == len(got)
    for i in range(N):  # back untried: held past the lease horizon, they are due later
        job = await queue.get(f"job{i:05d}")
        assert job is not None and (job.id in got or (job.attempts, job.lease_owner) == (0, ""))
    await queue.close()


async def test_a_stop_calls_off_the_sends_waiting_for_a_connection(tmp_path: Path) -> None:
    """The relay never greets: had the sends waited for it, they would have timed out and
    been charged an attempt (deferred); called off, they are queued as never tried."""
    queue = await queue_of(tmp_path / "q.db")
    with LineServer(greeting=None) as srv:
        worker = Worker(
            queue=queue, transport=transport(srv.port, connect_timeout=3), config=config()
        )
        run = asyncio.create_task(worker.run())
        await until(lambda: len(worker.flight) == 4)  # every sender is connecting
        worker.stop()
        await asyncio.wait_for(run, 60)
    await assert_handed_back_untried(queue, set())
    await queue.close()


async def test_a_stop_lets_a_begun_send_finish_and_calls_off_those_waiting_for_its_domain(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """One message at a time to the domain, the relay a second slow to answer its final
    dot: the one begun finishes and is recorded sent; the others, waiting for the
    domain's slot, go back untried instead of taking it in turn."""
    sink = smtp_sink("-W", ".:1")
    queue = await queue_of(tmp_path / "q.db")
    cfg = config(limits=LimitSettings(domain_concurrency=1))
    worker = Worker(queue=queue, transport=transport(sink.port), config=cfg)
    run = asyncio.create_task(worker.run())
    await until(lambda: len(worker.flight.begun) == 1 and len(worker.flight) == 4)
    begun = set(worker.flight.begun)
    worker.stop()
    await asyncio.wait_for(run, 60)
    assert len(sink.received()) == 1
    await assert_handed_back_untried(queue, begun)
    await queue.close()


async def test_stop_now_cuts_begun_sends_short_as_interrupted_and_hands_back_the_rest(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """A second signal: no waiting for the relay's answers (the grace is an hour here)."""
    sink = smtp_sink("-W", ".:30")
    queue = await queue_of(tmp_path / "q.db")
    worker = Worker(queue=queue, transport=transport(sink.port), config=config(shutdown_grace=3600))
    run = asyncio.create_task(worker.run())
    await until(lambda: len(worker.flight.begun) == 4)
    begun = set(worker.flight.begun)
    worker.stop()
    worker.stop_now()
    await asyncio.wait_for(run, 60)
    st = await queue.stats()
    assert st.counts == {"deferred": 4, "queued": N - 4} and st.ambiguous == 4
    for jid in begun:
        job = await queue.get(jid)
        assert job is not None and job.state is State.DEFERRED and job.lease_owner == ""
        assert "interrupted" in job.last_reply
    await queue.close()


async def test_the_untried_go_back_before_the_begun_sends_are_waited_for(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """While the message under way still waits for the relay's answer, every other job is
    already back in the queue: a kill during the grace would leave only it leased."""
    sink = smtp_sink("-W", ".:30")
    queue = await queue_of(tmp_path / "q.db")
    cfg = config(limits=LimitSettings(domain_concurrency=1))
    worker = Worker(queue=queue, transport=transport(sink.port), config=cfg)
    run = asyncio.create_task(worker.run())
    await until(lambda: len(worker.flight.begun) == 1 and len(worker.flight) == 4)
    worker.stop()
    async with asyncio.timeout(60):
        while (await queue.stats()).get(State.QUEUED) < N - 1:
            assert not run.done()
            await asyncio.sleep(0.01)
    assert (await queue.stats()).get(State.SENDING) == 1 and not run.done()
    worker.stop_now()
    await asyncio.wait_for(run, 60)
    st = await queue.stats()
    assert st.counts == {"deferred": 1, "queued": N - 1} and st.ambiguous == 1
    await queue.close()
