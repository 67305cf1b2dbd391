#!lua
-- dead: move one entry to the queue's dead-letter stream, with the reason, and
-- remove it from the work stream in the same step — fenced by the delivery: an
-- entry another consumer holds now is left alone.
--
-- KEYS[1]  queue stream
-- KEYS[2]  dead-letter stream
-- KEYS[3]  (optional) the queue's event stream: a 'dead' event is written too
-- ARGV[1]  consumer group
-- ARGV[2]  this consumer's name
-- ARGV[3]  entry id
-- ARGV[4]  its delivery count
-- ARGV[5]  original payload (bytes, may be empty)
-- ARGV[6]  reason (text)
-- ARGV[7]  approximate cap on the dead-letter stream's length (0 = none)
-- ARGV[8]  dead-lettered at (ms since epoch)
-- ARGV[9]  priority level of the stream it came from (re-driven to the same)
-- ARGV[10…13] with KEYS[3]: event stream cap, job id, task, attempt
--
-- Returns: the id of the new dead-letter entry, or 0 when this consumer no
-- longer holds the entry (nothing done).
-- #include codes.lua
-- #include fence.lua
-- #include event.lua
local held = holds_entry(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4])
if held == HELD_NOT_HELD then
  return 0
end
local fields = {'m', ARGV[5], 'reason', ARGV[6], 'origin', ARGV[3], 'at', ARGV[8], 'level', ARGV[9]}
local id
if tonumber(ARGV[7]) > 0 then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[7], '*', unpack(fields))
else
  id = redis.call('XADD', KEYS[2], '*', unpack(fields))
end
if held == HELD_HELD then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
end
redis.call('XDEL', KEYS[1], ARGV[3])
if KEYS[3] then
  emit(KEYS[3], ARGV[10], 'dead', ARGV[11], ARGV[12], ARGV[2], ARGV[13], string.sub(ARGV[6], 1, 200))
end
return id
