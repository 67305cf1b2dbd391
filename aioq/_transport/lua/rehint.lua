-- rehint: after a pump of one queue, set its due-index hint to the queue's next
-- due time, unless someone lowered the hint since the pump held it (a sender's
-- "look at once", written after its message: the lower hint stays).
--
-- KEYS[1]  the due index
-- ARGV[1]  queue
-- ARGV[2]  the score the pump held the hint at before it pumped
-- ARGV[3]  the queue's next due time (ms, Redis clock), -1 when nothing waits
local queue, held, next_due = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local score = redis.call('ZSCORE', KEYS[1], queue)
score = score and tonumber(score)
if score and score ~= held then
  if next_due >= 0 and next_due < score then
    redis.call('ZADD', KEYS[1], next_due, queue)
  end
  return 0
end
if next_due >= 0 then
  redis.call('ZADD', KEYS[1], next_due, queue)
else
  redis.call('ZREM', KEYS[1], queue)
end
return 1
