-- pump: move delayed messages that are due into their queue's level streams.
-- Any number of workers may run it at once: each member is moved exactly
-- once, because the move (XADD + ZREM) is one atomic step.
--
-- KEYS[1..n]     delayed sets of the queue, one per priority level
-- KEYS[n+1..2n]  the matching level streams
-- ARGV[1]  now (ms since epoch)
-- ARGV[2]  most members to move in this call
--
-- Returns: {moved, next due time in ms or -1 when nothing else is waiting}
local n = #KEYS / 2
local left = tonumber(ARGV[2])
local moved = 0
local next_due = -1
for i = 1, n do
  if left > 0 then
    local due = redis.call('ZRANGEBYSCORE', KEYS[i], '-inf', ARGV[1], 'LIMIT', 0, left)
    for _, member in ipairs(due) do
      redis.call('XADD', KEYS[n + i], '*', 'm', member)
      redis.call('ZREM', KEYS[i], member)
    end
    moved = moved + #due
    left = left - #due
  end
  local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
  if first[2] then
    local t = math.floor(tonumber(first[2]))
    if next_due < 0 or t < next_due then
      next_due = t
    end
  end
end
return {moved, next_due}
