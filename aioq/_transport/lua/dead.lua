-- dead: move one entry to the queue's dead-letter stream, with the reason,
-- and remove it from the work stream in the same step.
--
-- KEYS[1]  queue stream
-- KEYS[2]  dead-letter stream
-- ARGV[1]  consumer group
-- ARGV[2]  entry id
-- ARGV[3]  original payload (bytes, may be empty)
-- ARGV[4]  reason (text)
-- ARGV[5]  approximate cap on the dead-letter stream's length (0 = none)
-- ARGV[6]  dead-lettered at (ms since epoch)
-- ARGV[7]  priority level of the stream it came from (re-driven to the same)
--
-- Returns: the id of the new dead-letter entry.
local id
if tonumber(ARGV[5]) > 0 then
  id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*',
    'm', ARGV[3], 'reason', ARGV[4], 'origin', ARGV[2], 'at', ARGV[6], 'level', ARGV[7])
else
  id = redis.call('XADD', KEYS[2], '*',
    'm', ARGV[3], 'reason', ARGV[4], 'origin', ARGV[2], 'at', ARGV[6], 'level', ARGV[7])
end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return id
