#!lua
-- retry: schedule the next attempt of a failed (or deferred) message and
-- acknowledge this one, in one step, fenced by the delivery: a worker that
-- lost the entry to another (it stalled past its lease) schedules nothing.
-- The due time is Redis' own clock plus the delay, never a worker's clock.
--
-- KEYS[1]  queue stream
-- KEYS[2]  delayed set of the queue (the message's priority level)
-- KEYS[3]  (optional) the queue's event stream: a 'retrying' event is written
--          with the retry (none for a rate-limit or max_running deferral)
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3]  entry id of this delivery
-- ARGV[4]  its delivery count
-- ARGV[5]  payload of the next attempt
-- ARGV[6]  delay (ms) from now
-- ARGV[7…11] with KEYS[3]: event stream cap, job id, task, attempt, detail
--
-- Returns: the due time (ms since epoch, Redis clock) when scheduled; 0 when
-- this consumer no longer holds the entry. (When the group is gone — Redis
-- lost its data — nobody else can hold it: the retry is scheduled.)
-- #include codes.lua
-- #include fence.lua
-- #include clock.lua
-- #include event.lua
local held = holds_entry(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4])
if held == HELD_NOT_HELD then
  return 0
end
local due = now_ms() + tonumber(ARGV[6])
redis.call('ZADD', KEYS[2], due, ARGV[5])
if held == HELD_HELD then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('XDEL', KEYS[1], ARGV[3])
if KEYS[3] then
  emit(KEYS[3], ARGV[7], 'retrying', ARGV[8], ARGV[9], ARGV[2], ARGV[10], ARGV[11])
end
return due
