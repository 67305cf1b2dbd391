-- due: the queues whose delayed sets may hold a due message, by the due-index
-- hint (sorted set: queue → the earliest time, by Redis' clock, its delayed
-- sets need a look; 0 = at once). The index is only a hint, app-wide and so in
-- a slot of its own: it is written next to the queue scripts, never inside
-- them, and a slow sweep of every queue stands behind it (docs/architecture.md).
--
-- KEYS[1]  the due index
-- ARGV[1]  most queues to return
-- ARGV[2]  offset (to page past queues no worker of this call pumps)
--
-- Returns: {now ms, ms until the first later hint (-1: none), queue, queue, ...}
-- #include clock.lua
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', tonumber(ARGV[2]), tonumber(ARGV[1]))
local later = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
local wait = -1
if later[2] then
  wait = math.max(0, math.floor(tonumber(later[2])) - now)
end
local out = {now, wait}
for _, q in ipairs(due) do
  out[#out + 1] = q
end
return out
