"""What the contract suite cannot see of the Redis backend: the sent ledger against broker
redeliveries, stream trimming, leases of different lengths in one consumer group, the URL,
error translation and reconnecting; campaign control's keys."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import CampaignState, Enqueued, Job, Outcome, State
from mailspool.queue import RedisQueue, make_queue
from mailspool.queue.packing import Packed, pack
from mailspool.queue.redis import Reconnect, backoff_delays, parse_redis_url
from mailspool.testing import free_port
from mailspool.urls import redact_url as redact


@pytest.fixture
async def rq(redis_url: str) -> AsyncIterator[RedisQueue]:
    q = RedisQueue(redis_url)
    await q.open()
    yield q
    await q.close()


def job(i: int, campaign: str = "c1") -> Job:
    return Job(
        id=f"{campaign}-{i}",
        campaign=campaign,
        key=f"user{i}@example.com",
        message_id=f"<{campaign}-{i}@example.com>",
        sender="news@example.com",
        recipients=(f"user{i}@example.com",),
        message=b"Subject: hi\r\n\r\nbody\r\n",
        row=i + 2,
    )


async def stream_state(q: RedisQueue, campaign: str = "c1") -> tuple[int, int]:
    """(entries in the campaign's stream, entries pending in the group)."""
    key = f"{q.prefix}:stream:{campaign}"
    length = await q.redis.xlen(key)
    pending = await q.redis.xpending(key, "workers")
    return int(length), int(pending["pending"])


# -- the sent ledger and the stream ---------------------------------------------------------


async def test_a_redelivered_entry_of_a_sent_job_is_acknowledged_not_sent(rq: RedisQueue) -> None:
    await rq.enqueue([job(1)])
    (j,) = await rq.claim("w1", 10, 30)
    assert await rq.record("w1", [Outcome(j.id, State.SENT, "250 ok")]) == 1
    # the broker hands the job out again (a stray entry, as after a redelivery)
    await rq.redis.xadd(f"{rq.prefix}:stream:c1", {"id": j.id})
    assert await rq.claim("w2", 10, 30) == []
    assert await rq.claim("w2", 10, 30, campaign="c1") == []
    assert await stream_state(rq) == (0, 0)  # acknowledged and deleted
    got = await rq.get(j.id)
    assert got is not None and got.state is State.SENT and got.attempts == 1


async def test_an_expired_lease_of_a_job_already_sent_is_not_handed_out(rq: RedisQueue) -> None:
    await rq.enqueue([job(1)])
    (j,) = await rq.claim("w1", 10, lease=0.05)
    # the job's state says sent, but its stream entry is still pending (as if the
    # acknowledgement had been lost): once the lease expires, nobody may send it again
    await rq.redis.hset(f"{rq.prefix}:job:{j.id}", "state", "sent")
    await asyncio.sleep(0.1)
    assert await rq.claim("w2", 10, 30) == []
    assert await stream_state(rq) == (0, 0)


async def test_the_stream_keeps_only_unfinished_work(rq: RedisQueue) -> None:
    await rq.enqueue([job(i) for i in range(20)])
    assert await stream_state(rq) == (20, 0)
    jobs = await rq.claim("w1", 20, 30)
    assert await stream_state(rq) == (20, 20)
    await rq.record("w1", [Outcome(j.id, State.SENT, "250 ok") for j in jobs[:15]])
    assert await stream_state(rq) == (5, 5)
    due = time.time() + 60
    await rq.record("w1", [Outcome(j.id, State.DEFERRED, "451", due) for j in jobs[15:]])
    assert await stream_state(rq) == (0, 0)  # deferred jobs wait in the delayed set
    st = await rq.stats("c1")
    assert st.get(State.SENT) == 15 and st.get(State.DEFERRED) == 5


async def test_sent_bodies_are_dropped_but_the_ledger_stays(rq: RedisQueue) -> None:
    await rq.enqueue([job(1)])
    (j,) = await rq.claim("w1", 1, 30)
    await rq.record("w1", [Outcome(j.id, State.SENT, "250 2.0.0 queued")])
    got = await rq.get(j.id)
    assert got is not None
    assert (got.state, got.message_id, got.last_reply) == (
        State.SENT,
        j.message_id,
        "250 2.0.0 queued",
    )
    assert got.message == b""
    assert await rq.enqueue([job(1)]) == [Enqueued.SENT]


LONG = b"Subject: hi\r\n\r\n" + b"the same line of a long template, again\r\n" * 60


async def test_messages_are_stored_packed_and_claimed_as_they_were(rq: RedisQueue) -> None:
    plain = dataclasses.replace(job(1), message=LONG)
    prepacked = dataclasses.replace(job(2), message=Packed(pack(LONG + b"2")))
    await rq.enqueue([plain, prepacked])
    stored = [await rq.redis.hget(f"{rq.prefix}:job:{j.id}", "message") for j in (plain, prepacked)]
    assert len(stored[0]) < len(LONG) / 4 and stored[1] == prepacked.message
    claimed = await rq.claim("w1", 2, 30)
    assert {j.id: j.message for j in claimed} == {plain.id: LONG, prepacked.id: LONG + b"2"}
    got = await rq.get(plain.id)
    assert got is not None and got.message == LONG


async def test_a_job_from_before_packing_keeps_its_plain_message(rq: RedisQueue) -> None:
    await rq.enqueue([job(1)])
    key = f"{rq.prefix}:job:c1-1"
    meta = json.loads(await rq.redis.hget(key, "meta"))
    assert meta[-1] == 1
    # as written before messages were packed: no flag, the message as it is
    await rq.redis.hset(key, mapping={"meta": json.dumps(meta[:-1]), "message": LONG})
    (j,) = await rq.claim("w1", 1, 30)
    assert j.message == LONG


async def test_a_damaged_message_is_claimed_marked_unreadable(rq: RedisQueue) -> None:
    await rq.enqueue([job(1), job(2)])
    await rq.redis.hset(f"{rq.prefix}:job:c1-1", "message", b"\x00\xff")
    got = {j.id: j for j in await rq.claim("w1", 2, 30)}
    assert "its stored message cannot be read" in got["c1-1"].unreadable
    assert (got["c1-2"].unreadable, got["c1-2"].message) == ("", job(2).message)
    listed = await rq.get("c1-1")  # still readable as a job, for status and dead letters
    assert listed is not None and listed.unreadable


async def test_a_cancel_leaves_the_stream_with_only_the_jobs_being_sent(rq: RedisQueue) -> None:
    """Campaign control's keys: the state in P:control (absent: active), and a cancel
    that drops the stream entries and delayed members of what it ends, as outcomes do,
    and the bodies, as for sent jobs."""
    later = time.time() + 3600
    await rq.enqueue([job(i) for i in range(4)] + [dataclasses.replace(job(9), not_before=later)])
    await rq.claim("w", 1, 60)
    control = f"{rq.prefix}:control"
    await rq.set_campaign_state("c1", CampaignState.PAUSED)
    assert await rq.redis.hget(control, "c1") == b"paused"
    await rq.set_campaign_state("c1", CampaignState.ACTIVE)
    assert await rq.redis.hexists(control, "c1") == 0
    assert (await rq.set_campaign_state("c1", CampaignState.CANCELLED)).cancelled == 4
    assert await rq.redis.hget(control, "c1") == b"cancelled"
    assert await stream_state(rq) == (1, 1)  # the leased job's entry alone
    assert await rq.redis.zcard(f"{rq.prefix}:delayed:c1") == 0
    assert await rq.redis.hexists(f"{rq.prefix}:job:c1-2", "message") == 0
    assert await rq.redis.zscore(f"{rq.prefix}:active", "c1") is not None  # one still sending


async def test_leases_of_different_lengths_share_one_group(rq: RedisQueue) -> None:
    await rq.enqueue([job(1), job(2)])
    (short,) = await rq.claim("w1", 1, lease=0.05)
    (long,) = await rq.claim("w2", 1, lease=30)
    await asyncio.sleep(0.1)
    again = await rq.claim("w3", 10, lease=30)
    assert [j.id for j in again] == [short.id]  # only the short lease expired
    assert await rq.lease_owners("c1") == ["w2", "w3"]
    assert await rq.record("w2", [Outcome(long.id, State.SENT, "250")]) == 1


async def test_a_heartbeat_after_the_lease_moved_on_does_not_take_it_back(rq: RedisQueue) -> None:
    await rq.enqueue([job(1)])
    (j,) = await rq.claim("w1", 1, lease=0.05)
    await asyncio.sleep(0.1)
    assert len(await rq.claim("w2", 1, lease=30)) == 1
    await rq.extend("w1", [j.id], 30)
    assert await rq.lease_owners() == ["w2"]
    assert await rq.record("w1", [Outcome(j.id, State.SENT, "250")]) == 0


async def test_release_owner_also_forgets_the_consumer(rq: RedisQueue) -> None:
    await rq.enqueue([job(i) for i in range(3)])
    await rq.claim("dead", 3, 300)
    assert await rq.release_owner("dead") == 3
    consumers = await rq.redis.xinfo_consumers(f"{rq.prefix}:stream:c1", "workers")
    assert [c["name"] for c in consumers] == []
    assert len(await rq.claim("w2", 10, 300)) == 3


async def test_delayed_jobs_enter_the_stream_when_due(rq: RedisQueue) -> None:
    later = job(1)
    later.not_before = time.time() + 0.2
    await rq.enqueue([later, job(2)])
    assert (await rq.stats("c1")).counts == {"deferred": 1, "queued": 1}
    assert [j.id for j in await rq.claim("w", 10, 30)] == ["c1-2"]
    await asyncio.sleep(0.25)
    assert [j.id for j in await rq.claim("w", 10, 30)] == ["c1-1"]


async def test_claim_from_every_campaign_serves_the_oldest_first(rq: RedisQueue) -> None:
    await rq.enqueue([job(1, "old")])
    await rq.enqueue([job(1, "new")])
    await rq.enqueue([job(2, "old")])
    got = await rq.claim("w", 10, 30)
    assert [j.id for j in got] == ["old-1", "old-2", "new-1"]


async def test_purging_a_whole_campaign_removes_its_keys(rq: RedisQueue) -> None:
    from mailspool.queue import DeadFilter

    await rq.enqueue([job(1, "gone")])
    (j,) = await rq.claim("w", 1, 30)
    await rq.record("w", [Outcome(j.id, State.DEAD, "550", reason="rejected_permanent")])
    assert await rq.purge_dead(DeadFilter(campaign="gone")) == 1
    assert await rq.campaigns() == []
    keys = [k async for k in rq.redis.scan_iter(match=f"{rq.prefix}:*")]
    assert keys == [f"{rq.prefix}:ev:log".encode()]  # its events stay until pruned


async def test_campaign_settings_are_shared_between_processes(redis_url: str) -> None:
    a, b = RedisQueue(redis_url), RedisQueue(redis_url)
    await a.open()
    await b.open()
    try:
        await a.set_campaign_settings("c1", {"retry_first": 60})
        assert await b.campaign_settings("c1") == {"retry_first": 60}
        assert await b.campaign_settings("other") == {}
    finally:
        await a.close()
        await b.close()


# -- enqueue after a lost reply ---------------------------------------------------------------


async def test_an_enqueue_retried_after_a_lost_reply_still_reports_new(rq: RedisQueue) -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    real = rq._scripts["enqueue"]
    calls = []

    async def reply_lost_once(**kw: Any) -> Any:
        result = await real(**kw)  # the script ran ...
        calls.append(1)
        if len(calls) == 1:  # ... but the connection dropped before its reply arrived
            raise RedisConnectionError("connection reset")
        return result

    rq._scripts["enqueue"] = reply_lost_once  # type: ignore[assignment]
    assert await rq.enqueue([job(1), job(2), job(2)]) == [
        Enqueued.NEW,
        Enqueued.NEW,
        Enqueued.DUPLICATE,
    ]
    assert len(calls) == 2
    assert (await rq.stats()).get(State.QUEUED) == 2
    # a later run of the same rows is told they are pending, not new
    rq._scripts["enqueue"] = real
    assert await rq.enqueue([job(1)]) == [Enqueued.PENDING]


# -- URL, errors, reconnecting ------------------------------------------------------------------


def test_url_options_are_ours_and_the_rest_goes_to_redis_py() -> None:
    t = parse_redis_url("redis://:s3cret@127.0.0.1:6380/2?prefix=team-a&reconnect_for=5&foo=1")
    assert t.prefix == "team-a" and t.reconnect_for == 5.0
    assert t.client_url == "redis://:s3cret@127.0.0.1:6380/2?foo=1"
    assert "s3cret" not in t.redacted and "***" in t.redacted
    assert parse_redis_url("redis://localhost").prefix == "mailspool"
    assert redact("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"


@pytest.mark.parametrize(
    "url", ["redis://h/0?prefix=a*b", "redis://h/0?prefix=", "redis://h/0?reconnect_for=x"]
)
def test_bad_url_options_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError):
        parse_redis_url(url)


def test_the_queue_url_hides_the_password() -> None:
    q = make_queue("redis://:s3cret@127.0.0.1:6379/0?prefix=x")
    assert isinstance(q, RedisQueue) and "s3cret" not in q.url


async def test_missing_redis_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    q = RedisQueue("redis://127.0.0.1:6379/0")
    with pytest.raises(MissingExtra, match=r"mailspool\[redis\]"):
        await q.open()


async def test_unreachable_redis_is_a_queue_error_after_the_window() -> None:
    q = RedisQueue(f"redis://127.0.0.1:{free_port()}/0?reconnect_for=0.3")
    with pytest.raises(QueueError, match="unreachable") as info:
        await q.open()
    from redis.exceptions import ConnectionError as RedisConnectionError

    assert isinstance(info.value.__cause__, RedisConnectionError)


async def test_redis_errors_become_queue_errors(rq: RedisQueue) -> None:
    from redis.exceptions import ResponseError

    await rq.redis.set(f"{rq.prefix}:campaigns", "not a sorted set")
    with pytest.raises(QueueError) as info:
        await rq.campaigns()
    assert isinstance(info.value.__cause__, ResponseError)


async def test_reconnect_retries_with_backoff_until_it_works() -> None:
    from redis.exceptions import BusyLoadingError

    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            raise BusyLoadingError("LOADING Redis is loading the dataset in memory")
        return "ok"

    r = Reconnect("redis://test", window=30)
    assert await r.run("op", flaky) == "ok"
    assert len(attempts) == 4 and r.outages == 1


def test_backoff_grows_with_jitter_up_to_a_cap() -> None:
    delays = backoff_delays(base=0.1, cap=2.0, rng=random.Random(1))
    first = [next(delays) for _ in range(10)]
    for n, d in enumerate(first):
        ceiling = min(2.0, 0.1 * 2**n)
        assert ceiling / 2 <= d <= ceiling
    assert max(first) <= 2.0 and first[-1] >= 1.0
