-- admit: may this job of a limited task start now? Shared by every worker.
--
-- Rate limit (interval > 0): starts are spaced at least `interval` apart, by
-- the Redis clock. A job that may not start yet is given a reserved slot (the
-- next free one, each an interval after the last) and told to wait for it; so
-- a backlog is paced out in one deferral each, not retried in a herd. A job
-- holding a reservation starts once an interval has passed since the last
-- start (late arrivals cannot bunch up: they are spaced again).
--
-- Concurrency limit (max > 0): at most `max` jobs of the task hold a slot in
-- the running set; a slot is a member with its lease expiry as score (renewed
-- while the job runs by slots.lua, dropped when it ends, expired if its worker
-- died). Every time here is the Redis clock's: a lease expiry further ahead
-- than one lease (written by a clock that ran ahead) is healed down to one
-- lease from now, and a last start in the future is taken as now.
--
-- KEYS[1]  rate limiter state (hash: last start, next free slot; µs)
-- KEYS[2]  running set (sorted set: job id -> lease expiry, ms); both keys carry
--          the task's hash tag {task:NAME}, so they are in one Cluster slot
-- ARGV[1]  interval between starts (µs), 0 = no rate limit
-- ARGV[2]  1 if the job holds a reservation, else 0
-- ARGV[3]  job id
-- ARGV[4]  max running, 0 = no concurrency limit
-- ARGV[5]  lease (ms) of a running slot
--
-- Returns: {VERDICT_START} start now; {VERDICT_WAIT, wait µs} wait for a
--          reserved rate slot; {VERDICT_FULL} the concurrency limit is reached
--          (try again later).
-- #include codes.lua
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local interval = tonumber(ARGV[1])
local max = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])

if max > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  local cap = string.format('%.0f', now_ms + lease)
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. cap, '+inf')) do
    redis.call('ZADD', KEYS[2], cap, member)
  end
  if not redis.call('ZSCORE', KEYS[2], ARGV[3]) and redis.call('ZCARD', KEYS[2]) >= max then
    return {VERDICT_FULL}
  end
end

if interval > 0 then
  local last = math.min(now, tonumber(redis.call('HGET', KEYS[1], 'last') or '-1e18'))
  local nxt = tonumber(redis.call('HGET', KEYS[1], 'next') or '0')
  local earliest = last + interval
  local keep = math.max(nxt, now) - now + 2 * interval
  if ARGV[2] == '1' then
    if now < earliest then
      return {VERDICT_WAIT, math.floor(earliest - now)}
    end
  elseif now < earliest or now < nxt then
    local slot = math.max(nxt, earliest, now)
    redis.call('HSET', KEYS[1], 'next', string.format('%.0f', slot + interval))
    redis.call('PEXPIRE', KEYS[1], math.floor((slot - now + 2 * interval) / 1000) + 1000)
    return {VERDICT_WAIT, math.floor(slot - now)}
  end
  redis.call('HSET', KEYS[1], 'last', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], math.floor(keep / 1000) + 1000)
end

if max > 0 then
  redis.call('ZADD', KEYS[2], string.format('%.0f', now_ms + lease), ARGV[3])
  -- The set lives as long as its longest lease (at most one from now), plus a
  -- lease of margin; slots.lua refreshes this on every renewal.
  redis.call('PEXPIRE', KEYS[2], 2 * lease)
end
return {VERDICT_START}
