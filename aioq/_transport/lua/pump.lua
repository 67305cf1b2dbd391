-- pump: move delayed messages that are due into the queue's stream.
-- Any number of workers may run it at once: each member is moved exactly
-- once, because the move (XADD + ZREM) is one atomic step.
--
-- KEYS[1]  delayed set of the queue (score = due time, ms since epoch)
-- KEYS[2]  queue stream
-- ARGV[1]  now (ms since epoch)
-- ARGV[2]  most members to move in this call
--
-- Returns: {moved, next due time in ms or -1 when nothing else is waiting}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'm', member)
  redis.call('ZREM', KEYS[1], member)
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then
  next_due = math.floor(tonumber(first[2]))
end
return {#due, next_due}
