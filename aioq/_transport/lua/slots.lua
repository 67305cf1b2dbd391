-- slots: renew, or give up, the max_running slots of jobs running on one worker,
-- by the Redis clock (a worker's own clock may be wrong: a slot renewed with a
-- clock behind would lapse at once and let another job start).
--
-- A renewal sets each slot's lease expiry to Redis TIME + lease and refreshes
-- the running set's own expiry, so a long job keeps its slot for as long as it
-- is renewed (the set would otherwise expire under it). A slot that lapsed (its
-- worker stalled past the lease) is taken back only while the limit allows.
--
-- KEYS[1]  running set of one task (sorted set: job id -> lease expiry, ms)
-- ARGV[1]  lease (ms) of a slot; 0 = give the slots up
-- ARGV[2]  the task's max_running
-- ARGV[3…] job ids
--
-- Returns: the job ids that hold no slot any more (their slot lapsed and the
-- limit was reached meanwhile); always empty when giving slots up.
-- #include clock.lua
local lease = tonumber(ARGV[1])
if lease == 0 then
  for i = 3, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
  return {}
end
local now = now_ms()
local max = tonumber(ARGV[2])
local expiry = string.format('%.0f', now + lease)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lost = {}
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) or redis.call('ZCARD', KEYS[1]) < max then
    redis.call('ZADD', KEYS[1], expiry, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
-- The set lives as long as its longest lease, plus one lease of margin.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIRE', KEYS[1], math.max(0, math.floor(tonumber(last[2]) - now)) + lease)
end
return lost
