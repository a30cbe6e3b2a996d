"""The Lua of the Redis event log (the key layout is in :mod:`mailspool.queue.redis.events`).

:data:`EMIT` is the snippet that writes an event. The scripts whose change causes one
(the queue's and the job store's enqueue, claim and record, returned mail's record, the
suppression list's put) include it, so that the change and its event are one atomic
script. It needs only the prefix at ``ARGV[1]``, as every script of this backend has it.

:data:`SCRIPTS` are the event log's own: each webhook endpoint's lease, cursor and pending
rows, and the prune, each one atomic script.
"""

from __future__ import annotations

#: the stream's field names, one letter each (a stream stores them once per block when
#: every entry has the same): type, at, job id, campaign, recipients (JSON), detail,
#: reason, attempts, permanent ("1"/"0")
FIELDS = ("t", "at", "j", "c", "r", "d", "x", "n", "p")

#: bytes of a detail kept: MAX_DETAIL_CHARS (1000) characters of UTF-8 are at most 4000
#: bytes; the reader decodes and clips to characters (Lua knows only bytes)
DETAIL_BYTES = 4000

EMIT = f"""
local EVENTS = ARGV[1] .. ':ev:log'
-- an event on the log: the entry's id, given by Redis, is its cursor, so cursors grow in
-- the order scripts run, which is their commit order
local function emit(t, at, job, c, rcpts, detail, reason, n, perm)
  redis.call('XADD', EVENTS, '*', 't', t, 'at', at, 'j', job, 'c', c, 'r', rcpts,
    'd', string.sub(detail, 1, {DETAIL_BYTES}), 'x', reason, 'n', n, 'p', perm)
end
-- a job's event: its id and recipients are in its meta (encoding.py)
local function emit_job(t, at, meta, c, attempts, detail, reason)
  local m = cjson.decode(meta)
  emit(t, at, m[1], c, cjson.encode(m[7]), detail, reason, attempts or 0, 0)
end
-- the event of the job at key k, with what its hash holds now (where the script has not
-- read it already)
local function job_event(t, k, at)
  local v = redis.call('HMGET', k, 'meta', 'campaign', 'attempts', 'last_reply', 'dead_reason')
  emit_job(t, at, v[1], v[2], v[3], v[4] or '', v[5] or '')
end
"""

_KEYS = """
local P = ARGV[1]
local LOG, NAMES = P .. ':ev:log', P .. ':ev:names'
local function key(kind, name) return P .. ':ev:' .. kind .. ':' .. name end
local function counts(name)
  return {redis.call('ZCARD', key('retry', name)), redis.call('ZCARD', key('dead', name))}
end
"""

# ARGV: prefix, name, owner, lease until, now. Returns {cursor or '', retrying, dead}, or
# nil when another owner holds an unexpired lease. A new endpoint starts at the newest
# event ('' on an empty log).
_LEASE = """
local name, owner, till, now = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local ep = key('ep', name)
local v = redis.call('HMGET', ep, 'owner', 'until', 'cursor')
if v[1] and v[1] ~= '' and v[1] ~= owner and tonumber(v[2]) > now then return false end
local cursor = v[3]
if not cursor then
  local last = redis.call('XREVRANGE', LOG, '+', '-', 'COUNT', 1)
  cursor = last[1] and last[1][1] or ''
  redis.call('SADD', NAMES, name)
end
redis.call('HSET', ep, 'owner', owner, 'until', till, 'cursor', cursor)
local n = counts(name)
return {cursor, n[1], n[2]}
"""

# ARGV: prefix, name, owner, now, cursor. Returns 1 when moved (the owner holds it).
_ADVANCE = """
local ep = key('ep', ARGV[2])
local v = redis.call('HMGET', ep, 'owner', 'until')
if v[1] ~= ARGV[3] or tonumber(v[2]) <= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', ep, 'cursor', ARGV[5])
return 1
"""

# ARGV: prefix, name, then per row: member, next_at, "1" if dead else "0", the row (JSON).
# Adds or replaces each row: retrying rows are due by next_at and listed by cursor; dead
# ones are listed by cursor.
_PUT_PENDING = """
local name = ARGV[2]
local rows, due, retry, dead = key('rows', name), key('due', name), key('retry', name),
  key('dead', name)
redis.call('SADD', NAMES, name)
for i = 3, #ARGV, 4 do
  local m = ARGV[i]
  redis.call('HSET', rows, m, ARGV[i + 3])
  if ARGV[i + 2] == '1' then
    redis.call('ZREM', due, m)
    redis.call('ZREM', retry, m)
    redis.call('ZADD', dead, 0, m)
  else
    redis.call('ZADD', due, ARGV[i + 1], m)
    redis.call('ZADD', retry, 0, m)
    redis.call('ZREM', dead, m)
  end
end
return 0
"""

_FORGET = """
local function forget(name, m)
  redis.call('HDEL', key('rows', name), m)
  for _, kind in ipairs({'due', 'retry', 'dead'}) do redis.call('ZREM', key(kind, name), m) end
end
"""

# ARGV: prefix, name, members...
_DROP_PENDING = """
for i = 3, #ARGV do forget(ARGV[2], ARGV[i]) end
return 0
"""

# ARGV: prefix, name, now, limit. Returns member, row of each retrying row due at now,
# earliest due first (equal times: by cursor, as members of equal score sort by bytes).
_DUE = """
local name = ARGV[2]
local ms = redis.call('ZRANGEBYSCORE', key('due', name), '-inf', ARGV[3], 'LIMIT', 0, ARGV[4])
if #ms == 0 then return {} end
return {ms, redis.call('HMGET', key('rows', name), unpack(ms))}
"""

# ARGV: prefix, name, "dead" or "retry", limit. Returns member, row of the oldest rows.
_PENDING = """
local name = ARGV[2]
local ms = redis.call('ZRANGE', key(ARGV[3], name), 0, tonumber(ARGV[4]) - 1)
if #ms == 0 then return {} end
return {ms, redis.call('HMGET', key('rows', name), unpack(ms))}
"""

# ARGV: prefix, name, now, the revived row (JSON). Returns how many were dead.
_REVIVE = """
local name = ARGV[2]
local dead = key('dead', name)
local ms = redis.call('ZRANGE', dead, 0, -1)
for _, m in ipairs(ms) do
  redis.call('HSET', key('rows', name), m, ARGV[4])
  redis.call('ZADD', key('due', name), ARGV[3], m)
  redis.call('ZADD', key('retry', name), 0, m)
end
redis.call('DEL', dead)
return #ms
"""

# ARGV: prefix, min id ("MS-0"), the same as a member. Deletes the events before min id,
# and every endpoint's rows of those events; returns how many events.
_PRUNE = """
local n = 0
if redis.call('EXISTS', LOG) == 1 then n = redis.call('XTRIM', LOG, 'MINID', ARGV[2]) end
for _, name in ipairs(redis.call('SMEMBERS', NAMES)) do
  for _, kind in ipairs({'retry', 'dead'}) do
    for _, m in ipairs(redis.call('ZRANGEBYLEX', key(kind, name), '-', '(' .. ARGV[3])) do
      forget(name, m)
    end
  end
end
return n
"""

# ARGV: prefix. Returns per endpoint: name, cursor, owner, until, retrying, dead.
_ENDPOINTS = """
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', NAMES)) do
  local v = redis.call('HMGET', key('ep', name), 'cursor', 'owner', 'until')
  if v[1] then
    local n = counts(name)
    out[#out + 1] = {name, v[1], v[2], v[3], n[1], n[2]}
  end
end
return out
"""

#: the event log's scripts by name, each after the key names
SCRIPTS = {
    name: _KEYS + _FORGET + body
    for name, body in {
        "lease": _LEASE,
        "advance": _ADVANCE,
        "put_pending": _PUT_PENDING,
        "drop_pending": _DROP_PENDING,
        "due": _DUE,
        "pending": _PENDING,
        "revive": _REVIVE,
        "prune": _PRUNE,
        "endpoints": _ENDPOINTS,
    }.items()
}
