"""Job events in Redis (:mod:`mailspool.queue.events`), under the prefix of the Redis
queue or job store that holds them, on its connection (with its retries while Redis is
unreachable).

Keys (``P`` is the prefix, ``N`` an endpoint's name)::

    P:ev:log        stream  the events; an entry's id is the event's cursor
    P:ev:names      set     the endpoints with delivery state or pending rows
    P:ev:ep:N       hash    N's cursor ("" before any event), lease owner and lease end
    P:ev:rows:N     hash    N's pending rows: member -> JSON [attempts, next_at,
                            first_at, error, dead]
    P:ev:due:N      zset    the members of N's retrying rows, by next_at
    P:ev:retry:N    zset    the same members, scored 0: in cursor order
    P:ev:dead:N     zset    the members of N's dead rows, scored 0: in cursor order

A pending row's member is its cursor written fixed-width (``_member``), so that members
of equal score sort in cursor order. Events are written by the scripts whose change
causes them, in the same script (:data:`~mailspool.queue.redis.event_scripts.EMIT`):
the queue's and job store's enqueue, claim and record, returned mail's record and the
suppression list's put. Redis runs one script at a time, so stream ids grow in commit
order. Nothing is created when a keyspace from before events is opened: the keys appear
with the first event or endpoint.

Pruning uses the stream ids: an entry's id starts with the Redis server's time in
milliseconds when the event was written, which for an outcome is the job's ``updated_at``
give or take the clock skew between the worker and Redis. ``prune(before)`` deletes the
entries whose id is older than ``before`` (XTRIM MINID), not a scan of each ``at``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from typing import Any

from mailspool.queue.events import Endpoint, Event, EventLog, EventType, Pending, clip
from mailspool.queue.redis.encoding import as_str, float_arg
from mailspool.queue.redis.event_scripts import SCRIPTS
from mailspool.queue.redis.suppressions import HeldScripts, RedisHolder

_CURSOR = re.compile(r"(\d{1,20})-(\d{1,20})")


def _parts(cursor: str) -> tuple[int, int] | None:
    m = _CURSOR.fullmatch(cursor)
    return (int(m[1]), int(m[2])) if m else None


def _member(cursor: str) -> str:
    """A pending row's member: the cursor fixed-width, so members sort as cursors do."""
    parts = _parts(cursor)
    if parts is None:
        raise ValueError(f"not an event cursor: {cursor[:40]!r}")
    return f"{parts[0]:020d}-{parts[1]:020d}"


def _cursor(member: Any) -> str:
    ms, seq = as_str(member).split("-")
    return f"{int(ms)}-{int(seq)}"


def _event(entry: Any) -> Event:
    """An Event from an XRANGE entry as redis-py gives it: (id, {field: value}), the
    fields of event_scripts.FIELDS."""
    cursor, fields = entry
    f = {as_str(k): v for k, v in fields.items()}
    rcpts = json.loads(f["r"])
    return Event(
        cursor=as_str(cursor),
        type=EventType(as_str(f["t"])),
        at=float(f["at"]),
        job_id=as_str(f["j"]),
        campaign=as_str(f["c"]),
        recipients=tuple(rcpts) if isinstance(rcpts, list) else (),  # cjson: {} for []
        detail=clip(bytes(f["d"]).decode(errors="replace")),  # bytes cut by Lua
        reason=as_str(f["x"]),
        attempts=int(f["n"]),
        permanent=f["p"] == b"1",
    )


def _row(member: Any, value: Any) -> Pending:
    attempts, next_at, first_at, error, dead = json.loads(value)
    return Pending(_cursor(member), attempts, next_at, first_at, error, dead)


def _rows(reply: Any) -> list[Pending]:
    if not reply:
        return []
    members, values = reply
    return [_row(m, v) for m, v in zip(members, values, strict=True) if v is not None]


class RedisEventLog(EventLog):
    """The events and webhook delivery state under ``holder``'s prefix, on its
    connection."""

    def __init__(self, holder: RedisHolder) -> None:
        self._holder = holder
        self._scripts = HeldScripts(holder, SCRIPTS, "events")

    @property
    def _log(self) -> str:
        return f"{self._holder.prefix}:ev:log"

    async def _script(self, name: str, args: Sequence[str | bytes | float | int]) -> Any:
        return await self._scripts.run(name, args)

    async def _call(self, what: str, fn: Any) -> Any:
        client = self._holder.redis
        return await self._holder.reconnect.run(f"events {what}", lambda: fn(client))

    # -- events -------------------------------------------------------------------------

    async def _read(self, after: str | None, limit: int) -> list[Event]:
        if after is not None and _parts(after) is None:
            raise ValueError(f"not an event cursor: {after[:40]!r}")
        start = "-" if after is None else f"({after}"
        got = await self._call("read", lambda r: r.xrange(self._log, start, "+", count=limit))
        return [_event(e) for e in got]

    async def _get(self, cursors: list[str]) -> list[Event]:
        wanted = sorted((p, c) for c in cursors if (p := _parts(c)) is not None)
        if not wanted:
            return []

        async def load(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for _, c in wanted:
                pipe.xrange(self._log, c, c)
            return list(await pipe.execute())

        return [_event(e) for found in await self._call("get", load) for e in found]

    async def _head(self) -> str | None:
        got = await self._call("head", lambda r: r.xrevrange(self._log, "+", "-", count=1))
        return as_str(got[0][0]) if got else None

    async def _prune(self, before: float) -> int:
        cut = f"{max(0, int(before * 1000))}-0"
        return int(await self._script("prune", [cut, _member(cut)]))

    # -- endpoints ----------------------------------------------------------------------

    async def _lease(self, name: str, owner: str, until: float) -> Endpoint | None:
        args = [name, owner, float_arg(until), float_arg(time.time())]
        got = await self._script("lease", args)
        if got is None:
            return None
        cursor, retrying, dead = got
        return Endpoint(name, as_str(cursor) or None, owner, until, int(retrying), int(dead))

    async def _advance(self, name: str, owner: str, cursor: str) -> bool:
        args = [name, owner, float_arg(time.time()), cursor]
        return int(await self._script("advance", args)) == 1

    async def _endpoints(self) -> list[Endpoint]:
        got = await self._script("endpoints", [])
        eps = [
            Endpoint(as_str(n), as_str(c) or None, as_str(o), float(u or 0), int(r), int(d))
            for n, c, o, u, r, d in got
        ]
        return sorted(eps, key=lambda e: e.name)

    async def _put_pending(self, name: str, rows: Sequence[Pending]) -> None:
        args: list[str] = [name]
        for r in rows:
            row = json.dumps([r.attempts, r.next_at, r.first_at, r.error, r.dead])
            args += [_member(r.cursor), float_arg(r.next_at), "1" if r.dead else "0", row]
        await self._script("put_pending", args)

    async def _due(self, name: str, now: float, limit: int) -> list[Pending]:
        return _rows(await self._script("due", [name, float_arg(now), limit]))

    async def _drop_pending(self, name: str, cursors: list[str]) -> None:
        members = [_member(c) for c in cursors if _parts(c) is not None]
        if members:
            await self._script("drop_pending", [name, *members])

    async def _pending(self, name: str, dead: bool, limit: int) -> list[Pending]:
        return _rows(await self._script("pending", [name, "dead" if dead else "retry", limit]))

    async def _revive(self, name: str, now: float) -> int:
        row = json.dumps([0, now, now, "", False])
        return int(await self._script("revive", [name, float_arg(now), row]))
