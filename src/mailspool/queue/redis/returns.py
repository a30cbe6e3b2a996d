"""Returned mail in Redis, under the prefix of the Redis queue or job store that holds
it, on its connection (with its retries while Redis is unreachable).

Keys (``P`` is the prefix, ``C`` a campaign, ``ID`` a job id)::

    P:ret:events      hash   event key -> the event (JSON): set once (HSETNX), so the same
                             returned message recorded twice is recorded once
    P:ret:marks:C     set    "ID\\0ADDRESS\\0COUNT" of C's events: what was counted already
    P:ret:counts:C    hash   C's counts (bounced, soft_bounced, complained)
    P:ret:total       hash   the same counts over every campaign
    P:ret:last:ID     hash   the job's latest event (``at``, ``event``)
    P:ret:soft:ADDR   zset   the keys of ADDR's temporary bounces, by time received
    P:ret:um          hash   digest -> an unmatched message's fields (JSON)
    P:ret:umdata:D    string its data (the first 256 KiB)
    P:ret:umz         zset   the digests of the unmatched messages, by time received

Recording an event and keeping an unmatched message are one Lua script each, atomic; a
new event's record writes its ``bounced`` or ``complained`` event on the event log
(:mod:`mailspool.queue.redis.events`) in the same script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mailspool.queue.events import clip
from mailspool.queue.redis.encoding import as_str, float_arg
from mailspool.queue.redis.event_scripts import EMIT
from mailspool.queue.redis.suppressions import HeldScripts, RedisHolder
from mailspool.queue.returns import (
    ReturnCounts,
    ReturnEvent,
    ReturnKind,
    ReturnLog,
    Unmatched,
    count_kind,
)

# ARGV: prefix, job id, Message-ID. Returns the job id when that job exists and its
# Message-ID (the fifth item of its meta, encoding.py) is this one, case aside; else nil.
_FIND = """
local P, id = ARGV[1], ARGV[2]
local meta = redis.call('HGET', P .. ':job:' .. id, 'meta')
if not meta then return false end
local mid = cjson.decode(meta)[5]
if type(mid) ~= 'string' or string.lower(mid) ~= string.lower(ARGV[3]) then return false end
return id
"""

# ARGV: prefix, key, job id, campaign, count (bounced, soft_bounced, complained), address,
# at, the event (JSON), then for the event log: kind, status, diagnostic, "1" if
# permanent else "0". Returns 1 when recorded, 0 when its key was recorded already.
_RECORD = """
local P = ARGV[1]
local key, job, c, count, address, at, value =
  ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
if redis.call('HSETNX', P .. ':ret:events', key, value) == 0 then return 0 end
local attempts = redis.call('HGET', P .. ':job:' .. job, 'attempts') or 0
emit(ARGV[9], at, job, c, cjson.encode({address}), ARGV[11], ARGV[10], attempts, ARGV[12])
if redis.call('SADD', P .. ':ret:marks:' .. c, job .. '\\0' .. address .. '\\0' .. count) == 1 then
  redis.call('HINCRBY', P .. ':ret:counts:' .. c, count, 1)
  redis.call('HINCRBY', P .. ':ret:total', count, 1)
end
local last = P .. ':ret:last:' .. job
local had = redis.call('HGET', last, 'at')
if not had or tonumber(at) >= tonumber(had) then
  redis.call('HSET', last, 'at', at, 'event', value)
end
if count == 'soft_bounced' then
  redis.call('ZADD', P .. ':ret:soft:' .. address, at, key)
end
return 1
"""

# ARGV: prefix, digest, received_at, fields (JSON), data. Returns 1 when kept, 0 when
# that digest was kept already.
_KEEP = """
local P = ARGV[1]
if redis.call('HSETNX', P .. ':ret:um', ARGV[2], ARGV[4]) == 0 then return 0 end
redis.call('SET', P .. ':ret:umdata:' .. ARGV[2], ARGV[5])
redis.call('ZADD', P .. ':ret:umz', ARGV[3], ARGV[2])
return 1
"""

SCRIPTS = {"find": _FIND, "record": EMIT + _RECORD, "keep": _KEEP}


def _value(e: ReturnEvent) -> str:
    return json.dumps(
        [e.key, e.kind.value, e.address, e.permanent, e.at, e.status, e.diagnostic],
        ensure_ascii=False,
    )


def _event(value: Any) -> ReturnEvent:
    key, kind, address, permanent, at, status, diagnostic = json.loads(value)
    return ReturnEvent(key, ReturnKind(kind), address, permanent, at, status, diagnostic)


class RedisReturnLog(ReturnLog):
    """Returned mail under ``holder``'s prefix, on its connection."""

    def __init__(self, holder: RedisHolder) -> None:
        self._holder = holder
        self._scripts = HeldScripts(holder, SCRIPTS, "returns")

    def _key(self, *parts: str) -> str:
        return ":".join((self._holder.prefix, *parts))

    async def _script(self, name: str, args: Sequence[str | bytes | float | int]) -> Any:
        return await self._scripts.run(name, args)

    async def _read(self, what: str, fn: Any) -> Any:
        client = self._holder.redis
        return await self._holder.reconnect.run(f"returns {what}", lambda: fn(client))

    async def _find(self, job_id: str, message_id: str) -> str | None:
        found = await self._script("find", [job_id, message_id])
        return None if found is None else as_str(found)

    async def _record(self, job_id: str, campaign: str, event: ReturnEvent) -> bool:
        e = event
        args: list[str] = [
            e.key, job_id, campaign, count_kind(e), e.address, float_arg(e.at), _value(e),
            e.kind.value, e.status or "", clip(e.diagnostic), "1" if e.permanent else "0",
        ]  # fmt: skip
        return int(await self._script("record", args)) == 1

    async def _counts(self, campaign: str | None) -> ReturnCounts:
        key = (
            self._key("ret", "total") if campaign is None else self._key("ret", "counts", campaign)
        )
        got = await self._read("counts", lambda r: r.hgetall(key))
        n = {as_str(k): int(v) for k, v in got.items()}
        return ReturnCounts(n.get("bounced", 0), n.get("soft_bounced", 0), n.get("complained", 0))

    async def _latest(self, job_id: str) -> ReturnEvent | None:
        key = self._key("ret", "last", job_id)
        value = await self._read("latest", lambda r: r.hget(key, "event"))
        return None if value is None else _event(value)

    async def _soft(self, address: str, since: float) -> int:
        key = self._key("ret", "soft", address)
        return int(await self._read("soft", lambda r: r.zcount(key, float_arg(since), "+inf")))

    async def _keep(self, item: Unmatched) -> bool:
        fields = json.dumps(
            [item.reason, item.received_at, item.size, item.envelope_to], ensure_ascii=False
        )
        args: list[str | bytes] = [item.digest, float_arg(item.received_at), fields, item.data]
        return int(await self._script("keep", args)) == 1

    async def _unmatched_count(self) -> int:
        key = self._key("ret", "um")
        return int(await self._read("unmatched", lambda r: r.hlen(key)))

    async def _unmatched(self, limit: int) -> list[Unmatched]:
        digests = [
            as_str(d)
            for d in await self._read(
                "unmatched", lambda r: r.zrange(self._key("ret", "umz"), 0, limit - 1)
            )
        ]
        if not digests:
            return []
        fields = await self._read("unmatched", lambda r: r.hmget(self._key("ret", "um"), digests))
        data = await self._read(
            "unmatched", lambda r: r.mget([self._key("ret", "umdata", d) for d in digests])
        )
        out = []
        for digest, f, d in zip(digests, fields, data, strict=True):
            if f is None:  # pragma: no cover - never deleted
                continue
            reason, received, size, envelope_to = json.loads(f)
            out.append(Unmatched(digest, reason, received, size, bytes(d or b""), envelope_to))
        return out
