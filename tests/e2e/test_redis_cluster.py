"""Producers and workers apart, on Redis: ``mailspool enqueue`` in one process, three
``mailspool worker`` processes sharing the queue and the limits, as on many machines.

- a global rate of 50/s holds across the three workers, measured at the SMTP server;
- per-domain rates (and the default for other domains) hold across them too;
- a worker killed with SIGKILL midway: every job is sent, and sent once except the counted
  ambiguous window (the jobs the dead worker held);
- Redis killed and restarted mid-run (its own server, AOF with ``appendfsync always``):
  the workers reconnect with backoff and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailspool.models import CampaignStats, State, job_id
from mailspool.queue.redis.queue import RedisQueue
from mailspool.testing import SMTPSink, free_port, wait_listening
from tests.support.cli import TEMPLATE
from tests.support.processes import Workers, env, mailspool, per_recipient, twice_only_in_the_window
from tests.support.services import need
from tests.support.smtp import timing_server
from tests.support.timing import ArrivalTimes, assert_rate

CAMPAIGN = "cluster"


# -- helpers ----------------------------------------------------------------------------------


def write_recipients(path: Path, emails: list[str]) -> Path:
    path.write_text("Name, Email\n" + "".join(f"n{i}, {e}\n" for i, e in enumerate(emails)))
    (path.parent / "t.txt").write_text(TEMPLATE)
    return path


def enqueue(tmp: Path, csv: Path, queue: str) -> subprocess.Popen[str]:
    cmd = mailspool(
        "enqueue", str(csv), "--template", "t.txt", "--campaign", CAMPAIGN,
        "--queue", queue, "--json", "--log-level", "warning",
    )  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp, env=env(), stdout=subprocess.PIPE, text=True)


def enqueued(producer: subprocess.Popen[str]) -> int:
    """Wait for ``mailspool enqueue``; how many new jobs it says it queued."""
    out, _ = producer.communicate(timeout=60)
    assert producer.returncode == 0
    return int(json.loads(out)["new"])


def stats(url: str) -> CampaignStats:
    """The campaign's statistics, read through the queue as ``mailspool status`` does."""

    async def read() -> CampaignStats:
        q = RedisQueue(url)
        await q.open()
        try:
            return await q.stats(CAMPAIGN)
        finally:
            await q.close()

    return asyncio.run(read())


def sent(url: str) -> int:
    return stats(url).get(State.SENT)


def states(url: str, emails: list[str]) -> dict[str, State]:
    """Each recipient's job state (the job id is derived from campaign and recipient)."""

    async def read() -> dict[str, State]:
        q = RedisQueue(url)
        await q.open()
        try:
            jobs = await asyncio.gather(*(q.get(job_id(CAMPAIGN, e)) for e in emails))
        finally:
            await q.close()
        return {e: j.state for e, j in zip(emails, jobs, strict=True) if j is not None}

    return asyncio.run(read())


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- rate limits across processes ----------------------------------------------------------------


def test_three_workers_share_one_global_rate(
    tmp_path: Path, redis_url: str, workers: list[Workers]
) -> None:
    n = 300  # six seconds at 50/s
    csv = write_recipients(tmp_path / "r.csv", [f"user{i}@example.com" for i in range(n)])
    assert enqueued(enqueue(tmp_path, csv, redis_url)) == n
    with timing_server() as server:
        arrivals = ArrivalTimes(server)
        w = Workers(tmp_path, redis_url, server.port, "--rate", "50/s", "--concurrency", "8")
        workers.append(w)
        wait_for(lambda: len(arrivals.seen) >= n, 60, "every message")
        assert all(w.alive())
        assert w.stop() == [0, 0, 0]
    times = arrivals.times()
    assert len(times) == n
    assert_rate(times, 50)


def test_per_domain_rates_hold_across_workers(
    tmp_path: Path, redis_url: str, workers: list[Workers]
) -> None:
    slow = [f"s{i}@slow.example.com" for i in range(60)]  # 20/s: three seconds
    other = [f"o{i}@other.example.org" for i in range(120)]  # the default, 40/s
    mixed = [e for pair in zip(slow, other[:60], strict=True) for e in pair] + other[60:]
    csv = write_recipients(tmp_path / "r.csv", mixed)
    assert enqueued(enqueue(tmp_path, csv, redis_url)) == len(mixed)
    with timing_server() as server:
        arrivals = ArrivalTimes(server)
        w = Workers(
            tmp_path, redis_url, server.port, "--concurrency", "8",
            "--domain-rate", "slow.example.com=20/s", "--default-domain-rate", "40/s",
        )  # fmt: skip
        workers.append(w)
        wait_for(lambda: len(arrivals.seen) >= len(mixed), 60, "every message")
        assert w.stop() == [0, 0, 0]
    assert len(arrivals.times("slow.example.com")) == 60
    assert_rate(arrivals.times("slow.example.com"), 20)
    assert_rate(arrivals.times("other.example.org"), 40)


# -- a worker killed midway ---------------------------------------------------------------------


@pytest.mark.slow
def test_producer_and_three_workers_one_killed_midway(
    tmp_path: Path,
    redis_url: str,
    smtp_sink: Callable[..., SMTPSink],
    workers: list[Workers],
) -> None:
    n, concurrency = 3000, 8
    emails = [f"user{i}@example.com" for i in range(n)]
    csv = write_recipients(tmp_path / "r.csv", emails)
    sink = smtp_sink(dump=True)
    # a cluster-wide rate keeps the run long enough (about 7 s) to kill a worker midway
    # however fast the machine is
    w = Workers(
        tmp_path, redis_url, sink.port,
        "--concurrency", str(concurrency), "--lease", "2s", "--rate", "400/s",
    )  # fmt: skip
    workers.append(w)
    producer = enqueue(tmp_path, csv, redis_url)  # while the workers already wait for work
    wait_for(lambda: sent(redis_url) >= n // 3, 60, "a third sent")
    w.procs[0].kill()
    w.procs[0].wait()
    killed_at = sent(redis_url)
    assert enqueued(producer) == n
    wait_for(lambda: sent(redis_url) == n, 60, "every job sent")
    assert killed_at < n, "the run finished before the kill"
    assert w.alive()[1:] == [True, True]
    assert w.stop()[1:] == [0, 0]

    final = stats(redis_url)
    assert final.counts == {"sent": n}
    sink.stop()
    # only jobs the killed worker held (handed to the relay, not yet recorded) went twice
    got = per_recipient(sink.received())
    twice_only_in_the_window(got, set(emails), final.ambiguous, 2 * 8 * concurrency)


# -- Redis restarted mid-run ---------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the test's own: AOF with fsync on every write, in a temp dir."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        cmd = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_listening(self.port), (self.dir / "redis.log").read_text()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # no chance to flush anything: only what was fsynced survives
            self.proc.wait()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    need(shutil.which("redis-server") is not None, "redis-server")
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis").start()
    yield server
    server.kill()


@pytest.mark.slow
def test_redis_restarted_mid_run_loses_nothing_acknowledged(
    tmp_path: Path,
    private_redis: PrivateRedis,
    smtp_sink: Callable[..., SMTPSink],
    workers: list[Workers],
) -> None:
    n = 2000
    url = f"redis://127.0.0.1:{private_redis.port}/0?prefix=fault"
    emails = [f"user{i}@example.com" for i in range(n)]
    csv = write_recipients(tmp_path / "r.csv", emails)
    assert enqueued(enqueue(tmp_path, csv, url)) == n  # acknowledged: durable from here on
    sink = smtp_sink(dump=True)
    w = Workers(tmp_path, url, sink.port, "--rate", "400/s", "--lease", "5s", n=2)
    workers.append(w)
    wait_for(lambda: sent(url) >= n // 3, 60, "a third sent")

    before = states(url, emails)
    private_redis.kill()
    time.sleep(1.0)  # the workers find Redis gone and back off
    private_redis.start()  # the same dir: it loads the append-only file
    after = states(url, emails)
    assert len(after) == n  # every acknowledged job survived ...
    sent_before = {e for e, s in before.items() if s is State.SENT}
    assert all(after[e] is State.SENT for e in sent_before)  # ... and every recorded "sent"

    wait_for(lambda: sent(url) == n, 60, "every job sent after the restart")
    assert w.alive() == [True, True]  # they waited for Redis instead of giving up
    assert w.stop() == [0, 0]
    logs = [w.log(i) for i in range(2)]
    assert any("redis unreachable, retrying" in log for log in logs)
    assert any("redis reachable again" in log for log in logs)

    sink.stop()
    got = per_recipient(sink.received())
    assert set(got) == set(emails)
    twice = {r for r, ids in got.items() if len(ids) > 1}
    assert len(twice) <= stats(url).ambiguous
    assert not sent_before & twice  # recorded as sent before the crash: never sent again
