"""The Lua scripts of campaign control (pause, resume, cancel): the Redis queue's, run after
the prelude of :mod:`mailspool.queue.redis.scripts` (``CONTROL``, ``jkey``, ``ckey``,
``count``, ``drop``, ``refresh``), which adds :data:`CAMPAIGN_SCRIPTS` to its own; and
the Redis job store's (:data:`STORE_CAMPAIGN_SCRIPTS`).

A campaign's state is its field in ``P:control`` (``paused`` or ``cancelled``; absent:
active), which ``claim`` reads. Cancelling ends the campaign's queued and deferred jobs
a batch at a time, each batch one script, so that Redis never stalls on a large
campaign: the first batch marks the campaign cancelled, and a job of it that a worker
claims before the last batch is recorded ``cancelled`` by that worker.
"""

from __future__ import annotations

# ARGV: prefix, now, campaign, state (active, paused, cancelled), batch, stream cursor ('':
# the start). Returns {the campaign's state now, jobs cancelled, the stream cursor to go
# on from, 1 when there may be more to cancel}.
_SET_STATE = """
local now, c, want, batch = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local cur = redis.call('HGET', CONTROL, c)
if cur == 'cancelled' and want ~= 'cancelled' then return {'cancelled', 0, '', 0} end
if want == 'active' then
  redis.call('HDEL', CONTROL, c)
  return {'active', 0, '', 0}
end
redis.call('HSET', CONTROL, c, want)
if want ~= 'cancelled' then return {want, 0, '', 0} end

-- the job's state ended: kept for the ledger, its body dropped as a sent job's is
local n = 0
local function cancel(id, st)
  redis.call('HSET', jkey(id), 'state', 'cancelled', 'updated_at', now, 'entry', '',
    'ready_at', now)
  redis.call('HDEL', jkey(id), 'message')
  count(c, st, 'cancelled')
  n = n + 1
end
local more = 0
-- deferred jobs (and queued ones due later) wait in the delayed set
local dk = ckey('delayed', c)
local later = redis.call('ZRANGE', dk, 0, batch - 1)
for _, id in ipairs(later) do
  redis.call('ZREM', dk, id)
  local st = redis.call('HGET', jkey(id), 'state')
  if st == 'queued' or st == 'deferred' then cancel(id, st) end
end
if #later == batch then more = 1 end
-- jobs due now are stream entries; those being sent (pending entries) stay
local s, cursor = ckey('stream', c), ARGV[6]
if redis.call('EXISTS', s) == 1 then
  local from = '-'
  if cursor ~= '' then from = '(' .. cursor end
  local entries = redis.call('XRANGE', s, from, '+', 'COUNT', batch)
  for _, e in ipairs(entries) do
    local id = e[2][2]
    local v = redis.call('HMGET', jkey(id), 'state', 'entry')
    if (v[1] == 'queued' or v[1] == 'deferred') and v[2] == e[1] then
      drop(c, e[1])
      cancel(id, v[1])
    end
    cursor = e[1]
  end
  if #entries == batch then more = 1 end
end
refresh({[c] = true})
return {'cancelled', n, cursor, more}
"""

# The job store's (RabbitMQ with its job state in Redis), after both preludes (the store's
# adds ``dkey`` and ``move``: mailspool.queue.redis.store_scripts).
# ARGV: prefix, now, campaign, state (active, paused, cancelled), batch. Returns {the
# campaign's state now, jobs cancelled, 1 when there may be more to cancel}. A cancel ends
# up to `batch` queued and as many deferred jobs a call (the caller calls again while
# there may be more): Redis never stalls on a large campaign, and a job of it claimed
# meanwhile is its worker's to record cancelled. The due jobs of a resumed campaign are
# read by the caller, to announce.
_STORE_SET_STATE = """
local now, c, want, batch = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('HGET', CONTROL, c) == 'cancelled' and want ~= 'cancelled' then
  return {'cancelled', 0, 0}
end
if want == 'active' then
  redis.call('HDEL', CONTROL, c)
  return {'active', 0, 0}
end
redis.call('HSET', CONTROL, c, want)
if want ~= 'cancelled' then return {want, 0, 0} end
local n, more = 0, 0
for _, st in ipairs({'queued', 'deferred'}) do
  local ids = redis.call('ZRANGE', dkey(c, st), 0, batch - 1)
  for _, id in ipairs(ids) do
    move(c, id, st, 'cancelled', now)
    redis.call('HSET', jkey(id), 'state', 'cancelled', 'updated_at', now, 'ready_at', now)
    redis.call('HDEL', jkey(id), 'message')  -- as a sent job's: Redis keeps all in memory
    n = n + 1
  end
  if #ids == batch then more = 1 end
end
refresh({[c] = true})
return {'cancelled', n, more}
"""

#: the queue's scripts by name, without the prelude
CAMPAIGN_SCRIPTS = {"set_state": _SET_STATE}
#: the job store's, without the preludes
STORE_CAMPAIGN_SCRIPTS = {"set_state": _STORE_SET_STATE}
