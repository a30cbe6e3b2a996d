"""The RabbitMQ queue beyond the shared contract: what the broker may do (redeliver, lose
an announcement, dead-letter after the delivery limit) never sends a job twice nor
strands it, with the job store in PostgreSQL and in Redis; configuration mistakes are
reported clearly."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import CampaignState, Enqueued, Outcome, State
from mailspool.queue import RabbitMQQueue, make_queue

# the URL parsers, tested here on their own (each is internal to its backend)
from mailspool.queue.postgres.schema import parse_store_url
from mailspool.queue.rabbitmq.topology import parse_amqp_url
from tests.support.cli import TEMPLATE, write_csv
from tests.support.jobs import make_job
from tests.support.services import RabbitMQNamespace

OpenQueue = Callable[..., Any]


@pytest.fixture(params=["rabbitmq", "rabbitmq_redis"])
def ns(request: pytest.FixtureRequest) -> RabbitMQNamespace:
    """The test's RabbitMQ namespace, with its job store in PostgreSQL, then in Redis."""
    found: RabbitMQNamespace = request.getfixturevalue(request.param)
    return found


@pytest.fixture
async def open_queue(ns: RabbitMQNamespace) -> AsyncIterator[OpenQueue]:
    """Open RabbitMQ queues on the test's namespace (``params`` are extra URL parameters);
    every one still open is closed afterwards."""
    opened: list[RabbitMQQueue] = []

    async def open_(params: str = "") -> RabbitMQQueue:
        q = RabbitMQQueue(url=ns.amqp() + params, store=ns.store)
        await q.open()
        opened.append(q)
        return q

    yield open_
    for q in opened:
        if not q._closing:
            await q.close()


async def publish_raw(ns: RabbitMQNamespace, campaign: str, *ids: str) -> None:
    """Announce ``ids`` as another process (or a broker redelivery) would."""
    import aio_pika

    async with await aio_pika.connect(ns.amqp()) as conn:
        ch = await conn.channel(publisher_confirms=True)
        await ch.default_exchange.publish(
            aio_pika.Message("\n".join(ids).encode(), headers={"campaign": campaign}),
            routing_key=f"{ns.prefix}.work",
        )


async def ready_messages(ns: RabbitMQNamespace, queue: str = "work") -> int:
    import aio_pika

    async with await aio_pika.connect(ns.amqp()) as conn:
        ch = await conn.channel()
        q = await ch.declare_queue(f"{ns.prefix}.{queue}", passive=True)
        count = q.declaration_result.message_count
        assert count is not None
        return count


async def wait_until(check: Callable[[], Any], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- configuration ----------------------------------------------------------------------------


def test_a_store_is_required() -> None:
    with pytest.raises(ConfigError, match="--store postgresql://"):
        make_queue("amqp://guest:guest@127.0.0.1:5672/")


def test_url_parameters_are_ours_or_aio_pikas() -> None:
    cfg = parse_amqp_url("amqp://u:p@h:5672/vh?prefix=a.b&batch=10&heartbeat=30&claim_wait=0")
    assert (cfg.prefix, cfg.batch, cfg.claim_wait) == ("a.b", 10, 0.0)
    assert cfg.url == "amqp://u:p@h:5672/vh?heartbeat=30"
    assert (cfg.work, cfg.dead, cfg.dlx) == ("a.b.work", "a.b.dead", "a.b.dlx")
    for bad in ("prefix=a/b", "batch=0", "claim_wait=x", "max_hold=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            parse_amqp_url(f"amqp://h/?{bad}")


def test_store_url() -> None:
    dsn, schema, pool = parse_store_url("postgresql://u:pw@h/db?schema=ms_1&pool=3&sslmode=off")
    assert (dsn, schema, pool) == ("postgresql://u:pw@h/db?sslmode=off", "ms_1", 3)
    with pytest.raises(ConfigError, match="schema"):
        parse_store_url("postgresql://h/db?schema=Bad-Name")
    with pytest.raises(ConfigError, match="postgresql://"):
        make_queue("amqp://h/", "mysql://h/db")


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "aio_pika", None)
    with pytest.raises(MissingExtra, match=r"mailspool\[rabbitmq\]"):
        RabbitMQQueue(url="amqp://h/", store="postgresql://h/db")
    monkeypatch.delitem(sys.modules, "aio_pika")
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(MissingExtra, match=r"mailspool\[postgres\]"):
        RabbitMQQueue(url="amqp://h/", store="postgresql://h/db")


async def test_unreachable_broker_is_a_queue_error(rabbitmq: RabbitMQNamespace) -> None:
    from mailspool.testing import free_port

    q = RabbitMQQueue(url=f"amqp://guest:secret@127.0.0.1:{free_port()}/", store=rabbitmq.store)
    with pytest.raises(QueueError, match="cannot connect to RabbitMQ") as err:
        await q.open()
    assert "secret" not in str(err.value)


# -- what the broker may do -------------------------------------------------------------------


async def test_a_redelivered_announcement_never_sends_twice(
    ns: RabbitMQNamespace, open_queue: OpenQueue
) -> None:
    q = await open_queue()
    await q.enqueue([make_job(1)])
    (job,) = await q.claim("w1", 10, 30)
    assert await q.record("w1", [Outcome(job.id, State.SENT, "250 ok")]) == 1
    await publish_raw(ns, "c1", job.id)  # the broker hands the job out again
    assert await q.claim("w2", 10, 30) == []
    await q.close()  # acknowledged, not returned: nothing is left in the queue
    assert await ready_messages(ns) == 0


async def test_a_dead_workers_jobs_come_back_when_their_lease_expires(
    ns: RabbitMQNamespace, open_queue: OpenQueue
) -> None:
    a = await open_queue()
    await a.enqueue([make_job(i) for i in range(3)])
    held = await a.claim("a", 10, lease=1.0)
    assert len(held) == 3
    conn = a._conn
    assert conn is not None
    a._closing = True  # a worker that dies: its connection drops, nothing is recorded
    await conn.close()
    await a.store.close()
    b = await open_queue("&claim_wait=0.2")
    # the broker redelivers at once, but the jobs stay leased to the dead worker ...
    assert await b.claim("b", 10, 30) == []
    await asyncio.sleep(1.1)
    # ... until the lease runs out; each such reclaim is counted as ambiguous
    again = await b.claim("b", 10, 30)
    assert sorted(j.id for j in again) == sorted(j.id for j in held)
    assert all(j.attempts == 2 for j in again)
    assert (await b.stats()).ambiguous == 3


async def test_a_lost_announcement_is_found_in_the_store(open_queue: OpenQueue) -> None:
    q = await open_queue("&claim_wait=0.1")
    # a producer killed between its commit and its publish: stored, never announced
    await q.store.insert([make_job(1), make_job(2)])
    jobs = await q.claim("w", 10, 30)
    assert sorted(j.id for j in jobs) == [make_job(1).id, make_job(2).id]


async def test_another_campaigns_announcements_are_left_to_its_workers(
    open_queue: OpenQueue,
) -> None:
    q = await open_queue("&claim_wait=0.1")
    await q.enqueue([make_job(1, campaign="a"), make_job(1, campaign="b")])
    assert [j.campaign for j in await q.claim("wb", 10, 30, campaign="b")] == ["b"]
    assert [j.campaign for j in await q.claim("wa", 10, 30, campaign="a")] == ["a"]


async def test_a_paused_campaigns_messages_are_taken_once_and_announced_at_the_resume(
    ns: RabbitMQNamespace, open_queue: OpenQueue
) -> None:
    worker = await open_queue("&claim_wait=0.1")
    operator = await open_queue()  # never claims: consumes nothing
    await worker.enqueue([make_job(i, campaign="p") for i in range(5)])
    await operator.set_campaign_state("p", CampaignState.PAUSED)
    for _ in range(3):
        assert await worker.claim("w", 10, 30) == []
    # its messages were acknowledged as they came, never handed back to come round again
    assert not worker._inbox and not worker._held
    await worker.close()
    assert await ready_messages(ns) == 0
    # the resume announces its due jobs again, for whichever worker is there
    await operator.set_campaign_state("p", CampaignState.ACTIVE)
    assert await ready_messages(ns) >= 1
    again = await open_queue("&claim_wait=0.1")
    got: list[str] = []
    while batch := await again.claim("w2", 10, 30):
        got += [j.id for j in batch]
    assert sorted(got) == [make_job(i, campaign="p").id for i in range(5)]


async def test_past_the_delivery_limit_jobs_are_announced_again(
    ns: RabbitMQNamespace, open_queue: OpenQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    import aio_pika

    q = await open_queue("&delivery_limit=1")
    await q.enqueue([make_job(1)])
    # a consumer that keeps handing the message back (a crash loop)
    async with await aio_pika.connect(ns.amqp()) as conn:
        ch = await conn.channel()
        work = await ch.declare_queue(f"{ns.prefix}.work", passive=True)
        for _ in range(2):
            msg = await work.get(timeout=10)
            assert msg is not None
            await msg.nack(requeue=True)
    assert await ready_messages(ns, "work") == 0  # dead-lettered
    # the queue that consumes dead letters asks the store and announces the job again
    (job,) = await q.claim("w", 10, 30)
    assert job.id == make_job(1).id
    output: list[str] = []

    async def logged() -> bool:
        out = capsys.readouterr()
        output.append(out.out + out.err)
        return "delivery limit reached" in "".join(output)

    await wait_until(logged, "the re-announcement")
    await q.close()
    assert await ready_messages(ns, "dead") == 0  # acknowledged


async def test_no_delivery_is_held_past_max_hold(
    ns: RabbitMQNamespace, open_queue: OpenQueue
) -> None:
    q = await open_queue("&max_hold=1")
    await q.enqueue([make_job(i) for i in range(3)])
    (job,) = await q.claim("w", 1, lease=60)  # one job held, two delivered but unclaimed
    (delivery,) = q._inbox

    async def let_go() -> bool:
        return delivery.acked

    await wait_until(let_go, "the delivery to be acknowledged")
    assert not q._held
    await q.close()
    # the two unclaimed jobs were announced again; the held one is still leased (store)
    other = await open_queue()
    assert sorted(j.id for j in await other.claim("other", 10, 60)) == sorted(
        make_job(i).id for i in range(3) if make_job(i).id != job.id
    )
    assert await other.record("w", [Outcome(job.id, State.SENT, "250 ok")]) == 1


async def test_enqueue_waits_for_a_reconnection(open_queue: OpenQueue) -> None:
    q = await open_queue()
    conn = q._conn
    assert conn is not None
    await conn.close()  # as when the broker restarts
    assert await q.enqueue([make_job(1)]) == [Enqueued.NEW]
    (job,) = await q.claim("w", 10, 30)
    assert job.id == make_job(1).id


# -- through the command line -------------------------------------------------------------------


def test_cli_without_a_store_says_what_to_add(cli: Callable[..., Any]) -> None:
    res = cli("status", "--queue", "amqp://guest:guest@127.0.0.1:5672/")
    assert res.returncode == 2
    assert "--store postgresql://" in res.stderr


def test_send_twice_through_rabbitmq(
    tmp_path: Path, cli: Callable[..., Any], ns: RabbitMQNamespace, smtpd: Any
) -> None:
    write_csv(tmp_path / "r.csv", [(f"n{i}", f"user{i}@example.com") for i in range(20)])
    (tmp_path / "t.txt").write_text(TEMPLATE)
    args = [
        "send", "r.csv", "--template", "t.txt", "--smtp", f"smtp://127.0.0.1:{smtpd.port}",
        "--queue", ns.amqp(), "--store", ns.store, "--json",
    ]  # fmt: skip
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["sent"] == 20
    again = cli(*args)  # the same campaign: everything is already sent
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert (summary["sent"], summary["skipped_already_sent"]) == (0, 20)
    assert len(smtpd.messages) == 20
    status = cli("status", "--queue", ns.amqp(), "--store", ns.store)
    assert status.returncode == 0, status.stderr
    assert "sent=20" in status.stdout
