"""The Lua scripts of the Redis queue (the key layout is in :mod:`mailspool.queue.redis.queue`).

Every operation is one script, so each is atomic. This module holds the prelude every
script starts with (key names, counters, making a job ready) and the scripts of a job's
life: enqueue, claim, record, extend, release; those for inspection and repair are in
:mod:`mailspool.queue.redis.admin_scripts`. :data:`QUEUE_SCRIPTS` has them all, each after
the prelude; campaign control's are in :mod:`mailspool.queue.redis.campaign_scripts`;
the Redis job store's scripts (:mod:`mailspool.queue.redis.store_scripts`) start with
the same :data:`PRELUDE`.
"""

from __future__ import annotations

from mailspool.queue.redis.admin_scripts import ADMIN_SCRIPTS
from mailspool.queue.redis.campaign_scripts import CAMPAIGN_SCRIPTS
from mailspool.queue.redis.event_scripts import EMIT

#: XAUTOCLAIM's min-idle-time; a lease of L ms sets an entry's idle time to this minus L
RECLAIM_IDLE_MS = 10 * 365 * 86400 * 1000
MAX_LEASE_S = RECLAIM_IDLE_MS / 2000

_PRELUDE = """
local P = ARGV[1]
local GROUP = 'workers'
local RECLAIM_IDLE = '@RECLAIM@'
local CAMPAIGNS = P .. ':campaigns'
local ACTIVE = P .. ':active'
local CONTROL = P .. ':control'
local function jkey(id) return P .. ':job:' .. id end
local function ckey(kind, c) return P .. ':' .. kind .. ':' .. c end
local function num(x) return string.format('%.6f', x) end
-- a paused campaign's jobs are claimed by no one until it is resumed
local function paused(c) return redis.call('HGET', CONTROL, c) == 'paused' end

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
#: what every script starts with: writing an event (event_scripts.EMIT), key names,
#: counters, making a job ready
PRELUDE = EMIT + _PRELUDE

# ARGV: prefix, now, token, then per job: id campaign row created_at not_before meta
# message suppressed list_name (encoding.job_args). Returns per job 'new', 'duplicate'
# (its id came earlier in this call) or the existing job's {row, state}. A job that exists
# with this call's token was created by an earlier attempt of this very call whose reply
# was lost: it is reported new again. A job offered suppressed is stored final: no stream
# entry, never delayed.
_ENQUEUE = """
local now = tonumber(ARGV[2])
local token = ARGV[3]
local out, touched, mine = {}, {}, {}
for i = 4, #ARGV, 9 do
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
    if ARGV[i + 7] == 'suppressed' then state = 'suppressed' end
    if not touched[c] then ensure(c); touched[c] = true end
    local entry = ''
    if state == 'suppressed' then  -- final: neither on the stream nor delayed
      entry = ''
    elseif due > now then
      redis.call('ZADD', ckey('delayed', c), num(due), id)
    else
      entry = redis.call('XADD', ckey('stream', c), '*', 'id', id)
    end
    redis.call('HSET', k, 'campaign', c, 'row', ARGV[i + 2], 'meta', ARGV[i + 5],
      'message', ARGV[i + 6], 'state', state, 'attempts', 0, 'updated_at', ARGV[2],
      'last_reply', '', 'dead_reason', '', 'lease_owner', '', 'ambiguous', 0, 'token', token,
      'entry', entry, 'ready_at', num(due), 'list_name', ARGV[i + 8])
    if state == 'suppressed' then job_event('suppressed', k, ARGV[2]) end
    count(c, nil, state)
    out[#out + 1] = 'new'
  end
  mine[id] = true
end
refresh(touched)
return out
"""

# ARGV: prefix, now, owner, limit, lease seconds, idle ms (RECLAIM_IDLE - lease), campaign
# or ''. Returns the leased jobs, flat: meta, message, attempts, last_reply, list_name for
# each.
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
    job_event('ambiguous', k, ARGV[2])  -- (of the attempt that may have been delivered)
    redis.call('HINCRBY', k, 'ambiguous', 1)
    redis.call('HINCRBY', ckey('counts', c), 'ambiguous', 1)
  end
  local attempts = (tonumber(v[3]) or 0) + 1
  redis.call('HSET', k, 'state', 'sending', 'lease_owner', owner, 'updated_at', ARGV[2],
    'ready_at', lease_until, 'attempts', attempts)
  redis.call('ZADD', ckey('leases', c), lease_until, id)
  local v2 = redis.call('HMGET', k, 'meta', 'message', 'last_reply', 'list_name')
  out[#out + 1] = v2[1]
  out[#out + 1] = v2[2]
  out[#out + 1] = attempts
  out[#out + 1] = v2[3]
  out[#out + 1] = v2[4] or ''
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
  if not paused(ARGV[7]) then claim_from(ARGV[7]) end
else
  for _, c in ipairs(redis.call('ZRANGE', ACTIVE, 0, -1)) do
    if not paused(c) then claim_from(c) end
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
  local v = redis.call('HMGET', k, 'state', 'lease_owner', 'campaign', 'entry', 'meta',
    'attempts')
  if v[1] == 'sending' and v[2] == owner then
    local c = v[3]
    drop(c, v[4])
    redis.call('ZREM', ckey('leases', c), id)
    redis.call('HSET', k, 'state', st, 'updated_at', ARGV[2], 'last_reply', reply,
      'dead_reason', reason, 'lease_owner', '', 'entry', '', 'ready_at', ARGV[2])
    if st ~= 'cancelled' then emit_job(st, ARGV[2], v[5], c, v[6], reply, reason) end
    if amb == '1' then
      emit_job('ambiguous', ARGV[2], v[5], c, v[6], reply, reason)
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
local now, owner, nb, reply = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), ARGV[5]
local n = 0
for i = 6, #ARGV do
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
    if reply ~= '' then redis.call('HSET', k, 'last_reply', reply) end
    count(c, 'sending', st)
    push(c, id, nb or now, now)
    n = n + 1
  end
end
return n
"""

#: every script of the Redis queue by name, each after the prelude
QUEUE_SCRIPTS = {
    name: PRELUDE + body
    for name, body in {
        "enqueue": _ENQUEUE,
        "claim": _CLAIM,
        "record": _RECORD,
        "extend": _EXTEND,
        "release": _RELEASE,
        **ADMIN_SCRIPTS,
        **CAMPAIGN_SCRIPTS,
    }.items()
}
