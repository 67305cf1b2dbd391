-- retry: schedule the next attempt of a failed message and acknowledge the
-- failed one, in one step. Guarded: a worker that lost the entry to another
-- (it stalled past the visibility timeout) schedules nothing.
--
-- KEYS[1]  queue stream
-- KEYS[2]  delayed set of the queue
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3]  entry id of the failed attempt
-- ARGV[4]  payload of the next attempt
-- ARGV[5]  delay of the next attempt (ms from now, by the Redis clock: a
--          worker's own clock may be wrong)
--
-- Returns: 1 when scheduled, 0 when this consumer no longer owns the entry.
-- (When the group is gone — Redis lost its data — nobody else can own it: the
-- retry is scheduled.)
local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p.err and (not p[1] or p[1][2] ~= ARGV[2]) then
  return 0
end
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[5])
redis.call('ZADD', KEYS[2], string.format('%.0f', due), ARGV[4])
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
