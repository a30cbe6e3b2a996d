"""The Redis backend: queue and job store in one Redis server (``redis://``, ``rediss://``).

URL: ``redis://[:password@]host:6379/0?prefix=mailspool&reconnect_for=120``; ``prefix``
namespaces every key (default ``mailspool``), ``reconnect_for`` is how many seconds an
operation keeps retrying, with exponential backoff and jitter, while Redis is unreachable
or loading its data after a restart (default 120). Other query parameters go to redis-py.

Keys (``P`` is the prefix, ``C`` a campaign)::

    P:job:ID          hash   the job: message, recipients, state, attempts, last reply, ...
    P:stream:C        stream ready jobs of C (one field: the job id); consumer group "workers"
    P:delayed:C       zset   jobs due later (deferred retries), scored by due time
    P:leases:C        zset   leased jobs by lease expiry (for ``stats().next_due`` only)
    P:counts:C        hash   jobs per state, and ambiguous deliveries
    P:dead:C          zset   dead letters by time of death
    P:cursor:C        string where the next XAUTOCLAIM scan of C's pending entries starts
    P:campaigns       zset   every campaign, by time of its first job
    P:active          zset   campaigns with pending jobs (same scores: the oldest is served
                             first when a worker claims from every campaign)
    P:blob:DIGEST     string content shared by many jobs (attachments)
    P:settings        hash   per-campaign settings (JSON), shared by every process
    P:control         hash   campaigns paused or cancelled (absent: active); claims skip
                             the paused ones (campaign_scripts.py)

The suppression list (:mod:`mailspool.queue.redis.suppressions`; ``L`` a list name, empty
for the global entries)::

    P:supp:h:L        hash   L's entries by address or @domain key (JSON: reason, source,
                             created_at, expires_at)
    P:supp:z:L        zset   L's keys, scored 0, for pages (ZRANGEBYLEX)
    P:supp:all        zset   "KEY\0L" of every entry, scored 0, for pages of every list
    P:supp:exp        zset   "KEY\0L" of the entries that expire, by expiry (the purge)

Returned mail (:mod:`mailspool.queue.redis.returns`): the ``P:ret:...`` keys. Job events
and webhook delivery state (:mod:`mailspool.queue.redis.events`): the ``P:ev:...`` keys;
each event is written by the script of the change that causes it.

A job's hash holds its mailing list (``list_name``; absent in jobs from before lists: the
default list). A job enqueued suppressed is stored final: no stream entry, never delayed.

Every operation is one Lua script, so each is atomic: a claim, an outcome, a hand-back
either happens whole or not at all, and a job's hash always names its one live stream
entry (``entry``). The job hash is the sent ledger: a stream entry whose job is not
claimable (already sent, dead, purged, or an entry that is no longer the job's live one,
e.g. after a broker redelivery) is acknowledged and deleted by ``claim``, never handed out.

Leases. ``claim`` reads new entries with XREADGROUP (the consumer is the lease owner) and
reclaims expired ones with XAUTOCLAIM. A pending entry's idle time is what expires it:
XAUTOCLAIM's min-idle-time is one fixed, very long threshold (``RECLAIM_IDLE_MS``), and a
claim or heartbeat for ``lease`` seconds sets the entry's idle time to that threshold
minus the lease (XCLAIM ... IDLE ... JUSTID), so the entry becomes reclaimable exactly
when its lease runs out. Leases of different lengths thus coexist in one group, and the
expiry uses the Redis server's clock only. ``record`` applies an outcome only while the
job is ``sending`` for that owner, then acknowledges and deletes the entry (XACK + XDEL:
the stream holds only unfinished work).

Durability is Redis's: with ``appendonly yes`` and ``appendfsync always`` a reply is sent
after the write reached the disk, so nothing acknowledged is lost on a crash; with
``everysec`` up to about one second of writes can be lost (see docs/distributed.md).
The bodies of sent messages are dropped from their job hash (Redis keeps everything in
memory); state, attempts, reply and Message-ID stay, which is what the ledger needs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from mailspool.errors import QueueError
from mailspool.models import (
    CampaignChange,
    CampaignState,
    CampaignStats,
    Enqueued,
    Job,
    Outcome,
    State,
)
from mailspool.queue.base import DeadFilter, Queue, added, final_reason, resumed
from mailspool.queue.redis.connection import Reconnect, connect, parse_redis_url
from mailspool.queue.redis.encoding import (
    JOB_FIELDS,
    as_str,
    claimed_jobs,
    float_arg,
    idle_ms,
    job_args,
    job_from_hash,
)
from mailspool.queue.redis.events import RedisEventLog
from mailspool.queue.redis.returns import RedisReturnLog
from mailspool.queue.redis.scripts import MAX_LEASE_S, QUEUE_SCRIPTS
from mailspool.queue.redis.suppressions import RedisSuppressionList

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisQueue"]

log = structlog.get_logger("mailspool.redis")

BATCH = 500


class RedisQueue(Queue):
    """Every role of :class:`Queue` in one Redis server, shared by workers on many
    machines (Streams, a consumer group, hashes and sorted sets; see the module
    docstring). ``url``: ``redis://`` or ``rediss://``, with the options above."""

    packs_messages = True  # see mailspool.queue.redis.encoding

    def __init__(self, url: str) -> None:
        self.target = parse_redis_url(url)
        self.url = self.target.redacted
        self.prefix = self.target.prefix
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._owners: set[str] = set()
        self.reconnect = Reconnect(self.url, self.target.reconnect_for)
        self._suppressions = RedisSuppressionList(self)
        self._returns = RedisReturnLog(self)
        self._events = RedisEventLog(self)

    @property
    def suppressions(self) -> RedisSuppressionList:
        """The suppression list under this queue's prefix, on its connection."""
        return self._suppressions

    @property
    def returns(self) -> RedisReturnLog:
        """Returned mail under this queue's prefix, on its connection."""
        return self._returns

    @property
    def events(self) -> RedisEventLog:
        """Job events and webhook delivery state under this queue's prefix."""
        return self._events

    # -- plumbing -------------------------------------------------------------------

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise QueueError(f"the Redis queue {self.url} is not open")
        return self._redis

    async def _script(self, name: str, args: Sequence[str | bytes | float | int]) -> Any:
        script = self._scripts[name]
        full = [self.prefix, *args]
        return await self.reconnect.run(name, lambda: script(args=full))

    async def open(self) -> None:
        client = connect(self.target)
        self._redis = client
        self._scripts = {n: client.register_script(src) for n, src in QUEUE_SCRIPTS.items()}
        quick = Reconnect(self.url, min(self.target.reconnect_for, 10.0))
        try:
            await quick.run("connect", client.ping)
        except QueueError:
            await self.close()
            raise

    async def close(self) -> None:
        if self._redis is None:
            return
        try:
            if self._owners:
                sweep = self._scripts["sweep_consumers"]
                args = [self.prefix, str(3600 * 1000), *sorted(self._owners)]
                await asyncio.wait_for(sweep(args=args), 5)
        except Exception as exc:  # best effort: a consumer left behind holds nothing
            log.debug("consumer sweep skipped", error=str(exc))
        finally:
            client, self._redis = self._redis, None
            await client.aclose()

    # -- producer side ----------------------------------------------------------------

    async def enqueue(self, jobs: Sequence[Job]) -> list[Enqueued]:
        out: list[Enqueued] = []
        for start in range(0, len(jobs), BATCH):
            chunk = jobs[start : start + BATCH]
            now = time.time()
            args: list[str | bytes | float | int] = [float_arg(now), uuid.uuid4().hex]
            for j in chunk:
                args.extend(job_args(j, now))
            replies = await self._script("enqueue", args)
            for j, r in zip(chunk, replies, strict=True):
                if isinstance(r, list):
                    out.append(resumed(int(r[0]), as_str(r[1]), j.row))
                else:
                    out.append(added(j) if r == b"new" else Enqueued.DUPLICATE)
        return out

    async def put_blob(self, digest: str, data: bytes) -> None:
        key = f"{self.prefix}:blob:{digest}"
        await self.reconnect.run("put_blob", lambda: self.redis.set(key, data, nx=True))

    async def get_blob(self, digest: str) -> bytes | None:
        key = f"{self.prefix}:blob:{digest}"
        data = await self.reconnect.run("get_blob", lambda: self.redis.get(key))
        return data.encode() if isinstance(data, str) else data  # bytes: decode_responses off

    # -- consumer side ----------------------------------------------------------------

    async def claim(
        self, owner: str, limit: int, lease: float, campaign: str | None = None
    ) -> list[Job]:
        if limit <= 0:
            return []
        self._owners.add(owner)
        now = time.time()
        args = [float_arg(now), owner, str(limit), float_arg(min(lease, MAX_LEASE_S))]
        args += [str(idle_ms(lease)), campaign or ""]
        return claimed_jobs(await self._script("claim", args), owner, now)

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        applied = 0
        for start in range(0, len(outcomes), BATCH):
            args: list[str | bytes | float | int] = [float_arg(time.time()), owner]
            for o in outcomes[start : start + BATCH]:
                amb, reason = int(o.ambiguous), final_reason(o)
                flags = f"{o.state.value}|{float_arg(o.not_before)}|{amb}|{reason}"
                args += [o.job_id, flags, o.reply]
            applied += int(await self._script("record", args))
        return applied

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        for start in range(0, len(job_ids), BATCH):
            args = [
                float_arg(time.time()),
                owner,
                float_arg(min(lease, MAX_LEASE_S)),
                str(idle_ms(lease)),
            ]
            await self._script("extend", [*args, *job_ids[start : start + BATCH]])

    async def release(
        self,
        owner: str,
        job_ids: Sequence[str],
        not_before: float | None = None,
        reply: str | None = None,
    ) -> None:
        for start in range(0, len(job_ids), BATCH):
            args = [
                float_arg(time.time()),
                owner,
                float_arg(not_before) if not_before else "",
                reply or "",
            ]
            await self._script("release", [*args, *job_ids[start : start + BATCH]])

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        names = await self._script("lease_owners", [campaign or ""])
        return sorted({as_str(n) for n in names})

    async def release_owner(self, owner: str) -> int:
        return int(await self._script("release_owner", [float_arg(time.time()), owner]))

    # -- inspection -------------------------------------------------------------------

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        flat, next_due, last_error = await self._script("stats", [campaign or ""])
        st = CampaignStats(campaign)
        for k, v in zip(flat[::2], flat[1::2], strict=True):
            name, n = as_str(k), int(v)
            if name == "ambiguous":
                st.ambiguous = n
            elif n > 0:
                st.counts[name] = n
        st.next_due = float(next_due) if as_str(next_due) else None
        st.last_error = as_str(last_error)
        return st

    async def set_campaign_settings(self, campaign: str, settings: dict[str, Any]) -> None:
        key, value = f"{self.prefix}:settings", json.dumps(settings)
        await self.reconnect.run(
            "set_campaign_settings", lambda: self.redis.hset(key, campaign, value)
        )

    async def campaign_settings(self, campaign: str) -> dict[str, Any]:
        key = f"{self.prefix}:settings"
        raw = await self.reconnect.run("campaign_settings", lambda: self.redis.hget(key, campaign))
        return dict(json.loads(raw)) if raw else {}

    async def set_campaign_state(self, campaign: str, state: CampaignState) -> CampaignChange:
        cursor, cancelled = "", 0
        while True:  # a cancel goes a batch at a time (campaign_scripts.py)
            args = [float_arg(time.time()), campaign, state.value, str(BATCH), cursor]
            now_in, n, cursor, more = await self._script("set_state", args)
            cancelled += int(n)
            if not int(more):
                return CampaignChange(CampaignState(as_str(now_in)), cancelled)
            cursor = as_str(cursor)

    async def campaign_states(
        self, campaigns: Sequence[str] | None = None
    ) -> dict[str, CampaignState]:
        key = f"{self.prefix}:control"
        if campaigns is None:
            found = await self.reconnect.run("campaign_states", lambda: self.redis.hgetall(key))
            return {as_str(c): CampaignState(as_str(s)) for c, s in found.items()}
        names = list(dict.fromkeys(campaigns)) or [""]  # HMGET needs one; "" names none
        got = await self.reconnect.run("campaign_states", lambda: self.redis.hmget(key, names))
        return {c: CampaignState(as_str(s)) for c, s in zip(names, got, strict=True) if s}

    async def _jobs(self, ids: Sequence[str]) -> list[Job]:
        async def load() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for jid in ids:
                pipe.hmget(f"{self.prefix}:job:{jid}", list(JOB_FIELDS))
            return list(await pipe.execute())

        rows = await self.reconnect.run("get", load) if ids else []
        return [job_from_hash(r) for r in rows if r[0] is not None]

    async def get(self, job_id: str) -> Job | None:
        found = await self._jobs([job_id])
        return found[0] if found else None

    async def campaigns(self) -> list[str]:
        key = f"{self.prefix}:campaigns"
        names = await self.reconnect.run("campaigns", lambda: self.redis.zrange(key, 0, -1))
        return sorted(as_str(n) for n in names)

    async def _dead(self, flt: DeadFilter) -> list[Job]:
        if flt.ids:
            ids = list(flt.ids)
        else:
            campaigns = [flt.campaign] if flt.campaign else await self.campaigns()
            low = float_arg(flt.since) if flt.since is not None else "-inf"
            ids = []
            for c in campaigns:
                ids.extend(await self._dead_ids(c, low))
        jobs = []
        for start in range(0, len(ids), BATCH):
            jobs.extend(await self._jobs(ids[start : start + BATCH]))
        return sorted(
            (
                j
                for j in jobs
                if j.state is State.DEAD
                and (flt.campaign is None or j.campaign == flt.campaign)
                and (flt.reason is None or j.dead_reason == flt.reason)
                and (flt.since is None or j.updated_at >= flt.since)
            ),
            key=lambda j: j.updated_at,
        )

    async def _dead_ids(self, campaign: str, low: str) -> list[str]:
        key = f"{self.prefix}:dead:{campaign}"
        found = await self.reconnect.run(
            "dead_letters", lambda: self.redis.zrangebyscore(key, low, "+inf")
        )
        return [as_str(x) for x in found]

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        return (await self._dead(flt))[:limit]

    async def retry_dead(self, flt: DeadFilter) -> int:
        ids = [j.id for j in await self._dead(flt)]
        n = 0
        for start in range(0, len(ids), BATCH):
            args = [float_arg(time.time()), *ids[start : start + BATCH]]
            n += int(await self._script("retry_dead", args))
        return n

    async def purge_dead(self, flt: DeadFilter) -> int:
        ids = [j.id for j in await self._dead(flt)]
        n = 0
        for start in range(0, len(ids), BATCH):
            n += int(await self._script("purge_dead", ids[start : start + BATCH]))
        return n

    # -- housekeeping -----------------------------------------------------------------

    async def delete_everything(self) -> int:
        """Delete every key under this queue's prefix (tests, and ``prefix`` teardown)."""

        async def wipe() -> int:
            n = 0
            batch: list[bytes] = []
            async for key in self.redis.scan_iter(match=f"{self.prefix}:*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    n += int(await self.redis.unlink(*batch))
                    batch = []
            if batch:
                n += int(await self.redis.unlink(*batch))
            return n

        return await self.reconnect.run("delete_everything", wipe)
