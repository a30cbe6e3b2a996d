"""Producers and workers apart, on RabbitMQ with the job store in PostgreSQL:
``mailspool enqueue`` in one process, ``mailspool worker`` in several, as on many machines.

- a worker killed with SIGKILL midway: every job is sent, and sent once except the counted
  ambiguous window (the jobs the dead worker held);
- RabbitMQ killed and restarted mid-run (a broker of the test's own, on another port): the
  workers reconnect with backoff and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailspool.models import CampaignStats
from mailspool.queue import PostgresStore
from mailspool.testing import SMTPSink, free_port, wait_listening
from tests.support.cli import TEMPLATE
from tests.support.processes import Workers, env, mailspool, per_recipient, twice_only_in_the_window
from tests.support.services import RabbitMQNamespace, need
from tests.support.smtp import timing_server
from tests.support.timing import ArrivalTimes, assert_rate

T = TypeVar("T")
CAMPAIGN = "cluster"
RABBITMQ_SERVER = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"


# -- helpers ----------------------------------------------------------------------------------


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a thread of its own (these tests are synchronous)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    if errors:
        raise errors[0]
    return result[0]


def stats(store: str) -> CampaignStats:
    """The campaign's counts, read from the job store."""

    async def read() -> CampaignStats:
        s = PostgresStore(store)
        await s.open()
        try:
            return await s.stats(CAMPAIGN)
        finally:
            await s.close()

    return run_async(read())


def sent(store: str) -> int:
    return stats(store).counts.get("sent", 0)


def enqueue(tmp: Path, n: int, queue: str, store: str) -> list[str]:
    """``mailspool enqueue`` of ``n`` recipients in a process of its own."""
    emails = [f"user{i}@example.com" for i in range(n)]
    (tmp / "r.csv").write_text(
        "Name, Email\n" + "".join(f"n{i}, {e}\n" for i, e in enumerate(emails))
    )
    (tmp / "t.txt").write_text(TEMPLATE)
    cmd = mailspool(
        "enqueue", "r.csv", "--template", "t.txt", "--campaign", CAMPAIGN,
        "--queue", queue, "--store", store, "--json", "--log-level", "warning",
    )  # fmt: skip
    res = subprocess.run(cmd, cwd=tmp, env=env(), capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["new"] == n
    return emails


def wait_for(
    check: Callable[[], bool], timeout: float, what: str, w: Workers | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "" if w is None else "\n".join(w.log(i)[-2000:] for i in range(len(w.procs)))
            raise AssertionError(f"timed out waiting for {what}\n{logs}")
        time.sleep(0.1)


# -- rate limits across processes, held in Redis ---------------------------------------------------


def test_three_workers_share_one_global_rate_held_in_redis(
    tmp_path: Path,
    rabbitmq: RabbitMQNamespace,
    redis_url: str,
    workers: list[Workers],
) -> None:
    """The queue in RabbitMQ, the jobs in PostgreSQL, the limits in Redis
    (``--limits-redis``): three workers together stay under one 50/s rate."""
    n = 300  # six seconds at 50/s
    queue, store = rabbitmq.amqp(), rabbitmq.store
    enqueue(tmp_path, n, queue, store)
    with timing_server() as server:
        arrivals = ArrivalTimes(server)
        w = Workers(
            tmp_path, queue, server.port,
            "--rate", "50/s", "--concurrency", "8", "--limits-redis", redis_url, store=store, n=3,
        )  # fmt: skip
        workers.append(w)
        wait_for(lambda: len(arrivals.seen) >= n, 60, "every message", w)
        assert all(w.alive())
        assert w.stop() == [0, 0, 0]
    times = arrivals.times()
    assert len(times) == n
    assert_rate(times, 50)


# -- a worker killed midway ---------------------------------------------------------------------


@pytest.mark.slow
def test_producer_and_three_workers_one_killed_midway(
    tmp_path: Path,
    rabbitmq: RabbitMQNamespace,
    smtp_sink: Callable[..., SMTPSink],
    workers: list[Workers],
    redis_url: str,
) -> None:
    n, concurrency = 3000, 8
    queue, store = rabbitmq.amqp(), rabbitmq.store
    emails = enqueue(tmp_path, n, queue, store)
    sink = smtp_sink(dump=True)
    # a rate shared by the workers keeps the run long enough (about 5 s) to kill a worker
    # midway however fast the machine is
    w = Workers(
        tmp_path, queue, sink.port, "--concurrency", str(concurrency), "--lease", "3s",
        "--rate", "600/s", "--limits-redis", redis_url, store=store, n=3,
    )  # fmt: skip
    workers.append(w)
    wait_for(lambda: sent(store) >= n // 3, 60, "a third sent", w)
    w.procs[0].kill()
    w.procs[0].wait()
    assert sent(store) < n, "the run finished before the kill"
    wait_for(lambda: sent(store) == n, 60, "every job sent", w)
    assert w.alive()[1:] == [True, True]
    assert w.stop()[1:] == [0, 0]

    final = stats(store)
    assert final.counts == {"sent": n}
    sink.stop()
    # only jobs the killed worker held (handed to the relay, not yet recorded) went twice;
    # it held at most its claims (8 x concurrency a batch, a batch and a half buffered)
    # and what it had sent but not yet recorded
    got = per_recipient(sink.received())
    twice_only_in_the_window(got, set(emails), final.ambiguous, 4 * 8 * concurrency)


# -- RabbitMQ restarted mid-run ------------------------------------------------------------------


class PrivateRabbitMQ:
    """A RabbitMQ node of the test's own on free ports, its data in a temp dir, so that it
    can be killed and restarted without disturbing anyone else's broker."""

    def __init__(self) -> None:
        self.port = free_port()
        self.node = f"mstest{self.port}@localhost"
        self.dir = Path(tempfile.mkdtemp(prefix="mailspool-rabbitmq-"))
        (self.dir / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{self.port}\n")
        if os.geteuid() == 0:  # rabbitmq-server drops to the rabbitmq user: let it write here
            user = pwd.getpwnam("rabbitmq")
            for path in (self.dir, self.dir / "rabbitmq.conf"):
                os.chown(path, user.pw_uid, user.pw_gid)
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_PID_FILE": str(self.dir / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
        }
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self) -> PrivateRabbitMQ:
        (self.dir / "pid").unlink(missing_ok=True)
        subprocess.run(
            [RABBITMQ_SERVER, "-detached"], env=self.env, capture_output=True, timeout=60
        )
        if not wait_listening(self.port, timeout=60):
            logs = "".join(
                p.read_text(errors="replace")[-2000:] for p in self.dir.glob("log/*.log")
            )
            raise AssertionError(f"the private RabbitMQ did not start:\n{logs}")
        return self

    def pid(self) -> int | None:
        try:
            return int((self.dir / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """SIGKILL, as in a crash: only what the broker had written survives."""
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_rabbitmq(rabbitmq: RabbitMQNamespace) -> Iterator[PrivateRabbitMQ]:
    need(os.access(RABBITMQ_SERVER, os.X_OK), "rabbitmq-server (for a private broker)")
    broker = PrivateRabbitMQ()
    try:
        yield broker.start()
    finally:
        broker.cleanup()


@pytest.mark.slow
def test_rabbitmq_killed_and_restarted_mid_run_loses_nothing_acknowledged(
    tmp_path: Path,
    rabbitmq: RabbitMQNamespace,
    private_rabbitmq: PrivateRabbitMQ,
    smtp_sink: Callable[..., SMTPSink],
    workers: list[Workers],
    redis_url: str,
) -> None:
    n = 2000
    queue, store = rabbitmq.amqp(private_rabbitmq.url), rabbitmq.store
    emails = enqueue(tmp_path, n, queue, store)  # acknowledged: durable from here on
    sink = smtp_sink(dump=True)
    w = Workers(
        tmp_path, queue, sink.port, "--rate", "600/s", "--limits-redis", redis_url,
        "--lease", "5s", store=store, n=2,
    )  # fmt: skip
    workers.append(w)
    wait_for(lambda: sent(store) >= n // 4, 60, "a quarter sent", w)

    private_rabbitmq.kill()
    time.sleep(1.0)  # the workers find the broker gone, back off, and go on from the store
    private_rabbitmq.start()  # the same data dir: the quorum queue recovers its log
    wait_for(
        lambda: all("rabbitmq reconnected" in w.log(i) for i in range(2)), 60, "reconnection", w
    )
    wait_for(lambda: sent(store) == n, 60, "every job sent", w)
    assert w.alive() == [True, True]  # they waited for the broker instead of giving up
    assert w.stop() == [0, 0]
    assert all("rabbitmq connection lost" in w.log(i) for i in range(2))

    final = stats(store)
    assert final.counts == {"sent": n}
    sink.stop()
    got = per_recipient(sink.received())
    assert set(got) == set(emails)
    # no worker died: announcements redelivered after the restart find their jobs sent or
    # leased, and nothing is sent twice
    assert [r for r, ids in got.items() if len(ids) > 1] == []
    assert final.ambiguous == 0
