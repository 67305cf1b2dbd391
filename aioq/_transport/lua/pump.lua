-- pump: move delayed messages that are due into their queue's level streams.
-- Any number of workers may run it at once: each member is moved exactly
-- once, because the move (XADD + ZREM) is one atomic step.
-- "Due" is judged by the Redis clock (TIME), never by the caller's: a worker
-- whose clock runs ahead must not start delayed work early.
--
-- KEYS[1..n]     delayed sets of the queue, one per priority level
-- KEYS[n+1..2n]  the matching level streams
-- ARGV[1]  most members to move in this call
--
-- Returns: {moved, ms until the next member is due (by Redis time, 0 when one
-- is due already) or -1 when nothing else is waiting, that due time in ms by
-- Redis' clock (-1: none), for the due-index hint}
-- #include clock.lua
local now = now_ms()
local n = #KEYS / 2
local left = tonumber(ARGV[1])
local moved = 0
local next_due = -1
for i = 1, n do
  if left > 0 then
    local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', now, 'LIMIT', 0, left)
    for _, member in ipairs(due) do
      redis.call('XADD', KEYS[n + i], '*', 'm', member)
      redis.call('ZREM', KEYS[i], member)
    end
    moved = moved + #due
    left = left - #due
  end
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local at = math.floor(tonumber(first[2]))
    if next_due < 0 or at < next_due then
      next_due = at
    end
  end
end
if next_due < 0 then
  return {moved, -1, -1}
end
return {moved, math.max(0, next_due - now), next_due}
