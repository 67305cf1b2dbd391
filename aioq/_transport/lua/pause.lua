-- pause: pause or resume a periodic schedule, in its state hash (the hash
-- tick.lua reads, so the check and the fire are one atomic step).
-- Pausing sets `paused` (Redis time); resuming deletes it and sets
-- `resumed_ms` to Redis time: tick.lua treats every tick up to then as fired,
-- so the paused window is not back-filled, whatever the schedule's catch_up.
--
-- KEYS[1]  schedule state (hash), in the slot of the queue its jobs go to
-- ARGV[1]  'pause' or 'resume'
--
-- Returns: 1 when this call changed the state; 0 when it already was so.
-- #include clock.lua
local paused = redis.call('HEXISTS', KEYS[1], 'paused') == 1
if ARGV[1] == 'pause' then
  if paused then
    return 0
  end
  redis.call('HSET', KEYS[1], 'paused', string.format('%.0f', now_ms()))
  return 1
end
if not paused then
  return 0
end
redis.call('HDEL', KEYS[1], 'paused')
redis.call('HSET', KEYS[1], 'resumed_ms', string.format('%.0f', now_ms()))
return 1
