-- enqueue_delayed: put a message in its queue's delayed set, due a delay after
-- Redis' own clock (never the sender's), or at an absolute eta; a message whose
-- eta has passed goes straight to the stream.
--
-- KEYS[1]  the level stream
-- KEYS[2]  the matching delayed set (score = due time, ms)
-- ARGV[1]  payload
-- ARGV[2]  'delay' (ARGV[3] ms after TIME) or 'eta' (at ARGV[3], ms since epoch)
-- ARGV[3]  the delay or the eta (ms)
--
-- Returns: the due time (ms since epoch), or 0 when it was sent to the stream.
-- #include clock.lua
local now = now_ms()
local due = tonumber(ARGV[3])
if ARGV[2] == 'delay' then
  due = now + due
end
if due <= now then
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[2], string.format('%.0f', due), ARGV[1])
return due
