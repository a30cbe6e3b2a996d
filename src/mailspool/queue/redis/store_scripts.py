"""The Lua scripts of the Redis job store (the key layout is in :mod:`mailspool.queue.redis.store`).

Every change is one script, so each is atomic. Each script runs after the Redis queue's
prelude (``P``, ``jkey``, ``ckey``, ``count``, ``refresh``: the store keeps the
queue's job hashes, counts and campaign sets, see :mod:`mailspool.queue.redis.scripts`)
and this module's own: the index of claimable jobs (``P:due:C:STATE``) and leasing. The
queue's stream helpers in that prelude (``ensure``, ``push``, ``drop``) are never called.

The statements mirror those of the PostgreSQL store (:mod:`mailspool.queue.postgres.schema`):
the same conditions, the same fields set; times come from the calling process's clock.
Campaign control's script is in :mod:`mailspool.queue.redis.campaign_scripts`.
"""

from __future__ import annotations

from mailspool.queue.redis.campaign_scripts import STORE_CAMPAIGN_SCRIPTS
from mailspool.queue.redis.scripts import PRELUDE

_STORE_PRELUDE = """
local CLAIMABLE = {queued = true, deferred = true, sending = true}
local function dkey(c, st) return P .. ':due:' .. c .. ':' .. st end

-- the campaigns a call looks at: the one named, else every one with claimable jobs
local function scope(c)
  if c ~= '' then return {c} end
  return redis.call('ZRANGE', ACTIVE, 0, -1)
end

-- those of scope(c) whose jobs may be claimed: not paused
local function claimable(c)
  local out = {}
  for _, x in ipairs(scope(c)) do
    if not paused(x) then out[#out + 1] = x end
  end
  return out
end

-- a job changes state: its entry in the due index (scored by ready_at) or among the dead
-- letters (scored by time of death), and the counts
local function move(c, id, from, to, at)
  if CLAIMABLE[from] then
    redis.call('ZREM', dkey(c, from), id)
  elseif from == 'dead' then
    redis.call('ZREM', ckey('dead', c), id)
  end
  if CLAIMABLE[to] then
    redis.call('ZADD', dkey(c, to), at, id)
  elseif to == 'dead' then
    redis.call('ZADD', ckey('dead', c), at, id)
  end
  count(c, from, to)
end

-- the campaign of job key k if `owner` holds its lease, else nil: outcomes, heartbeats and
-- hand-backs apply only then (and its meta and attempts, for an outcome's event)
local function held(k, owner)
  local v = redis.call('HMGET', k, 'state', 'lease_owner', 'campaign', 'meta', 'attempts')
  if v[1] == 'sending' and v[2] == owner then return v[3], v[4], v[5] end
  return nil
end

local function ambiguous(k, c)
  redis.call('HINCRBY', k, 'ambiguous', 1)
  redis.call('HINCRBY', ckey('counts', c), 'ambiguous', 1)
end

-- lease job `id` (campaign c, state st) to ARGV[3] until ARGV[4] (ARGV[2] is now), and add
-- meta, message, attempts, last_reply, list_name to `out`
local function lease(c, id, st, out)
  local k = jkey(id)
  if st == 'sending' then  -- an expired lease: delivered, maybe
    job_event('ambiguous', k, ARGV[2])  -- (of the attempt that may have been delivered)
    ambiguous(k, c)
  end
  move(c, id, st, 'sending', ARGV[4])
  local attempts = redis.call('HINCRBY', k, 'attempts', 1)
  redis.call('HSET', k, 'state', 'sending', 'lease_owner', ARGV[3], 'ready_at', ARGV[4],
    'updated_at', ARGV[2])
  local v = redis.call('HMGET', k, 'meta', 'message', 'last_reply', 'list_name')
  out[#out + 1] = v[1]
  out[#out + 1] = v[2]
  out[#out + 1] = attempts
  out[#out + 1] = v[3]
  out[#out + 1] = v[4] or ''
end
"""

# ARGV: prefix, now, token, then per job: id campaign row created_at not_before meta
# message suppressed list_name (encoding.job_args). Returns per job 'new', 'duplicate'
# (its id came earlier in this call) or the existing job's {row, state}. A job stored with
# this call's token was added by an earlier attempt of this very call whose reply was
# lost: it is reported new again. A job offered suppressed is stored final (not in the
# due index).
_INSERT = """
local now, token = tonumber(ARGV[2]), ARGV[3]
local out, touched, seen = {}, {}, {}
for i = 4, #ARGV, 9 do
  local id, c = ARGV[i], ARGV[i + 1]
  local k = jkey(id)
  local had = redis.call('HMGET', k, 'row', 'state', 'token')
  local reply = 'new'
  if seen[id] then
    reply = 'duplicate'
  elseif had[2] and had[3] ~= token then
    reply = {had[1], had[2]}
  elseif not had[2] then
    local nb = tonumber(ARGV[i + 4])
    local due, state = ARGV[i + 4], 'queued'
    if nb > now then state = 'deferred' end
    if nb == 0 then due = ARGV[i + 3] end  -- due when created
    if ARGV[i + 7] == 'suppressed' then state = 'suppressed' end
    redis.call('ZADD', CAMPAIGNS, 'NX', ARGV[2], c)
    redis.call('HSET', k, 'campaign', c, 'row', ARGV[i + 2], 'meta', ARGV[i + 5],
      'message', ARGV[i + 6], 'state', state, 'attempts', 0, 'ready_at', due,
      'updated_at', ARGV[2], 'last_reply', '', 'dead_reason', '', 'lease_owner', '',
      'ambiguous', 0, 'token', token, 'list_name', ARGV[i + 8])
    move(c, id, nil, state, due)
    if state == 'suppressed' then job_event('suppressed', k, ARGV[2]) end
    touched[c] = true
  end
  out[#out + 1] = reply
  seen[id] = true
end
refresh(touched)
return out
"""

# ARGV: prefix, now, owner, lease until, campaign or '', ids... Returns the leased jobs,
# flat (see lease).
_CLAIM_IDS = """
local now, out = tonumber(ARGV[2]), {}
for i = 6, #ARGV do
  local v = redis.call('HMGET', jkey(ARGV[i]), 'state', 'ready_at', 'campaign')
  if CLAIMABLE[v[1]] and tonumber(v[2]) <= now and (ARGV[5] == '' or v[3] == ARGV[5])
      and not paused(v[3]) then
    lease(v[3], ARGV[i], v[1], out)
  end
end
return out
"""

# ARGV: prefix, now, owner, lease until, limit, campaign or '', states... Leases the jobs
# due first across the campaigns and states named. Returns them flat (see lease).
_CLAIM_DUE = """
local limit, found, out = tonumber(ARGV[5]), {}, {}
for _, c in ipairs(claimable(ARGV[6])) do
  for j = 7, #ARGV do
    local r = redis.call('ZRANGEBYSCORE', dkey(c, ARGV[j]), '-inf', ARGV[2], 'WITHSCORES',
      'LIMIT', 0, limit)
    for x = 1, #r, 2 do found[#found + 1] = {tonumber(r[x + 1]), r[x], c, ARGV[j]} end
  end
end
table.sort(found, function(a, b) return a[1] < b[1] end)
for x = 1, math.min(limit, #found) do
  local f = found[x]
  lease(f[3], f[2], f[4], out)
end
return out
"""

# ARGV: prefix, now, campaign or '', states... Returns 1 when a job in them is due.
_HAS_DUE = """
for _, c in ipairs(claimable(ARGV[3])) do
  for j = 4, #ARGV do
    if #redis.call('ZRANGEBYSCORE', dkey(c, ARGV[j]), '-inf', ARGV[2], 'LIMIT', 0, 1) > 0 then
      return 1
    end
  end
end
return 0
"""

# ARGV: prefix, now, owner, then per outcome: id, "state|ready_at|ambiguous|dead reason"
# (one argument rather than four: the client packs every argument, one by one), reply.
# Applies those whose lease the owner still holds; returns how many.
_RECORD = """
local applied, touched = 0, {}
for i = 4, #ARGV, 3 do
  local id = ARGV[i]
  local st, ready, amb, reason = string.match(ARGV[i + 1], '^(%a+)|([^|]*)|(%d)|(.*)$')
  local k = jkey(id)
  local c, meta, attempts = held(k, ARGV[3])
  if c then
    local at = ready
    touched[c] = true
    if st == 'dead' then at = ARGV[2] end  -- dead letters are listed by time of death
    move(c, id, 'sending', st, at)
    redis.call('HSET', k, 'state', st, 'ready_at', ready, 'updated_at', ARGV[2],
      'last_reply', ARGV[i + 2], 'dead_reason', reason, 'lease_owner', '')
    if st ~= 'cancelled' then emit_job(st, ARGV[2], meta, c, attempts, ARGV[i + 2], reason) end
    if amb == '1' then
      emit_job('ambiguous', ARGV[2], meta, c, attempts, ARGV[i + 2], reason)
      ambiguous(k, c)
    end
    -- Redis holds everything in memory: a sent job keeps what the ledger needs
    if st ~= 'dead' and st ~= 'deferred' then redis.call('HDEL', k, 'message') end
    applied = applied + 1
  end
end
refresh(touched)
return applied
"""

# ARGV: prefix, owner, lease until, ids...
_EXTEND = """
for i = 4, #ARGV do
  local k = jkey(ARGV[i])
  local c = held(k, ARGV[2])
  if c then
    redis.call('HSET', k, 'ready_at', ARGV[3])
    redis.call('ZADD', dkey(c, 'sending'), ARGV[3], ARGV[i])
  end
end
return {}
"""

# ARGV: prefix, due, owner, '1' if deferred (a not_before was given), '1' if a reply is
# given, the reply, ids... The attempt is not counted. Returns id, campaign of each job
# handed back.
_RELEASE = """
local out = {}
for i = 7, #ARGV do
  local id = ARGV[i]
  local k = jkey(id)
  local c = held(k, ARGV[3])
  if c then
    local attempts = tonumber(redis.call('HGET', k, 'attempts')) or 0
    local st = 'queued'
    if ARGV[4] == '1' or attempts > 1 then st = 'deferred' end
    move(c, id, 'sending', st, ARGV[2])
    redis.call('HSET', k, 'state', st, 'ready_at', ARGV[2], 'attempts', attempts - 1,
      'lease_owner', '')
    if ARGV[5] == '1' then redis.call('HSET', k, 'last_reply', ARGV[6]) end
    out[#out + 1] = id
    out[#out + 1] = c
  end
end
return out
"""

# ARGV: prefix, now, owner (a worker known to be dead). Hands back every job it leased,
# each counted ambiguous; returns id, campaign of each.
_RELEASE_OWNER = """
local out = {}
for _, c in ipairs(scope('')) do
  for _, id in ipairs(redis.call('ZRANGE', dkey(c, 'sending'), 0, -1)) do
    local k = jkey(id)
    local v = redis.call('HMGET', k, 'lease_owner', 'attempts')
    if v[1] == ARGV[3] then
      local st = 'queued'
      if (tonumber(v[2]) or 0) > 1 then st = 'deferred' end
      move(c, id, 'sending', st, ARGV[2])
      redis.call('HSET', k, 'state', st, 'ready_at', ARGV[2], 'lease_owner', '')
      ambiguous(k, c)
      out[#out + 1] = id
      out[#out + 1] = c
    end
  end
end
return out
"""

# ARGV: prefix, campaign or ''. Returns the owners of leased jobs, expired leases included.
_LEASE_OWNERS = """
local out, seen = {}, {}
for _, c in ipairs(scope(ARGV[2])) do
  for _, id in ipairs(redis.call('ZRANGE', dkey(c, 'sending'), 0, -1)) do
    local o = redis.call('HGET', jkey(id), 'lease_owner')
    if o and o ~= '' and not seen[o] then
      seen[o] = true
      out[#out + 1] = o
    end
  end
end
return out
"""

# ARGV: prefix, now, ids... Returns id, campaign of those queued or deferred and due now.
_QUEUED = """
local out, seen = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local v = redis.call('HMGET', jkey(id), 'state', 'ready_at', 'campaign')
  if not seen[id] and (v[1] == 'queued' or v[1] == 'deferred')
      and tonumber(v[2]) <= tonumber(ARGV[2]) then
    out[#out + 1] = id
    out[#out + 1] = v[3]
  end
  seen[id] = true
end
return out
"""

# ARGV: prefix, campaign or ''. Returns the campaigns' counts one after the other ({state,
# n, ..., 'ambiguous', n, ...}: the caller adds them up), next_due or '', last_error: the
# reply of the deferred job due last that has one.
_STATS = """
local cs = {ARGV[2]}
if ARGV[2] == '' then cs = redis.call('ZRANGE', CAMPAIGNS, 0, -1) end
local counts, next_due, last_error, last_at = {}, '', '', nil
for _, c in ipairs(cs) do
  for _, x in ipairs(redis.call('HGETALL', ckey('counts', c))) do counts[#counts + 1] = x end
  for st in pairs(CLAIMABLE) do
    local m = redis.call('ZRANGE', dkey(c, st), 0, 0, 'WITHSCORES')
    if m[2] and (next_due == '' or tonumber(m[2]) < tonumber(next_due)) then next_due = m[2] end
  end
  local from, done = 0, false
  while not done do
    local later = redis.call('ZREVRANGE', dkey(c, 'deferred'), from, from + 99, 'WITHSCORES')
    done = #later == 0
    for j = 1, #later, 2 do
      local at = tonumber(later[j + 1])
      if last_at and at <= last_at then done = true; break end
      local r = redis.call('HGET', jkey(later[j]), 'last_reply')
      if r and r ~= '' then last_error, last_at, done = r, at, true; break end
    end
    from = from + 100
  end
end
return {counts, next_due, last_error}
"""

# ARGV: prefix, now, ids... Queues those still dead again (attempts from 0); returns id,
# campaign of each.
_RETRY_DEAD = """
local out, touched = {}, {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local k = jkey(id)
  local v = redis.call('HMGET', k, 'state', 'campaign')
  if v[1] == 'dead' then
    move(v[2], id, 'dead', 'queued', ARGV[2])
    redis.call('HSET', k, 'state', 'queued', 'ready_at', ARGV[2], 'attempts', 0,
      'dead_reason', '', 'updated_at', ARGV[2])
    touched[v[2]] = true
    out[#out + 1] = id
    out[#out + 1] = v[2]
  end
end
refresh(touched)
return out
"""

_SCRIPTS = {
    "insert": _INSERT,
    "claim_ids": _CLAIM_IDS,
    "claim_due": _CLAIM_DUE,
    "has_due": _HAS_DUE,
    "record": _RECORD,
    "extend": _EXTEND,
    "release": _RELEASE,
    "release_owner": _RELEASE_OWNER,
    "lease_owners": _LEASE_OWNERS,
    "queued": _QUEUED,
    "stats": _STATS,
    "retry_dead": _RETRY_DEAD,
    **STORE_CAMPAIGN_SCRIPTS,
}
#: every script of the Redis job store by name, each after both preludes
STORE_SCRIPTS = {name: PRELUDE + _STORE_PRELUDE + body for name, body in _SCRIPTS.items()}
