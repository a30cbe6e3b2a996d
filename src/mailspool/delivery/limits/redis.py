"""Sending limits shared by every worker of a cluster, held in Redis.

The same :class:`~mailspool.delivery.limits.base.Limits` interface as ``LocalLimits``,
enforced across processes and machines that use the same Redis and key prefix:

- **Rates** (global, per domain, and the default for other domains) are virtual schedules
  (GCRA): Redis keeps each schedule's next free instant, in the Redis server's clock. A
  sender reserves its instant on the global schedule and on its domain's in one script
  (the later of the two, so each schedule's sends stay at least ``1/rate`` apart), then
  sleeps until then. No burst: no window of one second sees more than the rate.
- **Per-domain concurrency** is a sorted set of slots per domain, each with an expiry that
  the holder pushes forward while it sends; a worker that dies stops doing so, and its
  slots come back when they expire (``slot_ttl``, default 60 s).

Keys, under the queue's prefix ``P``: ``P:limit:rate`` (global), ``P:limit:rate:DOMAIN``,
``P:limit:slots:DOMAIN``. Every worker of a cluster should run with the same limits: each
reservation is spaced by the interval of the worker that makes it.

Limits never fail open: while Redis is unreachable, a sender waits (retrying with
backoff) rather than sending unmetered.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import structlog

from mailspool.delivery.limits.base import LimitSettings
from mailspool.queue.redis import Reconnect, connect, parse_redis_url
from mailspool.tasks import cancel_and_wait

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = structlog.get_logger("mailspool.limits")

# ARGV: key, interval in µs[, key, interval]. Returns the µs to wait for the reserved instant.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local at = now
for i = 1, #ARGV, 2 do
  local tat = tonumber(redis.call('GET', ARGV[i]) or '0')
  if tat > at then at = tat end
end
for i = 1, #ARGV, 2 do
  local nxt = at + tonumber(ARGV[i + 1])
  redis.call('SET', ARGV[i], string.format('%.0f', nxt), 'PX',
    math.ceil((nxt - now) / 1000) + 1000)
end
return string.format('%.0f', at - now)
"""

# ARGV: key, token, limit, ttl ms. Returns -1 when the slot is taken, else the ms until the
# oldest slot expires.
_TAKE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, ttl = ARGV[1], tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) < tonumber(ARGV[3]) then
  redis.call('ZADD', key, now + ttl, ARGV[2])
  redis.call('PEXPIRE', key, ttl * 2)
  return -1
end
local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
return math.max(0, tonumber(first[2]) - now)
"""

# ARGV: ttl ms, then key, token pairs: push the expiry of slots still held
_REFRESH_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local lost = 0
for i = 2, #ARGV, 2 do
  if redis.call('ZADD', ARGV[i], 'XX', 'CH', now + ttl, ARGV[i + 1]) == 0 then
    if not redis.call('ZSCORE', ARGV[i], ARGV[i + 1]) then lost = lost + 1 end
  end
  redis.call('PEXPIRE', ARGV[i], ttl * 2)
end
return lost
"""

MIN_POLL = 0.005
MAX_POLL = 0.1


class RedisLimits:
    """Cluster-wide limits. Connects on first use; ``close()`` hands back the slots held."""

    def __init__(self, url: str, settings: LimitSettings, slot_ttl: float = 60.0) -> None:
        if slot_ttl <= 0:
            raise ValueError("slot_ttl must be positive")
        self.target = parse_redis_url(url)
        self.settings = settings
        self.slot_ttl = slot_ttl
        self._prefix = f"{self.target.prefix}:limit"
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # waiting never gives up: a sender waits for Redis rather than send unmetered
        self._reconnect = Reconnect(self.target.redacted, math.inf)
        self._held: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._id = uuid.uuid4().hex[:12]
        self._n = 0
        self.lost_slots = 0

    @classmethod
    def from_url(cls, url: str, settings: LimitSettings) -> RedisLimits:
        return cls(url, settings)

    def _client(self) -> Redis:
        if self._redis is None:
            self._redis = connect(self.target)
            self._scripts = {
                "reserve": self._redis.register_script(_RESERVE),
                "take": self._redis.register_script(_TAKE_SLOT),
                "refresh": self._redis.register_script(_REFRESH_SLOTS),
            }
        return self._redis

    async def _run(self, name: str, args: list[str]) -> Any:
        self._client()
        script = self._scripts[name]
        return await self._reconnect.run(f"limits {name}", lambda: script(args=args))

    # -- the Limits interface ---------------------------------------------------------

    async def acquire(self, domain: str) -> float:
        started = time.monotonic()
        slot = False
        if self.settings.domain_concurrency:
            await self._take_slot(domain)
            slot = True
        try:
            schedules = self._schedules(domain)
            if schedules:
                wait_us = int(await self._run("reserve", schedules))
                if wait_us > 0:
                    await asyncio.sleep(wait_us / 1e6)
        except BaseException:
            if slot:  # cancelled while waiting for the rate: the slot goes back
                self.release(domain)
            raise
        return time.monotonic() - started

    def release(self, domain: str) -> None:
        tokens = self._held.get(domain)
        if not tokens:
            return
        token = tokens.pop()
        key = f"{self._prefix}:slots:{domain}"
        task = asyncio.get_running_loop().create_task(self._give_back(key, token))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- rates ------------------------------------------------------------------------

    def _schedules(self, domain: str) -> list[str]:
        out: list[str] = []
        if self.settings.rate:
            out += [f"{self._prefix}:rate", _interval_us(self.settings.rate)]
        rate = self.settings.domain_rates.get(domain, self.settings.default_domain_rate)
        if rate:
            out += [f"{self._prefix}:rate:{domain}", _interval_us(rate)]
        return out

    # -- per-domain concurrency -------------------------------------------------------

    async def _take_slot(self, domain: str) -> None:
        key = f"{self._prefix}:slots:{domain}"
        self._n += 1
        token = f"{self._id}:{self._n}"
        ttl_ms = str(max(1, round(self.slot_ttl * 1000)))
        limit = str(self.settings.domain_concurrency)
        poll = MIN_POLL
        while True:
            ms = int(await self._run("take", [key, token, limit, ttl_ms]))
            if ms < 0:
                break
            await asyncio.sleep(min(poll, ms / 1000 + MIN_POLL))
            poll = min(MAX_POLL, poll * 2)
        self._held.setdefault(domain, []).append(token)
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.get_running_loop().create_task(self._refresh())

    async def _give_back(self, key: str, token: str) -> None:
        redis = self._client()
        try:
            await Reconnect(self.target.redacted, 10.0).run(
                "limits release", lambda: redis.zrem(key, token)
            )
        except Exception as exc:  # the slot expires on its own
            log.warning("could not hand back a concurrency slot", error=str(exc))

    async def _refresh(self) -> None:
        """Push the expiry of every slot held here, while any is held."""
        interval = self.slot_ttl / 3
        while any(self._held.values()):
            await asyncio.sleep(interval)
            args = [str(max(1, round(self.slot_ttl * 1000)))]
            for domain, tokens in self._held.items():
                for token in tokens:
                    args += [f"{self._prefix}:slots:{domain}", token]
            if len(args) == 1:
                continue
            try:
                self.lost_slots += int(await self._run("refresh", args))
            except Exception as exc:  # try again at the next interval
                log.warning("could not refresh concurrency slots", error=str(exc))

    async def close(self) -> None:
        if self._refresher is not None:
            await cancel_and_wait([self._refresher])
        for domain, tokens in self._held.items():
            while tokens:
                self.release(domain)
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._redis is not None:
            client, self._redis = self._redis, None
            await client.aclose()


def _interval_us(per_second: float) -> str:
    """The spacing of a rate in whole microseconds, rounded up (never faster than the rate)."""
    return str(math.ceil(1e6 / per_second))
