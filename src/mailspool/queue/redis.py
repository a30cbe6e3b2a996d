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
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import structlog

from mailspool.errors import ConfigError, MissingExtra, QueueError
from mailspool.models import AttachmentRef, CampaignStats, Enqueued, Job, Outcome, State
from mailspool.queue.base import DeadFilter, Queue, resumed

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

T = TypeVar("T")
log = structlog.get_logger("mailspool.redis")

DEFAULT_PREFIX = "mailspool"
DEFAULT_RECONNECT_FOR = 120.0
#: XAUTOCLAIM's min-idle-time; a lease of L ms sets an entry's idle time to this minus L
RECLAIM_IDLE_MS = 10 * 365 * 86400 * 1000
MAX_LEASE_S = RECLAIM_IDLE_MS / 2000
BATCH = 500
#: what ``get`` reads of a job hash; ``meta`` is the JSON of what never changes (see _meta)
JOB_FIELDS = (
    "meta", "message", "state", "attempts", "ready_at", "updated_at", "last_reply",
    "dead_reason", "lease_owner",
)  # fmt: skip
_OUR_PARAMS = ("prefix", "reconnect_for")
_BAD_PREFIX_CHARS = set("*?[]\\ \t\r\n")


# -- the URL ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RedisTarget:
    """A parsed ``redis://`` URL: what redis-py connects to, and our own options."""

    client_url: str
    prefix: str
    reconnect_for: float
    redacted: str


def parse_redis_url(url: str) -> RedisTarget:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("redis", "rediss"):
        raise ConfigError(f"not a Redis URL: {redact(url)}")
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        if k in _OUR_PARAMS:
            ours[k] = v
        else:
            rest.append((k, v))
    prefix = ours.get("prefix", DEFAULT_PREFIX)
    if not prefix or set(prefix) & _BAD_PREFIX_CHARS:
        raise ConfigError(f"bad Redis key prefix {prefix!r}: no spaces, *, ?, [ or ]")
    try:
        reconnect_for = float(ours.get("reconnect_for", DEFAULT_RECONNECT_FOR))
    except ValueError:
        raise ConfigError(f"bad reconnect_for in {redact(url)}: a number of seconds") from None
    if not 0 <= reconnect_for < 86400:
        raise ConfigError(f"bad reconnect_for in {redact(url)}: 0 to 86400 seconds")
    client_url = urlunsplit(parts._replace(query=urlencode(rest)))
    return RedisTarget(client_url, prefix, reconnect_for, redact(url))


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(target: RedisTarget) -> Redis:
    """A redis-py asyncio client (bytes replies; retries are ours, see ``Reconnect``)."""
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError as exc:  # the optional extra
        raise MissingExtra("redis", "redis") from exc
    try:
        return Redis.from_url(
            target.client_url,
            decode_responses=False,
            socket_connect_timeout=5,
            socket_timeout=30,
            socket_keepalive=True,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {target.redacted}: {exc}") from exc


# -- reconnecting -------------------------------------------------------------------------


def backoff_delays(
    base: float = 0.05, cap: float = 2.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Exponential backoff with jitter: each delay is drawn from the upper half of
    ``base * 2**n``, capped at ``cap``, so workers that lost Redis together do not all
    come back in the same instant."""
    rand = rng or random.Random()
    n = 0
    while True:
        ceiling = min(cap, base * 2**n)
        yield ceiling * (0.5 + rand.random() / 2)
        n += 1


def _retryable() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

    # ConnectionError covers BusyLoadingError (Redis is loading its data after a restart);
    # ReadOnlyError: we reached a replica during a failover
    return (ConnectionError, TimeoutError, ReadOnlyError, OSError)


class Reconnect:
    """Runs one Redis operation, retrying with backoff while Redis is unreachable, for at
    most ``window`` seconds, then raises :class:`QueueError`. Other Redis errors become a
    QueueError at once. Every operation retried here is one atomic script or read, so a
    retry after a lost reply at worst finds its own earlier effect (see the scripts)."""

    def __init__(self, where: str, window: float) -> None:
        self.where = where
        self.window = window
        self.outages = 0  # for tests and logs

    async def run(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        from redis.exceptions import RedisError

        retryable = _retryable()
        started: float | None = None
        delays = backoff_delays()
        while True:
            try:
                result = await fn()
            except retryable as exc:
                now = time.monotonic()
                if started is None:
                    started = now
                    self.outages += 1
                    log.warning(
                        "redis unreachable, retrying",
                        redis=self.where,
                        operation=what,
                        error=str(exc),
                        give_up_after_s=self.window,
                    )
                if now - started >= self.window:
                    raise QueueError(
                        f"{self.where}: {what}: Redis unreachable for {now - started:.0f}s: {exc}"
                    ) from exc
                await asyncio.sleep(min(next(delays), self.window - (now - started) + 0.01))
                continue
            except RedisError as exc:
                raise QueueError(f"{self.where}: {what}: {exc}") from exc
            if started is not None:
                outage = round(time.monotonic() - started, 2)
                log.warning("redis reachable again", redis=self.where, outage_s=outage)
            return result


# -- the scripts --------------------------------------------------------------------------

_PRELUDE = """
local P = ARGV[1]
local GROUP = 'workers'
local RECLAIM_IDLE = '@RECLAIM@'
local CAMPAIGNS = P .. ':campaigns'
local ACTIVE = P .. ':active'
local function jkey(id) return P .. ':job:' .. id end
local function ckey(kind, c) return P .. ':' .. kind .. ':' .. c end
local function num(x) return string.format('%.6f', x) end

-- (every script that calls ensure has the time at ARGV[2])
local function ensure(c)
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 0 then
    redis.call('XGROUP', 'CREATE', s, GROUP, '0', 'MKSTREAM')
  end
  redis.call('ZADD', CAMPAIGNS, 'NX', ARGV[2], c)
end

local function count(c, from, to)
  local n = ckey('counts', c)
  if from then redis.call('HINCRBY', n, from, -1) end
  if to then redis.call('HINCRBY', n, to, 1) end
end

local function refresh(touched)
  for c in pairs(touched) do
    local v = redis.call('HMGET', ckey('counts', c), 'queued', 'deferred', 'sending')
    local pending = (tonumber(v[1]) or 0) + (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0)
    if pending > 0 then
      redis.call('ZADD', ACTIVE, redis.call('ZSCORE', CAMPAIGNS, c) or 0, c)
    else
      redis.call('ZREM', ACTIVE, c)
    end
  end
end

-- make a job ready at `due`: a stream entry when due now, else a member of the delayed set
local function push(c, id, due, now)
  local k = jkey(id)
  if due > now then
    redis.call('ZADD', ckey('delayed', c), num(due), id)
    redis.call('HSET', k, 'entry', '', 'ready_at', num(due))
  else
    local e = redis.call('XADD', ckey('stream', c), '*', 'id', id)
    redis.call('HSET', k, 'entry', e, 'ready_at', num(due))
  end
end

-- acknowledge and delete a stream entry: the stream keeps only unfinished work
local function drop(c, e)
  if e and e ~= '' then
    local s = ckey('stream', c)
    redis.call('XACK', s, GROUP, e)
    redis.call('XDEL', s, e)
  end
end
""".replace("@RECLAIM@", str(RECLAIM_IDLE_MS))

# ARGV: prefix, now, token, then per job: id campaign row created_at not_before meta
# message. Returns per job 'new', 'duplicate'
# (its id came earlier in this call) or the existing job's {row, state}. A job that exists
# with this call's token was created by an earlier attempt of this very call whose reply
# was lost: it is reported new again.
_ENQUEUE = """
local now = tonumber(ARGV[2])
local token = ARGV[3]
local out, touched, mine = {}, {}, {}
for i = 4, #ARGV, 7 do
  local id, c = ARGV[i], ARGV[i + 1]
  local k = jkey(id)
  local old = redis.call('HMGET', k, 'row', 'state', 'token')
  if mine[id] then
    out[#out + 1] = 'duplicate'
  elseif old[2] and old[3] ~= token then
    out[#out + 1] = {old[1], old[2]}
  elseif old[2] then
    out[#out + 1] = 'new'
  else
    local nb = tonumber(ARGV[i + 4])
    local due, state = nb, 'deferred'
    if nb <= now then state = 'queued' end
    if nb <= 0 then due = tonumber(ARGV[i + 3]) end
    if not touched[c] then ensure(c); touched[c] = true end
    local entry = ''
    if due > now then
      redis.call('ZADD', ckey('delayed', c), num(due), id)
    else
      entry = redis.call('XADD', ckey('stream', c), '*', 'id', id)
    end
    redis.call('HSET', k, 'campaign', c, 'row', ARGV[i + 2], 'meta', ARGV[i + 5],
      'message', ARGV[i + 6], 'state', state, 'attempts', 0, 'updated_at', ARGV[2],
      'last_reply', '', 'dead_reason', '', 'lease_owner', '', 'ambiguous', 0, 'token', token,
      'entry', entry, 'ready_at', num(due))
    count(c, nil, state)
    out[#out + 1] = 'new'
  end
  mine[id] = true
end
refresh(touched)
return out
"""

# ARGV: prefix, now, owner, limit, lease seconds, idle ms (RECLAIM_IDLE - lease), campaign
# or ''. Returns the leased jobs, flat: meta, message, attempts, last_reply for each.
_CLAIM = """
local now, owner, limit = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local lease_until = num(now + tonumber(ARGV[5]))
local idle = ARGV[6]
local out, taken = {}, 0

-- lease the job of entry e, or acknowledge and delete e if its job must not be sent
local function take(c, s, e, id, reclaimed)
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'entry', 'attempts')
  local ok
  if reclaimed then ok = v[1] == 'sending' else ok = v[1] == 'queued' or v[1] == 'deferred' end
  if not ok or v[2] ~= e then
    drop(c, e)
    return
  end
  redis.call('XCLAIM', s, GROUP, owner, 0, e, 'IDLE', idle, 'JUSTID')
  if v[1] ~= 'sending' then
    count(c, v[1], 'sending')
  else  -- an expired lease: its worker may have delivered before it died
    redis.call('HINCRBY', k, 'ambiguous', 1)
    redis.call('HINCRBY', ckey('counts', c), 'ambiguous', 1)
  end
  local attempts = (tonumber(v[3]) or 0) + 1
  redis.call('HSET', k, 'state', 'sending', 'lease_owner', owner, 'updated_at', ARGV[2],
    'ready_at', lease_until, 'attempts', attempts)
  redis.call('ZADD', ckey('leases', c), lease_until, id)
  local v2 = redis.call('HMGET', k, 'meta', 'message', 'last_reply')
  out[#out + 1] = v2[1]
  out[#out + 1] = v2[2]
  out[#out + 1] = attempts
  out[#out + 1] = v2[3]
  taken = taken + 1
end

local function claim_from(c)
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 0 then return end
  -- delayed jobs now due go to the stream
  local dk = ckey('delayed', c)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', dk, '-inf', ARGV[2], 'LIMIT', 0, 1000)) do
    redis.call('ZREM', dk, id)
    local st = redis.call('HGET', jkey(id), 'state')
    if st == 'queued' or st == 'deferred' then
      redis.call('HSET', jkey(id), 'entry', redis.call('XADD', s, '*', 'id', id))
    end
  end
  -- expired leases
  local want = limit - taken
  if want <= 0 then return end
  local cursor_key = ckey('cursor', c)
  local r = redis.call('XAUTOCLAIM', s, GROUP, owner, RECLAIM_IDLE,
    redis.call('GET', cursor_key) or '0-0', 'COUNT', want)
  redis.call('SET', cursor_key, r[1])
  for _, entry in ipairs(r[2]) do
    if entry and entry[2] then take(c, s, entry[1], entry[2][2], true) end
  end
  -- new entries
  for _ = 1, 4 do
    want = limit - taken
    if want <= 0 then return end
    local got = redis.call('XREADGROUP', 'GROUP', GROUP, owner, 'COUNT', want, 'STREAMS', s, '>')
    if not got then return end
    for _, entry in ipairs(got[1][2]) do take(c, s, entry[1], entry[2][2], false) end
  end
end

if ARGV[7] ~= '' then
  claim_from(ARGV[7])
else
  for _, c in ipairs(redis.call('ZRANGE', ACTIVE, 0, -1)) do
    claim_from(c)
    if taken >= limit then break end
  end
end
return out
"""

# ARGV: prefix, now, owner, then per outcome: id, "state|not_before|ambiguous|reason", reply
_RECORD = """
local now, owner = tonumber(ARGV[2]), ARGV[3]
local applied, touched = 0, {}
for i = 4, #ARGV, 3 do
  local id, reply = ARGV[i], ARGV[i + 2]
  local st, nb, amb, reason = string.match(ARGV[i + 1], '^(%a+)|([^|]*)|(%d)|(.*)$')
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'lease_owner', 'campaign', 'entry')
  if v[1] == 'sending' and v[2] == owner then
    local c = v[3]
    drop(c, v[4])
    redis.call('ZREM', ckey('leases', c), id)
    redis.call('HSET', k, 'state', st, 'updated_at', ARGV[2], 'last_reply', reply,
      'dead_reason', reason, 'lease_owner', '', 'entry', '', 'ready_at', ARGV[2])
    if amb == '1' then
      redis.call('HINCRBY', k, 'ambiguous', 1)
      redis.call('HINCRBY', ckey('counts', c), 'ambiguous', 1)
    end
    count(c, 'sending', st)
    if st == 'deferred' then
      push(c, id, tonumber(nb) or 0, now)
    elseif st == 'dead' then
      redis.call('ZADD', ckey('dead', c), ARGV[2], id)
    else
      redis.call('HDEL', k, 'message')
    end
    touched[c] = true
    applied = applied + 1
  end
end
refresh(touched)
return applied
"""

# ARGV: prefix, now, owner, lease seconds, idle ms, ids...
_EXTEND = """
local owner = ARGV[3]
local lease_until = num(tonumber(ARGV[2]) + tonumber(ARGV[4]))
for i = 6, #ARGV do
  local k = jkey(ARGV[i])
  local v = redis.call('HMGET', k, 'state', 'lease_owner', 'campaign', 'entry')
  if v[1] == 'sending' and v[2] == owner and v[4] and v[4] ~= '' then
    redis.call('XCLAIM', ckey('stream', v[3]), GROUP, owner, 0, v[4], 'IDLE', ARGV[5], 'JUSTID')
    redis.call('HSET', k, 'ready_at', lease_until)
    redis.call('ZADD', ckey('leases', v[3]), lease_until, ARGV[i])
  end
end
return 0
"""

# ARGV: prefix, now, owner, not_before or '', ids...
_RELEASE = """
local now, owner, nb = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local n = 0
for i = 5, #ARGV do
  local id = ARGV[i]
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'lease_owner', 'campaign', 'entry', 'attempts')
  if v[1] == 'sending' and v[2] == owner then
    local c, attempts = v[3], tonumber(v[5])
    local st = 'queued'
    if nb or attempts > 1 then st = 'deferred' end
    drop(c, v[4])
    redis.call('ZREM', ckey('leases', c), id)
    redis.call('HSET', k, 'state', st, 'lease_owner', '', 'attempts', attempts - 1)
    count(c, 'sending', st)
    push(c, id, nb or now, now)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, now, owner. Hands back every job in the owner's pending entries.
_RELEASE_OWNER = """
local now, owner = tonumber(ARGV[2]), ARGV[3]
local n = 0
for _, c in ipairs(redis.call('ZRANGE', ACTIVE, 0, -1)) do
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 1 then
    while true do
      local pend = redis.call('XPENDING', s, GROUP, '-', '+', 500, owner)
      if #pend == 0 then break end
      for _, p in ipairs(pend) do
        local e = p[1]
        local rows = redis.call('XRANGE', s, e, e)
        local id = rows[1] and rows[1][2] and rows[1][2][2]
        local v = {}
        if id then
          v = redis.call('HMGET', jkey(id), 'state', 'lease_owner', 'entry', 'attempts')
        end
        if v[1] == 'sending' and v[2] == owner and v[3] == e then
          local st = 'queued'
          if tonumber(v[4]) > 1 then st = 'deferred' end
          drop(c, e)
          redis.call('ZREM', ckey('leases', c), id)
          redis.call('HSET', jkey(id), 'state', st, 'lease_owner', '')
          redis.call('HINCRBY', jkey(id), 'ambiguous', 1)
          redis.call('HINCRBY', ckey('counts', c), 'ambiguous', 1)
          count(c, 'sending', st)
          push(c, id, now, now)
          n = n + 1
        else
          drop(c, e)
        end
      end
    end
    redis.call('XGROUP', 'DELCONSUMER', s, GROUP, owner)
  end
end
return n
"""

# ARGV: prefix, campaign or ''
_LEASE_OWNERS = """
local cs = redis.call('ZRANGE', ACTIVE, 0, -1)
if ARGV[2] ~= '' then cs = {ARGV[2]} end
local out = {}
for _, c in ipairs(cs) do
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 1 then
    local r = redis.call('XPENDING', s, GROUP)
    if r[4] then
      for _, x in ipairs(r[4]) do out[#out + 1] = x[1] end
    end
  end
end
return out
"""

# ARGV: prefix, campaign or ''. Returns {state, n, ..., 'ambiguous', n}, next_due or '',
# last_error.
_STATS = """
local cs = redis.call('ZRANGE', CAMPAIGNS, 0, -1)
if ARGV[2] ~= '' then cs = {ARGV[2]} end
local totals, next_due, next_due_s = {}, nil, ''
local last_error, last_error_at = '', nil
local function due(score)
  local x = tonumber(score)
  if x and (not next_due or x < next_due) then next_due, next_due_s = x, score end
end
for _, c in ipairs(cs) do
  local h = redis.call('HGETALL', ckey('counts', c))
  for j = 1, #h, 2 do totals[h[j]] = (totals[h[j]] or 0) + tonumber(h[j + 1]) end
  for _, kind in ipairs({'delayed', 'leases'}) do
    local m = redis.call('ZRANGE', ckey(kind, c), 0, 0, 'WITHSCORES')
    if m[2] then due(m[2]) end
  end
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 1 then
    local last = '0-0'
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', s)) do
      local f = {}
      for j = 1, #g, 2 do f[g[j]] = g[j + 1] end
      if f['name'] == GROUP then last = f['last-delivered-id'] end
    end
    local r = redis.call('XRANGE', s, '(' .. last, '+', 'COUNT', 1)
    if r[1] then due(redis.call('HGET', jkey(r[1][2][2]), 'ready_at')) end
  end
  -- the reply of the deferred job due last (a job handed back without an attempt has none)
  local later = redis.call('ZREVRANGE', ckey('delayed', c), 0, 49, 'WITHSCORES')
  for j = 1, #later, 2 do
    local v = redis.call('HMGET', jkey(later[j]), 'state', 'last_reply')
    local at = tonumber(later[j + 1])
    if v[1] == 'deferred' and v[2] and v[2] ~= '' then
      if not last_error_at or at > last_error_at then last_error, last_error_at = v[2], at end
      break
    end
  end
end
local flat = {}
for k, v in pairs(totals) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
return {flat, next_due_s, last_error}
"""

# ARGV: prefix, now, ids...
_RETRY_DEAD = """
local now = tonumber(ARGV[2])
local n, touched = 0, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'campaign')
  if v[1] == 'dead' then
    local c = v[2]
    ensure(c)
    redis.call('ZREM', ckey('dead', c), id)
    redis.call('HSET', k, 'state', 'queued', 'attempts', 0, 'dead_reason', '',
      'updated_at', ARGV[2])
    count(c, 'dead', 'queued')
    push(c, id, now, now)
    touched[c] = true
    n = n + 1
  end
end
refresh(touched)
return n
"""

# ARGV: prefix, ids... A campaign left with no job is removed entirely.
_PURGE_DEAD = """
local n, touched = 0, {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'campaign', 'ambiguous')
  if v[1] == 'dead' then
    local c = v[2]
    redis.call('DEL', k)
    redis.call('ZREM', ckey('dead', c), id)
    count(c, 'dead', nil)
    local amb = tonumber(v[3]) or 0
    if amb > 0 then redis.call('HINCRBY', ckey('counts', c), 'ambiguous', -amb) end
    touched[c] = true
    n = n + 1
  end
end
for c in pairs(touched) do
  local h = redis.call('HGETALL', ckey('counts', c))
  local total = 0
  for j = 1, #h, 2 do
    if h[j] ~= 'ambiguous' then total = total + tonumber(h[j + 1]) end
  end
  if total <= 0 then
    for _, kind in ipairs({'stream', 'delayed', 'leases', 'counts', 'dead', 'cursor'}) do
      redis.call('DEL', ckey(kind, c))
    end
    redis.call('ZREM', CAMPAIGNS, c)
    redis.call('ZREM', ACTIVE, c)
  end
end
return n
"""

# ARGV: prefix, max idle ms, owners... Deletes consumers that hold nothing and are ours
# (this process is closing) or idle longer than max idle (a worker that died).
_SWEEP_CONSUMERS = """
local ours = {}
for i = 3, #ARGV do ours[ARGV[i]] = true end
local n = 0
for _, c in ipairs(redis.call('ZRANGE', CAMPAIGNS, 0, -1)) do
  local s = ckey('stream', c)
  if redis.call('EXISTS', s) == 1 then
    for _, x in ipairs(redis.call('XINFO', 'CONSUMERS', s, GROUP)) do
      local f = {}
      for j = 1, #x, 2 do f[x[j]] = x[j + 1] end
      if f['pending'] == 0 and (ours[f['name']] or f['idle'] > tonumber(ARGV[2])) then
        redis.call('XGROUP', 'DELCONSUMER', s, GROUP, f['name'])
        n = n + 1
      end
    end
  end
end
return n
"""

_SCRIPTS = {
    "enqueue": _ENQUEUE,
    "claim": _CLAIM,
    "record": _RECORD,
    "extend": _EXTEND,
    "release": _RELEASE,
    "release_owner": _RELEASE_OWNER,
    "lease_owners": _LEASE_OWNERS,
    "stats": _STATS,
    "retry_dead": _RETRY_DEAD,
    "purge_dead": _PURGE_DEAD,
    "sweep_consumers": _SWEEP_CONSUMERS,
}
_SCRIPTS = {name: _PRELUDE + body for name, body in _SCRIPTS.items()}


# -- encoding -----------------------------------------------------------------------------


def _f(x: float) -> str:
    return repr(float(x))


def _s(b: Any) -> str:
    if b is None:
        return ""
    return b.decode() if isinstance(b, bytes) else str(b)


def _meta(j: Job, created: float) -> str:
    """What never changes about a job, as one JSON array: one field to write and read."""
    atts = [[r.digest, r.filename, r.content_type] for r in j.attachments]
    return json.dumps(
        [j.id, j.campaign, j.key, j.row, j.message_id, j.sender, list(j.recipients),
         j.body_offset, atts, created],
        separators=(",", ":"),
    )  # fmt: skip


def _job_args(j: Job, now: float) -> list[str | bytes]:
    created = j.created_at or now
    return [
        j.id, j.campaign, str(j.row), _f(created), _f(j.not_before or 0.0), _meta(j, created),
        j.message,
    ]  # fmt: skip


def _from_meta(meta: bytes, message: Any, **dynamic: Any) -> Job:
    jid, campaign, key, row, message_id, sender, rcpts, offset, atts, created = json.loads(meta)
    return Job(
        id=jid,
        campaign=campaign,
        key=key,
        message_id=message_id,
        sender=sender,
        recipients=tuple(rcpts),
        message=bytes(message or b""),
        row=row,
        body_offset=offset,
        attachments=tuple(AttachmentRef(*a) for a in atts),
        created_at=created,
        **dynamic,
    )


def _claimed(flat: Sequence[Any], owner: str, now: float) -> list[Job]:
    """Jobs from the claim script's flat reply (meta, message, attempts, last_reply each)."""
    return [
        _from_meta(
            flat[i],
            flat[i + 1],
            state=State.SENDING,
            attempts=int(flat[i + 2]),
            last_reply=_s(flat[i + 3]),
            lease_owner=owner,
            updated_at=now,
        )
        for i in range(0, len(flat), 4)
    ]


def _job(values: Sequence[Any]) -> Job:
    v = dict(zip(JOB_FIELDS, values, strict=True))
    state = State(_s(v["state"]))
    return _from_meta(
        v["meta"],
        v["message"],
        state=state,
        attempts=int(v["attempts"] or 0),
        not_before=float(v["ready_at"] or 0) if state in (State.QUEUED, State.DEFERRED) else 0.0,
        updated_at=float(v["updated_at"] or 0),
        last_reply=_s(v["last_reply"]),
        dead_reason=_s(v["dead_reason"]),
        lease_owner=_s(v["lease_owner"]),
    )


def _idle_ms(lease: float) -> int:
    lease_ms = max(1, round(min(lease, MAX_LEASE_S) * 1000))
    return RECLAIM_IDLE_MS - lease_ms


# -- the queue ----------------------------------------------------------------------------


class RedisQueue(Queue):
    """Queue and job store in Redis (Streams, a consumer group, hashes and sorted sets)."""

    def __init__(self, url: str) -> None:
        self.target = parse_redis_url(url)
        self.url = self.target.redacted
        self.prefix = self.target.prefix
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._owners: set[str] = set()
        self.reconnect = Reconnect(self.url, self.target.reconnect_for)

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
        self._scripts = {n: client.register_script(src) for n, src in _SCRIPTS.items()}
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
            args: list[str | bytes | float | int] = [_f(now), uuid.uuid4().hex]
            for j in chunk:
                args.extend(_job_args(j, now))
            replies = await self._script("enqueue", args)
            for j, r in zip(chunk, replies, strict=True):
                if isinstance(r, list):
                    out.append(resumed(int(r[0]), _s(r[1]), j.row))
                else:
                    out.append(Enqueued.NEW if r == b"new" else Enqueued.DUPLICATE)
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
        args = [_f(now), owner, str(limit), _f(min(lease, MAX_LEASE_S))]
        args += [str(_idle_ms(lease)), campaign or ""]
        return _claimed(await self._script("claim", args), owner, now)

    async def record(self, owner: str, outcomes: Sequence[Outcome]) -> int:
        applied = 0
        for start in range(0, len(outcomes), BATCH):
            args: list[str | bytes | float | int] = [_f(time.time()), owner]
            for o in outcomes[start : start + BATCH]:
                flags = f"{o.state.value}|{_f(o.not_before)}|{int(o.ambiguous)}|{o.reason}"
                args += [o.job_id, flags, o.reply]
            applied += int(await self._script("record", args))
        return applied

    async def extend(self, owner: str, job_ids: Sequence[str], lease: float) -> None:
        for start in range(0, len(job_ids), BATCH):
            args = [_f(time.time()), owner, _f(min(lease, MAX_LEASE_S)), str(_idle_ms(lease))]
            await self._script("extend", [*args, *job_ids[start : start + BATCH]])

    async def release(
        self, owner: str, job_ids: Sequence[str], not_before: float | None = None
    ) -> None:
        for start in range(0, len(job_ids), BATCH):
            args = [_f(time.time()), owner, _f(not_before) if not_before else ""]
            await self._script("release", [*args, *job_ids[start : start + BATCH]])

    async def lease_owners(self, campaign: str | None = None) -> list[str]:
        names = await self._script("lease_owners", [campaign or ""])
        return sorted({_s(n) for n in names})

    async def release_owner(self, owner: str) -> int:
        return int(await self._script("release_owner", [_f(time.time()), owner]))

    # -- inspection -------------------------------------------------------------------

    async def stats(self, campaign: str | None = None) -> CampaignStats:
        flat, next_due, last_error = await self._script("stats", [campaign or ""])
        st = CampaignStats(campaign)
        for k, v in zip(flat[::2], flat[1::2], strict=True):
            name, n = _s(k), int(v)
            if name == "ambiguous":
                st.ambiguous = n
            elif n > 0:
                st.counts[name] = n
        st.next_due = float(next_due) if _s(next_due) else None
        st.last_error = _s(last_error)
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

    async def _jobs(self, ids: Sequence[str]) -> list[Job]:
        async def load() -> list[Any]:
            pipe = self.redis.pipeline(transaction=False)
            for jid in ids:
                pipe.hmget(f"{self.prefix}:job:{jid}", list(JOB_FIELDS))
            return list(await pipe.execute())

        rows = await self.reconnect.run("get", load) if ids else []
        return [_job(r) for r in rows if r[0] is not None]

    async def get(self, job_id: str) -> Job | None:
        found = await self._jobs([job_id])
        return found[0] if found else None

    async def campaigns(self) -> list[str]:
        key = f"{self.prefix}:campaigns"
        names = await self.reconnect.run("campaigns", lambda: self.redis.zrange(key, 0, -1))
        return sorted(_s(n) for n in names)

    async def _dead(self, flt: DeadFilter) -> list[Job]:
        if flt.ids:
            ids = list(flt.ids)
        else:
            campaigns = [flt.campaign] if flt.campaign else await self.campaigns()
            low = _f(flt.since) if flt.since is not None else "-inf"
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
        return [_s(x) for x in found]

    async def dead_letters(self, flt: DeadFilter, limit: int = 1000) -> list[Job]:
        return (await self._dead(flt))[:limit]

    async def retry_dead(self, flt: DeadFilter) -> int:
        ids = [j.id for j in await self._dead(flt)]
        n = 0
        for start in range(0, len(ids), BATCH):
            args = [_f(time.time()), *ids[start : start + BATCH]]
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
