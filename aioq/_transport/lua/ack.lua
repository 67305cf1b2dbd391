-- ack: acknowledge finished messages and delete them, so the stream only
-- holds live work.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group
-- ARGV[2…] entry ids
--
-- Returns: the number of entries acknowledged (0 when the group is gone
-- because Redis lost its data: then there is nothing left to acknowledge).
local n = redis.pcall('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
if type(n) == 'table' and n.err then
  n = 0
end
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
