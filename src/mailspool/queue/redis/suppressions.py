"""The suppression list in Redis, under the prefix of the Redis queue or job store that
holds it, on its connection (with its retries while Redis is unreachable).

Keys (``P`` is the prefix; ``L`` a list name, empty for the global entries; ``KEY`` an
address or ``@domain`` key)::

    P:supp:h:L      hash  L's entries: field KEY, value the JSON
                          [reason, source, created_at, expires_at or null]
    P:supp:z:L      zset  L's keys, all scored 0: a page of one list (ZRANGEBYLEX)
    P:supp:all      zset  "KEY\\0L" of every entry, all scored 0: a page of every list, in
                          (address, list) order, as NUL sorts before any other byte
    P:supp:exp      zset  "KEY\\0L" of the entries that expire, by expires_at (the purge)

The batch check (``_match``) is one round trip: HMGET of the keys in the list's hash and
in the global hash, pipelined; the expiry is compared here. A page is one ZRANGEBYLEX
from the cursor, so a page of 1,000 costs the same with a million entries; a reason
filter may pass over many entries, in calls of at most ``PAGE_BUDGET`` each. Adding,
removing and purging are Lua scripts, each atomic: the merge rule
(:func:`mailspool.queue.suppression.merge`) is applied in Redis, and a new unsubscribe
writes its ``unsubscribed`` event (:mod:`mailspool.queue.redis.events`) in the same script.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from mailspool.queue.redis.connection import Reconnect
from mailspool.queue.redis.encoding import as_str, float_arg
from mailspool.queue.redis.event_scripts import EMIT
from mailspool.queue.suppression import (
    ALL_LISTS,
    Reason,
    Scope,
    Suppression,
    SuppressionList,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

#: entries (or keys) a script call takes; each call is atomic, a whole call is not
BATCH = 1000
#: index members a page's script call looks at, at most (see _PAGE)
PAGE_BUDGET = 5000

_KEYS = """
local P = ARGV[1]
local ALL, EXP = P .. ':supp:all', P .. ':supp:exp'
local function hkey(l) return P .. ':supp:h:' .. l end
local function zkey(l) return P .. ':supp:z:' .. l end
local function member(k, l) return k .. '\\0' .. l end
local function forget(k, l)
  local m = member(k, l)
  redis.call('ZREM', zkey(l), k)
  redis.call('ZREM', ALL, m)
  redis.call('ZREM', EXP, m)
end
"""

# ARGV: prefix, then per entry: list ('' global), key, expires_at ('' none), value, and
# created_at if the entry is an unsubscribe, else ''. An entry replaces the one stored
# only when it lasts longer (no expiry beats any); a new unsubscribe writes its event.
_PUT = """
for i = 2, #ARGV, 5 do
  local l, k, exp, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local h = hkey(l)
  local old = redis.call('HGET', h, k)
  local put = not old
  if not old and ARGV[i + 4] ~= '' then
    local source = cjson.decode(value)[2]
    emit('unsubscribed', ARGV[i + 4], '', '', cjson.encode({k}), l, source, 0, 0)
  end
  if old then
    local had = cjson.decode(old)[4]
    put = had ~= cjson.null and (exp == '' or tonumber(exp) > had)
  end
  if put then
    redis.call('HSET', h, k, value)
    redis.call('ZADD', zkey(l), 0, k)
    redis.call('ZADD', ALL, 0, member(k, l))
    if exp == '' then
      redis.call('ZREM', EXP, member(k, l))
    else
      redis.call('ZADD', EXP, exp, member(k, l))
    end
  end
end
return 0
"""

# ARGV: prefix, list ('' global), keys... Returns how many were there.
_DELETE = """
local l, n = ARGV[2], 0
for i = 3, #ARGV do
  if redis.call('HDEL', hkey(l), ARGV[i]) == 1 then
    forget(ARGV[i], l)
    n = n + 1
  end
end
return n
"""

# ARGV: prefix, now, limit. Deletes up to limit entries expired at now; returns how many.
_PURGE = """
local gone = redis.call('ZRANGEBYSCORE', EXP, '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(gone) do
  local at = string.find(m, '\\0', 1, true)
  local k, l = string.sub(m, 1, at - 1), string.sub(m, at + 1)
  redis.call('HDEL', hkey(l), k)
  forget(k, l)
end
return #gone
"""

# ARGV: prefix, list or '' (with "all": every list), "all" or "one", the ZRANGEBYLEX start,
# limit, reason or '', budget. Looks at up to budget index members (a reason filter may
# pass over many: each call stays short, as Redis serves nothing else meanwhile). Returns
# {key, list, value of each entry found, flat; where to go on from, '' at the end}.
_PAGE = """
local l, every, from = ARGV[2], ARGV[3] == 'all', ARGV[4]
local limit, reason, budget = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local src = zkey(l)
if every then src = ALL end
local out, found, seen = {}, 0, 0
while found < limit and seen < budget do
  local want = math.min(math.max(limit - found, 100), budget - seen)
  local got = redis.call('ZRANGEBYLEX', src, from, '+', 'LIMIT', 0, want)
  if #got == 0 then return {out, ''} end
  for _, m in ipairs(got) do
    seen = seen + 1
    from = '(' .. m
    local k, list = m, l
    if every then
      local at = string.find(m, '\\0', 1, true)
      k, list = string.sub(m, 1, at - 1), string.sub(m, at + 1)
    end
    local v = redis.call('HGET', hkey(list), k)
    if v and (reason == '' or cjson.decode(v)[1] == reason) then
      out[#out + 1] = k
      out[#out + 1] = list
      out[#out + 1] = v
      found = found + 1
      if found == limit then break end
    end
  end
end
return {out, from}
"""

_BODIES = {"put": EMIT + _PUT, "delete": _DELETE, "purge": _PURGE, "page": _PAGE}
SCRIPTS = {name: _KEYS + body for name, body in _BODIES.items()}


class RedisHolder(Protocol):
    """What the suppression list uses of the Redis queue (or job store) holding it."""

    prefix: str
    reconnect: Reconnect

    @property
    def redis(self) -> Redis: ...


class HeldScripts:
    """Lua scripts (``sources`` by name) run on the holder's client with its retries,
    their first argument the holder's prefix; registered again when the holder has a new
    client (a script object belongs to one). ``what`` names them in retry logs."""

    def __init__(self, holder: RedisHolder, sources: Mapping[str, str], what: str) -> None:
        self._holder = holder
        self._sources = sources
        self._what = what
        self._client: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}

    async def run(self, name: str, args: Sequence[str | bytes | float | int]) -> Any:
        client = self._holder.redis  # QueueError when not open
        if client is not self._client:  # opened (again): the scripts belong to a client
            self._client = client
            self._scripts = {n: client.register_script(s) for n, s in self._sources.items()}
        script, full = self._scripts[name], [self._holder.prefix, *args]
        return await self._holder.reconnect.run(f"{self._what} {name}", lambda: script(args=full))


def _value(e: Suppression) -> str:
    return json.dumps([e.reason.value, e.source, e.created_at, e.expires_at])


def _entry(key: Any, list_name: Any, value: Any) -> Suppression:
    reason, source, created, expires = json.loads(value)
    return Suppression(
        as_str(key), as_str(list_name) or None, Reason(reason), source, created, expires
    )


def _start(list_name: str | Scope | None, after: tuple[str, str] | None) -> str:
    """Where ZRANGEBYLEX starts for the page after ``after``: in one list, the cursor's
    address itself when this list sorts after the cursor's list, else the next one."""
    if after is None:
        return "-"
    address, list_after = after
    if list_name is ALL_LISTS:
        return f"({address}\0{list_after}"
    return ("[" if (list_name or "") > list_after else "(") + address


class RedisSuppressionList(SuppressionList):
    """The suppression list under ``holder``'s prefix, on its connection."""

    def __init__(self, holder: RedisHolder) -> None:
        self._holder = holder
        self._scripts = HeldScripts(holder, SCRIPTS, "suppressions")

    def _hash(self, list_name: str | None) -> str:
        return f"{self._holder.prefix}:supp:h:{list_name or ''}"

    async def _script(self, name: str, args: Sequence[str | bytes | float | int]) -> Any:
        return await self._scripts.run(name, args)

    async def _put(self, entries: Sequence[Suppression]) -> None:
        for start in range(0, len(entries), BATCH):
            args: list[str | float | int] = []
            for e in entries[start : start + BATCH]:
                expires = "" if e.expires_at is None else float_arg(e.expires_at)
                # an unsubscribe's time: its event's, should it be new (see _PUT)
                unsub = float_arg(e.created_at) if e.reason is Reason.UNSUBSCRIBED else ""
                args += [e.list_name or "", e.address, expires, _value(e), unsub]
            await self._script("put", args)

    async def _delete(self, keys: Sequence[str], list_name: str | None) -> int:
        n = 0
        for start in range(0, len(keys), BATCH):
            n += int(await self._script("delete", [list_name or "", *keys[start : start + BATCH]]))
        return n

    async def _page(
        self,
        list_name: str | Scope | None,
        reason: Reason | None,
        limit: int,
        after: tuple[str, str] | None,
    ) -> list[Suppression]:
        every = list_name is ALL_LISTS
        scope = "" if isinstance(list_name, Scope) else list_name or ""
        mode, wanted = "all" if every else "one", reason.value if reason else ""
        start: str | bytes = _start(list_name, after)
        found: list[Suppression] = []
        while start and len(found) < limit:
            args = [scope, mode, start, limit - len(found), wanted, PAGE_BUDGET]
            flat, start = await self._script("page", args)
            found += [_entry(*flat[i : i + 3]) for i in range(0, len(flat), 3)]
        return found

    async def _match(self, keys: Collection[str], list_name: str | None, now: float) -> set[str]:
        fields = list(keys)
        hashes = [self._hash(None)] + ([self._hash(list_name)] if list_name else [])

        async def read() -> list[Any]:
            pipe = self._holder.redis.pipeline(transaction=False)
            for h in hashes:
                pipe.hmget(h, fields)
            return list(await pipe.execute())

        found: set[str] = set()
        for values in await self._holder.reconnect.run("suppressions match", read):
            for key, value in zip(fields, values, strict=True):
                if value is not None:
                    expires = json.loads(value)[3]
                    if expires is None or expires > now:
                        found.add(key)
        return found

    async def _purge(self, now: float) -> int:
        n = 0
        while gone := int(await self._script("purge", [float_arg(now), BATCH])):
            n += gone
        return n
