"""The worker under faults of its own surroundings, in process, against real SMTP servers
and a real SQLite job store:

- the store refusing writes for a while: outcomes are recorded once it is back, nothing
  is handed back as untried, nothing is sent twice;
- an observer (progress, logs, metrics) that raises: delivery goes on;
- a defect while sending one job: that job is retried, the others go on;
- a shutdown whose grace runs out while a send waits for the relay's answer: recorded as
  an ambiguous attempt, not handed back as untried;
- the store failing to give back an attachment: deferred, not dead;
- lease owners: only a dead process of this host and PID space is reclaimed;

and ``mailspool worker`` as a process:

- a 535 authentication failure: logged at every relay pause, shown by status, the backlog
  never dead-lettered nor charged an attempt;
- a send slower than the lease, with a second worker on the same queue: the heartbeat
  keeps the lease, the message is delivered once, the second worker never claims it;
- SIGINT: messages in flight finish, the rest are handed back at once, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from mailspool.delivery.leases import PID_SPACE, WORKER_TOKEN, make_owner, owner_is_dead_here
from mailspool.delivery.observer import Observer
from mailspool.delivery.worker import Worker, WorkerConfig
from mailspool.errors import QueueError
from mailspool.models import AttachmentRef, DeadReason, Job, Outcome, State
from mailspool.queue.sqlite.queue import SQLiteQueue
from mailspool.testing import RecordingSMTPServer, SMTPSink
from mailspool.transport import SMTPTransport, parse_smtp_url
from mailspool.transport.base import Delivery, Envelope, Ready
from tests.support.cli import TEMPLATE, Result, json_events, write_csv
from tests.support.jobs import HAND_MADE, make_job

HAND_MADE_MAIL = pytest.mark.unchecked_mail(HAND_MADE)


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


@HAND_MADE_MAIL
def test_outcomes_are_recorded_once_the_store_is_back(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db", FlakyRecords)
        await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(50)])
        worker = Worker(queue=queue, transport=transport(smtpd.port), config=config())
        await drain(worker, queue)
        assert worker.error is None
        st = await queue.stats()
        assert st.counts == {"sent": 50} and st.ambiguous == 0
        assert queue.failures == 0  # the faults did happen
        await queue.close()

    asyncio.run(main())
    got = [m.recipients[0] for m in smtpd.messages]
    assert sorted(got) == sorted({f"user{i}@example.com" for i in range(50)})  # once each


@HAND_MADE_MAIL
def test_a_damaged_stored_message_is_dead_and_the_other_jobs_go_on(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(20)])
        db = sqlite3.connect(tmp_path / "q.db")  # as a damaged disk would leave it
        db.execute(
            "UPDATE bodies SET message = x'00ff00ff00'"
            " WHERE seq = (SELECT seq FROM jobs WHERE id = 'job00007')"
        )
        db.commit()
        db.close()
        worker = Worker(queue=queue, transport=transport(smtpd.port), config=config())
        await drain(worker, queue)
        assert worker.error is None  # the worker went on
        st = await queue.stats()
        assert st.counts == {"sent": 19, "dead": 1}
        dead = await queue.get("job00007")
        assert dead is not None and dead.dead_reason == DeadReason.INVALID_MESSAGE.value
        assert "its stored message cannot be read" in dead.last_reply
        await queue.close()

    asyncio.run(main())
    assert len(smtpd.messages) == 19


class Broken(Observer):
    def sent(self, job: Job, delivery: Delivery, elapsed: float) -> None:
        raise RuntimeError("observer defect")

    def recorded(self, outcomes: Sequence[Outcome]) -> None:
        raise RuntimeError("observer defect")


@HAND_MADE_MAIL
def test_a_failing_observer_does_not_stop_delivery(
    tmp_path: Path, smtpd: RecordingSMTPServer
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(30)])
        worker = Worker(
            queue=queue, transport=transport(smtpd.port), config=config(), observers=[Broken()]
        )
        await drain(worker, queue)
        assert worker.error is None
        assert (await queue.stats()).counts == {"sent": 30}
        await queue.close()

    asyncio.run(main())
    assert len(smtpd.messages) == 30


class DefectOnce(SMTPTransport):
    """Raises something no SMTP failure raises, once, for one job."""

    def __init__(self, port: int, victim: str, *, begun: bool) -> None:
        super().__init__(parse_smtp_url(f"smtp://127.0.0.1:{port}", connect_timeout=5))
        self.victim = victim
        self.begun = begun

    async def send(self, envelope: Envelope, ready: Ready | None = None) -> Delivery:
        if envelope.job_id == self.victim:
            self.victim = ""
            if ready is not None:
                await ready()  # connected: the rate-limit slot is taken
            if self.begun:
                envelope.begin()  # MAIL FROM written: the relay may take the message
            raise RuntimeError("transport defect")
        return await super().send(envelope, ready)


@HAND_MADE_MAIL
@pytest.mark.parametrize("begun", [True, False], ids=["in-transaction", "before-transaction"])
def test_a_defect_while_sending_one_job_retries_that_job(
    tmp_path: Path, smtpd: RecordingSMTPServer, begun: bool
) -> None:
    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(20)])
        defect = DefectOnce(smtpd.port, "job00007", begun=begun)
        worker = Worker(queue=queue, transport=defect, config=config())
        await drain(worker, queue)
        st = await queue.stats()
        assert st.counts == {"deferred": 1, "sent": 19}
        job = await queue.get("job00007")
        assert job is not None and job.state is State.DEFERRED
        assert "RuntimeError: transport defect" in job.last_reply
        assert job.attempts == 1
        # a possible delivery only once its transaction has begun
        assert st.ambiguous == int(begun)
        await queue.close()

    asyncio.run(main())
    assert len(smtpd.messages) == 19


@HAND_MADE_MAIL
def test_shutdown_grace_running_out_records_an_ambiguous_attempt(
    tmp_path: Path, smtp_sink: Callable[..., SMTPSink]
) -> None:
    """The relay holds its answer after the final dot longer than the shutdown grace: the
    sends are cut off, and the jobs are recorded as attempted (deferred, ambiguous, due at
    once) rather than handed back as if never tried."""
    sink = smtp_sink("-W", ".:30")

    async def main() -> None:
        queue = await open_queue(tmp_path / "q.db")
        await queue.enqueue([make_job(i, campaign="c", deliverable=True) for i in range(2)])
        worker = Worker(
            queue=queue,
            transport=transport(sink.port),
            config=config(concurrency=2, shutdown_grace=0.2),
        )
        run = asyncio.create_task(worker.run())
        while len(worker.flight.begun) < 2:  # noqa: ASYNC110 - no event marks the hand-over
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
        job = make_job(1, campaign="c", deliverable=True, attachments=(ref,), body_offset=0)
        job.body_offset = job.message.index(b"\r\n\r\n") + 4
        await queue.enqueue([job])
        await drain(Worker(queue=queue, transport=transport(smtpd.port), config=config()), queue)
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
    code = "from mailspool.delivery.leases import PID_SPACE; print(PID_SPACE)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == PID_SPACE


# -- mailspool worker, as a process ---------------------------------------------------------------


def enqueue(cwd: Path, cli: Callable[..., Result], n: int) -> None:
    write_csv(cwd / "r.csv", [(f"u{i}", f"u{i}@example.com") for i in range(n)])
    (cwd / "t.txt").write_text(TEMPLATE)
    res = cli("enqueue", "r.csv", "--template", "t.txt", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["queued"] == n, res.stderr


def start_worker(
    cwd: Path, url: str, *extra: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``mailspool worker`` in cwd, its JSON log lines going to ``log``."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MAILSPOOL_")}
    full.update(env or {})
    cmd = [
        sys.executable, "-m", "mailspool", "worker", "--smtp", url,
        "--log-format", "json", *extra,
    ]  # fmt: skip
    with log.open("wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=out, stderr=subprocess.STDOUT)


def log_events(log: Path, name: str) -> list[dict[str, Any]]:
    return json_events(log.read_text(errors="replace"), name)


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def jobs(cwd: Path) -> list[dict[str, Any]]:
    """Every job row of the SQLite queue in cwd (read while workers run: WAL)."""
    db = sqlite3.connect(cwd / "mailspool.db", timeout=10)
    db.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in db.execute("SELECT id, state, attempts, ambiguous, lease_owner FROM jobs")
        ]
    finally:
        db.close()


def counts(cwd: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for j in jobs(cwd):
        found[j["state"]] = found.get(j["state"], 0) + 1
    return found


def stop(p: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if p.poll() is None:
        p.send_signal(sig)
    try:
        return p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise


def test_worker_facing_an_authentication_failure_says_so_and_never_dead_letters(
    tmp_path: Path, cli: Callable[..., Result], server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    """A long-running worker whose relay refuses its credentials: every pause is logged
    with the 535, it comes back after the relay's backoff and meets the 535 again, and the
    backlog stays queued. With --max-attempts 1, a single charged attempt would have
    dead-lettered every job."""
    n = 6
    enqueue(tmp_path, cli, n)
    log = tmp_path / "worker.log"
    with RecordingSMTPServer(tls=server_tls, credentials=("bob", "right")) as srv:
        p = start_worker(
            tmp_path, f"smtp://bob@127.0.0.1:{srv.port}?cafile={ca_file}",
            "--max-attempts", "1",
            log=log, env={"MAILSPOOL_SMTP_PASSWORD": "wrong-password"},
        )  # fmt: skip
        try:
            # the second pause: the worker tried again after the first (5 s) one
            came_back = wait_for(lambda: len(log_events(log, "relay paused")) >= 2, 15)
        finally:
            rc = stop(p)
        assert came_back, log.read_text()
        assert srv.messages == [] and len(srv.auth_attempts) >= 2
    assert rc == 0, log.read_text()
    text = log.read_text()
    assert "wrong-password" not in text

    paused = log_events(log, "relay paused")
    assert {(e["code"], e["stage"], e["error"]) for e in paused} == {(535, "auth", "AuthFailure")}
    assert [e["retry_in_s"] for e in paused[:2]] == [5.0, 10.0]  # the relay's own backoff
    deferred = log_events(log, "message deferred")
    assert deferred and {(e["code"], e["kind"]) for e in deferred} == {(535, "auth")}
    assert log_events(log, "message dead") == []

    st = json.loads(cli("status", "--json").stdout)[0]
    assert st.get("dead", 0) == 0 and st.get("sent", 0) == 0 and st["total"] == n
    assert st.get("deferred", 0) + st.get("queued", 0) == n
    assert "535 5.7.8" in st["last_error"]
    assert json.loads(cli("dlq", "list", "--json").stdout) == []
    assert {j["attempts"] for j in jobs(tmp_path)} == {0}


def test_worker_logs_an_authentication_failure_as_an_error(
    tmp_path: Path, cli: Callable[..., Result], server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    enqueue(tmp_path, cli, 2)
    log = tmp_path / "worker.log"
    with RecordingSMTPServer(tls=server_tls, credentials=("bob", "right")) as srv:
        p = start_worker(
            tmp_path, f"smtp://bob@127.0.0.1:{srv.port}?cafile={ca_file}", "--drain",
            log=log, env={"MAILSPOOL_SMTP_PASSWORD": "wrong-password"},
        )  # fmt: skip
        assert p.wait(30) == 0, log.read_text()
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(e.get("level") == "error" and "535" in json.dumps(e) for e in lines), lines


def test_a_send_slower_than_the_lease_is_not_claimed_by_a_second_worker(
    tmp_path: Path, cli: Callable[..., Result], smtp_sink: Callable[..., SMTPSink]
) -> None:
    """The relay holds its answer to the final dot for 5 s, the lease is 2 s: the first
    worker's heartbeat keeps extending it, so a second worker polling the same queue never
    claims the job, and the message reaches the relay once."""
    enqueue(tmp_path, cli, 1)
    sink = smtp_sink("-W", ".:5", dump=True)
    url = f"smtp://127.0.0.1:{sink.port}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_worker(tmp_path, url, "--lease", "2s", "--drain", log=first_log)
    second: subprocess.Popen[bytes] | None = None
    try:
        assert wait_for(lambda: counts(tmp_path) == {"sending": 1}, 15), first_log.read_text()
        # long-running (no --drain): it keeps polling while the first one sends
        second = start_worker(tmp_path, url, "--lease", "2s", log=second_log)
        assert first.wait(30) == 0, first_log.read_text()
        assert log_events(second_log, "worker started"), second_log.read_text()
    finally:
        stop(first)
        # a claim of the second worker would still be in flight: SIGTERM lets it finish
        if second is not None:
            assert stop(second) == 0, second_log.read_text()
    (job,) = jobs(tmp_path)
    assert (job["state"], job["attempts"], job["ambiguous"]) == ("sent", 1, 0)
    assert len(sink.received()) == 1  # delivered exactly once
    assert len(log_events(first_log, "message sent")) == 1
    assert log_events(second_log, "message sent") == []
    assert log_events(second_log, "message deferred") == []


def test_sigint_stops_the_worker_gracefully_and_hands_back_unsent_jobs(
    tmp_path: Path, cli: Callable[..., Result], smtp_sink: Callable[..., SMTPSink]
) -> None:
    n = 40
    enqueue(tmp_path, cli, n)
    slow = smtp_sink("-W", ".:1", dump=True)
    log = tmp_path / "worker.log"
    # a 300 s lease: anything left leased would show as 'sending' long after the exit
    p = start_worker(
        tmp_path, f"smtp://127.0.0.1:{slow.port}", "--concurrency", "2", "--lease", "300s",
        log=log,
    )  # fmt: skip
    try:
        assert wait_for(lambda: counts(tmp_path).get("sent", 0) >= 2, 20), log.read_text()
    finally:
        rc = stop(p, signal.SIGINT)
    assert rc == 0, log.read_text()
    assert log_events(log, "worker stopped")
    rows = jobs(tmp_path)
    sent = [j for j in rows if j["state"] == "sent"]
    unsent = [j for j in rows if j["state"] != "sent"]
    assert 0 < len(sent) < n
    assert len(slow.received()) == len(sent)  # what the relay took was recorded
    # handed back as never tried: queued, no attempt charged, no lease kept
    assert {(j["state"], j["attempts"], j["lease_owner"]) for j in unsent} == {("queued", 0, None)}
    assert sum(j["ambiguous"] for j in rows) == 0
