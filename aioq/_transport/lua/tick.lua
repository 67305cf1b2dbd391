-- tick: fire one tick of a periodic schedule, at most once across every scheduler.
-- The schedule's state hash remembers the last tick fired; a tick is fired only
-- when it is later than that (compare-and-set on a time that only moves forward),
-- so any number of schedulers may try the same tick and exactly one sends it, and
-- a restarted scheduler or one with a lagging clock can never send an old tick again.
-- The hash has no TTL: it is the schedule's memory across restarts.
--
-- Times are judged by the Redis clock, never the scheduler's: a tick more than
-- the grace ahead of Redis time is refused (a scheduler whose clock runs ahead
-- must not send the future), and a remembered last tick further ahead than the
-- grace (left by such a clock before this check existed) is healed — ignored
-- and overwritten — so it cannot silence the schedule until Redis time gets there.
--
-- A paused schedule (field `paused`, set by pause.lua) fires nothing; once
-- resumed, ticks at or before `resumed_ms` (Redis time of the resume) count as
-- fired, so the paused window is never back-filled.
--
-- KEYS[1]  schedule state (hash: last_ms, last_job, fired_ms, paused,
--          resumed_ms), in the queue's slot
-- KEYS[2]  the level stream the job goes to
-- ARGV[1]  the tick (ms since epoch)
-- ARGV[2]  job id
-- ARGV[3]  payload
-- ARGV[4]  grace (ms): how far ahead of Redis time a tick may be fired
--
-- Returns: {TICK_SENT, tick} when this call sent the job; {TICK_SKIPPED, last
-- tick fired} when a tick at or after this one had already been fired (or falls
-- in a paused window that was resumed since); {TICK_EARLY, Redis time in ms}
-- when the tick is too far ahead of Redis time (nothing was sent or
-- remembered); {TICK_PAUSED, tick} when the schedule is paused (nothing sent or
-- remembered).
-- #include codes.lua
-- #include clock.lua
local now = now_ms()
local tick = tonumber(ARGV[1])
local grace = tonumber(ARGV[4])
if tick > now + grace then
  return {TICK_EARLY, now}
end
local got = redis.call('HMGET', KEYS[1], 'last_ms', 'paused', 'resumed_ms')
if got[2] then
  return {TICK_PAUSED, tick}
end
local last = tonumber(got[1])
if last and last > now + grace then
  last = nil -- in the future of Redis time: healed
end
local resumed = tonumber(got[3])
if resumed and resumed >= tick then
  return {TICK_SKIPPED, math.max(resumed, last or 0)} -- paused then: skipped, not back-filled
end
if last and last >= tick then
  return {TICK_SKIPPED, last}
end
redis.call('XADD', KEYS[2], '*', 'm', ARGV[3])
redis.call('HSET', KEYS[1], 'last_ms', ARGV[1], 'last_job', ARGV[2], 'fired_ms', string.format('%.0f', now))
return {TICK_SENT, tick}
