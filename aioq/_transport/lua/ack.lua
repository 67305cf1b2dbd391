-- ack: acknowledge finished messages and delete them, so the stream only
-- holds live work.
--
-- KEYS[1]  queue stream
-- ARGV[1]  consumer group
-- ARGV[2…] entry ids
--
-- Returns: the number of entries acknowledged.
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 2))
redis.call('XDEL', KEYS[1], unpack(ARGV, 2))
return n
