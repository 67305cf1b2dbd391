-- tick: fire one tick of a periodic schedule, at most once across every scheduler.
-- The schedule's state hash remembers the last tick fired; a tick is fired only
-- when it is later than that (compare-and-set on a time that only moves forward),
-- so any number of schedulers may try the same tick and exactly one sends it, and
-- a restarted scheduler or one with a lagging clock can never send an old tick again.
-- The hash has no TTL: it is the schedule's memory across restarts.
--
-- KEYS[1]  schedule state (hash: last_ms, last_job, fired_ms), in the queue's slot
-- KEYS[2]  the level stream the job goes to
-- ARGV[1]  the tick (ms since epoch)
-- ARGV[2]  job id
-- ARGV[3]  payload
-- ARGV[4]  now, the scheduler's wall clock (ms since epoch)
--
-- Returns: {1, tick} when this call sent the job; {0, last tick fired} when a
-- tick at or after this one had already been fired.
local last = tonumber(redis.call('HGET', KEYS[1], 'last_ms'))
local tick = tonumber(ARGV[1])
if last and last >= tick then
  return {0, last}
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
redis.call('HSET', KEYS[1], 'last_ms', ARGV[1], 'last_job', ARGV[2], 'fired_ms', ARGV[4])
return {1, tick}
