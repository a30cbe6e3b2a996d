"""The worker under faults of its own surroundings, in process, against real SMTP servers
and a real SQLite job store:

- the store refusing writes for a while: outcomes are recorded once it is back, nothing
  is handed back as untried, nothing is sent twice;
- an observer (progress, logs, metrics) that raises: delivery goes on;
- a defect while sending one job: that job is retried, the others go on;
- a shutdown whose grace runs out while a send waits for the relay's answer: recorded as
  an ambiguous attempt, not handed back as untried;
- the store failing to give back an attachment: deferred, not dead;
- lease owners: only a dead process of this host and PID space is reclaimed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from mailspool.errors import QueueError
from mailspool.leases import PID_SPACE, WORKER_TOKEN, make_owner, owner_is_dead_here
from mailspool.models import AttachmentRef, Job, Outcome, State
from mailspool.observe import Observer
from mailspool.queue.sqlite import SQLiteQueue
from mailspool.testing import RecordingSMTPServer, SMTPSink
from mailspool.transport import SMTPTransport, parse_smtp_url
from mailspool.transport.base import Delivery, Envelope
from mailspool.worker import Worker, WorkerConfig


def make_job(i: int, **fields: object) -> Job:
    jid = f"job{i:05d}"
    data = (
        f"From: a@example.com\r\nTo: user{i}@example.com\r\nSubject: t{i}\r\n"
        f"Message-ID: <{jid}@example.com>\r\n\r\nhello\r\n"
    ).encode()
    job = Job(
        jid, "c", jid, f"<{jid}@example.com>", "a@example.com", (f"user{i}@example.com",),
        data, created_at=time.time(),
    )  # fmt: skip
    for name, v in fields.items():
        setattr(job, name, v)
    return job


async def open_queue(path: Path, cls: type[SQLiteQueue] = SQLiteQueue) -> SQLiteQueue:
    queue = cls(path)
    await queue.open()
    return queue


def transport(port: int) -> SMTPTransport:
    return SMTPTransport(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))


async def drain(worker: Worker, queue: SQLiteQueue) -> None:
    """Run until nothing is due (as ``mailspool worker --drain``)."""

    async def idle() -> bool:
        st = await queue.stats()
        return st.next_due is None or st.next_due > time.time()

    await asyncio.wait_for(worker.run(idle), 120)


def config(**kw: object) -> WorkerConfig:
    return WorkerConfig(**{"concurrency": 4, "poll_interval": 0.05, **kw})  # type: ignore[arg-type]


class FlakyRecords(SQLiteQueue):
    """The store refuses the first few writes of outcomes, as a database that is briefly
    unreachable does."""

    failures = 3

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise QueueError("database unreachable")
        return await super().record(owner, outcomes)


def test_outcomes_are_recorded_once_the_store_is_back(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db", FlakyRecords)
        await queue.enqueue([make_job(i) for i in range(50)])
        worker = Worker(queue, transport(smtpd.port), config())
        await drain(worker, queue)
        assert worker.error is None
        st = await queue.stats()
        assert st.counts == {"sent": 50} and st.ambiguous == 0
        assert queue.failures == 0  # the faults did happen
        await queue.close()

    asyncio.run(main())
    got = [m.recipients[0] for m in smtpd.messages]
    assert sorted(got) == sorted({f"user{i}@example.com" for i in range(50)})  # once each


class Broken(Observer):
    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        raise RuntimeError("observer defect")

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        raise RuntimeError("observer defect")


def test_a_failing_observer_does_not_stop_delivery(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i) for i in range(30)])
        worker = Worker(queue, transport(smtpd.port), config(), [Broken()])
        await drain(worker, queue)
        assert worker.error is None
        assert (await queue.stats()).counts == {"sent": 30}
        await queue.close()

    asyncio.run(main())
    assert len(smtpd.messages) == 30


class DefectOnce(SMTPTransport):
    """Raises something no SMTP failure raises, once, for one job."""

    def __init__(self, port: int, victim: str) -> None:
        super().__init__(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
        self.victim = victim

    async def send(self, envelope: Envelope) -> Delivery:
        if envelope.job_id == self.victim:
            self.victim = ""
            raise RuntimeError("transport defect")
        return await super().send(envelope)


def test_a_defect_while_sending_one_job_retries_that_job(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i) for i in range(20)])
        worker = Worker(queue, DefectOnce(smtpd.port, "job00007"), config())
        await drain(worker, queue)
        st = await queue.stats()
        assert st.counts == {"deferred": 1, "sent": 19}
        job = await queue.get("job00007")
        assert job is not None and job.state is State.DEFERRED
        assert "RuntimeError: transport defect" in job.last_reply
        assert job.attempts == 1
        # the defect is counted as a possible delivery: it happened after the hand-over
        assert st.ambiguous == 1
        await queue.close()

    asyncio.run(main())
    assert len(smtpd.messages) == 19


def test_shutdown_grace_running_out_records_an_ambiguous_attempt(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """The relay holds its answer after the final dot longer than the shutdown grace: the
    sends are cut off, and the jobs are recorded as attempted (deferred, ambiguous, due at
    once) rather than handed back as if never tried."""
    sink = smtp_sink("-W", ".:30")

    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i) for i in range(2)])
        worker = Worker(queue, transport(sink.port), config(concurrency=2, shutdown_grace=0.2))
        run = asyncio.create_task(worker.run())
        while len(worker._handed) < 2:  # noqa: ASYNC110 - no event marks the hand-over
            await asyncio.sleep(0.01)
        worker.stop()
        await asyncio.wait_for(run, 30)
        st = await queue.stats()
        assert st.counts == {"deferred": 2} and st.ambiguous == 2
        for jid in ("job00000", "job00001"):
            job = await queue.get(jid)
            assert job is not None and job.attempts == 1 and job.not_before <= time.time()
            assert "interrupted at shutdown" in job.last_reply
        await queue.close()

    asyncio.run(main())


class NoBlobs(SQLiteQueue):
    async def get_blob(self, digest: str) -> bytes | None:
        raise QueueError("database unreachable")


def test_store_failing_to_give_an_attachment_defers_the_job(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db", NoBlobs)
        ref = AttachmentRef("d" * 64, "a.pdf", "application/pdf")
        job = make_job(1, attachments=(ref,), body_offset=0)
        job.body_offset = job.message.index(b"\r\n\r\n") + 4
        await queue.enqueue([job])
        await drain(Worker(queue, transport(smtpd.port), config()), queue)
        got = await queue.get(job.id)
        assert got is not None and got.state is State.DEFERRED
        assert "database unreachable" in got.last_reply and got.dead_reason == ""
        await queue.close()

    asyncio.run(main())
    assert smtpd.messages == []


def test_lease_owners_of_this_pid_space_only() -> None:
    host = socket.gethostname()
    me = make_owner()
    assert me == f"{host}:{os.getpid()}:{WORKER_TOKEN}:{PID_SPACE}"
    assert not owner_is_dead_here(me)
    assert owner_is_dead_here(f"{host}:{os.getpid()}:earlier1:{PID_SPACE}")  # pid reused
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert owner_is_dead_here(f"{host}:{gone.pid}:abcdef12:{PID_SPACE}")
    # the same pid in another PID namespace (a container with the same host name), another
    # host, or an owner written without its PID space: not known to be dead
    assert not owner_is_dead_here(f"{host}:{gone.pid}:abcdef12:0badf00d")
    assert not owner_is_dead_here(f"elsewhere:{gone.pid}:abcdef12:{PID_SPACE}")
    assert not owner_is_dead_here(f"{host}:{gone.pid}:abcdef12")


def test_another_process_here_shares_the_pid_space() -> None:
    code = "from mailspool.leases import PID_SPACE; print(PID_SPACE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == PID_SPACE
