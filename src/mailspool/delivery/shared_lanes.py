"""Adapted provider rates shared by every worker of a cluster, in Redis: what one worker
learns from a throttling reply slows every worker, and the rate slots are taken from one
schedule per provider, so the cluster together keeps to the adapted rate.

Keys, under the queue's prefix ``P``: ``P:shape:state:PROVIDER`` (a hash: the fields of
:class:`~mailspool.delivery.adaptive.Adapted`), ``P:shape:rate:PROVIDER`` (the next free
instant of its schedule, in the Redis server's clock, as the shared limits keep theirs).
A change is applied with WATCH/MULTI, so two workers cutting at once cut once.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mailspool.delivery.adaptive import Adapted
from mailspool.delivery.providers import Provider
from mailspool.queue.redis import Reconnect, connect, parse_redis_url

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["RedisLanes"]

# ARGV: key, interval µs, horizon µs. Returns the µs until the slot (taken), or minus the
# µs until it when further off than the horizon (not taken).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = math.max(now, tonumber(redis.call('GET', ARGV[1]) or '0'))
if at - now > tonumber(ARGV[3]) then return string.format('%.0f', now - at) end
local nxt = at + tonumber(ARGV[2])
redis.call('SET', ARGV[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1000)
return string.format('%.0f', at - now)
"""

#: an adapted state is forgotten a day after it last changed (the provider back to normal)
STATE_TTL = 86400


class RedisLanes:
    """The :class:`~mailspool.delivery.shaping.Lanes` of every worker using ``url``."""

    def __init__(self, url: str) -> None:
        self.target = parse_redis_url(url)
        self._prefix = f"{self.target.prefix}:shape"
        self._redis: Redis | None = None
        self._reserve: AsyncScript | None = None
        self._reconnect = Reconnect(self.target.redacted, math.inf)

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = connect(self.target)
            self._reserve = self._redis.register_script(_RESERVE)
        return self._redis

    def _key(self, name: str) -> str:
        return f"{self._prefix}:state:{name}"

    async def get(self, names: Iterable[str]) -> dict[str, Adapted]:
        names = list(names)
        if not names:
            return {}
        redis = self._client()

        async def read() -> list[Any]:
            pipe = redis.pipeline(transaction=False)
            for n in names:
                pipe.hgetall(self._key(n))
            return list(await pipe.execute())

        rows = await self._reconnect.run("shaping read", read)
        return {n: _decode(row) for n, row in zip(names, rows, strict=True) if row}

    async def update(self, provider: Provider, change: Callable[[Adapted], Adapted]) -> Adapted:
        from redis.exceptions import WatchError

        redis = self._client()
        key = self._key(provider.name)

        async def apply() -> Adapted:
            async with redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        row = await pipe.hgetall(key)
                        old = _decode(row) if row else Adapted.start(provider)
                        new = change(old)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        pipe.hset(key, mapping=_encode(new))  # type: ignore[arg-type]
                        pipe.expire(key, STATE_TTL)
                        await pipe.execute()
                        return new
                    except WatchError:  # another worker changed it: apply to theirs
                        continue

        return await self._reconnect.run("shaping update", apply)

    async def reserve(self, name: str, rate: float, horizon: float) -> float:
        self._client()
        assert self._reserve is not None
        script = self._reserve
        args = [
            f"{self._prefix}:rate:{name}",
            str(math.ceil(1e6 / rate)),
            str(round(horizon * 1e6)),
        ]
        us = int(await self._reconnect.run("shaping reserve", lambda: script(args=args)))
        return us / 1e6

    async def restart(self, name: str) -> None:
        redis = self._client()
        key = f"{self._prefix}:rate:{name}"
        await self._reconnect.run("shaping restart", lambda: redis.delete(key))

    async def close(self) -> None:
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()


_FIELDS = [f.name for f in dataclasses.fields(Adapted)]


def _encode(state: Adapted) -> dict[str, str]:
    out = {}
    for name in _FIELDS:
        value = getattr(state, name)
        out[name] = "" if value is None else repr(value) if isinstance(value, float) else str(value)
    return out


def _decode(row: dict[Any, Any]) -> Adapted:
    values: dict[str, Any] = {}
    for raw_key, raw in row.items():
        key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        if key == "reply":
            values[key] = text
        elif key in _FIELDS:
            values[key] = None if text == "" else float(text)
    for name in ("cut_at", "step_at"):
        if values.get(name) is None:
            values.pop(name, None)
    for name in ("suspended_until", "reply_at"):
        values[name] = values.get(name) or 0.0
    return Adapted(**values)
