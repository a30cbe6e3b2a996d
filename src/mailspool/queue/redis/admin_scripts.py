"""The Redis queue's Lua scripts for inspection and repair: lease owners, handing back a
dead worker's jobs, stats, dead letters, and the sweep of idle consumers. Each runs after
the prelude of :mod:`mailspool.queue.redis.scripts` (``jkey``, ``ckey``, ``count``, ...),
which adds :data:`ADMIN_SCRIPTS` to its own.
"""

from __future__ import annotations

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

#: the scripts by name, without the prelude
ADMIN_SCRIPTS = {
    "release_owner": _RELEASE_OWNER,
    "lease_owners": _LEASE_OWNERS,
    "stats": _STATS,
    "retry_dead": _RETRY_DEAD,
    "purge_dead": _PURGE_DEAD,
    "sweep_consumers": _SWEEP_CONSUMERS,
}
